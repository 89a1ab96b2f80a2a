// DiffPure's purifier (Nie et al., ICML 2022): diffuse the input to t* with the forward VP-SDE,
// then solve the reverse-time SDE back to ~0 with a score model. Gradients through it come from
// sdeintAdjoint, in the paper's continuous adjoint (Prop. 3.3, torchsde's sdeint_adjoint, what
// DiffPure's adaptive attacks use) or exactly (the gradient of the discretised solve).
//
// Each mapping below follows NVlabs/DiffPure (commit 985703f):
//   eval_sde_adv.py SDE_Adv_Model.forward:
//     x_re = runner.image_editing_sample((x - 0.5) * 2); classifier((x_re + 1) * 0.5)
//   runners/diffpure_sde.py RevGuidedDiffusion.image_editing_sample (sample_step = 1, rand_t off):
//     e = randn_like(x0)
//     a = (1 - betas).cumprod(0), betas = linspace(0.1/1000, 20/1000, 1000)
//     x = x0 * sqrt(a[t - 1]) + e * sqrt(1 - a[t - 1])                     (t = t* 1000, integer)
//     ts = linspace(1 - t/1000, 1 - 1e-5, 2)                                (float32)
//     xs_ = torchsde.sdeint_adjoint(rev_vpsde, x.view(B, -1), ts, method='euler')   (dt 1e-3)
//     return xs_[-1].view(x.shape)
//   RevVPSDE (f, g, score) is src/sde/vpsde.ts; its mappings are documented there.

import type { AdjointMode, AdjointOptions } from '../adjoint/adjoint.js';
import { sdeintAdjoint } from '../adjoint/adjoint.js';
import type { BrownianMotion } from '../sde/brownian.js';
import { randomSeed } from '../sde/brownian.js';
import { noiseLevel, RevVPSDE, type ScoreModel, type ScoreType, vpDiffuse, vpReverseTimes } from '../sde/vpsde.js';
import { randomNormal } from '../tensor/prims/creation.js';
import { add, mul, sub } from '../tensor/prims/elementwise.js';
import { narrow, reshape } from '../tensor/prims/shape.js';
import { type Tensor, tidy } from '../tensor/tensor.js';

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Stream of the forward noise under `seed`. The default Brownian path (BrownianGrid) draws cell k
 * from streams k 2^22 .. k 2^22 + 2^22 - 1, so 2^52 lies outside every stream it can use for
 * grids of fewer than 2^30 cells: the noise and the path are independent under one seed.
 */
export const FORWARD_NOISE_STREAM = 2 ** 52;

export interface PurifyOptions {
  /** The score network: model(x [B, C, H, W] in [-1, 1], labels [B]) (see ScoreModel). */
  model: ScoreModel;
  /** 'score_sde' (NCSN++/DDPM++, CIFAR-10) or 'guided_diffusion' (ADM, ImageNet). */
  scoreType: ScoreType;
  /** Diffusion time t* (DiffPure's args.t / 1000); a multiple of 1e-3 in (0, 1]. Default 0.1. */
  tStar?: number;
  /** Euler step of the reverse solve (default 1e-3, torchsde's and so DiffPure's). */
  dt?: number;
  /**
   * Gradient of the solve: 'continuous' (default; the paper's adjoint, torchsde's sdeint_adjoint
   * as DiffPure calls it) or 'exact' (the gradient of the discrete Euler map). The forward output
   * is the same in both.
   */
  mode?: AdjointMode;
  /** continuous: the backward scheme (default milstein as torchsde; identical to euler here, g = g(t)). */
  adjointMethod?: 'euler' | 'milstein';
  /**
   * Seed of the forward noise and of the default Brownian path (random when omitted). Same seed,
   * same purification, on every backend.
   */
  seed?: number;
  /** The forward noise e (standard normal, the input's shape); replaces randn_like. */
  noise?: Tensor;
  /** The Brownian path of the reverse solve, shape [B, C H W], covering [1 - t*, 1 - 1e-5]. */
  bm?: BrownianMotion;
  /** Model parameters for parameter gradients (sdeintAdjoint's paramGrads; see RevVPSDEOptions). */
  params?: readonly Tensor[];
  withParams?: (params: readonly Tensor[]) => ScoreModel;
  paramGrads?: boolean;
  /** continuous: called with y and a ([B, C H W]) at every adjoint time (diagnostics; see sdeintAdjoint). */
  trace?: AdjointOptions['trace'];
  /** Called after every reverse-SDE step and every backward step of the gradient (progress). */
  onStep?: AdjointOptions['onStep'];
}

function checkImages(op: string, x: Tensor): void {
  if (x.shape.length !== 4) throw new Error(`${op}: expected images [B, C, H, W], got shape [${x.shape.join(', ')}]`);
}

/**
 * DiffPure's image_editing_sample: purify images x in [-1, 1] ([B, C, H, W]) and return the
 * purified images in [-1, 1] (the reverse solve's end state; not clipped, as DiffPure).
 */
export function purifyCentered(x: Tensor, o: PurifyOptions): Tensor {
  checkImages('purifyCentered', x);
  const tStar = o.tStar ?? 0.1;
  noiseLevel(tStar); // validates t*
  const [B, ...imgShape] = x.shape as [number, ...number[]];
  const D = imgShape.reduce((a, b) => a * b, 1);
  if (o.noise && !sameShape(o.noise.shape, x.shape))
    throw new Error(`purify: noise has shape [${o.noise.shape.join(', ')}], the images [${x.shape.join(', ')}]`);
  if (o.bm && !sameShape(o.bm.shape, [B, D]))
    throw new Error(`purify: bm has shape [${o.bm.shape.join(', ')}], the SDE state is [${B}, ${D}]`);
  const seed = o.seed ?? randomSeed();

  return tidy(() => {
    // e = torch.randn_like(x0)
    const e =
      o.noise ?? randomNormal(x.shape, { seed, stream: FORWARD_NOISE_STREAM, dtype: x.dtype, backend: x.backend.name });
    // x = x0 sqrt(a[t - 1]) + e sqrt(1 - a[t - 1]) with DiffPure's discrete alpha-bar (t = t* 1000)
    const xt = vpDiffuse(x, tStar, e);
    // ts = float32 [1 - t/1000, 1 - 1e-5] (epsilon_dt1 = 1e-5); the state is x.view(B, -1), C,H,W order
    const ts = vpReverseTimes(tStar);
    const sde = new RevVPSDE({
      model: o.model,
      scoreType: o.scoreType,
      imgShape,
      params: o.params,
      withParams: o.withParams,
    });
    // torchsde.sdeint_adjoint(rev_vpsde, x_, ts, method='euler'): dt 1e-3 and the adjoint
    // method milstein by default; the Brownian path of the solve and of its adjoint are the same
    const ys = sdeintAdjoint(sde, reshape(xt, [B, D]), ts, {
      method: 'euler',
      dt: o.dt ?? 1e-3,
      bm: o.bm,
      seed,
      mode: o.mode ?? 'continuous',
      adjointMethod: o.adjointMethod,
      paramGrads: o.paramGrads,
      trace: o.trace,
      onStep: o.onStep,
    });
    // xs_[-1].view(x.shape)
    return reshape(narrow(ys, 0, 1, 1), x.shape);
  });
}

/**
 * DiffPure's purifier at the public API: images x in [0, 1] ([B, C, H, W]) are mapped to
 * [-1, 1] by (x - 0.5) * 2, purified (purifyCentered), and mapped back by (x + 1) * 0.5 (what
 * DiffPure feeds its classifier; not clipped). Differentiable: grad through it uses opts.mode.
 */
export function purify(x: Tensor, o: PurifyOptions): Tensor {
  checkImages('purify', x);
  return tidy(() => mul(add(purifyCentered(mul(sub(x, 0.5), 2), o), 1), 0.5));
}
