// FAB's box-constrained projections onto a hyperplane, as fra31/auto-attack 6482e4d's fab_projections.py computes
// them (projection_linf, projection_l2), one row at a time on the host.
//
// For a point t in [0, 1]^n, a normal w and an offset b, each finds the step d of smallest Lp norm with
//   <w, t + d> = b   and   0 <= t + d <= 1.
// Where no point of the box reaches the hyperplane, d moves every coordinate to the bound that brings <w, t + d>
// closest to b (the box corner on the far side).
//
// Both follow the official algorithm so that results agree to rounding: sort the coordinates by the step at which
// they hit the box, then binary-search the segment of the resulting piecewise-linear function of the step size that
// reaches b. Arithmetic is float32 in the official order; cumulative sums accumulate in double and round every
// output (PyTorch's CPU cumsum does), plain sums accumulate in double and round once (PyTorch sums in float32
// blocks: last-bit differences). Rows are independent, so a batch gives the same rows as one row at a time.
//
// Conventions kept from the official code (they decide results on degenerate rows):
// - the side of the hyperplane is read from <w, t> - b >= 0, so a point exactly on it is treated as above it;
// - coordinates with w_j = 0 (Linf) or |w_j| < 1e-8 (L2, in float32) never move;
// - the binary search runs ceil(log2 n) halvings of [0, n - 1], lb/ub start at 0 and n - 1 unconditionally.

const f = Math.fround;

/** float32 1e-8 and 1e12, the official thresholds as PyTorch compares them with float32 tensors. */
const TINY = f(1e-8);
const BIG = f(1e12);

/** sum_j f(a_j * b_j) accumulated in double, rounded to float32 once. */
function dot32(a: ArrayLike<number>, b: ArrayLike<number>, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s += f((a[j] as number) * (b[j] as number));
  return f(s);
}

/** Indices 0..n-1 ordered by `key` ascending, ties by index (a stable argsort). */
function argsortAscending(key: Float32Array): Int32Array {
  const idx = Int32Array.from({ length: key.length }, (_, i) => i);
  idx.sort((i, j) => (key[i] as number) - (key[j] as number) || i - j);
  return idx;
}

function checkRows(what: string, points: Float32Array, w: Float32Array, b: ArrayLike<number>, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what}: the dimension must be a positive integer, got ${n}`);
  if (points.length !== w.length || points.length % n !== 0) {
    throw new Error(`${what}: points (${points.length} values) and normals (${w.length}) must both hold rows of ${n}`);
  }
  const rows = points.length / n;
  if (b.length !== rows) throw new Error(`${what}: ${b.length} offsets for ${rows} rows`);
  return rows;
}

/** One row of projection_linf: writes d into `out`. */
function linfRow(t: Float32Array, wIn: Float32Array, bIn: number, out: Float32Array): void {
  const n = t.length;
  // orient the hyperplane so that t lies on its non-negative side: then d must decrease <w, .>
  const wt = dot32(wIn, t, n);
  const sign = f(wt - bIn) >= 0 ? 1 : -1;
  const w = new Float32Array(n);
  for (let j = 0; j < n; j++) w[j] = (wIn[j] as number) * sign;
  const bSigned = bIn * sign;

  // a_j = 1 where w_j < 0 (move up), 0 where w_j > 0 (move down); d_j = the full move to that bound;
  // p_j = how far coordinate j can move before it reaches that bound
  const a = new Uint8Array(n);
  const d = new Float32Array(n);
  const p = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const wj = w[j] as number;
    const aj = wj < 0 ? 1 : 0;
    a[j] = aj;
    const tj = t[j] as number;
    d[j] = wj !== 0 ? f(aj - tj) : 0;
    p[j] = aj === 1 ? f(1 - tj) : tj;
  }
  const order = argsortAscending(p);
  const bb = f(bSigned - wt * sign); // the change of <w, .> that d must achieve (<= 0)
  const b0 = dot32(w, d, n); // the change when every coordinate moves to its bound

  // Over the coordinates sorted by p descending: s[k] = sum of |w| of the first k + 1 (the ones still free at step
  // sizes below p of the (k+1)-th), sb[k] = b0 minus their full moves; at step size lambda in that segment the
  // change of <w, .> is sb[k] - s[k] * lambda.
  const s = new Float32Array(n);
  const sb = new Float32Array(n);
  let accS = 0;
  let accB = 0;
  for (let k = 0; k < n; k++) {
    const j = order[n - 1 - k] as number;
    accS += Math.abs(w[j] as number);
    accB += -f((w[j] as number) * (d[j] as number));
    s[k] = f(accS);
    sb[k] = f(f(accB) + b0);
  }
  const changeAt = (k: number, lambda: number) => f((sb[k] as number) - f((s[k] as number) * lambda));

  // c_l: b is reached before any coordinate hits the box (every coordinate moves by the same lambda)
  const reachedFree = f(bb - changeAt(n - 1, p[order[0] as number] as number)) > 0;
  // c2: reachable inside the box, but some coordinates saturate first
  const reachable = f(bb - b0) > 0 && !reachedFree;

  if (reachedFree) {
    const lambda = Math.max(f(f(bb - (sb[n - 1] as number)) / -(s[n - 1] as number)), 0);
    for (let j = 0; j < n; j++) d[j] = a[j] ? lambda : -lambda;
  } else if (reachable) {
    let lb = 0;
    let ub = n - 1;
    const halvings = Math.ceil(Math.log2(n));
    for (let it = 0; it < halvings; it++) {
      const mid = Math.floor((lb + ub) / 2);
      const pMid = p[order[n - 1 - mid] as number] as number;
      if (f(bb - changeAt(mid, pMid)) > 0) lb = mid;
      else ub = mid;
    }
    const lambda = Math.max(f(f(bb - (sb[lb] as number)) / -(s[lb] as number)), 0);
    // official: min(lambda, d) * a + max(-lambda, d) * (1 - a), literally (so NaN and inf propagate alike)
    for (let j = 0; j < n; j++) {
      const dj = d[j] as number;
      const aj = a[j] as number;
      d[j] = f(f(Math.min(lambda, dj) * aj) + f(Math.max(-lambda, dj) * (1 - aj)));
    }
  }
  // else: the box corner on the far side (d as initialised); official mask d * (w != 0)
  for (let j = 0; j < n; j++) out[j] = (w[j] as number) !== 0 ? (d[j] as number) : (d[j] as number) * 0;
}

/** One row of projection_l2: writes d into `out`. */
function l2Row(t: Float32Array, wIn: Float32Array, bIn: number, out: Float32Array): void {
  const n = t.length;
  let c = f(dot32(wIn, t, n) - bIn);
  const sign = c >= 0 ? 1 : -1;
  const w = new Float32Array(n);
  for (let j = 0; j < n; j++) w[j] = (wIn[j] as number) * sign;
  c *= sign; // >= 0: how far <w, t> lies above b

  // r_j: the step size mu (d = -mu w) at which coordinate j reaches its bound; 1e12 for coordinates that never move
  const r = new Float32Array(n);
  const moves = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    const wj = w[j] as number;
    const tj = t[j] as number;
    moves[j] = Math.abs(wj) > TINY ? 1 : 0;
    if (Math.abs(wj) < TINY) {
      r[j] = BIG;
      continue;
    }
    let v = Math.max(f(tj / wj), f(f(tj - 1) / wj));
    v = Math.min(Math.max(v, -BIG), BIG);
    r[j] = v === -BIG ? BIG : v;
  }
  const order = argsortAscending(r);
  const rs = new Float32Array(n); // r sorted ascending, 1e12 read as 0
  const rs2 = new Float32Array(n); // the next one (0 after the last)
  for (let k = 0; k < n; k++) {
    const v = r[order[k] as number] as number;
    rs[k] = v === BIG ? 0 : v;
    const next = k + 1 < n ? (r[order[k + 1] as number] as number) : 0;
    rs2[k] = next === BIG ? 0 : next;
  }
  // w5 = ||w||^2; ws[k] = the squared norm of the coordinates after the k-th (still free beyond rs[k])
  const w3s = new Float32Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) {
    const wj = w[order[k] as number] as number;
    w3s[k] = f(wj * wj);
    acc += w3s[k] as number;
  }
  const w5 = f(acc);
  const ws = new Float32Array(n);
  acc = 0;
  for (let k = 0; k < n; k++) {
    acc += w3s[k] as number;
    ws[k] = f(w5 - f(acc));
  }
  const d = new Float32Array(n);
  for (let j = 0; j < n; j++) d[j] = -f((r[j] as number) * (w[j] as number)) * (moves[j] as number);
  // s[k]: minus the decrease of <w, .> at step size rs[k] (k = 0) and at the later breakpoints (k >= 1)
  const s = new Float32Array(n + 1);
  const w5r0 = f(w5 * (rs[0] as number));
  s[0] = -w5r0;
  acc = 0;
  for (let k = 0; k < n; k++) {
    acc += f(f((rs[k] as number) - (rs2[k] as number)) * (ws[k] as number));
    s[k + 1] = f(f(acc) - w5r0);
  }

  const beforeFirst = f((s[0] as number) + c) < 0; // c4: reached before any coordinate saturates
  const unreachable = f(dot32(d, w, n) + c) > 0; // c3: even the box corner stays above
  if (beforeFirst) {
    const alpha = f(c / w5);
    for (let j = 0; j < n; j++) d[j] = -f(alpha * (w[j] as number));
  } else if (!unreachable) {
    let lb = 0;
    let ub = n - 1;
    const halvings = Math.ceil(Math.log2(n));
    for (let it = 0; it < halvings; it++) {
      const mid = Math.floor((lb + ub) / 2);
      if (f((s[mid] as number) + c) > 0) lb = mid;
      else ub = mid;
    }
    let alpha = f(f(f((s[lb] as number) + c) / (ws[lb] as number)) + (rs[lb] as number));
    if ((ws[lb] as number) === 0) alpha = 0;
    // coordinates whose bound comes before alpha stay saturated, the others move by -alpha w_j;
    // official d * c5 - alpha * w * (1 - c5), literally
    for (let j = 0; j < n; j++) {
      const c5 = alpha > (r[j] as number) ? 1 : 0;
      d[j] = f(f((d[j] as number) * c5) - f(f(alpha * (w[j] as number)) * (1 - c5)));
    }
  }
  for (let j = 0; j < n; j++) out[j] = (d[j] as number) * (moves[j] as number);
}

function projectRows(
  what: string,
  row: (t: Float32Array, w: Float32Array, b: number, out: Float32Array) => void,
  points: Float32Array,
  w: Float32Array,
  b: ArrayLike<number>,
  n: number,
): Float32Array {
  const rows = checkRows(what, points, w, b, n);
  const out = new Float32Array(points.length);
  for (let r = 0; r < rows; r++) {
    const at = r * n;
    row(points.subarray(at, at + n), w.subarray(at, at + n), f(b[r] as number), out.subarray(at, at + n));
  }
  return out;
}

/**
 * Official projection_linf: per row of `points` [rows, n] (in [0, 1]), the step d of smallest Linf norm onto
 * {v : <w_row, v> = b_row} within [0, 1]^n (the far box corner when the hyperplane misses the box).
 */
export function projectionLinf(points: Float32Array, w: Float32Array, b: ArrayLike<number>, n: number): Float32Array {
  return projectRows('projectionLinf', linfRow, points, w, b, n);
}

/** Official projection_l2: as projectionLinf with the L2 norm. */
export function projectionL2(points: Float32Array, w: Float32Array, b: ArrayLike<number>, n: number): Float32Array {
  return projectRows('projectionL2', l2Row, points, w, b, n);
}
