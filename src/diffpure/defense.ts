// DiffPure's defended classifier as an attack target: purify, then classify (eval_sde_adv.py SDE_Adv_Model).
// Images in [0, 1]; the purified images go to the classifier unclipped, as DiffPure. Each batch row r draws its
// forward noise and its Brownian path from its own key keys[r] (see attacks/model.ts), so a row's purification
// does not depend on its batch, and an attack controls all randomness through its seed.
//
// Gradient modes: 'continuous' (the paper's adjoint, Prop. 3.3; what DiffPure's attacks used), 'exact' (the
// gradient of the discretised solve; Lee & Kim's point), 'bpda' (the purifier's backward replaced by the identity:
// BPDA, as DiffPure's bpda_eot).

import { customOp } from '../autograd/custom.js';
import { BrownianGrid, type BrownianMotion, mergeNodes } from '../sde/brownian.js';
import { adjointSteps, solvePlan } from '../sde/time.js';
import { vpReverseTimes } from '../sde/vpsde.js';
import { randomNormal } from '../tensor/prims/creation.js';
import { concat } from '../tensor/prims/shape.js';
import { type Tensor, tidy } from '../tensor/tensor.js';
import type { Classifier, NoiseKeys } from './attacks/model.js';
import { FORWARD_NOISE_STREAM, type PurifyOptions, purify } from './purify.js';

export type GradientMode = 'continuous' | 'exact' | 'bpda';

export interface DefenseOptions extends Omit<PurifyOptions, 'seed' | 'noise' | 'bm' | 'mode'> {
  /** The classifier of purified images: x [B, C, H, W] in [0, 1] (not clipped) -> logits [B, K]. */
  classifier: (x: Tensor) => Tensor;
  /** How gradients pass the purifier (default 'continuous', the paper's). */
  gradient?: GradientMode;
}

/** A Brownian path of shape [B, D] whose row r is an independent path keyed by keys[r]. */
export class RowwiseBrownian implements BrownianMotion {
  readonly shape: readonly number[];
  private readonly rows: BrownianGrid[];

  constructor(
    readonly t0: number,
    readonly t1: number,
    keys: NoiseKeys,
    d: number,
    dt: number,
    backend?: string,
  ) {
    this.shape = [keys.length, d];
    // the nodes sdeint's default path uses (defaultBrownian): the solve's steps and the adjoint pass's, so every
    // query of either pass is a sum of whole cells
    const nodes = mergeNodes(
      solvePlan([t0, t1], dt).times,
      adjointSteps(t0, t1, dt).map(([hi]) => hi),
    );
    this.rows = keys.map((seed) => new BrownianGrid({ t0, t1, shape: [1, d], seed, nodes, backend }));
  }

  increment(ta: number, tb: number): Tensor {
    return tidy(() =>
      concat(
        this.rows.map((r) => r.increment(ta, tb)),
        0,
      ),
    );
  }
}

function checkMode(mode: string): void {
  if (!['continuous', 'exact', 'bpda'].includes(mode)) {
    throw new Error(`defense: gradient must be 'continuous', 'exact' or 'bpda', got '${mode}'`);
  }
}

/**
 * DiffPure's purifier with one key per row: x [B, C, H, W] in [0, 1] -> purified images (not clipped). Row r's
 * forward noise and Brownian path come from keys[r]. For BPDA+EOT (attacks/bpda-eot.ts), which needs the purifier
 * and the classifier apart.
 */
export function defendedPurifier(o: Omit<DefenseOptions, 'classifier'>): (x: Tensor, keys: NoiseKeys) => Tensor {
  const mode = o.gradient ?? 'continuous';
  checkMode(mode);
  const tStar = o.tStar ?? 0.1;
  const dt = o.dt ?? 1e-3;
  return (x: Tensor, keys: NoiseKeys) => {
    const [b, c, h, w] = x.shape as [number, number, number, number];
    if (keys.length !== b) {
      throw new Error(
        `defense: ${keys.length} noise keys for ${b} images; a stochastic classifier needs one key per row`,
      );
    }
    return tidy(() => {
      const noise = concat(
        keys.map((k) => randomNormal([1, c, h, w], { seed: k, stream: FORWARD_NOISE_STREAM, backend: x.backend.name })),
        0,
      );
      const ts = vpReverseTimes(tStar);
      const bm = new RowwiseBrownian(ts[0] as number, ts[1] as number, keys, c * h * w, dt, x.backend.name);
      const run = (v: Tensor) => purify(v, { ...o, tStar, dt, noise, bm, mode: mode === 'bpda' ? 'continuous' : mode });
      return mode === 'bpda' ? bpdaIdentity(x, run) : run(x);
    });
  };
}

/**
 * BPDA (Athalye et al.): the forward is purify(x) itself, bit for bit what DiffPure's classifier sees, and the
 * backward is the identity. (x + stop_gradient(purify(x) - x) has the same gradient but rounds the forward.)
 */
export function bpdaIdentity(x: Tensor, purifyFn: (v: Tensor) => Tensor): Tensor {
  return customOp({ name: 'bpda', forward: (v) => purifyFn(v), vjp: (g) => [g] })(x);
}

/** purify-then-classify with one key per row; see the file comment. */
export function defendedClassifier(o: DefenseOptions): Classifier {
  const purifier = defendedPurifier(o);
  return (x: Tensor, keys: NoiseKeys) => tidy(() => o.classifier(purifier(x, keys)));
}
