// Brownian motion: increments are N(0, length) (Kolmogorov-Smirnov) for whole cells, sums of cells
// and sub-cell (bridge-refined) intervals; disjoint increments are uncorrelated; the space-time
// area has its law and is independent of the increment; additivity W(s,u) + W(u,t) = W(s,t); the
// values are a pure function of (seed, interval): any query order, cached or not, gives the same
// bits; the replayed path returns stored cells exactly and is linear in between.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { BrownianGrid, BrownianReplay } from '../../src/sde/index.js';

/** KS statistic of a sample against the standard normal CDF (float64 erf of the library). */
function ksNormal(sample: ArrayLike<number>, scale: number): number {
  const s = Float64Array.from(sample, (v) => v / scale).sort();
  const cdf = T.tidy(() =>
    T.mul(T.add(T.erf(T.mul(T.fromArray(s, [s.length], { dtype: 'float64' }), Math.SQRT1_2)), 1), 0.5).dataSync(),
  );
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const f = cdf[i] as number;
    d = Math.max(d, Math.abs(f - i / s.length), Math.abs((i + 1) / s.length - f));
  }
  return d;
}

const n = 20000;
const crit = 1.95 / Math.sqrt(n); // KS critical value at 0.1%

function moments(a: ArrayLike<number>, b?: ArrayLike<number>): { mean: number; var: number; cov: number } {
  let m = 0;
  for (let i = 0; i < a.length; i++) m += a[i] as number;
  m /= a.length;
  let v = 0;
  let c = 0;
  let mb = 0;
  if (b) for (let i = 0; i < b.length; i++) mb += (b[i] as number) / b.length;
  for (let i = 0; i < a.length; i++) {
    v += ((a[i] as number) - m) ** 2;
    if (b) c += ((a[i] as number) - m) * ((b[i] as number) - mb);
  }
  return { mean: m, var: v / (a.length - 1), cov: c / (a.length - 1) };
}

describe('BrownianGrid', () => {
  const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [n], seed: 77, dt: 0.1 });
  const q = (a: number, b: number) => T.tidy(() => Float64Array.from(bm.increment(a, b).dataSync()));

  test.each([
    ['one cell', 0.2, 0.3],
    ['several cells', 0.1, 0.7],
    ['inside one cell', 0.3125, 0.37],
    ['straddling cells, both ends inside', 0.05, 0.4567],
  ])('increment over %s is N(0, length) (KS at 0.1%%)', (_name, a, b) => {
    const w = q(a, b);
    expect(ksNormal(w, Math.sqrt(b - a))).toBeLessThan(crit);
  });

  test('disjoint increments, incl. sub-cell pieces of one cell, are uncorrelated with the right variances', () => {
    // [0.30, 0.33], [0.33, 0.37], [0.37, 0.40]: three pieces of cell [0.3, 0.4]
    const parts = [
      [0.3, 0.33],
      [0.33, 0.37],
      [0.37, 0.4],
    ].map(([a, b]) => q(a as number, b as number));
    const lens = [0.03, 0.04, 0.03];
    parts.forEach((p, i) => {
      const m = moments(p);
      // sd of the sample variance: len * sqrt(2/n) = 1% of len; 5 sigma
      expect(Math.abs(m.var / (lens[i] as number) - 1)).toBeLessThan(0.05 + 0.03 / 4);
      expect(Math.abs(m.mean)).toBeLessThan(5 * Math.sqrt((lens[i] as number) / n));
    });
    for (const [i, j] of [
      [0, 1],
      [1, 2],
      [0, 2],
    ] as const) {
      const c = moments(parts[i] as Float64Array, parts[j] as Float64Array).cov;
      const corr = c / Math.sqrt((lens[i] as number) * (lens[j] as number));
      expect(Math.abs(corr)).toBeLessThan(5 / Math.sqrt(n));
    }
  });

  test('space-time area: U = h (W/2 + H), H ~ N(0, h/12) independent of W', () => {
    const { W, U } = T.tidy(() => {
      // node-aligned (the grid's float32 steps of 0.1), three cells
      const r = bm.spaceTime(bm.nodes[2] as number, bm.nodes[5] as number);
      return { W: Float64Array.from(r.W.dataSync()), U: Float64Array.from(r.U.dataSync()) };
    });
    const h = (bm.nodes[5] as number) - (bm.nodes[2] as number);
    // U over three cells composed from each cell's (W, H): still U = h (W/2 + H) with H ~ N(0, h/12)
    const H = U.map((u, i) => u / h - (W[i] as number) / 2);
    expect(ksNormal(H, Math.sqrt(h / 12))).toBeLessThan(crit);
    expect(Math.abs(moments(H, W).cov) / Math.sqrt((h / 12) * h)).toBeLessThan(5 / Math.sqrt(n));
  });

  test('additivity W(s,u) + W(u,t) = W(s,t) at random points (float32 rounding)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (x, y, z) => {
          const [s, u, t] = [x, y, z].map(Math.fround).sort((a, b) => a - b) as [number, number, number];
          const small = new BrownianGrid({ t0: 0, t1: 1, shape: [64], seed: 3, dt: 0.125 });
          const [a, b, c] = T.tidy(() =>
            [small.increment(s, u), small.increment(u, t), small.increment(s, t)].map((w) =>
              Float64Array.from(w.dataSync()),
            ),
          );
          for (let i = 0; i < 64; i++) {
            expect(Math.abs((a[i] as number) + (b[i] as number) - (c[i] as number))).toBeLessThan(
              4e-6 * (1 + Math.abs(c[i] as number)),
            );
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  test('a pure function of (seed, interval): any order, any instance, cached or not, same bits', () => {
    const ivs: [number, number][] = [
      [0.1, 0.2],
      [0.35, 0.36],
      [0, 1],
      [0.123, 0.877],
      [0.9, 1],
    ];
    const make = (cache: boolean) => new BrownianGrid({ t0: 0, t1: 1, shape: [33], seed: 9, dt: 0.1, cache });
    const read = (b: BrownianGrid, order: number[]) => {
      const out: number[][] = [];
      for (const i of order) out[i] = T.tidy(() => Array.from(b.increment(...(ivs[i] as [number, number])).dataSync()));
      return out;
    };
    const ref = read(make(false), [0, 1, 2, 3, 4]);
    expect(read(make(false), [4, 2, 0, 3, 1])).toEqual(ref);
    const cached = make(true);
    expect(read(cached, [3, 1, 4, 0, 2])).toEqual(ref);
    expect(read(cached, [0, 1, 2, 3, 4])).toEqual(ref);
    cached.dispose();
    // another seed differs
    const other = new BrownianGrid({ t0: 0, t1: 1, shape: [33], seed: 10, dt: 0.1 });
    expect(read(other, [0])[0]).not.toEqual(ref[0]);
  });

  test('a cached path survives the caller disposing what it returned', () => {
    const b = new BrownianGrid({ t0: 0, t1: 1, shape: [4], seed: 1, dt: 0.5, cache: true });
    const first = Array.from(b.increment(0, 0.5).dataSync());
    T.tidy(() => b.increment(0, 0.5)).dispose();
    expect(Array.from(T.tidy(() => b.increment(0, 0.5)).dataSync())).toEqual(first);
    b.dispose();
  });
});

describe('BrownianReplay', () => {
  const times = [0, 0.25, 0.5, 1];
  const inc = Float32Array.from([1, -2, 0.5, 4, 3, -1]); // 3 cells of shape [2]
  const bm = new BrownianReplay({ times, increments: inc, shape: [2] });

  test('a stored cell comes back bit for bit; other intervals follow the piecewise-linear path', () => {
    expect(Array.from(bm.increment(0.25, 0.5).dataSync())).toEqual([0.5, 4]);
    // W(0.125) = [0.5, -1], W(0.75) = [1.5 + 1.5, 2 - 0.5] = [3, 1.5]
    expect(Array.from(bm.increment(0.125, 0.75).dataSync())).toEqual([2.5, 2.5]);
    expect(Array.from(bm.increment(0, 1).dataSync())).toEqual([4.5, 1]);
  });

  test('space-time needs areas', () => {
    expect(() => bm.spaceTime(0, 0.25)).toThrow(/without areas/);
  });
});
