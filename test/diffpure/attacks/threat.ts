// Helpers the attack property tests share: the largest perturbation of a batch, and a classifier's labels.

import type { Images } from '../../../src/diffpure/attacks/model.js';
import { fromArray } from '../../../src/tensor/prims/creation.js';
import type { Tensor } from '../../../src/tensor/tensor.js';

/** max over images of ||adv - x|| in the norm (Linf or L2). */
export function maxPerturbation(adv: Images, x: Images, norm: 'Linf' | 'L2'): number {
  const d = x.data.length / x.shape[0];
  let m = 0;
  for (let r = 0; r < x.shape[0]; r++) {
    let s = 0;
    for (let j = r * d; j < (r + 1) * d; j++) {
      const e = Math.abs((adv.data[j] as number) - (x.data[j] as number));
      s = norm === 'Linf' ? Math.max(s, e) : s + e * e;
    }
    m = Math.max(m, norm === 'Linf' ? s : Math.sqrt(s));
  }
  return m;
}

/** argmax of classify(x) per image (cpu): the labels that make every image clean-correct. */
export function predictedLabels(classify: (x: Tensor) => Tensor, x: Images): Int32Array {
  const v = classify(fromArray(x.data, x.shape)).dataSync();
  const k = v.length / x.shape[0];
  return Int32Array.from({ length: x.shape[0] }, (_, r) => {
    let best = 0;
    for (let j = 1; j < k; j++) if ((v[r * k + j] as number) > (v[r * k + best] as number)) best = j;
    return best;
  });
}
