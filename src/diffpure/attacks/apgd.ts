// APGD (Croce & Hein, ICML 2020) and APGD-T, as fra31/auto-attack 6482e4d's APGDAttack / APGDAttack_targeted
// (autopgd_base.py) run them, step for step: the random start, the momentum step, the checkpoints with their
// step-size halving and restart from the best point, and the bookkeeping of fooled points. The update arithmetic is
// float32 in the official order of operations, so trajectories replay the official ones (test/diffpure/attacks).
//
// Official quirks kept (named where they happen): the first checkpoint compares loss_steps[0] with
// loss_steps[-1], which wraps to the last (still zero) row; x_best_adv is overwritten at every misclassified iterate
// (the last one wins); unfooled points come back as the clean image; loss, logits and the "fooled" check use only
// the last EOT sample.

import { eotGradient, tileLabels } from './eot.js';
import { crossEntropyLoss, dlrLoss, dlrTargetedLoss } from './losses.js';
import {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  logitsOf,
  predictions,
  takeRows,
} from './model.js';
import { checkAttackInputs, checkLabelRange, clamp01, type Norm } from './projections.js';
import { type AttackRandom, KeyedRandom } from './random.js';

const f = Math.fround;

export interface ApgdOptions {
  norm?: Norm;
  eps: number;
  /** Iterations per run (default 100). */
  nIter?: number;
  /** Random restarts (default 1). */
  nRestarts?: number;
  /** EOT samples per gradient (default 1; AutoAttack 'rand' uses 20). */
  eotIter?: number;
  /** EOT samples per forward (default: as many as MAX_EOT_ROWS rows allow). */
  eotBatch?: number;
  /** Step-size decrease threshold (default 0.75). */
  rho?: number;
  /** 'ce' (default) or 'dlr'; APGD-T always uses the targeted DLR. */
  loss?: 'ce' | 'dlr';
  /** Seed of the random starts and of a stochastic classifier's draws (default 0). */
  seed?: number;
  /** Source of random numbers (default KeyedRandom(seed)); ReplayRandom replays the official draws. */
  random?: AttackRandom;
  /** Index of each row in the whole data set (default 0..B-1): the key of its random numbers. */
  sampleIds?: readonly number[];
  /** Name in random purposes and logs (default 'apgd-ce' / 'apgd-dlr' / 'apgd-t'). */
  name?: string;
  /** Called with per-run and per-iteration state (for tests and progress). */
  trace?: (e: ApgdTrace) => void;
  /** AutoAttack's warnings (zero gradients at the start of a DLR run); default console.warn. */
  onWarning?: (message: string) => void;
}

export type ApgdTrace =
  | {
      kind: 'run';
      run: number;
      rows: number[];
      targets: Int32Array | null;
      xInit: Float32Array;
      lossInit: Float32Array;
    }
  | {
      kind: 'iter';
      run: number;
      i: number;
      loss: Float32Array;
      stepSize: Float32Array;
      x: Float32Array;
      fooled: boolean[];
    }
  | { kind: 'checkpoint'; run: number; i: number; halved: boolean[] };

/** k0, k_min and the decrement of the checkpoint intervals (official init_hyperparam). */
export function apgdCheckpointParams(nIter: number): { k0: number; kMin: number; dec: number } {
  return {
    k0: Math.max(Math.trunc(0.22 * nIter), 1),
    kMin: Math.max(Math.trunc(0.06 * nIter), 1),
    dec: Math.max(Math.trunc(0.03 * nIter), 1),
  };
}

/** The 0-based iterations at which APGD checks its step size (for n_iter 100: 21, 40, 56, 69, 79, 86, 92, 98). */
export function apgdCheckpoints(nIter: number): number[] {
  const { k0, kMin, dec } = apgdCheckpointParams(nIter);
  const out: number[] = [];
  let k = k0;
  let counter = 0;
  for (let i = 0; i < nIter; i++) {
    counter++;
    if (counter === k) {
      out.push(i);
      k = Math.max(k - dec, kMin);
      counter = 0;
    }
  }
  return out;
}

/**
 * APGD's step-size rule for a batch of images, fed one iteration's losses at a time: it keeps loss_best (strict
 * improvement) and, at each checkpoint, says which images halve their step and restart from their best point.
 * It depends only on the losses, so it can be checked against the official loss_steps directly.
 */
export class StepSizeRule {
  readonly lossBest: Float32Array;
  private lossBestLast: Float32Array;
  private reducedLast: boolean[];
  private readonly lossSteps: Float32Array[];
  private k: number;
  private counter = 0;
  private readonly kMin: number;
  private readonly dec: number;

  constructor(
    lossInit: Float32Array,
    private readonly nIter: number,
    private readonly rho: number,
  ) {
    const p = apgdCheckpointParams(nIter);
    this.k = p.k0;
    this.kMin = p.kMin;
    this.dec = p.dec;
    this.lossBest = lossInit.slice();
    this.lossBestLast = lossInit.slice();
    this.reducedLast = new Array<boolean>(lossInit.length).fill(true);
    this.lossSteps = Array.from({ length: nIter }, () => new Float32Array(lossInit.length));
  }

  /** The losses of iteration i: which images improved their best loss, and at a checkpoint which halve. */
  observe(i: number, loss: Float32Array): { improved: boolean[]; halved: boolean[] | null } {
    const n = loss.length;
    this.lossSteps[i] = loss.slice();
    const improved: boolean[] = [];
    for (let r = 0; r < n; r++) {
      const up = (loss[r] as number) > (this.lossBest[r] as number);
      improved.push(up);
      if (up) this.lossBest[r] = loss[r] as number;
    }
    this.counter++;
    if (this.counter !== this.k) return { improved, halved: null };
    const k = this.k;
    const thr = f(k * this.rho);
    const halved: boolean[] = [];
    for (let r = 0; r < n; r++) {
      let count = 0;
      for (let c = 0; c < k; c++) {
        // QUIRK: index i - c - 1 = -1 wraps to the last row of loss_steps (still 0) at the first checkpoint
        const prev = this.lossSteps[(i - c - 1 + this.nIter) % this.nIter] as Float32Array;
        if (((this.lossSteps[i - c] as Float32Array)[r] as number) > (prev[r] as number)) count++;
      }
      const oscillating = count <= thr;
      const noProgress = !this.reducedLast[r] && (this.lossBestLast[r] as number) >= (this.lossBest[r] as number);
      halved.push(oscillating || noProgress);
    }
    this.reducedLast = halved;
    this.lossBestLast = this.lossBest.slice();
    this.k = Math.max(k - this.dec, this.kMin);
    this.counter = 0;
    return { improved, halved };
  }
}

interface RunSpec {
  loss: 'ce' | 'dlr' | 'dlr-targeted';
  run: number;
  /** Random purpose of the start: [name, ...] */
  purpose: (string | number)[];
  targets: Int32Array | null;
}

interface Resolved {
  norm: Norm;
  eps: number;
  nIter: number;
  nRestarts: number;
  eotIter: number;
  eotBatch: number | undefined;
  rho: number;
  random: AttackRandom;
  trace: (e: ApgdTrace) => void;
  warn: (message: string) => void;
}

function resolve(o: ApgdOptions): Resolved {
  const nIter = o.nIter ?? 100;
  const nRestarts = o.nRestarts ?? 1;
  const eotIter = o.eotIter ?? 1;
  for (const [k, v] of [
    ['nIter', nIter],
    ['nRestarts', nRestarts],
    ['eotIter', eotIter],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`apgd: ${k} must be a positive integer, got ${v}`);
  }
  const rho = o.rho ?? 0.75;
  if (!(rho > 0 && rho <= 1)) throw new Error(`apgd: rho must be in (0, 1], got ${rho}`);
  return {
    norm: o.norm ?? 'Linf',
    eps: o.eps,
    nIter,
    nRestarts,
    eotIter,
    eotBatch: o.eotBatch,
    rho,
    random: o.random ?? new KeyedRandom(o.seed ?? 0),
    trace: o.trace ?? (() => {}),
    warn: o.onWarning ?? ((m) => console.warn(`Warning: ${m}`)),
  };
}

/** x / (max|x| + 1e-12) or x / (||x||_2 + 1e-12) per row, in float32 (official normalize). */
function normalizeRows(v: Float32Array, d: number, norm: Norm): Float32Array {
  const out = new Float32Array(v.length);
  for (let o = 0; o < v.length; o += d) {
    let t = 0;
    if (norm === 'Linf') for (let j = o; j < o + d; j++) t = Math.max(t, Math.abs(v[j] as number));
    else {
      for (let j = o; j < o + d; j++) t += (v[j] as number) * (v[j] as number);
      t = f(Math.sqrt(f(t)));
    }
    const den = f(t + 1e-12);
    for (let j = o; j < o + d; j++) out[j] = (v[j] as number) / den;
  }
  return out;
}

/** ||v||_2 per row (float32 result). */
function l2Rows(v: Float32Array, d: number): Float32Array {
  const out = new Float32Array(v.length / d);
  for (let r = 0; r < out.length; r++) {
    let t = 0;
    for (let j = r * d; j < (r + 1) * d; j++) t += (v[j] as number) * (v[j] as number);
    out[r] = Math.sqrt(f(t));
  }
  return out;
}

/** Official L2 projection: clamp(x + n(v - x) min(eps, ||v - x||), 0, 1), n(u) = u / (||u|| + 1e-12). */
function projectL2(v: Float32Array, x: Float32Array, d: number, eps32: number): Float32Array {
  const diff = new Float32Array(v.length);
  for (let j = 0; j < v.length; j++) diff[j] = (v[j] as number) - (x[j] as number);
  const n = normalizeRows(diff, d, 'L2');
  const len = l2Rows(diff, d);
  const out = new Float32Array(v.length);
  for (let r = 0; r < len.length; r++) {
    const m = Math.min(eps32, len[r] as number);
    for (let j = r * d; j < (r + 1) * d; j++) out[j] = clamp01(f((x[j] as number) + f((n[j] as number) * m)));
  }
  return out;
}

/**
 * One APGD run (official attack_single_run) on images x with labels y. Returns x_best_adv, the running acc flags
 * and the final best loss.
 */
async function singleRun(
  model: AttackModel,
  x: Images,
  y: Int32Array,
  ids: readonly number[],
  spec: RunSpec,
  o: Resolved,
): Promise<{ bestAdv: Float32Array; acc: boolean[]; lossBest: Float32Array }> {
  const n = x.shape[0];
  const d = x.data.length / n;
  const eps32 = f(o.eps);
  const xs = x.data;
  const lo = new Float32Array(xs.length);
  const hi = new Float32Array(xs.length);
  for (let j = 0; j < xs.length; j++) {
    lo[j] = (xs[j] as number) - eps32;
    hi[j] = (xs[j] as number) + eps32;
  }

  // random start: Linf t = 2u - 1 from torch.rand, L2 t = torch.randn; x + eps t / (||t|| + 1e-12), clamped
  let t: Float32Array;
  if (o.norm === 'Linf') {
    const u = o.random.uniform(spec.purpose, ids, d);
    t = new Float32Array(u.length);
    for (let j = 0; j < u.length; j++) t[j] = f(2 * (u[j] as number)) - 1;
  } else {
    t = o.random.normal(spec.purpose, ids, d);
  }
  const tn = normalizeRows(t, d, o.norm);
  let xAdv = new Float32Array(xs.length);
  for (let j = 0; j < xs.length; j++) xAdv[j] = clamp01(f((xs[j] as number) + f(eps32 * (tn[j] as number))));

  const lossOf = (z: Float32Array, k: number, c: number) =>
    spec.loss === 'ce'
      ? crossEntropyLoss(z, k, tileLabels(y, c))
      : spec.loss === 'dlr'
        ? dlrLoss(z, k, tileLabels(y, c))
        : dlrTargetedLoss(z, k, tileLabels(y, c), tileLabels(spec.targets as Int32Array, c));
  const gradAt = (xv: Float32Array, iter: number) =>
    eotGradient(
      model,
      { data: xv, shape: x.shape },
      o.eotIter,
      (e, r) => o.random.noiseKey([...spec.purpose, iter, e], ids[r] as number),
      lossOf,
      o.eotBatch,
    );

  let g = await gradAt(xAdv, 0);
  let grad = g.grad;
  const gradBest = grad.slice();
  if (spec.loss !== 'ce') {
    // check_zero_gradients: images whose DLR gradient vanishes at the start cannot be attacked by gradients
    let zero = 0;
    for (let r = 0; r < n; r++) if (grad.subarray(r * d, (r + 1) * d).every((v) => v === 0)) zero++;
    if (zero > 0) {
      o.warn(
        `there are ${zero} points with zero gradient! This might lead to unreliable evaluation with gradient-based attacks.`,
      );
    }
  }
  const acc = Array.from(predictions(g.logits, g.k), (p, r) => p === y[r]);
  const xBest = xAdv.slice();
  const bestAdv = xAdv.slice();
  o.trace({
    kind: 'run',
    run: spec.run,
    rows: [...ids],
    targets: spec.targets,
    xInit: xAdv.slice(),
    lossInit: g.loss.slice(),
  });

  const stepSize = new Float32Array(n).fill(f(2 * o.eps)); // alpha = 2 for Linf and L2
  let xOld = xAdv.slice();
  const rule = new StepSizeRule(g.loss, o.nIter, o.rho);

  for (let i = 0; i < o.nIter; i++) {
    const a = i > 0 ? 0.75 : 1.0;
    const b = f(1 - a);
    const grad2 = new Float32Array(xs.length);
    for (let j = 0; j < xs.length; j++) grad2[j] = (xAdv[j] as number) - (xOld[j] as number);
    xOld = xAdv;
    const next = new Float32Array(xs.length);
    if (o.norm === 'Linf') {
      for (let r = 0; r < n; r++) {
        const eta = stepSize[r] as number;
        for (let j = r * d; j < (r + 1) * d; j++) {
          const xa = xAdv[j] as number;
          const gj = grad[j] as number;
          const s = gj > 0 ? 1 : gj < 0 ? -1 : 0;
          let x1 = f(xa + f(eta * s));
          x1 = clamp01(Math.min(Math.max(x1, lo[j] as number), hi[j] as number));
          const v = f(f(xa + f(f(x1 - xa) * a)) + f((grad2[j] as number) * b));
          next[j] = clamp01(Math.min(Math.max(v, lo[j] as number), hi[j] as number));
        }
      }
    } else {
      const gn = normalizeRows(grad, d, 'L2');
      const step = new Float32Array(xs.length);
      for (let r = 0; r < n; r++) {
        const eta = stepSize[r] as number;
        for (let j = r * d; j < (r + 1) * d; j++) step[j] = f((xAdv[j] as number) + f(eta * (gn[j] as number)));
      }
      const x1 = projectL2(step, xs, d, eps32);
      const mixed = new Float32Array(xs.length);
      for (let j = 0; j < xs.length; j++) {
        const xa = xAdv[j] as number;
        mixed[j] = f(f(xa + f(f((x1[j] as number) - xa) * a)) + f((grad2[j] as number) * b));
      }
      next.set(projectL2(mixed, xs, d, eps32));
    }
    xAdv = next;

    g = await gradAt(xAdv, i + 1);
    grad = g.grad;
    const pred = predictions(g.logits, g.k);
    const fooledNow: boolean[] = [];
    for (let r = 0; r < n; r++) {
      const ok = pred[r] === y[r];
      fooledNow.push(!ok);
      if (!ok) {
        acc[r] = false;
        bestAdv.set(xAdv.subarray(r * d, (r + 1) * d), r * d); // QUIRK: the last misclassified iterate wins
      }
    }
    const y1 = g.loss;
    o.trace({
      kind: 'iter',
      run: spec.run,
      i,
      loss: y1.slice(),
      stepSize: stepSize.slice(),
      x: xAdv,
      fooled: fooledNow,
    });
    const { improved, halved } = rule.observe(i, y1);
    for (let r = 0; r < n; r++) {
      if (!improved[r]) continue;
      xBest.set(xAdv.subarray(r * d, (r + 1) * d), r * d);
      gradBest.set(grad.subarray(r * d, (r + 1) * d), r * d);
    }
    if (halved) {
      if (halved.some(Boolean)) {
        xAdv = xAdv.slice();
        grad = grad.slice();
        for (let r = 0; r < n; r++) {
          if (!halved[r]) continue;
          stepSize[r] = (stepSize[r] as number) / 2;
          xAdv.set(xBest.subarray(r * d, (r + 1) * d), r * d);
          grad.set(gradBest.subarray(r * d, (r + 1) * d), r * d);
        }
      }
      o.trace({ kind: 'checkpoint', run: spec.run, i, halved });
    }
  }
  return { bestAdv, acc, lossBest: rule.lossBest };
}

function labelsArray(y: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: y.length }, (_, i) => y[i] as number);
}

function rowsWhere(flags: readonly boolean[]): number[] {
  const out: number[] = [];
  flags.forEach((v, i) => {
    if (v) out.push(i);
  });
  return out;
}

/**
 * APGD with the CE or DLR loss (official APGDAttack.perturb): the clean check, then `nRestarts` runs on the points
 * still correctly classified.
 */
export async function apgd(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: ApgdOptions,
): Promise<AttackResult> {
  const model = asModel(modelOrFn);
  const o = resolve(opts);
  const name = opts.name ?? (opts.loss === 'dlr' ? 'apgd-dlr' : 'apgd-ce');
  const y = labelsArray(labels);
  const ids = checkAttackInputs(name, x, y, o.norm, o.eps, opts.sampleIds);
  const d = x.data.length / x.shape[0];
  const clean = await logitsOf(
    model,
    x,
    ids.map((id) => o.random.noiseKey([name, 'clean'], id)),
  );
  checkLabelRange(name, y, clean.k);
  if (opts.loss === 'dlr' && clean.k < 3)
    throw new Error(`apgd: the DLR loss needs at least 3 classes; the classifier has ${clean.k}`);
  const acc = Array.from(predictions(clean.logits, clean.k), (p, r) => p === y[r]);
  const adv = x.data.slice();
  for (let restart = 0; restart < o.nRestarts; restart++) {
    const rows = rowsWhere(acc);
    if (rows.length === 0) break;
    const sub = takeRows(x, rows);
    const res = await singleRun(
      model,
      sub,
      Int32Array.from(rows, (r) => y[r] as number),
      rows.map((r) => ids[r] as number),
      { loss: opts.loss ?? 'ce', run: restart, purpose: [name, restart], targets: null },
      o,
    );
    rows.forEach((r, i) => {
      if (res.acc[i]) return;
      acc[r] = false;
      adv.set(res.bestAdv.subarray(i * d, (i + 1) * d), r * d);
    });
  }
  return { adv: { data: adv, shape: x.shape }, robust: acc };
}

export interface ApgdTargetedOptions extends Omit<ApgdOptions, 'loss'> {
  /** Target classes: the 2nd .. (n+1)-th most likely (default 9). */
  nTargetClasses?: number;
}

/**
 * APGD-T (official APGDAttack_targeted.perturb): for target class 2..n+1 (the class ranked there by the clean
 * logits) and each restart, one run with the targeted DLR loss on the points still correctly classified.
 */
export async function apgdTargeted(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: ApgdTargetedOptions,
): Promise<AttackResult> {
  const model = asModel(modelOrFn);
  const o = resolve(opts);
  const name = opts.name ?? 'apgd-t';
  const y = labelsArray(labels);
  const ids = checkAttackInputs(name, x, y, o.norm, o.eps, opts.sampleIds);
  const nTargets = opts.nTargetClasses ?? 9;
  const d = x.data.length / x.shape[0];
  const clean = await logitsOf(
    model,
    x,
    ids.map((id) => o.random.noiseKey([name, 'clean'], id)),
  );
  checkLabelRange(name, y, clean.k);
  if (clean.k < 4)
    throw new Error(`apgd-t: the targeted DLR loss needs at least 4 classes; the classifier has ${clean.k}`);
  if (!Number.isInteger(nTargets) || nTargets < 1 || nTargets > clean.k - 1) {
    throw new Error(`apgd-t: nTargetClasses must be in 1..${clean.k - 1} for ${clean.k} classes, got ${nTargets}`);
  }
  const acc = Array.from(predictions(clean.logits, clean.k), (p, r) => p === y[r]);
  const adv = x.data.slice();
  let run = 0;
  for (let tc = 2; tc <= nTargets + 1; tc++) {
    for (let restart = 0; restart < o.nRestarts; restart++) {
      const rows = rowsWhere(acc);
      if (rows.length === 0) continue;
      const sub = takeRows(x, rows);
      const subIds = rows.map((r) => ids[r] as number);
      // the target: the tc-th largest clean logit, from one more forward on the points still to fool (official)
      const out = await logitsOf(
        model,
        sub,
        subIds.map((id) => o.random.noiseKey([name, 'targets', tc, restart], id)),
      );
      const targets = new Int32Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const row = Array.from(out.logits.subarray(i * out.k, (i + 1) * out.k));
        const order = row.map((_, j) => j).sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
        targets[i] = order[tc - 1] as number;
      }
      const res = await singleRun(
        model,
        sub,
        Int32Array.from(rows, (r) => y[r] as number),
        subIds,
        { loss: 'dlr-targeted', run, purpose: [name, tc, restart], targets },
        o,
      );
      run++;
      rows.forEach((r, i) => {
        if (res.acc[i]) return;
        acc[r] = false;
        adv.set(res.bestAdv.subarray(i * d, (i + 1) * d), r * d);
      });
    }
  }
  return { adv: { data: adv, shape: x.shape }, robust: acc };
}
