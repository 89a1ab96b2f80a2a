// Training losses against their references: score_sde's own get_sde_loss_fn (fixtures/dsm_loss.json, written by
// dsm_loss.py from score_sde_pytorch's losses.py with the random draws replaced by recorded t and z) for the four
// reduce_mean / likelihood_weighting settings, float64; cross-entropy against a float64 log-sum-exp by hand; time
// sampling ranges and errors.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { crossEntropy, dsmLoss, sampleTimes } from '../../src/diffpure/train/losses.js';
import * as T from '../../src/index.js';

interface Fx {
  x0: number[];
  shape: number[];
  t: number[];
  z: number[];
  cases: { reduce_mean: boolean; likelihood_weighting: boolean; loss: number }[];
}
const fx = JSON.parse(readFileSync(new URL('./fixtures/dsm_loss.json', import.meta.url), 'utf8')) as Fx;
const f64 = (d: number[], s: number[]) => T.fromArray(d, s, { dtype: 'float64' });

describe("score_sde's continuous VP-SDE loss (get_sde_loss_fn)", () => {
  test.each(
    fx.cases.map((c) => [`reduce_mean ${c.reduce_mean}, likelihood_weighting ${c.likelihood_weighting}`, c] as const),
  )('%s', (_n, c) => {
    // the fixture's model: raw(x, labels) = 0.5 x + 0.001 labels
    const model = (x: T.Tensor, labels: T.Tensor) =>
      T.add(T.affine(x, 0.5, 0), T.reshape(T.affine(labels, 0.001, 0), [-1, 1, 1, 1]));
    const loss = dsmLoss(model, f64(fx.x0, fx.shape), fx.t, f64(fx.z, fx.shape), {
      reduceMean: c.reduce_mean,
      likelihoodWeighting: c.likelihood_weighting,
    });
    expect(Math.abs((loss.dataSync()[0] as number) - c.loss)).toBeLessThan(1e-12 * Math.abs(c.loss));
  });

  test('times lie in [eps, 1]; power sampling puts more of them low; bad shapes are named', () => {
    const u = sampleTimes(4000, 1, 0);
    const p = sampleTimes(4000, 1, 0, 1e-5, { kind: 'power', power: 2 });
    expect(Math.min(...u)).toBeGreaterThanOrEqual(1e-5);
    expect(Math.max(...u)).toBeLessThanOrEqual(1);
    const below = (a: Float64Array) => a.filter((v) => v < 0.25).length / a.length;
    expect(below(u)).toBeCloseTo(0.25, 1);
    expect(below(p)).toBeCloseTo(0.5, 1); // P(u^2 < 1/4) = P(u < 1/2)
    const m = (x: T.Tensor) => x;
    expect(() => dsmLoss(m, T.zeros([2, 1, 2, 2]), [0.5], T.zeros([2, 1, 2, 2]))).toThrow(/1 times for a batch of 2/);
    expect(() => dsmLoss(m, T.zeros([2, 1, 2, 2]), [0.5, 0.5], T.zeros([2, 1, 2, 3]))).toThrow(/noise z/);
  });
});

describe('crossEntropy', () => {
  test('equals the float64 log-sum-exp by hand; bad labels are named', () => {
    const logits = [
      [1, 2, 0.5],
      [-1, 0, 3],
    ];
    const labels = [1, 0];
    const want =
      logits.reduce(
        (acc, row, i) =>
          acc + Math.log(row.reduce((s, v) => s + Math.exp(v), 0)) - (row[labels[i] as number] as number),
        0,
      ) / 2;
    const got = crossEntropy(f64(logits.flat(), [2, 3]), labels).dataSync()[0] as number;
    expect(Math.abs(got - want)).toBeLessThan(1e-14);
    expect(() => crossEntropy(T.zeros([2, 3]), [0, 3])).toThrow(/label 3 at 1 is not in 0\.\.2/);
  });
});
