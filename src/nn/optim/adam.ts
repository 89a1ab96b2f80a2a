// Adam and AdamW with PyTorch's semantics (torch.optim.Adam / AdamW, the default single-tensor path of 1.13+):
//   g <- g + wd * p                      (Adam's L2 weight decay; AdamW instead first scales p by 1 - lr * wd)
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// eps is added after the bias correction of v, as PyTorch does (not inside the square root). The learning rate may
// change between steps (schedules set `lr`). State tensors live on the parameters' backend.

import { noGrad } from '../../autograd/index.js';
import { add, affine, div, keep, mul, sqrt, square, type Tensor, tidy, zerosLike } from '../../tensor/index.js';
import type { Parameter } from '../module.js';

export interface AdamOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
  /** AdamW: decoupled weight decay (Loshchilov & Hutter). Default false (Adam's L2 penalty). */
  decoupled?: boolean;
}

export class Adam {
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly decoupled: boolean;
  /** Steps taken (PyTorch's state['step']). */
  step = 0;
  private readonly m: Tensor[];
  private readonly v: Tensor[];

  constructor(
    readonly params: readonly Parameter[],
    opts: AdamOptions = {},
  ) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.decoupled = opts.decoupled ?? false;
    const [b1, b2] = this.betas;
    if (!(this.lr >= 0)) throw new Error(`Adam: lr must be >= 0, got ${this.lr}`);
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new Error(`Adam: betas must be in [0, 1), got [${b1}, ${b2}]`);
    if (!(this.eps >= 0)) throw new Error(`Adam: eps must be >= 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`Adam: weightDecay must be >= 0, got ${this.weightDecay}`);
    for (const p of params)
      if (p.isBuffer) throw new Error('Adam: got a buffer among the parameters; pass trainable ones');
    this.m = params.map((p) => keep(noGrad(() => zerosLike(p.value))));
    this.v = params.map((p) => keep(noGrad(() => zerosLike(p.value))));
  }

  /** One update from `grads` (same order and shapes as the parameters). The old parameter tensors are disposed. */
  update(grads: readonly Tensor[]): void {
    if (grads.length !== this.params.length) {
      throw new Error(`Adam.update: got ${grads.length} gradients for ${this.params.length} parameters`);
    }
    this.step++;
    const [b1, b2] = this.betas;
    const lr = this.lr;
    const stepSize = lr / (1 - b1 ** this.step);
    const bc2Sqrt = Math.sqrt(1 - b2 ** this.step);
    noGrad(() => {
      this.params.forEach((p, i) => {
        const g0 = grads[i] as Tensor;
        const old = p.value;
        if (g0.shape.join() !== old.shape.join()) {
          throw new Error(`Adam.update: gradient ${i} has shape [${g0.shape}], its parameter [${old.shape}]`);
        }
        const [m, v, next] = tidy(() => {
          let param = old;
          let g = g0;
          if (this.weightDecay && this.decoupled) param = affine(param, 1 - lr * this.weightDecay, 0);
          else if (this.weightDecay) g = add(g, affine(param, this.weightDecay, 0));
          const m = add(affine(this.m[i] as Tensor, b1, 0), affine(g, 1 - b1, 0));
          const v = add(affine(this.v[i] as Tensor, b2, 0), affine(square(g), 1 - b2, 0));
          const denom = affine(sqrt(v), 1 / bc2Sqrt, this.eps);
          const next = add(param, mul(div(m, denom), -stepSize));
          return [keep(m), keep(v), keep(next)];
        });
        (this.m[i] as Tensor).dispose();
        (this.v[i] as Tensor).dispose();
        this.m[i] = m;
        this.v[i] = v;
        p.value = next;
        old.dispose();
      });
    });
  }

  /** The first and second moment estimates, for checkpoints. */
  moments(): { m: readonly Tensor[]; v: readonly Tensor[] } {
    return { m: this.m, v: this.v };
  }

  /** Restores moments and the step count saved from moments() (the tensors are kept). */
  loadMoments(m: readonly Tensor[], v: readonly Tensor[], step: number): void {
    if (m.length !== this.params.length || v.length !== this.params.length) {
      throw new Error(`Adam: ${m.length} / ${v.length} moments for ${this.params.length} parameters`);
    }
    for (let i = 0; i < m.length; i++) {
      const shape = (this.params[i] as Parameter).value.shape.join();
      if ((m[i] as Tensor).shape.join() !== shape || (v[i] as Tensor).shape.join() !== shape) {
        throw new Error(`Adam: the moments of parameter ${i} do not have its shape [${shape}]`);
      }
      (this.m[i] as Tensor).dispose();
      (this.v[i] as Tensor).dispose();
      this.m[i] = keep(m[i] as Tensor);
      this.v[i] = keep(v[i] as Tensor);
    }
    this.step = step;
  }

  /** Frees the moment estimates. */
  dispose(): void {
    for (const t of [...this.m, ...this.v]) t.dispose();
  }
}
