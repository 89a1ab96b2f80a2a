// DiffPure's VP-SDE (Song et al. 2021; Nie et al. 2022, runners/diffpure_sde.py RevVPSDE).
//
// Forward diffusion time tau in [0, 1]: dx = -1/2 beta(tau) x dtau + sqrt(beta(tau)) dW with
//   beta(tau) = beta_min + tau (beta_max - beta_min) = 0.1 + 19.9 tau,
//   alpha-bar(tau) = exp(-1/2 (beta_max - beta_min) tau^2 - beta_min tau) = exp(-9.95 tau^2 - 0.1 tau).
// DiffPure noises the input with the DISCRETE DDPM schedule instead: betas = linspace(1e-4, 0.02,
// 1000), abar = cumprod(1 - betas), x_t = sqrt(abar[n - 1]) x0 + sqrt(1 - abar[n - 1]) e with
// n = t* * 1000. It then integrates the reverse SDE in solver time t = 1 - tau from 1 - t* to
// 1 - 1e-5 (ts = float32 linspace of the two), Ito, diagonal noise, with
//   f(t, x) = -( -1/2 beta(tau) x - g(tau)^2 score(x, tau) ) = 1/2 beta x + beta score,
//   g(t, x) = sqrt(beta(tau)) for every element,        tau = 1 - t (float32).
// Scores (both models predict the noise eps):
//   'score_sde' (score_sde_pytorch get_score_fn, continuous): score = -model(x, 999 tau) / std(tau),
//       std(tau) = sqrt(1 - exp(2 lmc)), lmc = -1/4 tau^2 (beta_max - beta_min) - 1/2 tau beta_min;
//   'guided_diffusion' (ADM): score = -eps / sqrt(1 - alpha-bar(tau)), eps = the first C output
//       channels of model(x, floor(1000 tau)) (the rest are the learned variances).
// Every scalar of time is computed with float32 rounding after each operation, in DiffPure's
// operation order, because near tau = 1e-5 std(tau) ~ 1e-3 keeps few float32 digits and the
// adjoint gradient is sensitive to them (see the diffpure_revsde fixture's meta.json).

import { full } from '../tensor/prims/creation.js';
import { add, div, mul, sub } from '../tensor/prims/elementwise.js';
import { narrow, reshape } from '../tensor/prims/shape.js';
import type { Shape } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { f32 } from './time.js';
import type { SDE } from './types.js';

export const VP_BETA_MIN = 0.1;
export const VP_BETA_MAX = 20;
export const VP_N = 1000;

const D_BETA = f32(VP_BETA_MAX - VP_BETA_MIN); // 19.9 as a float32 scalar
const BMIN = f32(VP_BETA_MIN);

/** beta(tau) = 0.1 + tau * 19.9, float32 ops as vpsde_fn. */
export function vpBeta(tau: number): number {
  return f32(BMIN + f32(f32(tau) * D_BETA));
}

/** Continuous alpha-bar(tau) = exp(-0.5 (beta_max - beta_min) tau^2 - beta_min tau) (RevVPSDE.alphas_cumprod_cont). */
export function vpAlphaBar(tau: number): number {
  const t = f32(tau);
  const a = f32(f32(-0.5 * (VP_BETA_MAX - VP_BETA_MIN)) * f32(t * t));
  return f32(Math.exp(f32(a - f32(BMIN * t))));
}

/** Marginal std of the VP-SDE as score_sde computes it: sqrt(1 - exp(2 lmc)) (sde_lib.VPSDE.marginal_prob). */
export function vpMarginalStd(tau: number): number {
  const t = f32(tau);
  const lmc = f32(f32(f32(-0.25 * f32(t * t)) * D_BETA) - f32(f32(0.5 * t) * BMIN));
  return f32(Math.sqrt(f32(1 - f32(Math.exp(f32(2 * lmc))))));
}

let discreteCache: Float64Array | null = null;

/**
 * DiffPure's discrete alpha-bar: betas = torch.linspace(0.1/1000, 20/1000, 1000) (float32),
 * abar = cumprod(1 - betas), accumulated in double and rounded to float32 per entry as PyTorch's
 * cpu cumprod does (a naive float32 running product ends ~2.6e-7 lower at index 99).
 */
export function vpDiscreteAlphaBars(): Float64Array {
  if (discreteCache) return discreteCache;
  const lo = f32(VP_BETA_MIN / VP_N);
  const hi = f32(VP_BETA_MAX / VP_N);
  const step = (hi - lo) / (VP_N - 1);
  const out = new Float64Array(VP_N);
  let acc = 1;
  for (let i = 0; i < VP_N; i++) {
    // torch.linspace fills the first half from the start and the second half from the end
    const beta = f32(i < VP_N / 2 ? lo + step * i : hi - step * (VP_N - 1 - i));
    acc *= f32(1 - beta);
    out[i] = f32(acc);
  }
  discreteCache = out;
  return out;
}

/** The integer noise level n = round(t* * 1000) DiffPure uses (args.t), checked. */
export function noiseLevel(tStar: number): number {
  const n = Math.round(tStar * VP_N);
  if (!(n >= 1 && n <= VP_N) || Math.abs(n - tStar * VP_N) > 1e-6)
    throw new Error(`noiseLevel: t* = ${tStar} must be a multiple of 1/${VP_N} in (0, 1]`);
  return n;
}

/**
 * x_t = x0 sqrt(abar[n - 1]) + e sqrt(1 - abar[n - 1]) with n = t* 1000 (image_editing_sample);
 * x0 in [-1, 1], e standard normal noise of x0's shape (e.g. randomNormal with a seed).
 */
export function vpDiffuse(x0: Tensor, tStar: number, noise: Tensor): Tensor {
  const a = vpDiscreteAlphaBars()[noiseLevel(tStar) - 1] as number;
  return add(mul(x0, f32(Math.sqrt(a))), mul(noise, f32(Math.sqrt(f32(1 - a)))));
}

/** DiffPure's solver times for t*: float32 [1 - t*, 1 - 1e-5] (epsilon_dt1 = 1e-5). */
export function vpReverseTimes(tStar: number): [number, number] {
  const n = noiseLevel(tStar);
  return [f32(1 - (n * 1) / VP_N), f32(1 - 1e-5)];
}

export type ScoreType = 'score_sde' | 'guided_diffusion';

/**
 * The score network: images [B, ...imgShape] and a [B] tensor of time labels (999 tau for
 * score_sde, the integer floor(1000 tau) for guided_diffusion), returning eps (score_sde:
 * [B, ...imgShape]; guided_diffusion: [B, 2C, H, W] with eps in the first C channels).
 */
export type ScoreModel = (x: Tensor, labels: Tensor) => Tensor;

export interface RevVPSDEOptions {
  model: ScoreModel;
  scoreType: ScoreType;
  /** One sample's image shape, e.g. [3, 32, 32]; the SDE state is [B, prod(imgShape)]. */
  imgShape: Shape;
  /** Tensors the model reads, for parameter gradients (optional). */
  params?: readonly Tensor[];
  /** The same model reading other parameter tensors (for sdeintAdjoint's paramGrads). */
  withParams?: (params: readonly Tensor[]) => ScoreModel;
}

/** The model input labels and the score scale at diffusion time tau. */
export function vpScoreTerms(scoreType: ScoreType, tau: number): { label: number; scale: number } {
  if (scoreType === 'score_sde') return { label: f32(tau * 999), scale: vpMarginalStd(tau) };
  // (t.float() * N).long(): float32 product, truncated
  const label = Math.trunc(f32(f32(tau) * VP_N));
  const scale = f32(Math.sqrt(f32(1 - vpAlphaBar(tau))));
  return { label, scale };
}

/** DiffPure's reverse VP-SDE as a torchsde-style SDE in solver time t = 1 - tau (Ito, diagonal). */
export class RevVPSDE implements SDE {
  readonly noiseType = 'diagonal' as const;
  readonly sdeType = 'ito' as const;
  readonly params: readonly Tensor[];
  private readonly o: RevVPSDEOptions;

  constructor(o: RevVPSDEOptions) {
    if (o.scoreType !== 'score_sde' && o.scoreType !== 'guided_diffusion')
      throw new Error(`RevVPSDE: unknown scoreType '${o.scoreType}' (score_sde or guided_diffusion)`);
    this.o = o;
    this.params = o.params ?? [];
  }

  withParams(params: readonly Tensor[]): RevVPSDE {
    if (!this.o.withParams) throw new Error('RevVPSDE.withParams: construct it with a withParams option');
    return new RevVPSDE({ ...this.o, model: this.o.withParams(params), params });
  }

  /** The score at diffusion time tau for a state [B, D]. */
  score(tau: number, x: Tensor): Tensor {
    const { model, scoreType, imgShape } = this.o;
    const B = x.shape[0] as number;
    const img = reshape(x, [B, ...imgShape]);
    const { label, scale } = vpScoreTerms(scoreType, tau);
    const labels = full([B], label, { dtype: x.dtype, backend: x.backend.name });
    let eps = model(img, labels);
    if (scoreType === 'guided_diffusion') eps = narrow(eps, 1, 0, imgShape[0] as number);
    // score_sde: -model / std; ADM: (-1 / sqrt(1 - abar)) * eps
    const s =
      scoreType === 'score_sde'
        ? div(mul(eps, -1), full([], scale, { dtype: x.dtype, backend: x.backend.name }))
        : mul(eps, f32(-1 / scale));
    return reshape(s, x.shape);
  }

  f(t: number, x: Tensor): Tensor {
    const tau = f32(1 - t);
    const beta = vpBeta(tau);
    const g2 = f32(f32(Math.sqrt(beta)) ** 2);
    // drift_rev = -0.5 beta x - g^2 score; torchsde drift = -drift_rev
    const driftRev = sub(mul(x, f32(-0.5 * beta)), mul(this.score(tau, x), g2));
    return mul(driftRev, -1);
  }

  g(t: number, x: Tensor): Tensor {
    const g = f32(Math.sqrt(vpBeta(f32(1 - t))));
    return full(x.shape, g, { dtype: x.dtype, backend: x.backend.name });
  }
}
