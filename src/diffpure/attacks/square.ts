// The Square attack (Andriushchenko et al., ECCV 2020) as fra31/auto-attack 6482e4d's SquareAttack (square.py)
// runs it inside AutoAttack: score-based random search with the margin loss, Linf and L2, p_init 0.8, the p schedule
// not rescaled (resc_schedule=False), step for step and with the random numbers requested in the official call
// order, so the recorded official draws replay it exactly (test/diffpure/attacks/square.test.ts).
//
// Official quirks kept (named where they happen):
// - the window position (and, for Linf, the channel signs; for L2, the second window and the transposition of the
//   eta pattern) is drawn ONCE per iteration and SHARED by every image of the batch, so a batch is not a set of
//   independent attacks;
// - the window size s has no min(s, h, w) cap (6482e4d), and the position is int(float32(h - s) * u): it never
//   reaches h - s, so a window never touches the bottom or right edge (unless s >= h);
// - an iteration whose batch is empty (every image fooled by the initialisation) still draws its random numbers;
// - the query counter counts iterations, not forwards, and is not used by perturb;
// - perturb re-predicts x_best after each restart and keeps it only where argmax != y (a margin of exactly 0 counts
//   as success inside the run but not in that final check when y is the first of the tied classes).
//
// Randomness: with the default KeyedRandom every draw is keyed by (seed, restart, iteration, what) and, for
// per-image draws, by the image's index in the whole data set, so results do not depend on the batch composition
// beyond the shared-window quirk (the shared draws are functions of (seed, restart, iteration) only).

import { margins } from './losses.js';
import {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  letEventLoopRun,
  logitsOf,
  predictions,
  takeRows,
} from './model.js';
import { checkAttackInputs, clamp01, type Norm } from './projections.js';
import { type AttackRandom, KeyedRandom } from './random.js';

const f = Math.fround;
/** 1e-12 as the float32 scalar PyTorch adds to a float32 tensor. */
const TINY = f(1e-12);

export interface SquareOptions {
  norm?: Norm;
  eps: number;
  /** Iterations (queries) per restart (default 5000). */
  nQueries?: number;
  /** Initial fraction of pixels in the window (default 0.8). */
  pInit?: number;
  /** Random restarts, each from a fresh initialisation on the points still correct (default 1). */
  nRestarts?: number;
  /** Seed of the default random source and of a stochastic classifier's draws (default 0). */
  seed?: number;
  /** Source of random numbers (default KeyedRandom(seed)); ReplayRandom replays the official draws. */
  random?: AttackRandom;
  /** Index of each row in the whole data set (default 0..B-1): the key of its random numbers. */
  sampleIds?: readonly number[];
  /** Name in random purposes and errors (default 'square'). */
  name?: string;
  /** Called with per-run and per-iteration state (for tests and progress). */
  trace?: (e: SquareTrace) => void;
  /** Rescale the p schedule to nQueries (official resc_schedule; default false, as AutoAttack runs it). */
  rescaleSchedule?: boolean;
}

/** [s, row, column] of a window (its top-left corner before Python's slice clipping). */
export type SquareWindow = readonly [number, number, number];

export type SquareTrace =
  | {
      kind: 'run';
      run: number;
      /** Sample ids of the images this run attacks (those still correct); the other arrays follow this order. */
      rows: number[];
      xInit: Float32Array;
      marginInit: Float32Array;
    }
  | {
      kind: 'iter';
      run: number;
      i: number;
      /** The window of the new square (shared by the batch). */
      window: SquareWindow;
      /** L2 only: the window that is zeroed, and whether eta(s) was transposed. */
      window2?: SquareWindow;
      transposed?: boolean;
      /** Indices (within the run) of the images attacked in this iteration. */
      active: number[];
      /** margin_min of every image of the run after the iteration. */
      marginMin: Float32Array;
    }
  | { kind: 'done'; run: number; iterations: number; nQueries: Float32Array; xBest: Float32Array };

/** p at iteration `it` (official p_selection). */
export function squareP(it: number, pInit: number, nQueries: number, rescale: boolean): number {
  const i = rescale ? Math.trunc((it / nQueries) * 10000) : it;
  if (10 < i && i <= 50) return pInit / 2;
  if (50 < i && i <= 200) return pInit / 4;
  if (200 < i && i <= 500) return pInit / 8;
  if (500 < i && i <= 1000) return pInit / 16;
  if (1000 < i && i <= 2000) return pInit / 32;
  if (2000 < i && i <= 4000) return pInit / 64;
  if (4000 < i && i <= 6000) return pInit / 128;
  if (6000 < i && i <= 8000) return pInit / 256;
  if (8000 < i) return pInit / 512;
  return pInit;
}

/** Python's round() of a float: half to even. */
function pyRound(v: number): number {
  const fl = Math.floor(v);
  const frac = v - fl;
  if (frac === 0.5) return fl % 2 === 0 ? fl : fl + 1;
  return frac < 0.5 ? fl : fl + 1;
}

/**
 * The window side at p: max(int(round(sqrt(p * n_features / c))), 1) for Linf; for L2 at least 3 and odd. No
 * min(s, h, w) cap (official 6482e4d).
 */
export function squareSize(p: number, c: number, h: number, w: number, norm: Norm): number {
  const nFeatures = c * h * w;
  const s = pyRound(Math.sqrt((p * nFeatures) / c));
  if (norm === 'Linf') return Math.max(s, 1);
  const s3 = Math.max(s, 3);
  return s3 % 2 === 0 ? s3 + 1 : s3;
}

/** Official random_int(0, high): int(float32(high) * u), truncated towards zero (high may be negative). */
const randomInt = (high: number, u: number) => Math.trunc(f(high * u));

/** sign(2u - 1) in float32 (0 when u is exactly 0.5): official random_choice. */
function randomSign(u: number): number {
  const t = f(f(2 * u) - 1);
  return t > 0 ? 1 : t < 0 ? -1 : 0;
}

/** The [start, stop) a Python slice a:b selects from an axis of length n. */
function pySlice(a: number, b: number, n: number): [number, number] {
  const clip = (v: number) => (v < 0 ? Math.max(v + n, 0) : Math.min(v, n));
  const lo = clip(a);
  return [lo, Math.max(clip(b), lo)];
}

/** Sum of squares in float32 (accumulated in float64, rounded once). */
function sumSq(v: ArrayLike<number>, from = 0, to = v.length): number {
  let t = 0;
  for (let j = from; j < to; j++) t += (v[j] as number) * (v[j] as number);
  return f(t);
}

/** Official eta_rectangles(x, y): nested rectangles weighted 1/(k+1)^2, unit L2 norm; [x, y] row-major float32. */
function etaRectangles(x: number, y: number): Float32Array {
  const delta = new Float32Array(x * y);
  const xc = Math.floor(x / 2) + 1;
  const yc = Math.floor(y / 2) + 1;
  let c0 = xc - 1;
  let c1 = yc - 1;
  for (let k = 0; k < Math.max(xc, yc); k++) {
    const v = f(1 / f((k + 1) * (k + 1)));
    const r1 = Math.min(c0 + 2 * k + 1, x);
    const q1 = Math.min(c1 + 2 * k + 1, y);
    for (let i = Math.max(c0, 0); i < r1; i++) {
      for (let j = Math.max(c1, 0); j < q1; j++) delta[i * y + j] = f((delta[i * y + j] as number) + v);
    }
    c0--;
    c1--;
  }
  const norm = f(Math.sqrt(sumSq(delta)));
  for (let j = 0; j < delta.length; j++) delta[j] = f((delta[j] as number) / norm);
  return delta;
}

const etaCache = new Map<number, Float32Array>();

/** Official eta(s) before its random transposition: rectangles on top, negated rectangles below, unit L2 norm. */
export function squareEta(s: number): Float32Array {
  const hit = etaCache.get(s);
  if (hit) return hit;
  const half = Math.floor(s / 2);
  const delta = new Float32Array(s * s);
  delta.set(etaRectangles(half, s), 0);
  const bottom = etaRectangles(s - half, s);
  for (let j = 0; j < bottom.length; j++) delta[half * s + j] = -(bottom[j] as number);
  const norm = f(Math.sqrt(sumSq(delta)));
  for (let j = 0; j < delta.length; j++) delta[j] = f((delta[j] as number) / norm);
  etaCache.set(s, delta);
  return delta;
}

/** eta(s) after official eta's `if torch.rand([1]) > 0.5: permute`. */
function etaDrawn(s: number, u: number): { eta: Float32Array; transposed: boolean } {
  const base = squareEta(s);
  if (!(u > 0.5)) return { eta: base, transposed: false };
  const t = new Float32Array(s * s);
  for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) t[i * s + j] = base[j * s + i] as number;
  return { eta: t, transposed: true };
}

interface Resolved {
  norm: Norm;
  eps: number;
  nQueries: number;
  pInit: number;
  nRestarts: number;
  rescale: boolean;
  random: AttackRandom;
  name: string;
  trace: (e: SquareTrace) => void;
}

function resolve(o: SquareOptions): Resolved {
  const name = o.name ?? 'square';
  const nQueries = o.nQueries ?? 5000;
  const nRestarts = o.nRestarts ?? 1;
  if (!Number.isInteger(nQueries) || nQueries < 0)
    throw new Error(`${name}: nQueries must be an integer >= 0, got ${nQueries}`);
  if (!Number.isInteger(nRestarts) || nRestarts < 1)
    throw new Error(`${name}: nRestarts must be a positive integer, got ${nRestarts}`);
  const pInit = o.pInit ?? 0.8;
  if (!(pInit > 0 && pInit <= 1)) throw new Error(`${name}: pInit must be in (0, 1], got ${pInit}`);
  return {
    norm: o.norm ?? 'Linf',
    eps: o.eps,
    nQueries,
    pInit,
    nRestarts,
    rescale: o.rescaleSchedule ?? false,
    random: o.random ?? new KeyedRandom(o.seed ?? 0),
    name,
    trace: o.trace ?? (() => {}),
  };
}

/** The L2 initialisation's grid of windows (official: s = h // 5 from offset (h - 5 s) // 2, (h // s) x (w // s)). */
function l2InitGrid(h: number, w: number): { s: number; starts: [number, number][] } {
  const s = Math.floor(h / 5);
  const sp = Math.floor((h - 5 * s) / 2);
  const starts: [number, number][] = [];
  for (let a = 0; a < Math.floor(h / s); a++) {
    for (let b = 0; b < Math.floor(w / s); b++) starts.push([sp + a * s, sp + b * s]);
  }
  return { s, starts };
}

/** Shapes the official code cannot attack (it fails with a shape error) are refused before any work. */
function checkShapeFits(o: Resolved, h: number, w: number, c: number): void {
  if (o.norm !== 'L2') return;
  if (h < 5)
    throw new Error(`${o.name}: L2 needs images at least 5 pixels high (official init: s = h // 5), got h = ${h}`);
  const { s, starts } = l2InitGrid(h, w);
  for (const [vh, vw] of starts) {
    const [r0, r1] = pySlice(vh, vh + s, h);
    const [q0, q1] = pySlice(vw, vw + s, w);
    if (s !== 1 && (r1 - r0 !== s || q1 - q0 !== s)) {
      throw new Error(
        `${o.name}: the official L2 initialisation fails for ${h}x${w} images (window at ${vh}, ${vw} of side ${s} overruns)`,
      );
    }
  }
  const s0 = squareSize(squareP(0, o.pInit, o.nQueries, o.rescale), c, h, w, 'L2');
  if (s0 > h || s0 > w) {
    throw new Error(`${o.name}: L2 window side ${s0} exceeds the ${h}x${w} image (official shape error); lower pInit`);
  }
}

/**
 * One run (official attack_single_run) on images x with labels y; returns x_best and the query counts.
 */
async function singleRun(
  model: AttackModel,
  x: Images,
  y: Int32Array,
  ids: readonly number[],
  run: number,
  o: Resolved,
): Promise<{ xBest: Float32Array; nQueries: Float32Array }> {
  const [n, c, h, w] = x.shape;
  const d = c * h * w;
  const hw = h * w;
  const xs = x.data;
  const eps32 = f(o.eps);
  const name = o.name;
  const rnd = o.random;
  const keysFor = (purpose: (string | number)[], rowIds: readonly number[]) =>
    rowIds.map((id) => rnd.noiseKey(purpose, id));

  // initialisation
  const xBest = new Float32Array(n * d);
  if (o.norm === 'Linf') {
    // vertical stripes: one sign per image, channel and column (random_choice([n, c, 1, w]))
    const u = rnd.uniform([name, run, 'init'], ids, c * w);
    const e = eps32;
    for (let r = 0; r < n; r++) {
      for (let ch = 0; ch < c; ch++) {
        for (let col = 0; col < w; col++) {
          const step = f(e * randomSign(u[(r * c + ch) * w + col] as number));
          for (let row = 0; row < h; row++) {
            const j = r * d + ch * hw + row * w + col;
            xBest[j] = clamp01(f((xs[j] as number) + step));
          }
        }
      }
    }
  } else {
    const { s, starts } = l2InitGrid(h, w);
    const delta = new Float32Array(n * d);
    starts.forEach(([vh, vw], k) => {
      // per window: eta's transposition draw (shared), then the signs per image and channel (evaluation order)
      const { eta } = etaDrawn(s, rnd.shared([name, run, 'init', k, 'eta'], 1)[0] as number);
      const u = rnd.uniform([name, run, 'init', k, 'signs'], ids, c);
      const [r0, r1] = pySlice(vh, vh + s, h);
      const [q0, q1] = pySlice(vw, vw + s, w);
      for (let r = 0; r < n; r++) {
        for (let ch = 0; ch < c; ch++) {
          const sg = randomSign(u[r * c + ch] as number);
          for (let row = r0; row < r1; row++) {
            for (let col = q0; col < q1; col++) {
              const j = r * d + ch * hw + row * w + col;
              delta[j] = f((delta[j] as number) + (eta[(row - r0) * s + (col - q0)] as number) * sg);
            }
          }
        }
      }
    });
    xBest.set(stepL2(xs, delta, d, eps32));
  }
  let z = await logitsOf(model, { data: xBest, shape: x.shape }, keysFor([name, run, 'init'], ids));
  const marginMin = margins(z.logits, z.k, y);
  const lossMin = marginMin.slice(); // loss 'margin': the loss is the margin
  const nQueries = new Float32Array(n).fill(1);
  o.trace({ kind: 'run', run, rows: [...ids], xInit: xBest.slice(), marginInit: marginMin.slice() });

  const lo = new Float32Array(n * d);
  const hi = new Float32Array(n * d);
  for (let j = 0; j < n * d; j++) {
    lo[j] = f((xs[j] as number) - eps32);
    hi[j] = f((xs[j] as number) + eps32);
  }

  let iterations = 0;
  for (let i = 0; i < o.nQueries; i++) {
    await letEventLoopRun();
    iterations = i + 1;
    const active: number[] = [];
    for (let r = 0; r < n; r++) if ((marginMin[r] as number) > 0) active.push(r);
    const na = active.length;
    const activeIds = active.map((r) => ids[r] as number);
    const p = squareP(i, o.pInit, o.nQueries, o.rescale);
    const s = squareSize(p, c, h, w, o.norm);
    const purpose = [name, run, i];
    // QUIRK (official): one window (and one set of signs) for the whole batch
    const vh = randomInt(h - s, rnd.shared([...purpose, 'vh'], 1)[0] as number);
    const vw = randomInt(w - s, rnd.shared([...purpose, 'vw'], 1)[0] as number);
    const [r0, r1] = pySlice(vh, vh + s, h);
    const [q0, q1] = pySlice(vw, vw + s, w);
    const xNew = new Float32Array(na * d);
    let window2: SquareWindow | undefined;
    let transposed: boolean | undefined;
    if (o.norm === 'Linf') {
      const u = rnd.shared([...purpose, 'signs'], c);
      const step = Array.from(u, (v) => f(f(2 * o.eps) * randomSign(v)));
      active.forEach((r, a) => {
        for (let ch = 0; ch < c; ch++) {
          const dc = step[ch] as number;
          for (let row = 0; row < h; row++) {
            const inRow = row >= r0 && row < r1;
            for (let col = 0; col < w; col++) {
              const j = r * d + ch * hw + row * w + col;
              const xb = xBest[j] as number;
              const v = inRow && col >= q0 && col < q1 ? f(xb + dc) : xb;
              xNew[a * d + ch * hw + row * w + col] = clamp01(Math.min(Math.max(v, lo[j] as number), hi[j] as number));
            }
          }
        }
      });
    } else {
      const vh2 = randomInt(h - s, rnd.shared([...purpose, 'vh2'], 1)[0] as number);
      const vw2 = randomInt(w - s, rnd.shared([...purpose, 'vw2'], 1)[0] as number);
      window2 = [s, vh2, vw2];
      const drawn = etaDrawn(s, rnd.shared([...purpose, 'eta'], 1)[0] as number);
      transposed = drawn.transposed;
      const u = rnd.uniform([...purpose, 'signs'], activeIds, c);
      const delta = new Float32Array(na * d);
      active.forEach((r, a) => {
        for (let j = 0; j < d; j++) delta[a * d + j] = f((xBest[r * d + j] as number) - (xs[r * d + j] as number));
      });
      const xa = takeRows(x, active).data;
      xNew.set(stepL2Window(xa, delta, { c, h, w }, o.eps, drawn.eta, u, [s, vh, vw], [s, vh2, vw2]));
    }

    if (na > 0) {
      z = await logitsOf(model, { data: xNew, shape: [na, c, h, w] }, keysFor(purpose, activeIds));
      const margin = margins(
        z.logits,
        z.k,
        Int32Array.from(active, (r) => y[r] as number),
      );
      active.forEach((r, a) => {
        const m = margin[a] as number;
        const better = m < (lossMin[r] as number); // loss < loss_min_curr
        if (better) lossMin[r] = m;
        if (better || m <= 0) {
          marginMin[r] = m;
          xBest.set(xNew.subarray(a * d, (a + 1) * d), r * d);
        }
        nQueries[r] = (nQueries[r] as number) + 1;
      });
    }
    o.trace({ kind: 'iter', run, i, window: [s, vh, vw], window2, transposed, active, marginMin: marginMin.slice() });
    if (marginMin.every((m) => m <= 0)) break;
  }
  o.trace({ kind: 'done', run, iterations, nQueries: nQueries.slice(), xBest: xBest.slice() });
  return { xBest, nQueries };
}

/** clamp(x + normalize(delta) * eps, 0, 1) per image (official L2 step; normalize: delta / (||delta||_2 + 1e-12)). */
function stepL2(x: Float32Array, delta: Float32Array, d: number, eps32: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += d) {
    const den = f(f(Math.sqrt(sumSq(delta, o, o + d))) + TINY);
    for (let j = o; j < o + d; j++) {
      out[j] = clamp01(f((x[j] as number) + f(f((delta[j] as number) / den) * eps32)));
    }
  }
  return out;
}

/**
 * One L2 proposal (official attack_single_run, L2 branch) for the active images: the new square eta(s) * sign plus
 * the old content of window 1 (normalised), rescaled per channel to sqrt(max(eps^2 - ||delta||^2, 0) / c +
 * ||delta on windows 1 and 2||^2); window 2 is zeroed, then window 1 written; x_new = clamp(x + eps delta/||delta||).
 * `delta` (x_best - x of the active images) is modified.
 */
function stepL2Window(
  x: Float32Array,
  delta: Float32Array,
  dims: { c: number; h: number; w: number },
  eps: number,
  eta: Float32Array,
  u: Float32Array,
  win1: SquareWindow,
  win2: SquareWindow,
): Float32Array {
  const { c, h, w } = dims;
  const hw = h * w;
  const d = c * hw;
  const na = x.length / d;
  const [s, vh, vw] = win1;
  const [, vh2, vw2] = win2;
  // windows are checked to fit (checkShapeFits: s <= min(h, w)), so the slices are exactly s x s
  const eps32 = f(eps);
  const epsSq = f(eps32 * eps32);
  const inWin = (row: number, col: number, a: number, b: number) => row >= a && row < a + s && col >= b && col < b + s;
  const nd = new Float32Array(s * s);
  for (let a = 0; a < na; a++) {
    const o = a * d;
    const ni = f(Math.sqrt(sumSq(delta, o, o + d))); // norms_image = ||x_best - x||_2
    const niSq = f(ni * ni);
    const budget = f(Math.max(f(epsSq - niSq), 0) / c);
    for (let ch = 0; ch < c; ch++) {
      const oc = o + ch * hw;
      let s1 = 0; // norms_window_1^2
      let su = 0; // norms_windows^2 (window 1 union window 2)
      for (let row = 0; row < h; row++) {
        for (let col = 0; col < w; col++) {
          const in1 = inWin(row, col, vh, vw);
          if (!in1 && !inWin(row, col, vh2, vw2)) continue;
          const v = delta[oc + row * w + col] as number;
          su += v * v;
          if (in1) s1 += v * v;
        }
      }
      const nw1 = f(Math.sqrt(f(s1)));
      const nws = f(Math.sqrt(f(su)));
      const den1 = f(TINY + nw1);
      const sg = randomSign(u[a * c + ch] as number);
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) {
          const old = f((delta[oc + (vh + i) * w + vw + j] as number) / den1);
          nd[i * s + j] = f(f((eta[i * s + j] as number) * sg) + old);
        }
      }
      const den = f(TINY + f(Math.sqrt(sumSq(nd))));
      const scale = f(Math.sqrt(f(budget + f(nws * nws))));
      for (let row = vh2; row < vh2 + s; row++) for (let col = vw2; col < vw2 + s; col++) delta[oc + row * w + col] = 0;
      for (let i = 0; i < s; i++) {
        for (let j = 0; j < s; j++) delta[oc + (vh + i) * w + vw + j] = f(f((nd[i * s + j] as number) / den) * scale);
      }
    }
  }
  const out = stepL2(x, delta, d, eps32);
  for (let j = 0; j < out.length; j++) {
    if (Number.isNaN(out[j])) throw new Error('square: NaN in the L2 proposal (official assert)');
  }
  return out;
}

function labelsArray(y: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: y.length }, (_, i) => y[i] as number);
}

/**
 * The Square attack (official SquareAttack.perturb, untargeted, margin loss): the clean check, then `nRestarts` runs
 * on the points still correctly classified; a run's x_best is kept where the classifier now misclassifies it.
 */
export async function square(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: SquareOptions,
): Promise<AttackResult> {
  const model = asModel(modelOrFn);
  const o = resolve(opts);
  const y = labelsArray(labels);
  const ids = checkAttackInputs(o.name, x, y, o.norm, o.eps, opts.sampleIds);
  const [, c, h, w] = x.shape;
  checkShapeFits(o, h, w, c);
  const d = c * h * w;
  const clean = await logitsOf(
    model,
    x,
    ids.map((id) => o.random.noiseKey([o.name, 'clean'], id)),
  );
  if (clean.k < 2)
    throw new Error(`${o.name}: the margin loss needs at least 2 classes; the classifier has ${clean.k}`);
  y.forEach((v, i) => {
    if (v >= clean.k)
      throw new Error(`${o.name}: label ${v} of image ${i} is not a class of the classifier (0..${clean.k - 1})`);
  });
  const acc = Array.from(predictions(clean.logits, clean.k), (p, r) => p === y[r]);
  const adv = x.data.slice();
  for (let restart = 0; restart < o.nRestarts; restart++) {
    const rows: number[] = [];
    acc.forEach((v, r) => {
      if (v) rows.push(r);
    });
    if (rows.length === 0) continue;
    const subIds = rows.map((r) => ids[r] as number);
    const yr = Int32Array.from(rows, (r) => y[r] as number);
    const { xBest } = await singleRun(model, takeRows(x, rows), yr, subIds, restart, o);
    const out = await logitsOf(
      model,
      { data: xBest, shape: [rows.length, c, h, w] },
      subIds.map((id) => o.random.noiseKey([o.name, restart, 'final'], id)),
    );
    const pred = predictions(out.logits, out.k);
    rows.forEach((r, i) => {
      if (pred[i] === yr[i]) return;
      acc[r] = false;
      adv.set(xBest.subarray(i * d, (i + 1) * d), r * d);
    });
  }
  return { adv: { data: adv, shape: x.shape }, robust: acc };
}
