// torchsde's general noise: x [B, d], g [B, d, m], dW [B, m], noise term g dW.
//  - Consistency: with m = d and g = diag(s), general noise is diagonal noise on the same path.
//  - Strong order (float64, one path per sample across step sizes, as test/sde/convergence.test.ts)
//    on a commutative linear problem with two Brownian motions and a closed form:
//      Ito:            dX_i = a_i X_i dt + sum_j b_ij X_i dW_j,  X_i(1) = X_i(0) exp(a_i - sum_j b_ij^2 / 2 + sum_j b_ij W_j(1))
//      Stratonovich:   the same with o dW,                       X_i(1) = X_i(0) exp(a_i + sum_j b_ij W_j(1))
//    Euler 0.5 (Ito), Heun 1.0 (Stratonovich; commutative noise); within 0.25 as the other orders.
//  - Gradients: 'exact' equals autograd through sdeint (float64: 1e-10 relative) and central
//    differences (float64, h 1e-6: 1e-6 relative); 'continuous' (g independent of x, parameters
//    in g, so the outer-product cotangent of g dW is exercised) approaches 'exact' as dt shrinks.

import { describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import * as T from '../../src/index.js';
import { BrownianGrid, defineSde, type Method, type SDE, sdeint } from '../../src/sde/index.js';
import { fitOrder, hostOf, relL2, relMaxErr } from './helpers.js';

const f64 = { dtype: 'float64' as const };
const A = [1.2, -0.5];
const Bm = [
  [0.6, 0.3],
  [-0.4, 0.8],
]; // b_ij: state i, Brownian motion j

/** dX_i = a_i X_i dt + sum_j b_ij X_i dW_j as general noise (g [M, 2, 2]). */
function linear(sdeType: 'ito' | 'stratonovich'): SDE {
  const a = T.fromArray(A, [1, 2], f64);
  const b = T.fromArray(Bm.flat(), [1, 2, 2], f64);
  return defineSde({
    noiseType: 'general',
    sdeType,
    f: (_t, x) => T.mul(x, a),
    g: (_t, x) => T.mul(T.reshape(x, [x.shape[0] as number, 2, 1]), b),
  });
}

function order(sdeType: 'ito' | 'stratonovich', method: Method): { order: number; errors: number[] } {
  const M = 400;
  const levels = [4, 5, 6, 7, 8];
  const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [M, 2], seed: 77, dt: 2 ** -10, cache: true, dtype: 'float64' });
  const sde = linear(sdeType);
  try {
    const x0 = T.fromArray(new Float64Array(2 * M).fill(1), [M, 2], f64);
    const W = T.tidy(() => Float64Array.from(bm.increment(0, 1).dataSync()));
    const exact = new Float64Array(2 * M);
    for (let k = 0; k < M; k++)
      for (let i = 0; i < 2; i++) {
        const bi = Bm[i] as number[];
        let e = A[i] as number;
        for (let j = 0; j < 2; j++) {
          e += (bi[j] as number) * (W[2 * k + j] as number);
          if (sdeType === 'ito') e -= 0.5 * (bi[j] as number) ** 2;
        }
        exact[2 * k + i] = Math.exp(e);
      }
    const errors = levels.map((l) => {
      const y = T.tidy(() =>
        Float64Array.from(T.narrow(sdeint(sde, x0, [0, 1], { method, dt: 2 ** -l, bm }), 0, 1, 1).dataSync()),
      );
      let e = 0;
      for (let i = 0; i < 2 * M; i++) e += Math.abs((y[i] as number) - (exact[i] as number));
      return e / (2 * M);
    });
    return { order: fitOrder(levels, errors), errors };
  } finally {
    bm.dispose();
  }
}

describe('general noise (torchsde noise_type "general")', () => {
  test('m = d and g = diag(s): the diagonal-noise solution on the same path (euler, heun)', () => {
    const B = 3;
    const D = 4;
    const eye = T.fromArray(
      Array.from({ length: D * D }, (_, k) => (k % (D + 1) === 0 ? 1 : 0)),
      [1, D, D],
      f64,
    );
    const s = (x: T.Tensor) => T.add(T.mul(T.sin(x), 0.3), 0.5);
    const f = (_t: number, x: T.Tensor) => T.tanh(T.mul(x, -0.7));
    for (const [method, sdeType] of [
      ['euler', 'ito'],
      ['heun', 'stratonovich'],
    ] as const) {
      const diag = defineSde({ sdeType, f, g: (_t, x) => s(x) });
      const gen = defineSde({
        noiseType: 'general',
        sdeType,
        f,
        g: (_t, x) => T.mul(T.reshape(s(x), [B, D, 1]), eye),
      });
      const x0 = T.randomNormal([B, D], { seed: 4, dtype: 'float64' });
      const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [B, D], seed: 9, dt: 0.05, dtype: 'float64' });
      const a = hostOf(sdeint(diag, x0, [0, 0.5, 1], { method, dt: 0.05, bm }));
      const b = hostOf(sdeint(gen, x0, [0, 0.5, 1], { method, dt: 0.05, bm }));
      expect(relMaxErr(b, a), method).toBeLessThan(1e-12);
      bm.dispose();
    }
  });

  test('Euler-Maruyama on the commutative linear problem (Ito, m = 2): 0.5', () => {
    const r = order('ito', 'euler');
    console.log(
      `general / euler: fitted order ${r.order.toFixed(3)}; errors ${r.errors.map((e) => e.toExponential(2))}`,
    );
    expect(Math.abs(r.order - 0.5)).toBeLessThan(0.25);
  });

  test('Heun on the commutative linear problem (Stratonovich, m = 2): 1.0', () => {
    const r = order('stratonovich', 'heun');
    console.log(
      `general / heun: fitted order ${r.order.toFixed(3)}; errors ${r.errors.map((e) => e.toExponential(2))}`,
    );
    expect(Math.abs(r.order - 1)).toBeLessThan(0.25);
  });

  // a small general-noise SDE: tanh drift, m = 3 Brownian motions, g from parameters (and x)
  const B = 2;
  const D = 3;
  const M = 3;
  const params = () => [
    T.mul(T.randomNormal([D, D], { seed: 1, dtype: 'float64' }), 0.5),
    T.mul(T.randomNormal([1, D, M], { seed: 2, dtype: 'float64' }), 0.4),
  ];
  const sdeOf = (stateDependentG: boolean) => (p: readonly T.Tensor[]) =>
    defineSde({
      noiseType: 'general',
      params: p,
      f: (_t, x, [W]) => T.tanh(T.matmul(x, W as T.Tensor)),
      g: (t, x, [, G]) => {
        const base = T.mul(G as T.Tensor, 1 + t);
        return stateDependentG ? T.mul(base, T.reshape(T.add(T.mul(T.cos(x), 0.3), 1), [B, D, 1])) : base;
      },
    });
  const x0 = () => T.randomNormal([B, D], { seed: 3, dtype: 'float64' });
  const w = () => T.randomNormal([3, B, D], { seed: 5, dtype: 'float64' });
  const ts = [0, 0.4, 1];

  test("'exact' equals autograd through sdeint and central differences (g depends on x)", async () => {
    const ps = params();
    const sde = sdeOf(true)(ps);
    const wt = w();
    const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [B, M], seed: 8, dt: 0.05, dtype: 'float64' });
    const loss = (ys: T.Tensor) => T.sum(T.mul(ys, wt));
    const x = x0();
    const ex = hostOf(T.grad((xx) => loss(sdeintAdjoint(sde, xx, ts, { dt: 0.05, bm, mode: 'exact' })))(x));
    const ag = hostOf(T.grad((xx) => loss(sdeint(sde, xx, ts, { dt: 0.05, bm })))(x));
    expect(relMaxErr(ex, ag)).toBeLessThan(1e-10);
    const xs = Float64Array.from(await x.data());
    const h = 1e-6;
    const fd = new Float64Array(xs.length);
    for (let i = 0; i < xs.length; i++) {
      const at = (d: number) => {
        const v = Float64Array.from(xs);
        v[i] = (v[i] as number) + d;
        return T.tidy(
          () => loss(sdeint(sde, T.fromArray(v, [B, D], f64), ts, { dt: 0.05, bm })).dataSync()[0] as number,
        );
      };
      fd[i] = (at(h) - at(-h)) / (2 * h);
    }
    expect(relMaxErr(ex, fd)).toBeLessThan(1e-6);
    bm.dispose();
  });

  test("'continuous' (g independent of x, parameters in g) approaches 'exact' as dt shrinks", () => {
    const ps = params();
    const make = sdeOf(false);
    const wt = w();
    const errs = [0.05, 0.005].map((dt) => {
      const grads = (mode: 'exact' | 'continuous') =>
        T.tidy(() =>
          T.grad(
            (xx, ...p) => T.sum(T.mul(sdeintAdjoint(make(p), xx, ts, { dt, seed: 21, mode, paramGrads: true }), wt)),
            { argnums: [0, 1, 2] },
          )(x0(), ...ps).map(hostOf),
        );
      const ex = grads('exact');
      const co = grads('continuous');
      return ex.map((e, i) => relL2(co[i] as Float64Array, e));
    });
    const [coarse, fine] = errs as [number[], number[]];
    console.log(`general continuous vs exact, rel L2 (x, W, G): dt 0.05 ${coarse}; dt 0.005 ${fine}`);
    // first order in dt: ten times smaller steps, about ten times smaller error (at least 4x)
    for (let i = 0; i < 3; i++) {
      expect(fine[i]).toBeLessThan(0.02);
      expect(fine[i] as number).toBeLessThan((coarse[i] as number) / 4);
    }
  });

  test('errors name the problem', () => {
    const ps = params();
    const x = x0();
    const dep = sdeOf(true)(ps);
    expect(() => sdeint(dep, x, [0, 1], { method: 'milstein' })).toThrow(/milstein.*not general/);
    expect(() => T.grad((xx) => T.sum(sdeintAdjoint(dep, xx, [0, 1], { dt: 0.1 })))(x)).toThrow(
      /general noise needs g independent of the state; use mode 'exact'/,
    );
    const flat = defineSde({ noiseType: 'general', f: (_t, y) => y, g: (_t, y) => y });
    expect(() => sdeint(flat, x, [0, 1], { dt: 0.1 })).toThrow(/g\(t, x\) has shape \[2, 3\] for x \[2, 3\]/);
    const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [B, 5], seed: 1, dt: 0.1, dtype: 'float64' });
    expect(() => sdeint(dep, x, [0, 1], { dt: 0.1, bm })).toThrow(/g\(t, x\) has shape \[2, 3, 3\] but the Brownian/);
    bm.dispose();
  });
});
