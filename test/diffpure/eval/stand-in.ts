// Small stand-ins for the evaluation tests: a linear classifier on 1x4x4 images, a "purifier" that adds keyed
// Gaussian noise (stochastic per row, differentiable, cheap), twelve images whose labels the classifier mostly gets
// right, and a protocol over them.

import type { Images } from '../../../src/diffpure/attacks/model.js';
import type { Protocol } from '../../../src/diffpure/eval/protocol.js';
import type { EvalData, EvalModels } from '../../../src/diffpure/eval/runner.js';
import { add, concat, fromArray, matmul, mul, randomNormal, reshape } from '../../../src/tensor/index.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function standInModels(backend = 'cpu', noise = 0.05): EvalModels {
  const r = lcg(7);
  const w = Float32Array.from({ length: 16 * 4 }, () => r() - 0.5);
  const W = fromArray(w, [16, 4], { backend });
  return {
    backend,
    classify: (x) => matmul(reshape(x, [x.shape[0] as number, 16]), W),
    purifier:
      ({ tStar }) =>
      (x, keys) => {
        const n = concat(
          keys.map((k) => randomNormal([1, 1, 4, 4], { seed: k, backend })),
          0,
        );
        return add(x, mul(n, noise * (tStar / 0.1)));
      },
  };
}

/** Twelve 1x4x4 images in [0, 1] and labels: the stand-in classifier's clean predictions, two of them changed. */
export function standInData(models: EvalModels): EvalData {
  const r = lcg(3);
  const data = Float32Array.from({ length: 12 * 16 }, () => r());
  const images: Images = { data, shape: [12, 1, 4, 4] };
  const W = fromArray(data, [12, 16], { backend: models.backend });
  const z = models.classify(reshape(W, [12, 1, 4, 4])).dataSync() as Float32Array;
  const labels = new Int32Array(12);
  for (let i = 0; i < 12; i++) {
    let best = 0;
    for (let j = 1; j < 4; j++) if ((z[i * 4 + j] as number) > (z[i * 4 + best] as number)) best = j;
    labels[i] = best;
  }
  labels[3] = ((labels[3] as number) + 1) % 4;
  labels[8] = ((labels[8] as number) + 2) % 4;
  return { images, labels, indices: Array.from({ length: 12 }, (_, i) => 100 + i) };
}

export function standInProtocol(): Protocol {
  return {
    name: 'stand-in',
    description: 'linear classifier, noise purifier',
    data: { set: 'fashion-mnist', sample: { rule: 'first', n: 12 } },
    classifier: { model: 'wrn', weights: 'none' },
    purifier: { model: 'ddpmpp', weights: 'none', dt: 0.01 },
    seeds: [5, 6, 7],
    batch: 5,
    attacks: [
      {
        id: 'aa-standard',
        attack: 'autoattack',
        version: 'custom',
        attacks: ['apgd-ce', 'apgd-t'],
        norm: 'Linf',
        eps: 0.15,
        tStar: 0.1,
        settings: { apgdIter: 5, apgdTargets: 2 },
      },
      {
        id: 'aa-rand',
        attack: 'autoattack',
        version: 'rand',
        norm: 'Linf',
        eps: 0.15,
        tStar: 0.1,
        settings: { apgdIter: 5, apgdEot: 3 },
      },
      { id: 'pgd', attack: 'pgd-eot', norm: 'L2', eps: 0.5, steps: 3, eotIter: 2, tStar: 0.1, verdict: 'majority:3' },
    ],
    report: { min: [{ id: 'aa (min)', of: ['aa-standard', 'aa-rand'] }] },
  };
}
