// FAB (Croce & Hein, ICML 2020), untargeted and targeted (FAB-T), as fra31/auto-attack 6482e4d's FABAttack_PT
// (fab_pt.py, fab_base.py) runs it: per target class and restart, one attack_single_run on the points still robust,
// then perturb's success test (misclassified AND norm <= eps). The update arithmetic is float32 in the official
// order of operations, so runs replay the official ones (test/diffpure/attacks/fab.test.ts).
//
// One iteration at x1 (x0 the clean image):
//   linearise: targeted f = z_t - z_y, g = grad f; untargeted f_k = z_k - z_y, g_k = grad f_k for every k, keep the
//     k with the smallest |f_k| / ||g_k||_q (q the dual norm; f_y = 1e10 excludes y);
//   project x1 and x0 onto the box-constrained hyperplane {v : <g, v> = <g, x1> - f} (fab-projections.ts): d1, d2;
//   alpha = min(max(a1 / (a1 + a2), 0), alpha_max) with a = max(||d||_p, 1e-8);
//   x1 = clamp((x1 + eta d1)(1 - alpha) + (x0 + eta d2) alpha, 0, 1);
//   where argmax(model(x1)) != y: keep x1 if ||x1 - x0||_p is the smallest so far, then x1 = x0 + beta (x1 - x0).
//
// Official behaviour kept (named where it happens):
// - 6482e4d's constructor ignores targeted=True; AutoAttack sets attack.targeted = True afterwards. Here the two
//   versions are two functions: fab (AutoAttack 'plus') and fabTargeted (AutoAttack 'standard', FAB-T).
// - eps plays no part in the iterations of the first restart: it only scales the random start of restarts > 0
//   (0.5 * min(best norm so far, eps), and the best norm is reset per run, so always 0.5 * eps) and decides success.
// - attack_single_run predicts x again and attacks only the points it finds correctly classified; the targets come
//   from one more forward (la_target = argsort(model(x))[:, -target_class]), on the points still to fool.
// - "Fooled" means misclassified as any class, also in FAB-T; the best point is the misclassified iterate of
//   smallest norm, even when that norm exceeds eps (then perturb counts the run as failed).
// - The returned images are the clean x where no run succeeded.

import { vjp } from '../../autograd/engine.js';
import { fromArray } from '../../tensor/prims/creation.js';
import { withGradMode } from '../../tensor/runtime.js';
import type { Tensor } from '../../tensor/tensor.js';
import { projectionL2, projectionLinf } from './fab-projections.js';
import {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  logitsAndGrad,
  logitsOf,
  type NoiseKeys,
  predictions,
  takeRows,
} from './model.js';
import { checkAttackInputs, type Norm } from './projections.js';
import { type AttackRandom, type DrawPurpose, KeyedRandom } from './random.js';

const f = Math.fround;

/** The official "not found" norm (res2 = 1e10, exact in float32). */
export const FAB_NOT_FOUND = 1e10;

export interface FabOptions {
  norm?: Norm;
  /** Success radius (and the scale of the random start of restarts > 0). */
  eps: number;
  /** Iterations per run (default 100). */
  nIter?: number;
  /** Restarts per target class (default 1; restarts > 0 start at a random point). */
  nRestarts?: number;
  /** Largest weight of the step from the clean image (default 0.1). */
  alphaMax?: number;
  /** Overshoot of the projection step (default 1.05). */
  eta?: number;
  /** Backward step towards the clean image after a success (default 0.9). */
  beta?: number;
  /** Seed of the random starts and of a stochastic classifier's draws (default 0). */
  seed?: number;
  /** Source of random numbers (default KeyedRandom(seed)); ReplayRandom replays the official draws. */
  random?: AttackRandom;
  /** Index of each row in the whole data set (default 0..B-1): the key of its random numbers. */
  sampleIds?: readonly number[];
  /** Name in random purposes and logs (default 'fab' / 'fab-t'). */
  name?: string;
  /** Called with per-run and per-iteration state (for tests and progress). */
  trace?: (e: FabTrace) => void;
  /**
   * FAB-T: target classes, the 2nd .. (n+1)-th most likely (default 9). The untargeted fab ignores it, as the
   * official class keeps n_target_classes unused when targeted is False.
   */
  nTargetClasses?: number;
}

export type FabTargetedOptions = FabOptions;

export type FabTrace =
  | {
      kind: 'run';
      run: number;
      /** Target rank (2 = second most likely class) or null for the untargeted attack. */
      targetClass: number | null;
      restart: number;
      /** Rows of x handed to the run (still robust). */
      rows: number[];
      /** The subset of `rows` the run attacked (correctly classified when it predicted them again). */
      attacked: number[];
      /** Target class per row of `rows` (null untargeted). */
      targets: Int32Array | null;
    }
  | {
      kind: 'iter';
      run: number;
      i: number;
      /** res2 after iteration i per attacked row: smallest norm of a misclassified iterate, 1e10 if none yet. */
      minNorm: Float32Array;
      /** Misclassified at this iteration's x1 (before the backward step). */
      fooled: boolean[];
    }
  | {
      kind: 'result';
      run: number;
      /** As in 'run'. */
      rows: number[];
      /** res2 at the end of the run per attacked row. */
      minNorm: Float32Array;
      /** Per row of `rows`: perturb's success test (misclassified and norm <= eps). */
      success: boolean[];
      /** Per row of `rows`: the norm of the returned image's perturbation (0 where the run found nothing). */
      norm: Float32Array;
    };

interface Resolved {
  name: string;
  norm: Norm;
  eps32: number;
  nIter: number;
  nRestarts: number;
  alphaMax32: number;
  eta32: number;
  beta32: number;
  random: AttackRandom;
  trace: (e: FabTrace) => void;
}

function resolve(o: FabOptions, name: string): Resolved {
  const nIter = o.nIter ?? 100;
  const nRestarts = o.nRestarts ?? 1;
  for (const [k, v] of [
    ['nIter', nIter],
    ['nRestarts', nRestarts],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k} must be a positive integer, got ${v}`);
  }
  const alphaMax = o.alphaMax ?? 0.1;
  const eta = o.eta ?? 1.05;
  const beta = o.beta ?? 0.9;
  if (!(alphaMax >= 0 && alphaMax <= 1)) throw new Error(`${name}: alphaMax must be in [0, 1], got ${alphaMax}`);
  if (!(eta > 0 && Number.isFinite(eta))) throw new Error(`${name}: eta must be a finite number > 0, got ${eta}`);
  if (!(beta > 0 && beta <= 1)) throw new Error(`${name}: beta must be in (0, 1], got ${beta}`);
  return {
    name,
    norm: o.norm ?? 'Linf',
    eps32: f(o.eps),
    nIter,
    nRestarts,
    alphaMax32: f(alphaMax),
    eta32: f(eta),
    beta32: f(beta),
    random: o.random ?? new KeyedRandom(o.seed ?? 0),
    trace: o.trace ?? (() => {}),
  };
}

/** ||v||_p of each row of v [rows, d] in float32 (Linf: max |v|; L2: sqrt of the float32 sum of squares). */
function rowNorms(v: Float32Array, d: number, norm: Norm): Float32Array {
  const out = new Float32Array(v.length / d);
  for (let r = 0; r < out.length; r++) {
    let m = 0;
    if (norm === 'Linf') for (let j = r * d; j < (r + 1) * d; j++) m = Math.max(m, Math.abs(v[j] as number));
    else {
      for (let j = r * d; j < (r + 1) * d; j++) m += f((v[j] as number) * (v[j] as number));
      m = Math.sqrt(f(m));
    }
    out[r] = m;
  }
  return out;
}

/** The dual norm of each row (L1 for Linf, L2 for L2), as FAB's distance to a linearised boundary divides by it. */
function dualNorm(v: Float32Array, at: number, d: number, norm: Norm): number {
  let m = 0;
  if (norm === 'Linf') for (let j = at; j < at + d; j++) m += Math.abs(v[j] as number);
  else {
    for (let j = at; j < at + d; j++) m += f((v[j] as number) * (v[j] as number));
    return f(Math.sqrt(f(m)));
  }
  return f(m);
}

/** b - a elementwise in float32. */
function diff(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let j = 0; j < a.length; j++) out[j] = (b[j] as number) - (a[j] as number);
  return out;
}

/**
 * Logits at x and the input gradient of every logit (official get_diff_logits_grads_batch: one forward, then one
 * backward per class of the batch sum of that logit). Returns grads [K, B, D].
 */
async function logitsAndClassGrads(
  model: AttackModel,
  x: Images,
  keys: NoiseKeys,
): Promise<{ logits: Float32Array; k: number; grads: Float32Array[] }> {
  const xt = fromArray(x.data, x.shape, { backend: model.backend });
  const { out, vjpFn, release } = withGradMode(true, () => vjp((v) => model.classify(v, keys), xt));
  try {
    const b = x.shape[0];
    if (out.shape.length !== 2 || out.shape[0] !== b) {
      throw new Error(`classifier: returned logits of shape [${out.shape.join(', ')}] for ${b} images`);
    }
    const k = out.shape[1] as number;
    const logits = Float32Array.from(await out.data());
    const grads: Float32Array[] = [];
    for (let c = 0; c < k; c++) {
      const mask = new Float32Array(b * k);
      for (let r = 0; r < b; r++) mask[r * k + c] = 1;
      const cot = fromArray(mask, [b, k], { backend: model.backend });
      const [g] = vjpFn(cot);
      cot.dispose();
      grads.push(Float32Array.from(await (g as Tensor).data()));
      (g as Tensor).dispose();
    }
    return { logits, k, grads };
  } finally {
    release();
    xt.dispose();
  }
}

/**
 * Per row: the class at rank `rank` from the top (official argsort ascending, column -rank; of tied logits the
 * lower index sorts first, i.e. ranks lower).
 */
export function rankedClass(logits: Float32Array, k: number, rank: number): Int32Array {
  const b = logits.length / k;
  const out = new Int32Array(b);
  for (let r = 0; r < b; r++) {
    const row = logits.subarray(r * k, (r + 1) * k);
    const order = Array.from({ length: k }, (_, j) => j).sort(
      (i, j) => (row[i] as number) - (row[j] as number) || i - j,
    );
    out[r] = order[k - rank] as number;
  }
  return out;
}

interface RunSpec {
  run: number;
  /** 2..K for FAB-T, null untargeted. */
  targetClass: number | null;
  restart: number;
  /** Prefix of every random purpose of this run. */
  purpose: DrawPurpose;
}

/**
 * One official attack_single_run on x (the points still robust) with labels y. Returns adv_c (the best
 * misclassified iterate where one was found, x elsewhere) and res2 (per attacked row).
 */
async function singleRun(
  model: AttackModel,
  x: Images,
  y: Int32Array,
  ids: readonly number[],
  rowsInBatch: readonly number[],
  spec: RunSpec,
  o: Resolved,
): Promise<{ advC: Float32Array; minNorm: Float32Array }> {
  const n = x.shape[0];
  const d = x.data.length / n;
  const keysFor = (what: DrawPurpose, of: readonly number[]) =>
    of.map((id) => o.random.noiseKey([...spec.purpose, ...what], id));

  // the run attacks only what it finds correctly classified (official y_pred == y)
  const pred0 = await logitsOf(model, x, keysFor(['pred'], ids));
  const p0 = predictions(pred0.logits, pred0.k);
  const sel: number[] = [];
  for (let r = 0; r < n; r++) if (p0[r] === y[r]) sel.push(r);
  let targetsAll: Int32Array | null = null;
  if (spec.targetClass !== null && sel.length > 0) {
    const out = await logitsOf(model, x, keysFor(['targets'], ids));
    targetsAll = rankedClass(out.logits, out.k, spec.targetClass);
  }
  o.trace({
    kind: 'run',
    run: spec.run,
    targetClass: spec.targetClass,
    restart: spec.restart,
    rows: [...rowsInBatch],
    attacked: sel.map((r) => rowsInBatch[r] as number),
    targets: targetsAll,
  });
  const advC = x.data.slice();
  if (sel.length === 0) return { advC, minNorm: new Float32Array(0) };

  const bs = sel.length;
  const im2 = takeRows(x, sel);
  const x0 = im2.data;
  const la2 = Int32Array.from(sel, (r) => y[r] as number);
  const la2t = targetsAll ? Int32Array.from(sel, (r) => (targetsAll as Int32Array)[r] as number) : null;
  const selIds = sel.map((r) => ids[r] as number);
  const adv = x0.slice();
  const res2 = new Float32Array(bs).fill(FAB_NOT_FOUND);
  let x1 = x0.slice();

  if (spec.restart > 0) {
    // random start at 0.5 * min(res2, eps) (res2 is 1e10 here): Linf t = 2u - 1 scaled by max |t|, L2 t ~ N(0, 1)
    // scaled by ||t||_2; official order ((m * t) / ||t||) * 0.5
    let t: Float32Array;
    if (o.norm === 'Linf') {
      const u = o.random.uniform(spec.purpose, selIds, d);
      t = new Float32Array(u.length);
      for (let j = 0; j < u.length; j++) t[j] = f(2 * (u[j] as number)) - 1;
    } else t = o.random.normal(spec.purpose, selIds, d);
    const tn = rowNorms(t, d, o.norm);
    for (let r = 0; r < bs; r++) {
      const m = Math.min(FAB_NOT_FOUND, o.eps32);
      const den = tn[r] as number;
      for (let j = r * d; j < (r + 1) * d; j++) {
        const v = f((x0[j] as number) + f(f(f(m * (t[j] as number)) / den) * 0.5));
        x1[j] = Math.min(Math.max(v, 0), 1);
      }
    }
  }

  const shape = im2.shape;
  const w = new Float32Array(bs * d);
  const bOff = new Float32Array(bs);
  const tiny = f(1e-12);
  for (let i = 0; i < o.nIter; i++) {
    // the linearisation: w = g, b = -f + <g, x1>
    const at = { data: x1, shape };
    const keys = keysFor([i], selIds);
    if (la2t) {
      const t = la2t;
      const g = await logitsAndGrad(model, at, keys, (z, k) => {
        // official diffy = -(z_y - z_t), backpropagated as the batch sum: cotangent onehot(t) - onehot(y)
        const loss = new Float32Array(bs);
        const dz = new Float32Array(bs * k);
        for (let r = 0; r < bs; r++) {
          loss[r] = -f((z[r * k + (la2[r] as number)] as number) - (z[r * k + (t[r] as number)] as number));
          dz[r * k + (la2[r] as number)] -= 1;
          dz[r * k + (t[r] as number)] += 1;
        }
        return { loss, dz };
      });
      w.set(g.grad);
      bOff.set(g.loss);
    } else {
      const g = await logitsAndClassGrads(model, at, keys);
      const k = g.k;
      const gy = (r: number) => g.grads[la2[r] as number] as Float32Array;
      for (let r = 0; r < bs; r++) {
        // df_c = z_c - z_y (1e10 for c = y), dg_c = g_c - g_y; pick the smallest |df_c| / (1e-12 + ||dg_c||_q)
        const zy = g.logits[r * k + (la2[r] as number)] as number;
        let best = -1;
        let bestDist = Number.POSITIVE_INFINITY;
        let bestDf = 0;
        const dgc = new Float32Array(d);
        for (let c = 0; c < k; c++) {
          const df = c === la2[r] ? FAB_NOT_FOUND : f((g.logits[r * k + c] as number) - zy);
          const gc = g.grads[c] as Float32Array;
          const gyr = gy(r);
          for (let j = 0; j < d; j++) dgc[j] = (gc[r * d + j] as number) - (gyr[r * d + j] as number);
          const dist = f(Math.abs(df) / f(tiny + dualNorm(dgc, 0, d, o.norm)));
          if (best < 0 || dist < bestDist) {
            best = c;
            bestDist = dist;
            bestDf = df;
            w.set(dgc, r * d);
          }
        }
        bOff[r] = bestDf;
      }
    }
    for (let r = 0; r < bs; r++) {
      let s = 0;
      for (let j = r * d; j < (r + 1) * d; j++) s += f((w[j] as number) * (x1[j] as number));
      bOff[r] = f(-(bOff[r] as number) + f(s));
    }

    // project x1 and x0 onto the hyperplane in one batched call, as the official concatenation
    const pts = new Float32Array(2 * bs * d);
    pts.set(x1);
    pts.set(x0, bs * d);
    const ww = new Float32Array(2 * bs * d);
    ww.set(w);
    ww.set(w, bs * d);
    const bb = new Float32Array(2 * bs);
    bb.set(bOff);
    bb.set(bOff, bs);
    const d3 = o.norm === 'Linf' ? projectionLinf(pts, ww, bb, d) : projectionL2(pts, ww, bb, d);
    const a0 = rowNorms(d3, d, o.norm);
    const floor = f(1e-8);
    const next = new Float32Array(bs * d);
    for (let r = 0; r < bs; r++) {
      const a1 = Math.max(a0[r] as number, floor);
      const a2 = Math.max(a0[bs + r] as number, floor);
      const alpha = Math.min(Math.max(f(a1 / f(a1 + a2)), 0), o.alphaMax32);
      const keep = f(1 - alpha);
      for (let j = r * d; j < (r + 1) * d; j++) {
        const from1 = f(f((x1[j] as number) + f(o.eta32 * (d3[j] as number))) * keep);
        const from0 = f(f((x0[j] as number) + f((d3[bs * d + j] as number) * o.eta32)) * alpha);
        const v = f(from1 + from0);
        next[j] = Math.min(Math.max(v, 0), 1);
      }
    }
    x1 = next;

    const check = await logitsOf(model, { data: x1, shape }, keysFor([i, 'fooled'], selIds));
    const p = predictions(check.logits, check.k);
    const fooled: boolean[] = [];
    for (let r = 0; r < bs; r++) {
      const isAdv = p[r] !== la2[r];
      fooled.push(isAdv);
      if (!isAdv) continue;
      const lo = r * d;
      const hi = lo + d;
      const t = rowNorms(diff(x0.subarray(lo, hi), x1.subarray(lo, hi)), d, o.norm)[0] as number;
      if (t < (res2[r] as number)) {
        adv.set(x1.subarray(lo, hi), lo);
        res2[r] = t;
      }
      // backward step towards the clean image
      for (let j = lo; j < hi; j++) {
        const x0j = x0[j] as number;
        x1[j] = f(x0j + f(f((x1[j] as number) - x0j) * o.beta32));
      }
    }
    o.trace({ kind: 'iter', run: spec.run, i, minNorm: res2.slice(), fooled });
  }

  sel.forEach((r, i) => {
    if ((res2[i] as number) < FAB_NOT_FOUND) advC.set(adv.subarray(i * d, (i + 1) * d), r * d);
  });
  return { advC, minNorm: res2 };
}

function labelsArray(y: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: y.length }, (_, i) => y[i] as number);
}

/** One official perturb step: a run on the points still robust, then the success test that updates acc and adv. */
async function runAndUpdate(
  model: AttackModel,
  x: Images,
  y: Int32Array,
  ids: readonly number[],
  acc: boolean[],
  adv: Float32Array,
  spec: RunSpec,
  o: Resolved,
): Promise<void> {
  const rows: number[] = [];
  acc.forEach((v, i) => {
    if (v) rows.push(i);
  });
  if (rows.length === 0) return;
  const d = x.data.length / x.shape[0];
  const sub = takeRows(x, rows);
  const subY = Int32Array.from(rows, (r) => y[r] as number);
  const subIds = rows.map((r) => ids[r] as number);
  const { advC: advCurr, minNorm } = await singleRun(model, sub, subY, subIds, rows, spec, o);
  const check = await logitsOf(
    model,
    { data: advCurr, shape: sub.shape },
    subIds.map((id) => o.random.noiseKey([...spec.purpose, 'verify'], id)),
  );
  const p = predictions(check.logits, check.k);
  const norms = rowNorms(diff(sub.data, advCurr), d, o.norm);
  const success: boolean[] = [];
  rows.forEach((r, i) => {
    // official acc_curr = max(pred == y, res > eps)
    const ok = p[i] !== subY[i] && !((norms[i] as number) > o.eps32);
    success.push(ok);
    if (!ok) return;
    acc[r] = false;
    adv.set(advCurr.subarray(i * d, (i + 1) * d), r * d);
  });
  o.trace({ kind: 'result', run: spec.run, rows, minNorm, success, norm: norms });
}

async function setup(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: FabOptions,
  name: string,
) {
  const model = asModel(modelOrFn);
  const o = resolve(opts, name);
  const y = labelsArray(labels);
  const ids = checkAttackInputs(name, x, y, o.norm, opts.eps, opts.sampleIds);
  const clean = await logitsOf(
    model,
    x,
    ids.map((id) => o.random.noiseKey([name, 'clean'], id)),
  );
  const acc = Array.from(predictions(clean.logits, clean.k), (p, r) => p === y[r]);
  return { model, o, y, ids, k: clean.k, acc, adv: x.data.slice() };
}

/**
 * Untargeted FAB (official FABAttack_PT.perturb with targeted = False, AutoAttack 'plus'): `nRestarts` runs on the
 * points still robust, the first from x, the others from a random point at 0.5 * eps. Each iteration takes one
 * backward per class.
 */
export async function fab(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: FabOptions,
): Promise<AttackResult> {
  const name = opts.name ?? 'fab';
  const { model, o, y, ids, acc, adv } = await setup(modelOrFn, x, labels, opts, name);
  for (let restart = 0; restart < o.nRestarts; restart++) {
    await runAndUpdate(
      model,
      x,
      y,
      ids,
      acc,
      adv,
      { run: restart, targetClass: null, restart, purpose: [name, restart] },
      o,
    );
  }
  return { adv: { data: adv, shape: x.shape }, robust: acc };
}

/**
 * FAB-T (official FABAttack_PT.perturb with targeted = True, AutoAttack 'standard'): for target rank 2..n+1 (the
 * class ranked there by the logits of the points still robust) and each restart, one run on the points still robust.
 */
export async function fabTargeted(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: FabTargetedOptions,
): Promise<AttackResult> {
  const name = opts.name ?? 'fab-t';
  const { model, o, y, ids, k, acc, adv } = await setup(modelOrFn, x, labels, opts, name);
  const nTargets = opts.nTargetClasses ?? 9;
  if (!Number.isInteger(nTargets) || nTargets < 1 || nTargets > k - 1) {
    throw new Error(`${name}: nTargetClasses must be in 1..${k - 1} for ${k} classes, got ${nTargets}`);
  }
  let run = 0;
  for (let tc = 2; tc <= nTargets + 1; tc++) {
    for (let restart = 0; restart < o.nRestarts; restart++) {
      await runAndUpdate(
        model,
        x,
        y,
        ids,
        acc,
        adv,
        { run, targetClass: tc, restart, purpose: [name, tc, restart] },
        o,
      );
      run++;
    }
  }
  return { adv: { data: adv, shape: x.shape }, robust: acc };
}
