// DiffPure's VP-SDE mappings with stub score models (the fixture parts are in
// fixture_diffpure_revsde.test.ts): the schedule's closed forms, the model's time labels, the
// drift/diffusion formulas, and that gradients flow through RevVPSDE into the model's parameters.

import { describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import * as T from '../../src/index.js';
import {
  noiseLevel,
  RevVPSDE,
  sdeint,
  vpAlphaBar,
  vpBeta,
  vpDiscreteAlphaBars,
  vpMarginalStd,
  vpReverseTimes,
} from '../../src/sde/index.js';
import { hostOf, relMaxErr } from './helpers.js';

describe('VP-SDE schedule', () => {
  test('beta(tau) = 0.1 + 19.9 tau, alpha-bar = exp(-9.95 tau^2 - 0.1 tau), std^2 = 1 - alpha-bar', () => {
    for (const tau of [1e-5, 0.013, 0.1, 0.5, 1]) {
      expect(vpBeta(tau)).toBeCloseTo(0.1 + 19.9 * tau, 5);
      expect(vpAlphaBar(tau)).toBeCloseTo(Math.exp(-9.95 * tau * tau - 0.1 * tau), 6);
      expect(vpMarginalStd(tau) ** 2).toBeCloseTo(1 - vpAlphaBar(tau), 5);
    }
    // the discrete schedule tracks the continuous one at tau = n / 1000 (to O(1/N))
    const ab = vpDiscreteAlphaBars();
    expect(Math.abs((ab[99] as number) - vpAlphaBar(0.1))).toBeLessThan(1e-3);
    expect(noiseLevel(0.1)).toBe(100);
    expect(() => noiseLevel(0.1234)).toThrow(/multiple/);
    expect(vpReverseTimes(0.1)).toEqual([Math.fround(0.9), Math.fround(0.99999)]);
  });
});

describe('RevVPSDE', () => {
  const B = 2;
  const x = T.tidy(() => T.mul(T.randomNormal([B, 12], { seed: 1 }), 0.7));

  test('score_sde: model(x, 999 tau), f = 1/2 beta x - beta eps / std, g = sqrt(beta)', () => {
    const seen: number[] = [];
    const eps = T.randomNormal([B, 3, 2, 2], { seed: 2 });
    const sde = new RevVPSDE({
      scoreType: 'score_sde',
      imgShape: [3, 2, 2],
      model: (img, labels) => {
        expect(img.shape).toEqual([B, 3, 2, 2]);
        seen.push(...labels.dataSync());
        return eps;
      },
    });
    const t = 0.95;
    const tau = 1 - t;
    const f = hostOf(sde.f(t, x));
    const beta = 0.1 + 19.9 * tau;
    const std = Math.sqrt(1 - Math.exp(-0.5 * 19.9 * tau * tau - 0.1 * tau));
    const xs = x.dataSync();
    const es = eps.dataSync();
    const want = Array.from(xs, (v, i) => 0.5 * beta * v - (beta * (es[i] as number)) / std);
    expect(relMaxErr(f, want)).toBeLessThan(1e-5);
    expect(seen.every((l) => Math.abs(l - 999 * tau) < 1e-4)).toBe(true);
    expect(hostOf(sde.g(t, x)).every((v) => Math.abs(v - Math.sqrt(beta)) < 1e-6)).toBe(true);
  });

  test('guided_diffusion: integer label floor(1000 tau), eps = the first C channels', () => {
    const seen: number[] = [];
    const out = T.randomNormal([B, 6, 2, 2], { seed: 3 });
    const sde = new RevVPSDE({
      scoreType: 'guided_diffusion',
      imgShape: [3, 2, 2],
      model: (_img, labels) => {
        seen.push(...labels.dataSync());
        return out;
      },
    });
    const f = hostOf(sde.f(0.9123, x));
    expect(seen).toEqual([87, 87]);
    const tau = 1 - 0.9123;
    const beta = 0.1 + 19.9 * tau;
    const sq = Math.sqrt(1 - Math.exp(-9.95 * tau * tau - 0.1 * tau));
    const o = out.dataSync();
    const xs = x.dataSync();
    const want = Array.from(xs, (v, i) => {
      const b = Math.floor(i / 12);
      const e = o[b * 24 + (i % 12)] as number; // channels 0..2 of sample b
      return 0.5 * beta * v - (beta * e) / sq;
    });
    expect(relMaxErr(f, want)).toBeLessThan(1e-5);
  });

  test('purification solve and both adjoints run through it; model parameters get gradients', () => {
    const W = T.mul(T.randomNormal([12, 12], { seed: 4 }), 0.2);
    const eps = (img: T.Tensor, labels: T.Tensor, w: T.Tensor) =>
      T.reshape(T.tanh(T.add(T.matmul(T.reshape(img, [B, 12]), w), T.reshape(T.mul(labels, 1e-3), [B, 1]))), img.shape);
    const make = (w: T.Tensor) =>
      new RevVPSDE({
        scoreType: 'score_sde',
        imgShape: [3, 2, 2],
        model: (img, l) => eps(img, l, w),
        params: [w],
        withParams:
          ([q]) =>
          (img, l) =>
            eps(img, l, q as T.Tensor),
      });
    const ts = vpReverseTimes(0.1);
    const opts = { dt: 0.01, seed: 7 };
    const y = sdeint(make(W), x, ts, opts);
    expect(y.shape).toEqual([2, B, 12]);
    const loss = (ys: T.Tensor) => T.sum(T.narrow(ys, 0, 1, 1));
    const ex = T.grad((xx, w) => loss(sdeintAdjoint(make(w), xx, ts, { ...opts, mode: 'exact', paramGrads: true })), {
      argnums: [0, 1],
    })(x, W);
    const ag = T.grad((xx, w) => loss(sdeint(make(w), xx, ts, opts)), { argnums: [0, 1] })(x, W);
    const co = T.grad((xx, w) => loss(sdeintAdjoint(make(w), xx, ts, { ...opts, paramGrads: true })), {
      argnums: [0, 1],
    })(x, W);
    for (let i = 0; i < 2; i++) {
      expect(relMaxErr(hostOf(ex[i] as T.Tensor), hostOf(ag[i] as T.Tensor))).toBeLessThan(1e-5);
      // the paper's gradient starts its backward pass at 1 - 1e-5, where the score is ~1000 x eps:
      // it differs from the exact one by design (see bench/sde.ts), but not in direction
      const c = hostOf(co[i] as T.Tensor);
      const e = hostOf(ex[i] as T.Tensor);
      let dot = 0;
      let nc = 0;
      let ne = 0;
      c.forEach((v, j) => {
        dot += v * (e[j] as number);
        nc += v * v;
        ne += (e[j] as number) ** 2;
      });
      expect(dot / Math.sqrt(nc * ne)).toBeGreaterThan(0.9);
    }
  });
});
