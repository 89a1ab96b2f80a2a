// BPDA+EOT as DiffPure runs it: NVlabs/DiffPure 985703f, bpda_eot/bpda_eot_attack.py (BPDA_EOT_Attack, adapted
// from point0bar1/ebm-defense), step for step in float32 and the official order of operations.
//
// The defence is split into a purifier (stochastic; row r draws from keys[r]) and a classifier, because BPDA
// needs the split: the purified batch is computed without a graph and d loss / d purified is applied to x, i.e.
// the purifier's backward is the identity (Athalye et al.'s Backward Pass Differentiable Approximation).
//
//   correct(X, reps)  = argmax(mean over reps of classify(purify(X repeated reps times))) == y   (logit averaging)
//   defended = correct(X, attack_reps); rows with correct 0 are re-checked alone: defended = correct(X_i, defense_reps)
//   X_adv = X
//   for step in 0..steps:
//     P = purify(X_adv repeated attack_reps times), detached
//     loss = CrossEntropy(mean over reps of classify(P), y), batch MEAN; g = mean over reps of d loss / d P
//     c = argmax(mean logits) == y; rows with c 0 that are still defended are re-checked with defense_reps
//     record X_adv for rows that just became undefended
//     if step < steps: X_adv = clamp(min(X + eps, max(X - eps, X_adv + eta sign(g))), 0, 1)
//     stop when no row is defended
//   robust = defended after the last evaluation
//
// Official quirks kept: no random start (ebm-defense had one); the loss is the batch mean of the CE of the
// rep-averaged LOGITS; the verdict is monotone ("once broken stays broken": only rows still defended are
// re-checked, and a re-check can only confirm the break or keep the row defended); the last step does not update,
// so the returned images are the ones last evaluated; every row is updated, broken or not; the L2 step is
// eta g / ||g||_2 (no epsilon) and the projection divides by ||X_adv - X|| + 1e-10.
//
// Differences that change no result: the official code re-checks broken rows one at a time; here they go through
// the purifier together (each row draws from its own keys, so batching changes nothing); and the gradient of the
// last evaluation, which the official code computes and never uses, is not computed.
//
// Not kept: the official attack_all runs N // batch_size batches (at least one), so when batch_size does not
// divide N the last N % batch_size images are silently never attacked nor counted. Here every image passed in is
// attacked; callers shard as they like (each row's result depends only on its own keys).

import { fromArray } from '../../tensor/prims/creation.js';
import { withGradMode } from '../../tensor/runtime.js';
import { type Tensor, tidy } from '../../tensor/tensor.js';
import { MAX_EOT_ROWS } from './eot.js';
import { crossEntropyLoss } from './losses.js';
import {
  type AttackModel,
  type AttackResult,
  type Images,
  letEventLoopRun,
  logitsAndGrad,
  logitsOf,
  type NoiseKeys,
  predictions,
  takeRows,
  tileRows,
} from './model.js';
import {
  checkAttackInputs,
  checkLabelRange,
  clamp01,
  finiteNonNegative,
  type Norm,
  positiveInt,
  sign,
} from './projections.js';
import { type AttackRandom, KeyedRandom } from './random.js';

const f = Math.fround;

/** A purifier: x [B, C, H, W] in [0, 1] -> purified images of the same shape; row r draws from keys[r]. */
export type Purifier = (x: Tensor, keys: NoiseKeys) => Tensor;

/** A purification defence split as BPDA needs it. */
export interface PurifiedClassifier {
  readonly purify: Purifier;
  /** Purified images [B, C, H, W] -> logits [B, K] (deterministic). */
  readonly classify: (x: Tensor) => Tensor;
  /** Backend the inputs are created on (default: the current backend). */
  readonly backend?: string;
}

/**
 * How the attack gradient passes the purifier: 'bpda' (default; identity backward, the official attack) or
 * 'full' (the purifier's own gradient: then this is PGD-EOT with BPDA+EOT's loss, step and verdict).
 */
export type BpdaGradient = 'bpda' | 'full';

export interface BpdaEotOptions {
  /** 'Linf' (default; official 'l_inf') or 'L2' ('l_2'). */
  norm?: Norm;
  /** Radius (default 8/255). */
  eps?: number;
  /** adv_steps (default 50); steps + 1 evaluations. */
  steps?: number;
  /** adv_eta (default 2/255). */
  stepSize?: number;
  /** Purifications per attack evaluation and gradient (default 15). */
  eotAttackReps?: number;
  /** Purifications that confirm a break (default 150; 0 = no confirmation, the attack evaluation decides). */
  eotDefenseReps?: number;
  /** Default 'bpda'. */
  gradient?: BpdaGradient;
  /** Rows per purifier/classifier call (default MAX_EOT_ROWS); changes nothing but speed and memory. */
  maxRows?: number;
  /** Seed of the purifier's draws (default 0). */
  seed?: number;
  /** Source of the purifier keys (default KeyedRandom(seed)). BPDA+EOT draws no random numbers itself. */
  random?: AttackRandom;
  /** Index of each row in the whole data set (default 0..B-1): the key of its random numbers. */
  sampleIds?: readonly number[];
  /** Name in random purposes and messages (default 'bpda-eot'). */
  name?: string;
  /** Called after the clean evaluation and after every step's evaluation (for tests and progress). */
  trace?: (e: BpdaEotTrace) => void;
}

export type BpdaEotTrace =
  | { kind: 'clean'; correct: boolean[]; defended: boolean[] }
  | {
      kind: 'step';
      /** 0-based step; the evaluation of step s is row s + 1 of classPath. */
      step: number;
      /** The images evaluated at this step (X_adv after s updates). */
      x: Float32Array;
      /** The attack_reps verdict (before the defense_reps confirmation). */
      correct: boolean[];
      defended: boolean[];
      /** Rep-averaged logits [B, K]. */
      logits: Float32Array;
      k: number;
      /** The batch-mean cross-entropy of the rep-averaged logits. */
      loss: number;
    };

export interface BpdaEotResult extends AttackResult {
  /**
   * Official ims_adv: for rows that broke, X_adv at the evaluation where they broke; for rows still defended,
   * the last X_adv; the clean x for rows not defended from the start.
   */
  adv: Images;
  /** Defended after the last evaluation (official class_path[-1]). */
  robust: boolean[];
  /** Official class_path [steps + 2][B]: defended after the clean evaluation, then after each step (monotone). */
  classPath: boolean[][];
  /** Steps evaluated (steps + 1 unless every row broke earlier). */
  evaluations: number;
}

/** purify(x, keys) without a graph, on the host; the purifier must keep the shape. */
async function purifiedOnHost(m: PurifiedClassifier, x: Images, keys: NoiseKeys, name: string): Promise<Images> {
  await letEventLoopRun();
  const xt = fromArray(x.data, x.shape, { backend: m.backend });
  const p = withGradMode(false, () => tidy(() => m.purify(xt, keys)));
  try {
    if (p.shape.length !== 4 || p.shape.some((v, i) => v !== x.shape[i])) {
      throw new Error(
        `${name}: the purifier returned shape [${p.shape.join(', ')}] for images [${x.shape.join(', ')}]; ` +
          'it must keep the shape',
      );
    }
    return { data: Float32Array.from(await p.data()), shape: x.shape };
  } finally {
    xt.dispose();
    p.dispose();
  }
}

type Mode = 'none' | BpdaGradient;

interface Evaluation {
  /** Rep-averaged logits [B, K]. */
  mean: Float32Array;
  k: number;
  correct: boolean[];
  /** Batch-mean CE of the averaged logits. */
  loss: number;
  /** mean over reps of d loss / d input (null for mode 'none'). */
  grad: Float32Array | null;
}

/**
 * Official purify_and_predict: `reps` purifications of x stacked along the batch ([x; x; ...], copy c of row r
 * with key keyOf(c, r)), logits averaged over the copies, the CE (batch mean) of the average and, unless mode is
 * 'none', the gradient of that loss averaged over the copies: in d purified ('bpda') or in d x ('full').
 */
async function purifyAndPredict(
  m: PurifiedClassifier,
  x: Images,
  y: Int32Array,
  reps: number,
  keyOf: (c: number, r: number) => number,
  mode: Mode,
  maxRows: number,
  name: string,
): Promise<Evaluation> {
  const n = x.shape[0];
  const per = Math.max(1, Math.min(reps, Math.floor(maxRows / n)));
  const chunks: { c0: number; copies: number }[] = [];
  for (let c0 = 0; c0 < reps; c0 += per) chunks.push({ c0, copies: Math.min(per, reps - c0) });
  const keysOf = (c0: number, copies: number) => {
    const keys: number[] = [];
    for (let c = c0; c < c0 + copies; c++) for (let r = 0; r < n; r++) keys.push(keyOf(c, r));
    return keys;
  };
  // what the classifier of each chunk sees and how: BPDA classifies the detached purified images
  const classifyOnly: AttackModel = { classify: (p) => m.classify(p), backend: m.backend };
  const endToEnd: AttackModel = { classify: (v, keys) => m.classify(m.purify(v, keys)), backend: m.backend };
  const model = mode === 'bpda' ? classifyOnly : endToEnd;
  const inputOf = async (copies: number, keys: NoiseKeys): Promise<Images> => {
    const tiled = copies === 1 ? x : tileRows(x, copies);
    return mode === 'bpda' ? purifiedOnHost(m, tiled, keys, name) : tiled;
  };

  let k = 0;
  // logits of every copy, [reps * n, K] in copy order; the averaged logits; the CE and its cotangent per copy
  let all: Float32Array | null = null;
  const stats = (logits: Float32Array, kk: number) => {
    k = kk;
    checkLabelRange(name, y, k);
    // mean(0) of the [reps, n, K] view: a float32 sum over the copies in order, then / reps (torch CPU mean)
    const mean = new Float32Array(n * k);
    for (let c = 0; c < reps; c++)
      for (let j = 0; j < n * k; j++) mean[j] = f((mean[j] as number) + (logits[c * n * k + j] as number));
    for (let j = 0; j < n * k; j++) mean[j] = f((mean[j] as number) / reps);
    const ce = crossEntropyLoss(mean, k, y);
    let loss = 0;
    for (const l of ce.loss) loss = f(loss + l);
    loss = f(loss / n);
    // d loss / d logits of copy c: (softmax - onehot) / n from the batch mean, / reps from the logit average
    const dz = new Float32Array(n * k);
    for (let j = 0; j < n * k; j++) dz[j] = f(f((ce.dz[j] as number) / n) / reps);
    return { mean, loss, dz };
  };

  let grad: Float32Array | null = null;
  let st: ReturnType<typeof stats> | undefined;
  if (mode !== 'none' && chunks.length === 1) {
    // one call: the forward's logits give the cotangent of the same call's backward
    const keys = keysOf(0, reps);
    const input = await inputOf(reps, keys);
    const out = await logitsAndGrad(model, input, keys, (z, kk) => {
      const s = stats(z, kk);
      st = s;
      const dz = new Float32Array(z.length);
      for (let c = 0; c < reps; c++) dz.set(s.dz, c * n * kk);
      return { loss: new Float32Array(z.length / kk), dz };
    });
    grad = out.grad;
  } else {
    // chunked: all logits first (the cotangent needs the average over every copy), then one backward per chunk
    const inputs: Images[] = [];
    for (const { c0, copies } of chunks) {
      const keys = keysOf(c0, copies);
      const input = await inputOf(copies, keys);
      if (mode === 'bpda') inputs.push(input);
      const out = await logitsOf(model, input, keys);
      if (!all) all = new Float32Array(reps * n * out.k);
      all.set(out.logits, c0 * n * out.k);
      k = out.k;
    }
    const s = stats(all as Float32Array, k);
    st = s;
    if (mode !== 'none') {
      grad = new Float32Array(reps * x.data.length);
      for (const [i, { c0, copies }] of chunks.entries()) {
        const keys = keysOf(c0, copies);
        const input = mode === 'bpda' ? (inputs[i] as Images) : await inputOf(copies, keys);
        const dz = new Float32Array(copies * n * k);
        for (let c = 0; c < copies; c++) dz.set(s.dz, c * n * k);
        const out = await logitsAndGrad(model, input, keys, (z) => ({ loss: new Float32Array(z.length / k), dz }));
        grad.set(out.grad, c0 * x.data.length);
      }
    }
  }

  let g: Float32Array | null = null;
  if (grad) {
    // X_grads.view([reps, ...]).mean(dim=0): a float32 sum over the copies in order, then / reps
    g = new Float32Array(x.data.length);
    for (let c = 0; c < reps; c++) {
      const o = c * x.data.length;
      for (let j = 0; j < g.length; j++) g[j] = f((g[j] as number) + (grad[o + j] as number));
    }
    for (let j = 0; j < g.length; j++) g[j] = f((g[j] as number) / reps);
  }
  const { mean, loss } = st as ReturnType<typeof stats>;
  const correct = Array.from(predictions(mean, k), (p, r) => p === y[r]);
  return { mean, k, correct, loss, grad: g };
}

/**
 * Official pgd_update, in place: Linf X_adv + eta sign(g), clipped to [X - eps, X + eps] and [0, 1]; L2
 * X_adv + eta g / ||g||, projected onto the ball by X + min(dist, eps) (X_adv - X) / (dist + 1e-10), clamped.
 */
export function bpdaUpdate(
  xAdv: Float32Array,
  grad: Float32Array,
  x: Float32Array,
  d: number,
  norm: Norm,
  eps: number,
  eta: number,
): void {
  const eps32 = f(eps);
  const eta32 = f(eta);
  if (norm === 'Linf') {
    for (let j = 0; j < xAdv.length; j++) {
      const v = f((xAdv[j] as number) + f(eta32 * sign(grad[j] as number)));
      const lo = f((x[j] as number) - eps32);
      const hi = f((x[j] as number) + eps32);
      xAdv[j] = clamp01(Math.min(hi, Math.max(lo, v)));
    }
    return;
  }
  const tiny = f(1e-10);
  for (let o = 0; o < xAdv.length; o += d) {
    let s = 0;
    for (let j = o; j < o + d; j++) s += (grad[j] as number) * (grad[j] as number);
    const gn = f(Math.sqrt(f(s)));
    // the official step divides by ||g|| with no epsilon: a zero gradient gives 0 / 0 = NaN images. Here such a
    // row takes no step instead (then the projection below leaves it where it is).
    if (gn > 0) {
      for (let j = o; j < o + d; j++) xAdv[j] = f((xAdv[j] as number) + f(f(eta32 * (grad[j] as number)) / gn));
    }
    let t = 0;
    for (let j = o; j < o + d; j++) {
      const e = f((xAdv[j] as number) - (x[j] as number));
      t += e * e;
    }
    const dist = f(Math.sqrt(f(t)));
    const m = Math.min(dist, eps32);
    const den = f(dist + tiny);
    for (let j = o; j < o + d; j++) {
      const e = f((xAdv[j] as number) - (x[j] as number));
      xAdv[j] = clamp01(f((x[j] as number) + f(f(m * e) / den)));
    }
  }
}

/**
 * BPDA+EOT (official BPDA_EOT_Attack.attack_batch) on a purification defence. Purification copy c of image id at
 * evaluation `stage` ('clean' or the step) uses key random.noiseKey([name, stage, 'attack', c], id); the
 * confirming re-checks use [name, stage, 'defense', c].
 */
export async function bpdaEot(
  model: PurifiedClassifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: BpdaEotOptions = {},
): Promise<BpdaEotResult> {
  const name = opts.name ?? 'bpda-eot';
  if (typeof model?.purify !== 'function' || typeof model?.classify !== 'function')
    throw new Error(`${name}: model must be { purify(x, keys), classify(x) }`);
  const norm = opts.norm ?? 'Linf';
  const eps = opts.eps ?? 8 / 255;
  const y = Int32Array.from({ length: labels.length }, (_, i) => labels[i] as number);
  const ids = checkAttackInputs(name, x, labels, norm, eps, opts.sampleIds);
  const steps = positiveInt(name, 'steps', opts.steps ?? 50, 0);
  const eta = finiteNonNegative(name, 'stepSize', opts.stepSize ?? 2 / 255);
  const attackReps = positiveInt(name, 'eotAttackReps', opts.eotAttackReps ?? 15);
  const defenseReps = positiveInt(name, 'eotDefenseReps', opts.eotDefenseReps ?? 150, 0);
  const maxRows = positiveInt(name, 'maxRows', opts.maxRows ?? MAX_EOT_ROWS);
  const gradient = opts.gradient ?? 'bpda';
  if (gradient !== 'bpda' && gradient !== 'full')
    throw new Error(`${name}: gradient must be 'bpda' or 'full', got '${gradient}'`);
  const random = opts.random ?? new KeyedRandom(opts.seed ?? 0);
  const trace = opts.trace ?? (() => {});

  const n = x.shape[0];
  const d = x.data.length / n;

  /** Official eval_and_bpda_eot_grad: the attack evaluation, then the confirmation of new breaks. */
  const evaluate = async (stage: 'clean' | number, xv: Float32Array, defended: boolean[], mode: Mode) => {
    const ev = await purifyAndPredict(
      model,
      { data: xv, shape: x.shape },
      y,
      attackReps,
      (c, r) => random.noiseKey([name, stage, 'attack', c], ids[r] as number),
      mode,
      maxRows,
      name,
    );
    const next = defended.slice();
    if (defenseReps > 0) {
      // only rows still defended are re-checked: a broken row stays broken (official eot_defense_verification)
      const rows: number[] = [];
      for (let r = 0; r < n; r++) if (!ev.correct[r] && defended[r]) rows.push(r);
      if (rows.length > 0) {
        const check = await purifyAndPredict(
          model,
          takeRows({ data: xv, shape: x.shape }, rows),
          Int32Array.from(rows, (r) => y[r] as number),
          defenseReps,
          (c, i) => random.noiseKey([name, stage, 'defense', c], ids[rows[i] as number] as number),
          'none',
          maxRows,
          name,
        );
        rows.forEach((r, i) => {
          next[r] = check.correct[i] as boolean;
        });
      }
    } else {
      for (let r = 0; r < n; r++) next[r] = (defended[r] as boolean) && (ev.correct[r] as boolean);
    }
    return { ev, defended: next };
  };

  const clean = await evaluate('clean', x.data, new Array<boolean>(n).fill(true), 'none');
  let defended = clean.defended;
  trace({ kind: 'clean', correct: clean.ev.correct, defended: defended.slice() });
  const classPath: boolean[][] = [defended.slice()];
  const ims = new Float32Array(x.data.length);
  for (let r = 0; r < n; r++) if (!defended[r]) ims.set(x.data.subarray(r * d, (r + 1) * d), r * d);

  const xAdv = x.data.slice(); // QUIRK (official): no random start (ebm-defense's adv_rand_start is gone)
  let evaluations = 0;
  for (let step = 0; step <= steps; step++) {
    // the gradient of the last evaluation is never used (the last step does not update): not computed
    const out = await evaluate(step, xAdv, defended, step < steps ? gradient : 'none');
    evaluations++;
    const prev = defended;
    defended = out.defended;
    classPath.push(defended.slice());
    for (let r = 0; r < n; r++) if (prev[r] && !defended[r]) ims.set(xAdv.subarray(r * d, (r + 1) * d), r * d); // just broken: keep X_adv
    trace({
      kind: 'step',
      step,
      x: xAdv.slice(),
      correct: out.ev.correct,
      defended: defended.slice(),
      logits: out.ev.mean,
      k: out.ev.k,
      loss: out.ev.loss,
    });
    // QUIRK (official): no update after the last evaluation, so the returned images are the ones evaluated
    if (step < steps) bpdaUpdate(xAdv, out.ev.grad as Float32Array, x.data, d, norm, eps, eta);
    if (!defended.some(Boolean)) break;
  }
  while (classPath.length < steps + 2) classPath.push(new Array<boolean>(n).fill(false));
  for (let r = 0; r < n; r++) if (defended[r]) ims.set(xAdv.subarray(r * d, (r + 1) * d), r * d);
  return { adv: { data: ims, shape: x.shape }, robust: defended.slice(), classPath, evaluations };
}
