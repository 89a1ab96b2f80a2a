// DiffPure's DDPM purification (runners/diffpure_ddpm.py image_editing_sample, CelebA-HQ) against
// the official run stored in ../shared/fixtures/ddpm_celebahq: the schedule constants, and with
// the stored noise replayed, x_t, every reverse state, the first step's eps and the output. Then
// what the official code does not have: the checkpointed 'exact' gradient against plain autograd
// through the same steps, BPDA's identity backward, keyed per-row noise, memory, and the errors.
// Expected values come from the fixture (meta.json, purify_*.npy) unless a line says otherwise.

import { describe, expect, test } from 'vitest';
import {
  DDPM_STEP_NOISE_STREAM,
  type DdpmPurifyOptions,
  ddpmDiffuse,
  ddpmPurifier,
  ddpmPurify,
  ddpmPurifyCentered,
  ddpmSchedule,
} from '../../src/diffpure/ddpm-purify.js';
import { FORWARD_NOISE_STREAM } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import { extractStateDict, loadTorchCheckpoint } from '../../src/nn/io/index.js';
import { type DdpmConfigJson, DdpmUNet } from '../../src/nn/models/ddpm-unet.js';
import { FIXTURES, fixtureArray, fixtureTensor, readMeta, relErr } from '../harness/fixtures.js';
import { FIXTURE_TOL } from '../nn/fixture-helpers.js';
import { countingBackend, onCountingBackend } from '../sde/helpers.js';

const DIR = `${FIXTURES}/ddpm_celebahq`;

interface PurifyMeta {
  unet: { config_used: DdpmConfigJson };
  purification: {
    diffpure_args: { t: number };
    coefficients_float32: {
      c_mean_1_over_sqrt_alpha: number[];
      c_eps_beta_over_sqrt_1_minus_abar: number[];
      sigma_exp_half_logvar: number[];
      abar_forward: number;
      sqrt_abar_forward: number;
      sqrt_1_minus_abar_forward: number;
    };
    recommended_tolerance: string;
  };
}
const meta = readMeta<PurifyMeta>(DIR);
const T_FIX = meta.purification.diffpure_args.t; // 20

function fixtureModel(): DdpmUNet {
  const m = T.tidy(() => new DdpmUNet(meta.unet.config_used)).eval();
  m.loadStateDict(extractStateDict(loadTorchCheckpoint(`${DIR}/unet.pth`)));
  return m;
}

describe('DDPM schedule (Diffusion.__init__, float32 constants)', () => {
  test('the step coefficients equal the official float32 values (meta.json coefficients_float32)', () => {
    const s = ddpmSchedule(meta.unet.config_used.diffusion);
    const c = meta.purification.coefficients_float32;
    const first = (a: Float64Array) => Array.from(a.subarray(0, T_FIX));
    // float32 values, formed by the same float32 operations: equal to the last bit, except sigma,
    // whose float32 exp may differ from PyTorch's by an ulp
    expect(first(s.cMean)).toEqual(c.c_mean_1_over_sqrt_alpha);
    expect(first(s.cEps)).toEqual(c.c_eps_beta_over_sqrt_1_minus_abar);
    for (let i = 0; i < T_FIX; i++) {
      const ref = c.sigma_exp_half_logvar[i] as number;
      expect(Math.abs((s.sigma[i] as number) - ref)).toBeLessThanOrEqual(ref * 2 ** -23);
    }
    expect(s.alphasCumprod[T_FIX - 1]).toBe(c.abar_forward);
    expect(Math.fround(Math.sqrt(c.abar_forward))).toBe(c.sqrt_abar_forward);
    expect(Math.fround(Math.sqrt(Math.fround(1 - c.abar_forward)))).toBe(c.sqrt_1_minus_abar_forward);
    expect(s.numTimesteps).toBe(1000);
  });

  test('schedule errors name the field', () => {
    expect(() =>
      ddpmSchedule({ beta_schedule: 'quad', beta_start: 1e-4, beta_end: 0.02, num_diffusion_timesteps: 1000 }),
    ).toThrow(/beta_schedule 'quad'/);
    expect(() => ddpmSchedule({ beta_start: 1e-4, beta_end: 0.02, num_diffusion_timesteps: 1.5 })).toThrow(
      /num_diffusion_timesteps/,
    );
  });
});

describe('DDPM purification parity (ddpm_celebahq fixture, stored noise replayed, cpu)', () => {
  test('x_t, every reverse state, the first eps and the output at t = 20', async () => {
    // tolerance: 1e-4 * max|ref| (meta.json; float32 vs float64 after 20 steps: 3.4e-6)
    expect(meta.purification.recommended_tolerance).toMatch(/1e-4 \* max\|ref\|/);
    const net = fixtureModel();
    const xIn = fixtureTensor(DIR, 'purify_x_in');
    const fwd = fixtureTensor(DIR, 'purify_forward_noise');
    const steps = fixtureTensor(DIR, 'purify_step_noise');
    const states: Float32Array[] = [];
    let firstEps: Float32Array | null = null;
    const o: DdpmPurifyOptions = {
      model: (x, t) => {
        const eps = net.forward(x, t);
        firstEps ??= Float32Array.from(eps.dataSync());
        return eps;
      },
      t: T_FIX,
      noise: { forward: fwd, steps },
      onStep: (e) => {
        if (e.state) states.push(Float32Array.from(e.state.dataSync()));
      },
    };
    const out = T.tidy(() => T.noGrad(() => ddpmPurify(xIn, o)));
    const outHost = Float32Array.from(out.dataSync());

    const xt = T.tidy(() => ddpmDiffuse(T.mul(T.sub(xIn, 0.5), 2), T_FIX, fwd).dataSync());
    const refStates = fixtureArray(DIR, 'purify_states');
    const per = refStates.data.length / T_FIX;
    const errs = {
      x_t: relErr(xt, fixtureArray(DIR, 'purify_x_t').data),
      firstEps: relErr(firstEps as unknown as Float32Array, fixtureArray(DIR, 'purify_first_step_eps').data),
      states: Math.max(...states.map((s, k) => relErr(s, refStates.data.subarray(k * per, (k + 1) * per)))),
      // purify_output is in [-1, 1] scale; ddpmPurify returns (out + 1) / 2
      output: relErr(
        outHost.map((v) => 2 * v - 1),
        fixtureArray(DIR, 'purify_output').data,
      ),
    };
    console.log(
      `ddpm purify t=20: max|err|/max|ref| ${Object.entries(errs)
        .map(([k, v]) => `${k} ${v.toExponential(2)}`)
        .join(', ')}`,
    );
    expect(states.length).toBe(T_FIX);
    for (const [k, v] of Object.entries(errs)) expect(v, k).toBeLessThan(FIXTURE_TOL);
    // the output is not clipped: the fixture's leaves [-1, 1] and so does ours
    expect(Math.min(...outHost)).toBeLessThan(0);
    expect(Math.max(...outHost)).toBeGreaterThan(1);
    // the centered entry point gives the [-1, 1] output directly
    const centered = T.tidy(() =>
      T.noGrad(() => ddpmPurifyCentered(T.mul(T.sub(xIn, 0.5), 2), { ...o, onStep: undefined }).dataSync()),
    );
    expect(relErr(centered, fixtureArray(DIR, 'purify_output').data)).toBeLessThan(FIXTURE_TOL);
    T.dispose(out, xIn, fwd, steps);
    net.dispose();
  });
});

describe('DDPM purification gradients (fixture UNet, t = 3)', () => {
  test("'exact' (checkpointed) equals autograd through the steps; 'bpda' passes the cotangent through", async () => {
    const net = fixtureModel();
    const model = (x: T.Tensor, t: T.Tensor) => net.forward(x, t);
    const x = T.randomUniform([2, 3, 32, 32], { seed: 5 });
    const w = T.randomNormal([2, 3, 32, 32], { seed: 6 });
    const gradOf = (gradient: 'autograd' | 'exact' | 'bpda') =>
      T.tidy(() =>
        Float32Array.from(
          T.grad((v: T.Tensor) => T.sum(T.mul(w, ddpmPurify(v, { model, t: 3, seed: 7, gradient }))))(x).dataSync(),
        ),
      );
    const auto = gradOf('autograd');
    const exact = gradOf('exact');
    const bpda = gradOf('bpda');
    const e = relErr(exact, auto);
    console.log(`ddpm purify t=3: max|exact - autograd| / max|autograd| ${e.toExponential(2)}`);
    // the same float32 operations in the same order: equal up to summation order inside kernels
    expect(e).toBeLessThan(1e-5);
    expect(Math.max(...auto.map(Math.abs))).toBeGreaterThan(0.1); // not trivially zero
    // BPDA: d sum(w * purify(x)) / dx := w
    expect(Array.from(bpda)).toEqual(Array.from(w.dataSync()));
    // every mode has the same forward
    const fwd = (gradient: 'autograd' | 'exact' | 'bpda') =>
      T.tidy(() => Array.from(ddpmPurify(x, { model, t: 3, seed: 7, gradient }).dataSync()));
    expect(fwd('exact')).toEqual(fwd('autograd'));
    expect(fwd('bpda')).toEqual(fwd('autograd'));
    T.dispose(x, w);
    net.dispose();
  });
});

describe('DDPM purification noise', () => {
  // a cheap stand-in eps model; the noise plumbing does not depend on the network
  const toy = (x: T.Tensor, t: T.Tensor) =>
    T.tanh(T.add(T.mul(x, 0.5), T.reshape(T.mul(t, 1e-3), [x.shape[0] as number, 1, 1, 1])));

  test('seeded draws are streams 2^52 (forward) and 2^52 + 1 + k (step k) of the seed', () => {
    T.tidy(() => {
      const shape = [2, 3, 4, 4];
      const x = T.randomUniform(shape, { seed: 1 });
      const t = 4;
      const a = Array.from(ddpmPurify(x, { model: toy, t, seed: 9 }).dataSync());
      const forward = T.randomNormal(shape, { seed: 9, stream: FORWARD_NOISE_STREAM });
      expect(DDPM_STEP_NOISE_STREAM).toBe(2 ** 52 + 1);
      const steps = T.stack(
        Array.from({ length: t }, (_, k) => T.randomNormal(shape, { seed: 9, stream: DDPM_STEP_NOISE_STREAM + k })),
        0,
      );
      expect(Array.from(ddpmPurify(x, { model: toy, t, noise: { forward, steps } }).dataSync())).toEqual(a);
      // the last step's draw is multiplied by zero: any values there give the same output
      const other = T.concat([T.narrow(steps, 0, 0, t - 1), T.mul(T.narrow(steps, 0, t - 1, 1), 100)], 0);
      expect(Array.from(ddpmPurify(x, { model: toy, t, noise: { forward, steps: other } }).dataSync())).toEqual(a);
      expect(Array.from(ddpmPurify(x, { model: toy, t, seed: 10 }).dataSync())).not.toEqual(a);
    });
  });

  test('ddpmPurifier: row r draws from keys[r], so a row does not depend on its batch', () => {
    T.tidy(() => {
      const x = T.randomUniform([3, 3, 4, 4], { seed: 2 });
      const purifier = ddpmPurifier({ model: toy, t: 3 });
      const all = purifier(x, [11, 12, 13]).dataSync();
      const one = purifier(T.narrow(x, 0, 1, 1), [12]).dataSync();
      expect(Array.from(one)).toEqual(Array.from(all.subarray(48, 96)));
      expect(Array.from(purifier(x, [11, 12, 13]).dataSync())).toEqual(Array.from(all));
      expect(() => purifier(x, [1, 2])).toThrow(/2 noise keys for 3 images/);
    });
  });
});

describe('DDPM purification errors', () => {
  const toy = (x: T.Tensor) => T.mul(x, 0.1);
  test('images outside [0, 1] or NaN, bad t, bad gradient mode and noise shapes are named errors', () => {
    T.tidy(() => {
      const ok = T.full([1, 3, 4, 4], 0.5);
      const withValue = (v: number) => T.concat([T.narrow(T.reshape(ok, [48]), 0, 0, 47), T.full([1], v)], 0);
      for (const v of [1.5, -0.5, Number.NaN]) {
        expect(() => ddpmPurify(T.reshape(withValue(v), [1, 3, 4, 4]), { model: toy, t: 2, seed: 0 })).toThrow(
          new RegExp(`images must lie in \\[0, 1\\]; element 47 is ${v}`),
        );
      }
      for (const t of [0, 1001, 2.5]) {
        expect(() => ddpmPurify(ok, { model: toy, t, seed: 0 })).toThrow(/t must be an integer in \[1, 1000\]/);
      }
      expect(() => ddpmPurifier({ model: toy, t: 0 })).toThrow(/t must be an integer in \[1, 1000\]/);
      expect(() => ddpmPurify(ok, { model: toy, t: 2, gradient: 'adjoint' as 'exact' })).toThrow(
        /gradient must be 'autograd', 'exact' or 'bpda', got 'adjoint'/,
      );
      const forward = T.zeros([1, 3, 4, 4]);
      expect(() => ddpmPurify(ok, { model: toy, t: 2, noise: { forward, steps: T.zeros([3, 1, 3, 4, 4]) } })).toThrow(
        /noise.steps has shape \[3, 1, 3, 4, 4\], expected \[2, 1, 3, 4, 4\]/,
      );
      expect(() => ddpmPurify(T.zeros([3, 4, 4]), { model: toy, t: 2 })).toThrow(/expected images \[B, C, H, W\]/);
    });
  });
});

describe('DDPM purification memory (counting cpu backend, fixture UNet, t = 3)', () => {
  onCountingBackend();

  test("every mode returns to the baseline; 'exact' peaks below autograd", () => {
    const be = countingBackend();
    const net = fixtureModel();
    const model = (x: T.Tensor, t: T.Tensor) => net.forward(x, t);
    const x = T.randomUniform([1, 3, 32, 32], { seed: 5 });
    const base = be.live;
    const peaks: Record<string, number> = {};
    for (const gradient of ['autograd', 'exact', 'bpda'] as const) {
      be.resetPeak();
      const g = T.tidy(() => T.grad((v: T.Tensor) => T.sum(ddpmPurify(v, { model, t: 3, seed: 7, gradient })))(x));
      peaks[gradient] = be.peak - base;
      g.dispose();
      expect(be.live, `${gradient}: bytes left over`).toBe(base);
    }
    // a recorded forward whose gradient is never taken frees its saved states with the graph
    const y = T.tidy(() => ddpmPurify(T.detach(x), { model, t: 3, seed: 7, gradient: 'exact' }));
    y.dispose();
    const leaf = T.detach(x);
    leaf.requiresGrad = true;
    const z = T.tidy(() => ddpmPurify(leaf, { model, t: 3, seed: 7, gradient: 'exact' }));
    z.dispose();
    leaf.dispose();
    expect(be.live).toBe(base);
    console.log(
      `ddpm purify t=3 gradient peaks (MB): ${Object.entries(peaks)
        .map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(2)}`)
        .join(', ')}`,
    );
    // measured here: autograd 58.5 MB (3 recorded UNet graphs), exact 21.2 MB (one graph + 4
    // states), bpda 3.5 MB; the bound sits between one and three graphs
    expect(peaks.exact).toBeLessThan(0.6 * (peaks.autograd as number));
    x.dispose();
    net.dispose();
  });
});
