// Exponential moving average of parameters, as score_sde's models/ema.py with use_num_updates=True:
//   decay_t = min(decay, (1 + n) / (10 + n)) with n the number of updates so far (counted before this one, +1),
//   shadow <- shadow - (1 - decay_t) * (shadow - param).
// The shadow is what score_sde saves as the 'ema' state and what DiffPure loads.

import { noGrad } from '../../autograd/index.js';
import { add, affine, keep, sub, type Tensor, tidy } from '../../tensor/index.js';
import type { Parameter } from '../module.js';

export class Ema {
  numUpdates = 0;
  readonly shadow: Tensor[];

  constructor(
    readonly params: readonly Parameter[],
    readonly decay = 0.9999,
  ) {
    if (!(decay >= 0 && decay <= 1)) throw new Error(`Ema: decay must be in [0, 1], got ${decay}`);
    this.shadow = params.map((p) => keep(noGrad(() => affine(p.value, 1, 0))));
  }

  update(): void {
    this.numUpdates++;
    const d = Math.min(this.decay, (1 + this.numUpdates) / (10 + this.numUpdates));
    noGrad(() => {
      this.params.forEach((p, i) => {
        const s = this.shadow[i] as Tensor;
        this.shadow[i] = tidy(() => keep(add(s, affine(sub(s, p.value), -(1 - d), 0))));
        s.dispose();
      });
    });
  }

  dispose(): void {
    for (const s of this.shadow) s.dispose();
  }
}
