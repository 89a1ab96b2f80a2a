// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2): total = the L2 norm of all
// gradients together; each is scaled by min(1, maxNorm / (total + 1e-6)). Returns the scaled gradients (new tensors;
// the inputs are left to the caller) and the total norm before clipping.

import { noGrad } from '../../autograd/index.js';
import { affine, square, sum, type Tensor } from '../../tensor/index.js';

export function clipGradNorm(grads: readonly Tensor[], maxNorm: number): { grads: Tensor[]; totalNorm: number } {
  if (!(maxNorm >= 0)) throw new Error(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  return noGrad(() => {
    let sq = 0;
    for (const g of grads) {
      const s = sum(square(g));
      sq += s.dataSync()[0] as number;
      s.dispose();
    }
    const totalNorm = Math.sqrt(sq);
    if (!Number.isFinite(totalNorm)) {
      throw new Error(`clipGradNorm: the total gradient norm is ${totalNorm}; a gradient holds NaN or inf`);
    }
    const coef = Math.min(1, maxNorm / (totalNorm + 1e-6));
    return { grads: grads.map((g) => affine(g, coef, 0)), totalNorm };
  });
}
