// Creation ops and the counter-based generator: Philox4x32-10's published known-answer vector,
// distribution checks (Kolmogorov-Smirnov), independence of streams, purity in (seed, stream, i).

import { describe, expect, test } from 'vitest';
import * as T from '../src/index.js';
import { normalAt, philox4x32 } from '../src/tensor/philox.js';

const hex = (ws: number[]) => ws.map((w) => w.toString(16).padStart(8, '0'));

describe('philox4x32-10', () => {
  // Known-answer vectors from the Random123 distribution (kat_vectors: philox4x32 10 rounds).
  test('known answer: counter 0, key 0', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toEqual(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
  });
  test('known answer: counter all ones, key all ones', () => {
    const f = 0xffffffff;
    expect(hex(philox4x32([f, f, f, f], [f, f]))).toEqual(['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
  });
  test('known answer: pi digits counter and key', () => {
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toEqual([
      'd16cfe09',
      '94fdcceb',
      '5001e420',
      '24126ea1',
    ]);
  });
});

/** Kolmogorov-Smirnov statistic of a sample against a CDF. */
function ks(sample: ArrayLike<number>, cdf: (x: number) => number): number {
  const s = Float64Array.from(sample).sort();
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const f = cdf(s[i] as number);
    d = Math.max(d, Math.abs(f - i / s.length), Math.abs((i + 1) / s.length - f));
  }
  return d;
}

// Normal CDF through the library's own float64 erf, itself checked against scipy below.
const phi = (x: number) => 0.5 * (1 + T.erf(T.fromArray([x / Math.SQRT2], [1], { dtype: 'float64' })).dataSync()[0]!);

describe('random tensors', () => {
  // n = 20000: the 0.1% critical value of the KS statistic is 1.95 / sqrt(n) = 0.0138.
  const n = 20000;
  const crit = 1.95 / Math.sqrt(n);

  test('randomUniform is uniform on [0, 1) (KS at 0.1%)', () => {
    const u = T.randomUniform([n], { seed: 7 }).dataSync();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(ks(u, (x) => Math.min(Math.max(x, 0), 1))).toBeLessThan(crit);
  });

  test('randomNormal is standard normal (KS at 0.1%, mean and variance)', () => {
    const z = Array.from(T.randomNormal([n], { seed: 11, stream: 3 }).dataSync());
    expect(ks(z, phi)).toBeLessThan(crit);
    const mean = z.reduce((a, b) => a + b, 0) / n;
    const v = z.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
    // standard errors: 1/sqrt(n) = 0.007 for the mean, sqrt(2/n) = 0.01 for the variance; 5 sigma
    expect(Math.abs(mean)).toBeLessThan(0.035);
    expect(Math.abs(v - 1)).toBeLessThan(0.05);
  });

  test('streams and seeds are independent (sample correlation within 5 standard errors)', () => {
    const a = T.randomNormal([n], { seed: 1, stream: 0 }).dataSync();
    const b = T.randomNormal([n], { seed: 1, stream: 1 }).dataSync();
    const c = T.randomNormal([n], { seed: 2, stream: 0 }).dataSync();
    const corr = (x: ArrayLike<number>, y: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += (x[i] as number) * (y[i] as number);
      return s / n;
    };
    expect(Math.abs(corr(a, b))).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(corr(a, c))).toBeLessThan(5 / Math.sqrt(n));
  });

  test('element i depends only on (seed, stream, i), not on the shape or dtype', () => {
    const big = T.randomNormal([4, 5], { seed: 5, stream: 9 }).dataSync();
    const small = T.randomNormal([3], { seed: 5, stream: 9, dtype: 'float64' }).dataSync();
    for (let i = 0; i < 3; i++) {
      expect(big[i]).toBe(Math.fround(small[i]!));
      expect(small[i]).toBe(normalAt(5, 9, i));
    }
  });

  test('seeds beyond 32 bits use the high key word', () => {
    const a = T.randomUniform([8], { seed: 2 ** 40 }).dataSync();
    const b = T.randomUniform([8], { seed: 0 }).dataSync();
    expect(Array.from(a)).not.toEqual(Array.from(b));
  });

  test('bad seeds are rejected with the argument named', () => {
    expect(() => T.randomNormal([2], { seed: -1 })).toThrow(/randomNormal: seed must be a non-negative safe integer/);
    expect(() => T.randomUniform([2], { seed: 1.5 })).toThrow(/randomUniform: seed/);
    expect(() => T.randomUniform([2], { seed: 1, stream: Number.NaN })).toThrow(/stream/);
  });
});

describe('creation', () => {
  test('zeros, ones, full, arange, fromArray', async () => {
    expect(await T.zeros([2, 2]).toArray()).toEqual([0, 0, 0, 0]);
    expect(await T.ones([3]).toArray()).toEqual([1, 1, 1]);
    expect(await T.full([2], 2.5, { dtype: 'float64' }).toArray()).toEqual([2.5, 2.5]);
    expect(await T.arange(5).toArray()).toEqual([0, 1, 2, 3, 4]);
    expect(await T.arange(1, 2, 0.25).toArray()).toEqual([1, 1.25, 1.5, 1.75]);
    expect(await T.arange(3, 0, -1).toArray()).toEqual([3, 2, 1]);
    const t = T.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(await t.toArray()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await T.fromArray([7], []).item()).toBe(7);
  });

  test('bad creation arguments name the op and the argument', () => {
    expect(() => T.fromArray([1, 2, 3], [2, 2])).toThrow(/fromArray: data has 3 elements but shape \[2, 2\] needs 4/);
    expect(() => T.zeros([2, -1])).toThrow(/fill: shape has invalid shape \[2, -1\]/);
    expect(() => T.arange(0, 1, 0)).toThrow(/arange: step must be finite and non-zero/);
  });
});

describe('erf (float64)', () => {
  // Reference values: Python's math.erf (correctly rounded libm erf), printed with repr().
  const ref: [number, number][] = [
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [2, 0.9953222650189527],
    [2.9, 0.9999589021219005],
    [3.5, 0.9999992569016276],
    [-1.7, -0.9837904585907745],
  ];
  test.each(ref)('erf(%f) matches math.erf to 1e-15', (x, e) => {
    const y = T.erf(T.fromArray([x], [1], { dtype: 'float64' })).dataSync()[0]!;
    expect(Math.abs(y - e)).toBeLessThan(1e-15);
  });
});
