// sdeintAdjoint on random small SDEs (drift a tanh MLP with a time input; diagonal state-dependent
// noise g = s (1 + sin(x)/2), or additive noise g = s (1 + t)), every mode on one shared path:
//   'exact' = autograd through sdeint, in float32, for every method (the same discrete map;
//             tolerance 1e-5 * max|ref|, measured ~1e-7 .. 1e-6);
//   'exact' = float64 central finite differences of the discrete solve (x0 and the noise
//             parameters; h = 1e-6, so truncation ~1e-12 and rounding ~1e-10: tolerance 1e-7 * max);
//   'continuous' approaches 'exact' as dt shrinks (both converge to the pathwise gradient; their
//             gap shrinks ~8x from dt 1/8 to 1/512 here, orders 0.5 to 1 by noise type);
// and the plumbing: plain T.grad works through it, its forward equals sdeint's, memory is O(1) in
// the steps for 'continuous' and O(K states) for 'exact', nothing leaks. The property and memory
// runs live in ./helpers.ts: test/webgpu/sde.test.ts runs them on webgpu.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import * as T from '../../src/index.js';
import { defineSde, type Method, sdeint } from '../../src/sde/index.js';
import {
  continuousGaps,
  countingMeter,
  exactVsAutograd,
  gradPeakBytes,
  hostOf,
  lossGrads,
  maxAbs,
  mlpDrift,
  type NoiseKind,
  PB,
  PD,
  problem,
  relMaxErr,
  toySde,
} from './helpers.js';

const B = PB;
const D = PD;

describe('exact adjoint = autograd through sdeint (float32, same path)', () => {
  const cases: [NoiseKind, Method, 'ito' | 'stratonovich'][] = [
    ['diagonal', 'euler', 'ito'],
    ['diagonal', 'milstein', 'ito'],
    ['diagonal', 'heun', 'stratonovich'],
    ['additive', 'euler', 'ito'],
    ['additive', 'sra1', 'ito'],
  ];
  test.each(cases)('%s noise, %s', async (noise, method, sdeType) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), async (seed) => {
        expect(await exactVsAutograd(noise, method, sdeType, seed)).toBeLessThan(1e-5);
      }),
      { numRuns: 3, seed: 1 },
    );
  });
});

describe('exact adjoint = float64 central finite differences', () => {
  test.each(['diagonal', 'additive'] as const)('%s noise: d/dx0 and d/ds', async (noise) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), async (seed) => {
        const pr = problem(seed, 'float64');
        const opts = { method: 'euler' as const, dt: 1 / 16, seed };
        const g = await lossGrads(noise, pr, (sde, x) =>
          sdeintAdjoint(sde, x, pr.ts, { ...opts, mode: 'exact', paramGrads: true }),
        );
        const loss = (x: T.Tensor, p: T.Tensor[]) =>
          T.tidy(() => T.sum(T.mul(sdeint(toySde(noise, p), x, pr.ts, opts), pr.w)).dataSync()[0] as number);
        const h = 1e-6;
        const bump = (t: T.Tensor, i: number, d: number) => {
          const v = Float64Array.from(t.dataSync());
          v[i] = (v[i] as number) + d;
          return T.fromArray(v, t.shape, { dtype: 'float64' });
        };
        const fdX = Array.from(
          { length: B * D },
          (_, i) => (loss(bump(pr.x0, i, h), pr.params) - loss(bump(pr.x0, i, -h), pr.params)) / (2 * h),
        );
        const s = pr.params[5] as T.Tensor;
        const withS = (t: T.Tensor) => [...pr.params.slice(0, 5), t];
        const fdS = Array.from(
          { length: D },
          (_, i) => (loss(pr.x0, withS(bump(s, i, h))) - loss(pr.x0, withS(bump(s, i, -h)))) / (2 * h),
        );
        expect(relMaxErr(g[0] as Float64Array, fdX)).toBeLessThan(1e-7);
        expect(relMaxErr(g[6] as Float64Array, fdS)).toBeLessThan(1e-7);
      }),
      { numRuns: 2, seed: 2 },
    );
  });
});

describe('continuous adjoint approaches the exact gradient as dt shrinks', () => {
  test.each(['diagonal', 'additive'] as const)('%s noise (default adjoint method)', async (noise) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), async (seed) => {
        const gaps = await continuousGaps(noise, seed, 'float64');
        console.log(
          `${noise}, seed ${seed}: max rel gap continuous vs exact at dt 1/8, 1/64, 1/512:`,
          gaps.map((e) => e.toExponential(2)).join(' '),
        );
        expect(gaps[2] as number).toBeLessThan((gaps[0] as number) / 6);
        expect(gaps[2] as number).toBeLessThan(2e-2);
      }),
      { numRuns: 2, seed: 2 },
    );
  });
});

describe('plumbing', () => {
  const pr = problem(5, 'float32');
  const sde = toySde('diagonal', pr.params);

  test('the forward equals sdeint (same seed: same path in every mode), bit for bit', () => {
    const ref = hostOf(sdeint(sde, pr.x0, pr.ts, { dt: 0.05, seed: 3 }));
    for (const mode of ['continuous', 'exact'] as const) {
      expect(hostOf(sdeintAdjoint(sde, pr.x0, pr.ts, { dt: 0.05, seed: 3, mode }))).toEqual(ref);
    }
  });

  test('plain T.grad / T.vjp differentiate through it; parameters get zero unless paramGrads', () => {
    const g = T.grad((x) => T.sum(T.mul(sdeintAdjoint(sde, x, pr.ts, { dt: 0.05, seed: 3 }), pr.w)))(pr.x0);
    expect(g.shape).toEqual([B, D]);
    expect(maxAbs(hostOf(g))).toBeGreaterThan(0);
    const { vjpFn, release } = T.vjp((x) => sdeintAdjoint(sde, x, pr.ts, { dt: 0.05, seed: 3, mode: 'exact' }), pr.x0);
    const [gx] = vjpFn(pr.w);
    const again = T.grad((x) => T.sum(T.mul(sdeint(sde, x, pr.ts, { dt: 0.05, seed: 3 }), pr.w)))(pr.x0);
    expect(relMaxErr(hostOf(gx as T.Tensor), hostOf(again))).toBeLessThan(1e-6);
    release();
  });

  test('scalar noise: one Brownian motion per row; exact = autograd; continuous needs g independent of x', () => {
    const pure = defineSde({ noiseType: 'scalar', f: (_t, x) => T.zerosLike(x), g: (_t, x) => T.onesLike(x) });
    const ys = hostOf(sdeint(pure, pr.x0, [0, 1], { dt: 0.25, seed: 1 }));
    const x0 = pr.x0.dataSync();
    for (let b = 0; b < B; b++) {
      const dw = Array.from({ length: D }, (_, i) => (ys[B * D + b * D + i] as number) - (x0[b * D + i] as number));
      for (const v of dw) expect(v).toBeCloseTo(dw[0] as number, 6);
    }
    const sc = defineSde({
      noiseType: 'scalar',
      params: pr.params,
      f: mlpDrift,
      g: (_t, x, p) => T.mul(p[5] as T.Tensor, T.add(T.mul(T.sin(x), 0.5), 1)),
    });
    const opts = { dt: 0.05, seed: 3 };
    const loss = (ys: T.Tensor) => T.sum(T.mul(ys, pr.w));
    const ex = T.grad((x) => loss(sdeintAdjoint(sc, x, pr.ts, { ...opts, mode: 'exact' })))(pr.x0);
    const ag = T.grad((x) => loss(sdeint(sc, x, pr.ts, opts)))(pr.x0);
    expect(relMaxErr(hostOf(ex), hostOf(ag))).toBeLessThan(1e-5);
    expect(() => T.grad((x) => loss(sdeintAdjoint(sc, x, pr.ts, opts)))(pr.x0)).toThrow(/scalar/);
  });

  test('helpful errors', () => {
    const noDg = defineSde({ f: (_t, x) => T.mul(x, -1), g: (_t, x) => T.mul(x, 0.5) });
    const x = pr.x0;
    expect(() => T.grad((y) => T.sum(sdeintAdjoint(noDg, y, [0, 1], { dt: 0.1 })))(x)).toThrow(/dgdx/);
    expect(() => T.grad((y) => T.sum(sdeint(noDg, y, [0, 1], { dt: 0.1, method: 'milstein' })))(x)).toThrow(/dgdx/);
    expect(() => sdeint(noDg, x, [0, 1], { method: 'heun' })).toThrow(/Stratonovich/);
    expect(() => sdeint(noDg, x, [0, 1], { method: 'sra1' })).toThrow(/additive/);
    expect(() => sdeint(noDg, x, [1, 0])).toThrow(/increasing/);
    const bare = {
      noiseType: 'additive' as const,
      sdeType: 'ito' as const,
      f: noDg.f,
      g: (_t: number, y: T.Tensor) => T.onesLike(y),
    };
    expect(() => sdeintAdjoint(bare, x, [0, 1], { paramGrads: true })).toThrow(/withParams/);
    // the exact mode needs no dgdx for Euler
    expect(() => T.grad((y) => T.sum(sdeintAdjoint(noDg, y, [0, 1], { dt: 0.1, mode: 'exact' })))(x)).not.toThrow();
  });
});

describe('memory on cpu (live bytes of a counting backend)', () => {
  const meter = countingMeter();
  beforeAll(() => T.setBackend('cpu-counting'));
  afterAll(() => T.setBackend('cpu'));

  // state [4, 256] float32 = 4 KiB, so the states dominate the constants (weights 2 x 8 KiB)
  const size = { B: 4, D: 256, H: 8 };

  test('continuous: flat in the steps; exact: + one state per step; autograd: grows faster; no leaks', () => {
    const state = size.B * size.D * 4;
    const r: Record<string, [number, number]> = {};
    for (const how of ['continuous', 'exact', 'autograd'] as const) {
      const a = gradPeakBytes(meter, how, 20, size);
      const b = gradPeakBytes(meter, how, 120, size);
      r[how] = [a.peak, b.peak];
      expect(a.leaked, `${how} leaked`).toBe(0);
      expect(b.leaked, `${how} leaked`).toBe(0);
    }
    console.log(
      'peak live bytes at 20 and 120 steps (state = 4 KiB):',
      JSON.stringify(
        Object.fromEntries(Object.entries(r).map(([k, [a, b]]) => [k, { 20: a, 120: b, perStep: (b - a) / 100 }])),
      ),
    );
    const [c1, c2] = r.continuous as [number, number];
    const [e1, e2] = r.exact as [number, number];
    const [a1, a2] = r.autograd as [number, number];
    expect(c2).toBe(c1);
    expect((e2 - e1) / 100).toBeGreaterThanOrEqual(state);
    expect((e2 - e1) / 100).toBeLessThan(1.1 * state);
    expect((a2 - a1) / 100).toBeGreaterThan(2 * state);
  });
});
