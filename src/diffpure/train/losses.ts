// Training losses.
//
// dsmLoss: score_sde's continuous VP-SDE denoising score matching (losses.get_sde_loss_fn with a VPSDE and
// models/utils.get_score_fn, continuous): for data x0 already scaled to [-1, 1] (score_sde's data scaler),
//   t ~ U[eps, 1],  z ~ N(0, I),  x_t = a(t) x0 + s(t) z  with  a = exp(-t^2 (b1 - b0) / 4 - t b0 / 2), s = sqrt(1 - a^2),
//   score = -model(x_t, 999 t) / s(t),
//   per-sample loss  reduce(|score s + z|^2)            (likelihood_weighting false)
//                or  reduce(|score + z / s|^2) g(t)^2   (true; g^2 = beta(t) = b0 + t (b1 - b0)),
//   reduce = mean over C, H, W (reduce_mean true) or 0.5 * sum;  loss = the batch mean.
// score_sde's defaults are reduce_mean true, likelihood_weighting true, eps 1e-5; its DDPM++ configs set
// reduce_mean true and likelihood_weighting false, which the train CLI reads from the config.
//
// The times and noise are inputs, so a caller (and a test) controls every draw; sampleTimes draws t from the
// counter-based RNG, uniformly as score_sde or, optionally, with more weight at small t.

import {
  add,
  affine,
  fromArray,
  logSoftmax,
  mean,
  mul,
  neg,
  randomUniform,
  square,
  sub,
  sum,
  type Tensor,
} from '../../tensor/index.js';

export interface DsmOptions {
  reduceMean?: boolean;
  likelihoodWeighting?: boolean;
  betaMin?: number;
  betaMax?: number;
}

/** The raw network: score_sde's model_fn, (x, labels = 999 t) -> the output that get_score_fn divides by -std. */
export type RawScoreModel = (x: Tensor, labels: Tensor) => Tensor;

export function dsmLoss(model: RawScoreModel, x0: Tensor, t: ArrayLike<number>, z: Tensor, o: DsmOptions = {}): Tensor {
  const [b] = x0.shape as [number];
  if (x0.rank !== 4) throw new Error(`dsmLoss: x0 must be [B, C, H, W], got [${x0.shape}]`);
  if (t.length !== b) throw new Error(`dsmLoss: got ${t.length} times for a batch of ${b}`);
  if (z.shape.join() !== x0.shape.join()) throw new Error(`dsmLoss: noise z [${z.shape}] must match x0 [${x0.shape}]`);
  const b0 = o.betaMin ?? 0.1;
  const b1 = o.betaMax ?? 20;
  const opts = { dtype: x0.dtype, backend: x0.backend.name };
  const col = (f: (ti: number) => number) => fromArray(Array.from(t, f), [b, 1, 1, 1], opts);
  const lmc = (ti: number) => -0.25 * ti * ti * (b1 - b0) - 0.5 * ti * b0;
  const a = col((ti) => Math.exp(lmc(ti)));
  const s = col((ti) => Math.sqrt(1 - Math.exp(2 * lmc(ti))));
  const xt = add(mul(a, x0), mul(s, z));
  const labels = fromArray(
    Array.from(t, (ti) => 999 * ti),
    [b],
    opts,
  );
  const raw = model(xt, labels);
  // score * s = -raw, so the unweighted residual is z - raw; the weighted one is (z - raw) / s
  let r = sub(z, raw);
  const weighting = o.likelihoodWeighting ?? true;
  if (weighting)
    r = mul(
      r,
      col((ti) => 1 / Math.sqrt(1 - Math.exp(2 * lmc(ti)))),
    );
  const perSample = (o.reduceMean ?? true) ? mean(square(r), [1, 2, 3]) : affine(sum(square(r), [1, 2, 3]), 0.5, 0);
  if (!weighting) return mean(perSample);
  return mean(
    mul(
      perSample,
      fromArray(
        Array.from(t, (ti) => b0 + ti * (b1 - b0)),
        [b],
        opts,
      ),
    ),
  );
}

export type TimeSampling = { kind: 'uniform' } | { kind: 'power'; power: number };

/**
 * B times in [eps, 1]: uniform (score_sde), or eps + (1 - eps) u^power with power > 1 to put more of them at small t
 * (where purification works). Drawn from the counter-based RNG at (seed, stream).
 */
export function sampleTimes(
  b: number,
  seed: number,
  stream: number,
  eps = 1e-5,
  s: TimeSampling = { kind: 'uniform' },
): Float64Array {
  const u = randomUniform([b], { seed, stream, dtype: 'float64' });
  const v = u.dataSync();
  const out = new Float64Array(b);
  for (let i = 0; i < b; i++) {
    const w = s.kind === 'power' ? (v[i] as number) ** s.power : (v[i] as number);
    out[i] = w * (1 - eps) + eps;
  }
  u.dispose();
  return out;
}

/** Cross-entropy of logits [B, K] against integer labels, averaged over the batch (F.cross_entropy's default). */
export function crossEntropy(logits: Tensor, labels: ArrayLike<number>): Tensor {
  const [b, k] = logits.shape as [number, number];
  if (logits.rank !== 2) throw new Error(`crossEntropy: logits must be [B, K], got [${logits.shape}]`);
  if (labels.length !== b) throw new Error(`crossEntropy: got ${labels.length} labels for ${b} rows of logits`);
  const onehot = new Float32Array(b * k);
  for (let i = 0; i < b; i++) {
    const l = labels[i] as number;
    if (!Number.isInteger(l) || l < 0 || l >= k)
      throw new Error(`crossEntropy: label ${l} at ${i} is not in 0..${k - 1}`);
    onehot[i * k + l] = 1;
  }
  const oh = fromArray(onehot, [b, k], { dtype: logits.dtype, backend: logits.backend.name });
  return neg(mean(sum(mul(oh, logSoftmax(logits, -1)), [1])));
}
