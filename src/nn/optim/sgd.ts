// SGD with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD (single-tensor path):
//   d = g + wd * p;  buf = d (first step) or momentum * buf + (1 - dampening) * d;
//   d = nesterov ? d + momentum * buf : buf;  p <- p - lr * d

import { noGrad } from '../../autograd/index.js';
import { add, affine, keep, mul, type Tensor, tidy } from '../../tensor/index.js';
import type { Parameter } from '../module.js';

export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export class SGD {
  lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  step = 0;
  private readonly buf: (Tensor | null)[];

  constructor(
    readonly params: readonly Parameter[],
    opts: SgdOptions,
  ) {
    this.lr = opts.lr;
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    if (!(this.lr >= 0)) throw new Error(`SGD: lr must be >= 0, got ${opts.lr}`);
    if (!(this.momentum >= 0)) throw new Error(`SGD: momentum must be >= 0, got ${this.momentum}`);
    if (!(this.weightDecay >= 0)) throw new Error(`SGD: weightDecay must be >= 0, got ${this.weightDecay}`);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new Error('SGD: Nesterov momentum requires a momentum and zero dampening (as torch.optim.SGD)');
    }
    for (const p of params)
      if (p.isBuffer) throw new Error('SGD: got a buffer among the parameters; pass trainable ones');
    this.buf = params.map(() => null);
  }

  update(grads: readonly Tensor[]): void {
    if (grads.length !== this.params.length) {
      throw new Error(`SGD.update: got ${grads.length} gradients for ${this.params.length} parameters`);
    }
    this.step++;
    const { lr, momentum: mu, dampening, weightDecay: wd } = this;
    noGrad(() => {
      this.params.forEach((p, i) => {
        const old = p.value;
        const g0 = grads[i] as Tensor;
        if (g0.shape.join() !== old.shape.join()) {
          throw new Error(`SGD.update: gradient ${i} has shape [${g0.shape}], its parameter [${old.shape}]`);
        }
        const prev = this.buf[i] ?? null;
        const [next, buf] = tidy(() => {
          let d = wd ? add(g0, affine(old, wd, 0)) : g0;
          let b: Tensor | null = null;
          if (mu) {
            b = prev ? add(affine(prev, mu, 0), affine(d, 1 - dampening, 0)) : affine(d, 1, 0);
            d = this.nesterov ? add(d, affine(b, mu, 0)) : b;
          }
          return [keep(add(old, mul(d, -lr))), b ? keep(b) : null] as const;
        });
        prev?.dispose();
        this.buf[i] = buf;
        p.value = next;
        old.dispose();
      });
    });
  }

  /** The momentum buffers (null before a parameter's first step), for checkpoints. */
  buffers(): readonly (Tensor | null)[] {
    return this.buf;
  }

  /** Restores momentum buffers and the step count saved from buffers() (the tensors are kept). */
  loadBuffers(bufs: readonly (Tensor | null)[], step: number): void {
    if (bufs.length !== this.params.length)
      throw new Error(`SGD: ${bufs.length} buffers for ${this.params.length} parameters`);
    bufs.forEach((b, i) => {
      if (b && b.shape.join() !== (this.params[i] as Parameter).value.shape.join()) {
        throw new Error(`SGD: momentum buffer ${i} has shape [${b.shape}], its parameter another`);
      }
      this.buf[i]?.dispose();
      this.buf[i] = b ? keep(b) : null;
    });
    this.step = step;
  }

  dispose(): void {
    for (const b of this.buf) b?.dispose();
  }
}
