// DiffPure's DDPM purification, the CelebA-HQ path (--diffusion_type celebahq-ddpm): diffuse the
// images to step t with the discrete schedule, then t ancestral DDPM steps back with the DDPM UNet
// (src/nn/models/ddpm-unet.ts). Each mapping follows NVlabs/DiffPure (commit 985703f):
//
//   eval_sde_adv_bpda.py SDE_Adv_Model.purify: out = runner.image_editing_sample((x - 0.5) * 2);
//     return (out + 1) * 0.5                                                (not clipped)
//   runners/diffpure_ddpm.py Diffusion.__init__:
//     betas = np.linspace(beta_start, beta_end, N, float64); self.betas = float32(betas)
//     posterior_variance = betas (1 - abar_prev) / (1 - abar)       (float64 NumPy, abar_prev = [1, abar[:-1]])
//     fixedsmall: logvar = log(max(posterior_variance, 1e-20)); fixedlarge: log([pv[1], betas[1:]])
//   Diffusion.image_editing_sample (sample_step 1), all under torch.no_grad():
//     e = randn_like(x0); a = (1 - betas).cumprod(0)                                   (float32)
//     x = x0 sqrt(a[t - 1]) + e sqrt(1 - a[t - 1])
//     for i = t-1 .. 0: x = image_editing_denoising_step_flexible_mask(x, i)
//   image_editing_denoising_step_flexible_mask:
//     mean = (1 / sqrt(alpha_i)) (x - (beta_i / sqrt(1 - abar_i)) model(x, i))          (float32)
//     x = mean + mask exp(0.5 float32(logvar_i)) randn_like(x),   mask = 0 at i = 0, else 1
//
// So t + 1 normal draws: the forward noise, then one per reverse step (the last one multiplied by
// zero; a counter-based draw that nothing uses need not be made, so it is skipped). Nothing is
// clipped anywhere: states and the output may leave [-1, 1].
//
// Gradients. DiffPure runs all this under no_grad and attacks it with BPDA only; here it is
// differentiable, three ways ('gradient'):
//  - 'autograd': ordinary reverse mode through the t network calls (input and parameter
//    gradients); memory holds t networks' recorded graphs at once.
//  - 'exact' (default): the same input gradient with per-step checkpointing. The forward runs
//    without recording and keeps only the t + 1 states x_t .. x_0; the backward replays step k at
//    its saved state under vjp and pulls the cotangent through it, last step first (the step noise
//    is additive, so the replay needs only the mean). Cost: 2t network forwards + t network
//    backward passes (autograd: t + t), and at any time t + 1 states plus one network's recorded
//    graph (autograd: t graphs). Parameter gradients: use 'autograd'.
//  - 'bpda': forward as above, backward the identity (DiffPure's BPDA: d purify(x) / dx := I).

import { noGrad, vjp } from '../autograd/engine.js';
import { CELEBA_HQ_DDPM_CONFIG } from '../nn/models/ddpm-unet.js';
import { randomSeed } from '../sde/brownian.js';
import { full, randomNormal } from '../tensor/prims/creation.js';
import { add, mul, sub } from '../tensor/prims/elementwise.js';
import { concat, narrow, reshape } from '../tensor/prims/shape.js';
import { attachCustom, isGradEnabled, withGradMode } from '../tensor/runtime.js';
import { type Prim, type Tensor, tidy } from '../tensor/tensor.js';
import type { NoiseKeys } from './attacks/model.js';
import { bpdaIdentity } from './defense.js';
import { FORWARD_NOISE_STREAM } from './purify.js';

const f32 = Math.fround;

/**
 * Stream of reverse step k's noise (k = 0 for timestep t - 1) under a seed or key: k + 2^52 + 1.
 * The forward noise uses FORWARD_NOISE_STREAM (2^52), as the VP-SDE purifier, so one key gives both
 * purifiers the same forward noise; the Brownian grids of that purifier stay below 2^52.
 */
export const DDPM_STEP_NOISE_STREAM = FORWARD_NOISE_STREAM + 1;

/** The `diffusion` section of celeba.yml. */
export interface DdpmDiffusionJson {
  beta_schedule?: unknown;
  beta_start?: unknown;
  beta_end?: unknown;
  num_diffusion_timesteps?: unknown;
  [k: string]: unknown;
}

export type DdpmVarType = 'fixedsmall' | 'fixedlarge';

/** Per-timestep float32 constants of the reverse step, as the official code forms them (values are float32). */
export interface DdpmSchedule {
  numTimesteps: number;
  /** float32(betas). */
  betas: Float64Array;
  /** cumprod(1 - betas) in float32 (PyTorch's cpu cumprod: accumulated in double, rounded per entry). */
  alphasCumprod: Float64Array;
  /** 1 / sqrt(alpha_i). */
  cMean: Float64Array;
  /** beta_i / sqrt(1 - abar_i). */
  cEps: Float64Array;
  /** exp(0.5 logvar_i): logvar from float64, cast to float32, then float32 ops. */
  sigma: Float64Array;
}

/**
 * The schedule of Diffusion.__init__ and the step function for a celeba.yml `diffusion` section
 * (default: DiffPure's CelebA-HQ one, linear 1e-4 .. 0.02 over 1000 steps) and model.var_type.
 */
export function ddpmSchedule(
  diffusion: DdpmDiffusionJson = CELEBA_HQ_DDPM_CONFIG.diffusion as DdpmDiffusionJson,
  varType: DdpmVarType = 'fixedsmall',
): DdpmSchedule {
  const { beta_schedule: kind = 'linear', beta_start: lo, beta_end: hi, num_diffusion_timesteps: n } = diffusion;
  // DiffPure's get_beta_schedule is always linspace, whatever beta_schedule says; refuse the rest
  if (kind !== 'linear') throw new Error(`ddpmSchedule: beta_schedule '${String(kind)}' is not supported (linear)`);
  if (typeof lo !== 'number' || typeof hi !== 'number' || !(lo > 0 && hi >= lo && hi < 1))
    throw new Error(`ddpmSchedule: need 0 < beta_start <= beta_end < 1, got ${String(lo)}, ${String(hi)}`);
  if (!Number.isInteger(n) || (n as number) < 2)
    throw new Error(`ddpmSchedule: num_diffusion_timesteps must be an integer >= 2, got ${String(n)}`);
  if (varType !== 'fixedsmall' && varType !== 'fixedlarge')
    throw new Error(`ddpmSchedule: var_type must be 'fixedsmall' or 'fixedlarge', got '${String(varType)}'`);
  const N = n as number;
  // np.linspace: arange * step + start, the last entry set to stop
  const step = (hi - lo) / (N - 1);
  const b64 = Float64Array.from({ length: N }, (_, i) => (i === N - 1 ? hi : i * step + lo));
  // float64 NumPy: posterior variance and logvar
  const logvar64 = new Float64Array(N);
  let acp = 1;
  for (let i = 0; i < N; i++) {
    const prev = acp;
    acp *= 1 - (b64[i] as number);
    const pv = ((b64[i] as number) * (1 - prev)) / (1 - acp);
    logvar64[i] = Math.log(Math.max(pv, 1e-20));
  }
  if (varType === 'fixedlarge') {
    const pv1 = Math.exp(logvar64[1] as number);
    for (let i = 0; i < N; i++) logvar64[i] = Math.log(i === 0 ? pv1 : (b64[i] as number));
  }
  // float32 torch: betas, alphas, cumprod, the step coefficients
  const s: DdpmSchedule = {
    numTimesteps: N,
    betas: new Float64Array(N),
    alphasCumprod: new Float64Array(N),
    cMean: new Float64Array(N),
    cEps: new Float64Array(N),
    sigma: new Float64Array(N),
  };
  let acc = 1;
  for (let i = 0; i < N; i++) {
    const beta = f32(b64[i] as number);
    const alpha = f32(1 - beta);
    acc *= alpha;
    const abar = f32(acc);
    s.betas[i] = beta;
    s.alphasCumprod[i] = abar;
    s.cMean[i] = f32(1 / f32(Math.sqrt(alpha)));
    s.cEps[i] = f32(beta / f32(Math.sqrt(f32(1 - abar))));
    s.sigma[i] = f32(Math.exp(f32(0.5 * f32(logvar64[i] as number))));
  }
  return s;
}

/** The noise network: x [B, C, H, W] in [-1, 1] and integer timesteps [B] (float values) -> eps of x's shape. */
export type DdpmEpsModel = (x: Tensor, t: Tensor) => Tensor;

export type DdpmGradient = 'autograd' | 'exact' | 'bpda';

/** Stored draws to replay instead of the counter-based ones (e.g. the fixture's). */
export interface DdpmNoise {
  /** The forward noise e, the images' shape. */
  forward: Tensor;
  /** [t, ...images' shape]: row k is the draw of reverse step k (timestep t - 1 - k); row t - 1 is unused (times 0). */
  steps: Tensor;
}

export interface DdpmPurifyOptions {
  model: DdpmEpsModel;
  /** DiffPure's args.t: the number of noise levels, an integer in [1, numTimesteps] (the paper: 500 on CelebA-HQ). */
  t: number;
  /** Default: ddpmSchedule() (celeba.yml, fixedsmall). */
  schedule?: DdpmSchedule;
  /** Default 'exact'; see the file comment. */
  gradient?: DdpmGradient;
  /** Seed of all draws (random when omitted): forward noise stream 2^52, step k stream 2^52 + 1 + k. */
  seed?: number;
  /** Replay given draws instead (the seed is then unused). */
  noise?: DdpmNoise;
  /**
   * Called after every reverse step (with `state`, the new x in [-1, 1] scale, freed after the call
   * unless kept) and, for 'exact', every backward step (progress, diagnostics).
   */
  onStep?: (e: { phase: 'forward' | 'backward'; step: number; steps: number; state?: Tensor }) => void;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/** Where the draws come from: forward noise and the noise of reverse step k. */
export interface NoiseSource {
  forward(): Tensor;
  step(k: number): Tensor;
}

function checkT(t: number, s: DdpmSchedule): void {
  if (!Number.isInteger(t) || t < 1 || t > s.numTimesteps)
    throw new Error(`ddpmPurify: t must be an integer in [1, ${s.numTimesteps}] (noise levels), got ${t}`);
}

function checkGradient(g: string): void {
  if (!['autograd', 'exact', 'bpda'].includes(g))
    throw new Error(`ddpmPurify: gradient must be 'autograd', 'exact' or 'bpda', got '${g}'`);
}

function checkImages(x: Tensor): void {
  if (x.rank !== 4) throw new Error(`ddpmPurify: expected images [B, C, H, W], got [${x.shape.join(', ')}]`);
}

/**
 * Images must lie in [0, 1] (DiffPure's purifier input) and hold no NaN. Checked where the data
 * is on the host (cpu); on a GPU backend a readback would stall the queue, so there it is not.
 */
function checkUnitRange(x: Tensor): void {
  const h = x.storage.handle;
  if (!(h instanceof Float32Array || h instanceof Float64Array)) return;
  for (let i = 0; i < x.size; i++) {
    const v = h[i] as number;
    if (!(v >= 0 && v <= 1))
      throw new Error(
        `ddpmPurify: images must lie in [0, 1]; element ${i} is ${v} (map [-1, 1] images by (x + 1) / 2)`,
      );
  }
}

function seededNoise(x: Tensor, seed: number): NoiseSource {
  const like = { dtype: x.dtype, backend: x.backend.name };
  return {
    forward: () => randomNormal(x.shape, { seed, stream: FORWARD_NOISE_STREAM, ...like }),
    step: (k) => randomNormal(x.shape, { seed, stream: DDPM_STEP_NOISE_STREAM + k, ...like }),
  };
}

/** Row r of every draw from its own key: a row's purification does not depend on its batch. */
export function keyedNoise(x: Tensor, keys: NoiseKeys): NoiseSource {
  const [b, ...img] = x.shape as [number, ...number[]];
  if (keys.length !== b)
    throw new Error(`ddpmPurify: ${keys.length} noise keys for ${b} images; a stochastic purifier needs one per row`);
  const like = { dtype: x.dtype, backend: x.backend.name };
  const rows = (stream: number) =>
    tidy(() =>
      concat(
        keys.map((seed) => randomNormal([1, ...img], { seed, stream, ...like })),
        0,
      ),
    );
  return { forward: () => rows(FORWARD_NOISE_STREAM), step: (k) => rows(DDPM_STEP_NOISE_STREAM + k) };
}

function replayedNoise(x: Tensor, n: DdpmNoise, t: number): NoiseSource {
  if (!sameShape(n.forward.shape, x.shape))
    throw new Error(
      `ddpmPurify: noise.forward has shape [${n.forward.shape.join(', ')}], the images [${x.shape.join(', ')}]`,
    );
  if (!sameShape(n.steps.shape, [t, ...x.shape]))
    throw new Error(
      `ddpmPurify: noise.steps has shape [${n.steps.shape.join(', ')}], expected [${[t, ...x.shape].join(', ')}] (t = ${t})`,
    );
  return { forward: () => n.forward, step: (k) => reshape(narrow(n.steps, 0, k, 1), x.shape) };
}

/** x_t = x0 sqrt(abar[t - 1]) + e sqrt(1 - abar[t - 1]), float32 scalars as torch forms them. */
export function ddpmDiffuse(x0: Tensor, t: number, noise: Tensor, schedule: DdpmSchedule = ddpmSchedule()): Tensor {
  checkT(t, schedule);
  const a = schedule.alphasCumprod[t - 1] as number;
  return add(mul(x0, f32(Math.sqrt(a))), mul(noise, f32(Math.sqrt(f32(1 - a)))));
}

/** The posterior mean at timestep i: (1 / sqrt(alpha_i)) (x - beta_i / sqrt(1 - abar_i) model(x, i)). */
export function ddpmStepMean(model: DdpmEpsModel, x: Tensor, i: number, schedule: DdpmSchedule): Tensor {
  return tidy(() => {
    const steps = full([x.shape[0] as number], i, { dtype: x.dtype, backend: x.backend.name });
    const eps = model(x, steps);
    return mul(sub(x, mul(eps, schedule.cEps[i] as number)), schedule.cMean[i] as number);
  });
}

interface Chain {
  model: DdpmEpsModel;
  t: number;
  s: DdpmSchedule;
  noise: NoiseSource;
  onStep: DdpmPurifyOptions['onStep'];
}

/** Reverse step k (timestep i = t - 1 - k): mean + sigma_i z, and the mean alone at i = 0 (mask 0). */
function reverseStep(c: Chain, x: Tensor, k: number): Tensor {
  return tidy(() => {
    const i = c.t - 1 - k;
    const mean = ddpmStepMean(c.model, x, i, c.s);
    return i > 0 ? add(mean, mul(c.noise.step(k), c.s.sigma[i] as number)) : mean;
  });
}

/** All t reverse steps from x_t, recorded as they run (autograd) or not (under noGrad). */
function runChain(c: Chain, xT: Tensor, saved?: Tensor[]): Tensor {
  let x = xT;
  for (let k = 0; k < c.t; k++) {
    const next = reverseStep(c, x, k);
    if (x !== xT) {
      if (saved) saved.push(x);
      else x.dispose(); // the recorded graph (if any) keeps what its backward needs
    }
    x = next;
    c.onStep?.({ phase: 'forward', step: k + 1, steps: c.t, state: next });
  }
  return x;
}

/**
 * The reverse chain as one autograd node with the checkpointed exact VJP. attachCustom (what
 * customOp is built on) is used directly so that the saved states are inputs of the node: they
 * live exactly as long as the graph that may need them, and go with it when no backward runs.
 */
function exactChain(c: Chain, xT: Tensor): Tensor {
  if (!isGradEnabled() || !xT.requiresGrad) return noGrad(() => runChain(c, xT));
  const saved: Tensor[] = [];
  const out = noGrad(() => runChain(c, xT, saved));
  const prim: Prim = {
    name: 'ddpmPurify.exact',
    vjp: (g, ctx) => {
      // states[k] is the input of reverse step k: x_t, then the saved x_(t-1) .. x_1
      const states = ctx.inputs;
      let a = g;
      for (let k = c.t - 1; k >= 0; k--) {
        const i = c.t - 1 - k;
        const cot = a;
        const next = withGradMode(true, () =>
          tidy(() => {
            const { vjpFn, release } = vjp((y) => ddpmStepMean(c.model, y, i, c.s), states[k] as Tensor);
            const [gx] = vjpFn(cot);
            release();
            return gx as Tensor;
          }),
        );
        if (a !== g) a.dispose();
        a = next;
        c.onStep?.({ phase: 'backward', step: c.t - k, steps: c.t });
      }
      return [a, ...saved.map(() => null)];
    },
  };
  const node = attachCustom(out, prim, [xT, ...saved]);
  for (const s of saved) s.dispose(); // the node holds them now
  return node;
}

function chainOf(o: DdpmPurifyOptions, noise: NoiseSource): Chain {
  const s = o.schedule ?? ddpmSchedule();
  checkT(o.t, s);
  checkGradient(o.gradient ?? 'exact');
  return { model: o.model, t: o.t, s, noise, onStep: o.onStep };
}

/**
 * image_editing_sample: images x in [-1, 1] ([B, C, H, W]) -> the purified images in [-1, 1]
 * scale (not clipped). Gradients by o.gradient ('bpda' is applied by ddpmPurify, at the [0, 1]
 * interface; here it behaves as 'exact').
 */
export function ddpmPurifyCentered(x: Tensor, o: DdpmPurifyOptions, source?: NoiseSource): Tensor {
  checkImages(x);
  const noise = source ?? (o.noise ? replayedNoise(x, o.noise, o.t) : seededNoise(x, o.seed ?? randomSeed()));
  const c = chainOf(o, noise);
  return tidy(() => {
    const xT = ddpmDiffuse(x, c.t, noise.forward(), c.s);
    return (o.gradient ?? 'exact') === 'autograd' ? runChain(c, xT) : exactChain(c, xT);
  });
}

/**
 * DiffPure's CelebA-HQ purifier at the public API: images x in [0, 1] -> (x - 0.5) * 2 ->
 * ddpmPurifyCentered -> (out + 1) / 2, unclamped (what DiffPure hands its classifier). Images
 * outside [0, 1] or NaN are refused (on cpu; see checkUnitRange).
 */
export function ddpmPurify(x: Tensor, o: DdpmPurifyOptions, source?: NoiseSource): Tensor {
  checkImages(x);
  checkGradient(o.gradient ?? 'exact');
  checkUnitRange(x);
  const run = (v: Tensor) => mul(add(ddpmPurifyCentered(mul(sub(v, 0.5), 2), o, source), 1), 0.5);
  return tidy(() => {
    return o.gradient === 'bpda' ? bpdaIdentity(x, run) : run(x);
  });
}

/**
 * The DDPM purifier with one key per row, shaped like defense.defendedPurifier: (x [B, C, H, W]
 * in [0, 1], keys) -> purified images (not clipped). Row r's forward noise and step noises come
 * from keys[r] (streams as DDPM_STEP_NOISE_STREAM says).
 */
export function ddpmPurifier(o: Omit<DdpmPurifyOptions, 'seed' | 'noise'>): (x: Tensor, keys: NoiseKeys) => Tensor {
  checkGradient(o.gradient ?? 'exact');
  checkT(o.t, o.schedule ?? ddpmSchedule());
  return (x: Tensor, keys: NoiseKeys) => {
    checkImages(x);
    return ddpmPurify(x, o, keyedNoise(x, keys));
  };
}
