// purify() with a cheap stand-in for the score network (the DDPM++ parity is in
// fixture_diffpure_revsde.test.ts): the [0, 1] <-> [-1, 1] mappings, seeding and the noise / path
// hooks, the model's inputs (labels, shapes, guided-diffusion channels), 'exact' against autograd
// through the same pipeline written with sdeint, and the errors.

import { describe, expect, test } from 'vitest';
import { FORWARD_NOISE_STREAM, type PurifyOptions, purify, purifyCentered } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import {
  BrownianGrid,
  RevVPSDE,
  type ScoreModel,
  sdeint,
  vpDiffuse,
  vpMarginalStd,
  vpReverseTimes,
} from '../../src/sde/index.js';
import { cosine, hostOf, relL2, relMaxErr } from '../sde/helpers.js';

const SHAPE = [2, 3, 4, 4];
const D = 48;

/** eps(x, label) = tanh(0.7 x + label / 1000 - 0.1), elementwise. */
const toy: ScoreModel = (x, labels) =>
  T.tanh(T.add(T.mul(x, 0.7), T.reshape(T.sub(T.mul(labels, 1e-3), 0.1), [x.shape[0] as number, 1, 1, 1])));

const images = (seed = 3) => T.randomUniform(SHAPE, { seed });
const base: PurifyOptions = { model: toy, scoreType: 'score_sde', dt: 0.01, seed: 11 };
const host = (t: T.Tensor) => Array.from(t.dataSync());

describe('purify', () => {
  test('maps [0, 1] to [-1, 1] and back around purifyCentered; the same seed gives the same output', () => {
    T.tidy(() => {
      const x = images();
      const a = purify(x, base);
      expect(a.shape).toEqual(SHAPE);
      const c = purifyCentered(T.mul(T.sub(x, 0.5), 2), base);
      expect(relMaxErr(host(a), host(T.mul(T.add(c, 1), 0.5)))).toBe(0);
      expect(host(purify(x, base))).toEqual(host(a));
      // both gradient modes run the same forward solve
      expect(host(purify(x, { ...base, mode: 'exact' }))).toEqual(host(a));
      expect(relMaxErr(host(purify(x, { ...base, seed: 12 })), host(a))).toBeGreaterThan(1e-2);
      // the output is near the input (t* = 0.1 removes little of it), not a copy of it
      const d = relMaxErr(host(a), host(x));
      expect(d).toBeGreaterThan(1e-2);
      expect(d).toBeLessThan(1);
    });
  });

  test('the forward noise is randomNormal(seed, FORWARD_NOISE_STREAM); noise and bm replace the seed', () => {
    T.tidy(() => {
      const x = images();
      const a = host(purify(x, base));
      const noise = T.randomNormal(SHAPE, { seed: 11, stream: FORWARD_NOISE_STREAM });
      expect(host(purify(x, { ...base, noise }))).toEqual(a);
      const [t0, t1] = vpReverseTimes(0.1);
      const bm = new BrownianGrid({ t0, t1, shape: [2, D], seed: 5, dt: 0.01 });
      const b = host(purify(x, { ...base, noise, bm }));
      expect(host(purify(x, { ...base, seed: 99, noise, bm }))).toEqual(b);
      expect(relMaxErr(b, a)).toBeGreaterThan(1e-2);
    });
  });

  test('the model sees [B, C, H, W] states and labels 999 tau from tau = 0.1 down (score_sde)', () => {
    const labels: number[] = [];
    const model: ScoreModel = (x, l) => {
      expect(x.shape).toEqual(SHAPE);
      labels.push(...l.dataSync());
      return toy(x, l);
    };
    T.tidy(() => purify(images(), { ...base, model, dt: 1e-3 }));
    // DiffPure's default dt 1e-3: 100 Euler steps from t = 0.9 to 1 - 1e-5, one evaluation each
    expect(labels.length).toBe(200);
    expect(labels[0]).toBe(Math.fround(Math.fround(1 - Math.fround(0.9)) * 999));
    expect(labels[1]).toBe(labels[0]);
    // the last step starts at t = f32(0.9 + 99 * 0.001) ~ 0.999, tau ~ 1e-3
    expect(labels.at(-1)).toBeGreaterThan(0.99);
    expect(labels.at(-1)).toBeLessThan(1.01);
  });

  test('guided_diffusion: integer labels floor(1000 tau), the first C of 2C output channels', () => {
    const labels: number[] = [];
    const model: ScoreModel = (x, l) => {
      labels.push(...l.dataSync());
      return T.concat([toy(x, l), T.fullLike(x, 1e3)], 1);
    };
    T.tidy(() => {
      const out = host(purify(images(), { ...base, model, scoreType: 'guided_diffusion' }));
      expect(out.every((v) => Math.abs(v - 0.5) < 2)).toBe(true);
    });
    expect(labels.slice(0, 2)).toEqual([100, 100]);
    expect(labels.every(Number.isInteger)).toBe(true);
  });

  test("mode 'exact' equals autograd through vpDiffuse + sdeint on the same path; 'continuous' is near it", () => {
    const [t0, t1] = vpReverseTimes(0.1);
    const bm = new BrownianGrid({ t0, t1, shape: [2, D], seed: 8, dt: 0.01 });
    const w = T.keep(T.randomNormal(SHAPE, { seed: 4 }));
    const noise = T.keep(T.randomNormal(SHAPE, { seed: 6 }));
    const o: PurifyOptions = { ...base, noise, bm };
    const loss = (y: T.Tensor) => T.sum(T.mul(y, w));
    const viaSdeint = (x: T.Tensor) => {
      const xt = vpDiffuse(T.mul(T.sub(x, 0.5), 2), 0.1, noise);
      const sde = new RevVPSDE({ model: toy, scoreType: 'score_sde', imgShape: [3, 4, 4] });
      const ys = sdeint(sde, T.reshape(xt, [2, D]), [t0, t1], { dt: 0.01, bm });
      return T.mul(T.add(T.reshape(T.narrow(ys, 0, 1, 1), SHAPE), 1), 0.5);
    };
    T.tidy(() => {
      const x = images();
      const gRef = hostOf(T.grad((v: T.Tensor) => loss(viaSdeint(v)))(x) as T.Tensor);
      const gExact = hostOf(T.grad((v: T.Tensor) => loss(purify(v, { ...o, mode: 'exact' })))(x) as T.Tensor);
      const gCont = hostOf(T.grad((v: T.Tensor) => loss(purify(v, { ...o, mode: 'continuous' })))(x) as T.Tensor);
      expect(relMaxErr(gExact, gRef)).toBeLessThan(1e-6);
      // the paper's adjoint differs by the method (it starts at 1 - 1e-5 where std ~ 1e-3, see
      // src/sde/README.md); with this smooth toy eps the two still agree in direction
      const c = cosine(gCont, gRef);
      const r = relL2(gCont, gRef);
      console.log(`toy, dt 0.01: continuous vs exact cosine ${c.toFixed(4)}, rel. L2 ${r.toFixed(3)}`);
      expect(c).toBeGreaterThan(0.8);
    });
    T.dispose(w, noise);
    // (std at the adjoint's start, which drives that difference)
    expect(vpMarginalStd(1 - vpReverseTimes(0.1)[1])).toBeLessThan(2e-3);
  });

  test('errors name the problem', () => {
    T.tidy(() => {
      const x = images();
      expect(() => purify(T.reshape(x, [2, 48]), base)).toThrow(/purify: expected images \[B, C, H, W\]/);
      expect(() => purify(x, { ...base, tStar: 0.1234 })).toThrow(/t\* = 0.1234 must be a multiple of 1\/1000/);
      expect(() => purify(x, { ...base, noise: T.zeros([1, 3, 4, 4]) })).toThrow(/noise has shape \[1, 3, 4, 4\]/);
      const [t0, t1] = vpReverseTimes(0.1);
      const bm = new BrownianGrid({ t0, t1, shape: [2, 47], seed: 1, dt: 0.01 });
      expect(() => purify(x, { ...base, bm })).toThrow(/bm has shape \[2, 47\], the SDE state is \[2, 48\]/);
      const short = new BrownianGrid({ t0: Math.fround(0.95), t1, shape: [2, D], seed: 1, dt: 0.01 });
      expect(() => purify(x, { ...base, bm: short })).toThrow(/Brownian motion covers/);
      expect(() => purify(x, { ...base, mode: 'bogus' as 'exact' })).toThrow(/unknown mode 'bogus'/);
    });
  });
});
