// The score model's metric: clean accuracy of a classifier on images purified by DiffPure at several t*, beside the
// bare classifier's on the same images. DiffPure trades clean accuracy for robustness (95.2 -> 89.0 on CIFAR-10 at
// t* 0.1); this is how much a trained score model costs, measured without an attack.

import { noGrad } from '../../autograd/index.js';
import { argmax, fromArray, type Tensor, tidy } from '../../tensor/index.js';
import type { LabelledImages } from '../data/idx.js';
import { purify } from '../purify.js';

export interface PurifiedAccuracyOptions {
  /** The score network as the VP-SDE calls it: model(x in [-1, 1], labels 999 t). */
  score: (x: Tensor, labels: Tensor) => Tensor;
  /** Logits of images in [0, 1]. */
  classify: (x: Tensor) => Tensor;
  /** More classifiers read on the same purified images (one purification for all: the costly part). */
  alsoClassify?: readonly ((x: Tensor) => Tensor)[];
  data: LabelledImages;
  tStars: readonly number[];
  /** Euler step of the reverse solve. */
  dt: number;
  /** Batch b at every t* purifies with seed `seed + b` (forward noise and Brownian path). */
  seed: number;
  batch: number;
  /** After each batch at each t* (progress). */
  onBatch?: (done: { tStar: number; images: number; of: number; seconds: number }) => void;
}

export interface PurifiedAccuracy {
  images: number;
  /** The classifier on the clean images. */
  bare: number;
  /** t* (as written, e.g. "0.3") -> the classifier's accuracy on the purified images. */
  purified: Record<string, number>;
  seconds: number;
}

function correct(logits: Tensor, labels: Uint8Array, from: number): number {
  const p = argmax(logits, 1).dataSync();
  let k = 0;
  for (let i = 0; i < p.length; i++) if (p[i] === labels[from + i]) k++;
  return k;
}

/** The first classifier's accuracies; see purifiedAccuracies for several classifiers on one purification. */
export function purifiedAccuracy(o: PurifiedAccuracyOptions): PurifiedAccuracy {
  return purifiedAccuracies(o)[0] as PurifiedAccuracy;
}

/**
 * One entry per classifier (`classify`, then `alsoClassify`), all read on the same purified images; `seconds` is the
 * whole evaluation's, shared.
 */
export function purifiedAccuracies(o: PurifiedAccuracyOptions): PurifiedAccuracy[] {
  const [n, c, h, w] = o.data.shape;
  const size = c * h * w;
  const classifiers = [o.classify, ...(o.alsoClassify ?? [])];
  const t0 = performance.now();
  const batchOf = (s: number) => {
    const e = Math.min(n, s + o.batch);
    return fromArray(o.data.images.subarray(s * size, e * size), [e - s, c, h, w]);
  };
  const bare = classifiers.map(() => 0);
  noGrad(() => {
    for (let s = 0; s < n; s += o.batch)
      tidy(() => {
        const x = batchOf(s);
        classifiers.forEach((f, i) => {
          bare[i] = (bare[i] as number) + correct(f(x), o.data.labels, s);
        });
      });
  });
  const purified = classifiers.map(() => ({}) as Record<string, number>);
  for (const tStar of o.tStars) {
    const k = classifiers.map(() => 0);
    noGrad(() => {
      for (let s = 0, b = 0; s < n; s += o.batch, b++) {
        tidy(() => {
          const y = purify(batchOf(s), { model: o.score, scoreType: 'score_sde', tStar, dt: o.dt, seed: o.seed + b });
          classifiers.forEach((f, i) => {
            k[i] = (k[i] as number) + correct(f(y), o.data.labels, s);
          });
        });
        o.onBatch?.({ tStar, images: Math.min(n, s + o.batch), of: n, seconds: (performance.now() - t0) / 1000 });
      }
    });
    classifiers.forEach((_, i) => {
      (purified[i] as Record<string, number>)[String(tStar)] = (k[i] as number) / n;
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  return classifiers.map((_, i) => ({
    images: n,
    bare: (bare[i] as number) / n,
    purified: purified[i] as Record<string, number>,
    seconds,
  }));
}
