// Properties of the attacks on small classifiers: the threat model holds (eps ball and [0, 1]), eps = 0 gives the
// clean accuracy, DLR is invariant to z -> a z + b, robust accuracy does not increase with eps and reaches 0 at a
// large eps, EOT variance falls as 1 / eotIter, same seed same result, bad input refused by name.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { apgd, apgdTargeted } from '../../../src/diffpure/attacks/apgd.js';
import { eotGradient } from '../../../src/diffpure/attacks/eot.js';
import { crossEntropyLoss, dlrLoss, dlrTargetedLoss } from '../../../src/diffpure/attacks/losses.js';
import type { AttackModel, Images } from '../../../src/diffpure/attacks/model.js';
import { KeyedRandom } from '../../../src/diffpure/attacks/random.js';
import { uniformAt } from '../../../src/tensor/philox.js';
import { fromArray, randomNormal } from '../../../src/tensor/prims/creation.js';
import { add, mul } from '../../../src/tensor/prims/elementwise.js';
import { matmul } from '../../../src/tensor/prims/matmul.js';
import { reshape } from '../../../src/tensor/prims/shape.js';
import { getBackend, setBackend } from '../../../src/tensor/runtime.js';
import { countingBackend } from '../../sde/helpers.js';
import { maxPerturbation, predictedLabels } from './threat.js';

const C = 1;
const H = 4;
const W = 4;
const D = C * H * W;
const K = 5;

/** A random linear classifier z = 8 (x - 0.5) W + b on 1x4x4 images; `noise` adds keyed Gaussian input noise. */
function linearModel(seed: number, noise = 0): AttackModel {
  const w = Float32Array.from({ length: D * K }, (_, i) => uniformAt(seed, 1, i) * 2 - 1);
  const b = Float32Array.from({ length: K }, (_, i) => uniformAt(seed, 2, i) - 0.5);
  const wt = fromArray(w, [D, K]);
  const bt = fromArray(b, [K]);
  return {
    classify: (x, keys) => {
      let v = reshape(x, [x.shape[0] as number, D]);
      if (noise > 0) {
        const e = keys.map((k) => randomNormal([1, D], { seed: k }));
        v = add(
          v,
          mul(
            reshape(
              fromArray(
                e.flatMap((t) => Array.from(t.dataSync())),
                [keys.length, D],
              ),
              [keys.length, D],
            ),
            noise,
          ),
        );
      }
      return add(matmul(mul(add(v, -0.5), 8), wt), bt);
    },
  };
}

function images(seed: number, n: number): Images {
  return { data: Float32Array.from({ length: n * D }, (_, i) => uniformAt(seed, 3, i)), shape: [n, C, H, W] };
}

describe('APGD properties (linear classifiers, cpu)', () => {
  test('outputs lie in the eps ball and in [0, 1]; eps = 0 gives the clean accuracy', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1000 }),
        fc.constantFrom<'Linf' | 'L2'>('Linf', 'L2'),
        fc.double({ min: 0.01, max: 0.5, noNaN: true }),
        async (seed, norm, eps) => {
          const m = linearModel(seed);
          const x = images(seed, 6);
          const y = predictedLabels((v) => m.classify(v, []), x);
          y[0] = ((y[0] as number) + 1) % K; // one clean mistake: never attacked, returned as is
          const res = await apgd(m, x, y, { norm, eps, nIter: 10, seed });
          expect(maxPerturbation(res.adv, x, norm)).toBeLessThanOrEqual(Math.fround(eps) * (1 + 1e-5) + 1e-6);
          expect(res.adv.data.every((v) => v >= 0 && v <= 1)).toBe(true);
          expect(res.robust[0]).toBe(false);
          expect(Array.from(res.adv.data.subarray(0, D))).toEqual(Array.from(x.data.subarray(0, D)));
          const zero = await apgd(m, x, y, { norm, eps: 0, nIter: 5, seed });
          expect(zero.robust).toEqual(Array.from(y, (_, i) => i !== 0));
        },
      ),
      { numRuns: 8 },
    );
  }, 60_000);

  test('robust accuracy does not increase with eps and is 0 at a large eps', async () => {
    const m = linearModel(3);
    const x = images(3, 16);
    const y = predictedLabels((v) => m.classify(v, []), x);
    let last = 1;
    const accs: number[] = [];
    for (const eps of [0, 0.02, 0.05, 0.1, 0.2, 1]) {
      const r = await apgd(m, x, y, { norm: 'Linf', eps, nIter: 20, seed: 1 });
      const acc = r.robust.filter(Boolean).length / 16;
      accs.push(acc);
      expect(acc).toBeLessThanOrEqual(last);
      last = acc;
    }
    console.log(
      `APGD-CE Linf on a linear 5-class model, robust accuracy at eps 0, .02, .05, .1, .2, 1: ${accs.join(', ')}`,
    );
    expect(accs[0]).toBe(1);
    expect(accs[accs.length - 1]).toBe(0);
  }, 60_000);

  test('same seed, same result; another seed, another random start', async () => {
    const m = linearModel(5);
    const x = images(5, 4);
    const y = predictedLabels((v) => m.classify(v, []), x);
    const starts: Float32Array[] = [];
    for (const seed of [7, 7, 8]) {
      await apgd(m, x, y, {
        norm: 'L2',
        eps: 0.3,
        nIter: 3,
        seed,
        trace: (e) => e.kind === 'run' && starts.push(e.xInit),
      });
    }
    expect(Array.from(starts[0] as Float32Array)).toEqual(Array.from(starts[1] as Float32Array));
    expect(Array.from(starts[0] as Float32Array)).not.toEqual(Array.from(starts[2] as Float32Array));
  });

  test("an image's random start depends on its index in the data set, not on its batch", async () => {
    const m = linearModel(6);
    const x = images(6, 4);
    const y = predictedLabels((v) => m.classify(v, []), x);
    const whole: Float32Array[] = [];
    await apgd(m, x, y, { eps: 0.1, nIter: 2, seed: 3, trace: (e) => e.kind === 'run' && whole.push(e.xInit) });
    const alone: Float32Array[] = [];
    const x2: Images = { data: x.data.slice(2 * D, 3 * D), shape: [1, C, H, W] };
    await apgd(m, x2, [y[2] as number], {
      eps: 0.1,
      nIter: 2,
      seed: 3,
      sampleIds: [2],
      trace: (e) => e.kind === 'run' && alone.push(e.xInit),
    });
    expect(Array.from(alone[0] as Float32Array)).toEqual(Array.from((whole[0] as Float32Array).subarray(2 * D, 3 * D)));
  });

  test('APGD-T stays in the ball and refuses classifiers with fewer than 4 classes', async () => {
    const m = linearModel(9);
    const x = images(9, 4);
    const y = predictedLabels((v) => m.classify(v, []), x);
    const r = await apgdTargeted(m, x, y, { eps: 0.05, nIter: 5, nTargetClasses: 3 });
    expect(maxPerturbation(r.adv, x, 'Linf')).toBeLessThanOrEqual(Math.fround(0.05) + 1e-7);
    const three: AttackModel = {
      classify: (v) =>
        reshape(v, [v.shape[0] as number, D]).constructor &&
        matmul(reshape(v, [v.shape[0] as number, D]), fromArray(new Float32Array(D * 3).fill(0.1), [D, 3])),
    };
    await expect(apgdTargeted(three, x, [0, 0, 0, 0], { eps: 0.05 })).rejects.toThrow(/at least 4 classes/);
  });

  test('bad input is refused by name, nothing clamped', async () => {
    const m = linearModel(1);
    const x = images(1, 2);
    const bad = { data: x.data.slice(), shape: x.shape };
    bad.data[3] = 1.5;
    await expect(apgd(m, bad, [0, 0], { eps: 0.1 })).rejects.toThrow(/x must lie in \[0, 1\].*1\.5 at image 0/);
    await expect(apgd(m, x, [0, 0], { eps: -1 })).rejects.toThrow(/eps must be a finite number >= 0/);
    await expect(apgd(m, x, [0, 9], { eps: 0.1 })).rejects.toThrow(
      /apgd-ce: label 9 of image 1 is not a class of this 5-class classifier/,
    );
    await expect(apgd(m, x, [0], { eps: 0.1 })).rejects.toThrow(/1 labels for 2 images/);
    await expect(apgd(m, x, [0, 0], { eps: 0.1, norm: 'L1' as 'L2' })).rejects.toThrow(
      /norm must be one of Linf, L2, got 'L1'/,
    );
    const wrong: AttackModel = {
      classify: (v) => reshape(v, [v.shape[0] as number, D]).constructor && reshape(v, [D * (v.shape[0] as number)]),
    };
    await expect(apgd(wrong, x, [0, 0], { eps: 0.1 })).rejects.toThrow(/logits of shape \[32\] for 2 images/);
  });
});

test('APGD holds no tensor after it returns (counting backend): memory stays flat over the iterations', async () => {
  const be = countingBackend();
  const prev = getBackend().name;
  await setBackend('cpu-counting');
  try {
    const m = linearModel(4, 0.1);
    const x = images(4, 3);
    const y = predictedLabels((v) => linearModel(4).classify(v, []), x);
    const base = be.live;
    await apgd(m, x, y, { eps: 0.1, nIter: 3, eotIter: 2 });
    expect(be.live).toBe(base);
    await apgd(m, x, y, { eps: 0.1, nIter: 30, eotIter: 2 });
    expect(be.live).toBe(base);
  } finally {
    await setBackend(prev);
  }
});

describe('losses', () => {
  test('DLR and targeted DLR are invariant to z -> a z + b (a > 0); CE gradients sum to zero per row', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: -500, max: 500 }), { minLength: 6, maxLength: 6 }),
        fc.double({ min: 0.5, max: 3, noNaN: true }),
        fc.double({ min: -3, max: 3, noNaN: true }),
        fc.integer({ min: 0, max: 5 }),
        (zs, a, b, y) => {
          const z = Float32Array.from(zs, (v) => v / 100);
          const z2 = Float32Array.from(z, (v) => a * v + b);
          const t = (y + 1) % 6;
          expect(dlrLoss(z2, 6, [y]).loss[0]).toBeCloseTo(dlrLoss(z, 6, [y]).loss[0] as number, 4);
          expect(dlrTargetedLoss(z2, 6, [y], [t]).loss[0]).toBeCloseTo(
            dlrTargetedLoss(z, 6, [y], [t]).loss[0] as number,
            4,
          );
          const ce = crossEntropyLoss(z, 6, [y]);
          expect(Math.abs(ce.dz.reduce((s, v) => s + v, 0))).toBeLessThan(1e-6);
        },
      ),
    );
  });

  test('DLR derivatives match float64 finite differences away from ties', () => {
    const z = Float32Array.from([2.0, -1.0, 0.5, 1.25, -0.25]);
    for (const [fn, name] of [
      [(v: Float32Array) => dlrLoss(v, 5, [2]), 'dlr'],
      [(v: Float32Array) => dlrTargetedLoss(v, 5, [2], [4]), 'dlr-targeted'],
      [(v: Float32Array) => crossEntropyLoss(v, 5, [2]), 'ce'],
    ] as const) {
      const { dz } = fn(z);
      for (let j = 0; j < 5; j++) {
        const h = 1e-3;
        const up = Float64Array.from(z);
        const dn = Float64Array.from(z);
        up[j] = (up[j] as number) + h;
        dn[j] = (dn[j] as number) - h;
        const fd =
          ((fn(Float32Array.from(up)).loss[0] as number) - (fn(Float32Array.from(dn)).loss[0] as number)) / (2 * h);
        expect(dz[j], `${name} dz[${j}]`).toBeCloseTo(fd, 2);
      }
    }
  });

  test('DLR quirk: with the true class ranked third the loss is exactly 1 and its gradient exactly 0', () => {
    const z = Float32Array.from([3.1, 0.2, 1.7, 2.4, -0.6]); // ranks: 0, 3, 2 -> class 2 third
    const { loss, dz } = dlrLoss(z, 5, [2]);
    expect(loss[0]).toBe(1);
    expect(Array.from(dz).every((v) => v === 0)).toBe(true);
  });
});

describe('EOT', () => {
  test('the variance of the EOT gradient falls about as 1 / eotIter', async () => {
    const m = linearModel(11, 0.3);
    const x = images(11, 1);
    const y = predictedLabels((v) => linearModel(11).classify(v, []), x)[0] as number;
    const random = new KeyedRandom(0);
    const variance = async (eot: number) => {
      const gs: Float32Array[] = [];
      for (let rep = 0; rep < 300; rep++) {
        const g = await eotGradient(
          m,
          x,
          eot,
          (e) => random.noiseKey(['eot-test', rep, eot], e),
          (z, k, c) => crossEntropyLoss(z, k, new Array(c).fill(y)),
        );
        gs.push(g.grad);
      }
      let v = 0;
      for (let j = 0; j < D; j++) {
        const mean = gs.reduce((s, g) => s + (g[j] as number), 0) / gs.length;
        v += gs.reduce((s, g) => s + ((g[j] as number) - mean) ** 2, 0) / (gs.length - 1);
      }
      return v;
    };
    const v1 = await variance(1);
    const v8 = await variance(8);
    console.log(
      `EOT gradient variance: eot 1 ${v1.toExponential(3)}, eot 8 ${v8.toExponential(3)}, ratio ${(v1 / v8).toFixed(2)} (expected ~8)`,
    );
    expect(v1 / v8).toBeGreaterThan(6);
    expect(v1 / v8).toBeLessThan(10.5);
  }, 60_000);

  test('EOT batching changes nothing but speed', async () => {
    const m = linearModel(12, 0.3);
    const x = images(12, 3);
    const y = predictedLabels((v) => linearModel(12).classify(v, []), x);
    const random = new KeyedRandom(4);
    const run = (eotBatch: number) =>
      eotGradient(
        m,
        x,
        6,
        (e, r) => random.noiseKey(['b', e], r),
        (z, k, c) =>
          crossEntropyLoss(
            z,
            k,
            Array.from({ length: c * 3 }, (_, i) => y[i % 3] as number),
          ),
        eotBatch,
      );
    const a = await run(1);
    const b = await run(6);
    const c = await run(4);
    for (let j = 0; j < a.grad.length; j++) {
      // the same samples; only the float32 summation order of the batched gemm differs
      expect(b.grad[j]).toBeCloseTo(a.grad[j] as number, 5);
      expect(c.grad[j]).toBeCloseTo(a.grad[j] as number, 5);
    }
    for (let i = 0; i < b.logits.length; i++) expect(b.logits[i]).toBeCloseTo(a.logits[i] as number, 5);
  });
});
