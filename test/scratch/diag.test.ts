import { test } from 'vitest';
import { noGrad } from '../../src/autograd/index.js';
import { loadMnistLike } from '../../src/diffpure/data/idx.js';
import { purify } from '../../src/diffpure/purify.js';
import { loadClassifierRun } from '../../src/diffpure/train/classifier.js';
import { loadScoreRun } from '../../src/diffpure/train/score.js';
import { add, argmax, fromArray, mul, randomNormal } from '../../src/tensor/index.js';

test('diag', () => {
  const n = 64;
  const d = loadMnistLike('test', '/usr/share/datasets/fashion-mnist', n);
  const { net: clf } = loadClassifierRun('runs/fmnist-wrn-16-2');
  const { net: score } = loadScoreRun('runs/fmnist-ddpmpp-nf16', 'ema');
  const x = fromArray(d.images, [n, 1, 28, 28]);
  const acc = (y: any) => {
    const p = argmax(clf.forward(y), 1).dataSync();
    let k = 0;
    for (let i = 0; i < n; i++) if (p[i] === d.labels[i]) k++;
    return k / n;
  };
  noGrad(() => {
    console.log('clean', acc(x));
    for (const s of [0.01, 0.02, 0.03, 0.05])
      console.log('gauss', s, acc(add(x, mul(randomNormal(x.shape, { seed: 1 }), s))));
    for (const [tStar, dt] of [
      [0.05, 0.001],
      [0.1, 0.001],
    ] as const) {
      const y = purify(x, { model: (a, l) => score.forward(a, l), scoreType: 'score_sde', tStar, dt, seed: 0 });
      const yv = y.dataSync();
      const xv = d.images;
      let bg = 0,
        bgs = 0,
        nb = 0,
        mad = 0,
        fg = 0,
        nf = 0;
      for (let i = 0; i < yv.length; i++) {
        mad += Math.abs(yv[i]! - xv[i]!);
        if (xv[i] === 0) {
          bg += yv[i]!;
          bgs += yv[i]! ** 2;
          nb++;
        } else {
          fg += yv[i]! - xv[i]!;
          nf++;
        }
      }
      console.log(
        't*',
        tStar,
        'dt',
        dt,
        'acc',
        acc(y),
        'mad',
        (mad / yv.length).toFixed(4),
        'bg mean',
        (bg / nb).toFixed(4),
        'bg rms',
        Math.sqrt(bgs / nb).toFixed(4),
        'fg bias',
        (fg / nf).toFixed(4),
      );
      const th = fromArray(
        Float32Array.from(yv, (v) => (v < 0.06 ? 0 : v)),
        y.shape,
      );
      console.log('  thresholded <0.06 -> 0: acc', acc(th));
      const cl = fromArray(
        Float32Array.from(yv, (v) => Math.min(1, Math.max(0, v))),
        y.shape,
      );
      console.log('  clamped: acc', acc(cl));
    }
  });
}, 900_000);
