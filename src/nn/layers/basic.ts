// The standard layers with PyTorch's parameter names: Conv2d, Linear, GroupNorm, BatchNorm2d,
// LayerNorm, Dropout, and the containers Sequential and ModuleList (keys '0', '1', ...).

import { noGrad } from '../../autograd/index.js';
import * as T from '../../tensor/index.js';
import { constantInit, nextRandom, uniformInit } from '../init.js';
import { Module, type Parameter } from '../module.js';

export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number | [number, number],
    readonly opts: T.Conv2dOptions & { bias?: boolean } = {},
  ) {
    super();
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const groups = opts.groups ?? 1;
    const bound = 1 / Math.sqrt((inChannels / groups) * kh * kw);
    this.weight = this.registerParameter('weight', uniformInit([outChannels, inChannels / groups, kh, kw], bound));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', uniformInit([outChannels], bound));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.conv2d(x, this.weight.value, this.bias?.value, this.opts);
  }
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean } = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter('weight', uniformInit([outFeatures, inFeatures], bound));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', uniformInit([outFeatures], bound));
  }
  /** x [..., in] -> [..., out], y = x W^T + b. */
  forward(x: T.Tensor): T.Tensor {
    const y = T.matmul(x, T.transpose(this.weight.value));
    return this.bias ? T.add(y, this.bias.value) : y;
  }
}

export class GroupNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
  ) {
    super();
    if (numChannels % numGroups)
      throw new Error(`GroupNorm: ${numChannels} channels cannot be split into ${numGroups} groups`);
    this.weight = this.registerParameter('weight', constantInit([numChannels], 1));
    this.bias = this.registerParameter('bias', constantInit([numChannels], 0));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.groupNorm(x, this.numGroups, this.weight.value, this.bias.value, this.eps);
  }
}

export class LayerNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  constructor(
    readonly normalizedShape: number[],
    readonly eps = 1e-5,
  ) {
    super();
    this.weight = this.registerParameter('weight', constantInit(normalizedShape, 1));
    this.bias = this.registerParameter('bias', constantInit(normalizedShape, 0));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.layerNorm(x, this.normalizedShape, this.weight.value, this.bias.value, this.eps);
  }
}

/**
 * BatchNorm2d. Eval: running statistics. Training: batch statistics (biased variance for the
 * output, unbiased for the running update, as PyTorch) and the running buffers updated with momentum.
 */
export class BatchNorm2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  readonly runningMean: Parameter;
  readonly runningVar: Parameter;
  readonly numBatchesTracked: Parameter;
  constructor(
    readonly numFeatures: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
  ) {
    super();
    this.weight = this.registerParameter('weight', constantInit([numFeatures], 1));
    this.bias = this.registerParameter('bias', constantInit([numFeatures], 0));
    this.runningMean = this.registerBuffer('running_mean', constantInit([numFeatures], 0));
    this.runningVar = this.registerBuffer('running_var', constantInit([numFeatures], 1));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', constantInit([], 0));
  }
  forward(x: T.Tensor): T.Tensor {
    if (!this.training) {
      return T.batchNorm(
        x,
        this.runningMean.value,
        this.runningVar.value,
        this.weight.value,
        this.bias.value,
        this.eps,
      );
    }
    const n = x.size / this.numFeatures;
    const m = this.momentum;
    // the running buffers take no gradient; the output's statistics are recomputed inside the fused normalisation
    const updates = noGrad(() =>
      T.tidy(() => {
        const moments = T.channelMoments(x);
        const mean = T.reshape(T.slice(moments, [[0, 1]]), [this.numFeatures]);
        const varB = T.reshape(T.slice(moments, [[1, 2]]), [this.numFeatures]);
        return [
          T.add(T.mul(this.runningMean.value, 1 - m), T.mul(mean, m)),
          T.add(T.mul(this.runningVar.value, 1 - m), T.mul(varB, (m * n) / Math.max(n - 1, 1))),
          T.add(this.numBatchesTracked.value, 1),
        ];
      }),
    );
    [this.runningMean, this.runningVar, this.numBatchesTracked].forEach((p, i) => {
      p.value.dispose();
      p.value = T.keep(updates[i] as T.Tensor);
    });
    return T.batchNormTraining(x, this.weight.value, this.bias.value, this.eps);
  }
}

/** Dropout: identity in eval mode; in training, zero with probability p and scale by 1/(1-p). */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new Error(`Dropout: p must be in [0, 1), got ${p}`);
  }
  forward(x: T.Tensor): T.Tensor {
    if (!this.training || this.p === 0) return x;
    const keepMask = T.ge(
      T.randomUniform(x.shape, { ...nextRandom(), backend: x.backend.name, dtype: x.dtype }),
      this.p,
    );
    return T.mul(x, T.mul(keepMask, 1 / (1 - this.p)));
  }
}

/** A module applied as a function of one tensor. */
export interface Callable {
  forward(x: T.Tensor): T.Tensor;
}

/** Children registered as '0', '1', ... (torch.nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }
  push(m: M): void {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
}

/** Children applied in order (torch.nn.Sequential). */
export class Sequential extends ModuleList<Module & Callable> {
  forward(x: T.Tensor): T.Tensor {
    // each layer's output goes as soon as the next one has consumed it (never the caller's x);
    // autograd nodes keep what a backward pass needs
    let h = x;
    for (const m of this.items) {
      const next = T.tidy(() => m.forward(h));
      if (h !== x && h !== next) h.dispose();
      h = next;
    }
    return h;
  }
}

/**
 * One UNet decoder step, block(concat([h, skip], 1), emb), that frees the concatenation and the
 * consumed skip tensor as soon as the block has run (in no-grad purification this keeps the peak
 * near the skip connections; autograd nodes keep whatever a backward pass needs). `skip` must be
 * the caller's own intermediate, used nowhere else.
 */
export function forwardOnConcat<E>(
  block: { forward(x: T.Tensor, emb: E): T.Tensor },
  h: T.Tensor,
  skip: T.Tensor,
  emb: E,
): T.Tensor {
  const cat = T.concat([h, skip], 1);
  const out = block.forward(cat, emb);
  if (out !== cat) cat.dispose();
  if (out !== skip) skip.dispose();
  return out;
}
