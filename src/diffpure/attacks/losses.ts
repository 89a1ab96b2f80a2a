// The attacks' losses on logits z [B, K] (host float32), each with its derivative in the logits: the cotangent
// that model.ts backpropagates through the classifier. The derivatives are written out in the order PyTorch's
// autograd evaluates them, in float32, because one quirk of the official code depends on it (DLR below).
//
// Official definitions (fra31/auto-attack 6482e4d, autopgd_base.py; square.py):
//   CE            nn.CrossEntropyLoss(reduction='none')(z, y)
//   DLR           -(z_y - z_s2 ind - z_s1 (1 - ind)) / (z_s1 - z_s3 + 1e-12), s = z sorted descending,
//                 ind = (argmax z == y): the numerator is z_y - max_{i != y} z_i
//   targeted DLR  -(z_y - z_t) / (z_s1 - (z_s3 + z_s4) / 2 + 1e-12)
//   margin        z_y - max_{j != y} z_j   (Square; success when <= 0)

import type { LossAndCotangent } from './model.js';

const f = Math.fround;

function checkLabels(what: string, y: ArrayLike<number>, rows: number, k: number): void {
  if (y.length !== rows) throw new Error(`${what}: ${y.length} labels for ${rows} logit rows`);
  for (let i = 0; i < rows; i++) {
    const v = y[i] as number;
    if (!Number.isInteger(v) || v < 0 || v >= k)
      throw new Error(`${what}: label ${v} at row ${i} is not a class in 0..${k - 1}`);
  }
}

/** Per-row cross-entropy; d/dz = softmax(z) - onehot(y). */
export function crossEntropyLoss(z: Float32Array, k: number, y: ArrayLike<number>): LossAndCotangent {
  const b = z.length / k;
  checkLabels('cross-entropy', y, b, k);
  const loss = new Float32Array(b);
  const dz = new Float32Array(z.length);
  for (let r = 0; r < b; r++) {
    let m = -Infinity;
    for (let j = 0; j < k; j++) m = Math.max(m, z[r * k + j] as number);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp((z[r * k + j] as number) - m);
    const lse = m + Math.log(s);
    const yr = y[r] as number;
    loss[r] = lse - (z[r * k + yr] as number);
    for (let j = 0; j < k; j++) dz[r * k + j] = Math.exp((z[r * k + j] as number) - lse) - (j === yr ? 1 : 0);
  }
  return { loss, dz };
}

/** Indices of row r of z sorted by value, descending (ties: lower index first). */
function ranked(z: Float32Array, k: number, r: number): number[] {
  const idx = Array.from({ length: k }, (_, j) => j);
  idx.sort((a, c) => (z[r * k + c] as number) - (z[r * k + a] as number) || a - c);
  return idx;
}

/**
 * The difference-of-logits-ratio loss. QUIRK (official, kept): once the true class ranks exactly third the loss is
 * exactly 1.0 in float32 and its gradient exactly zero, because PyTorch differentiates a / b as g / b and
 * -g ((a / b) / b), which cancel; the image then drifts only with APGD's momentum. Evaluated here in that order.
 */
export function dlrLoss(z: Float32Array, k: number, y: ArrayLike<number>): LossAndCotangent {
  const b = z.length / k;
  if (k < 3) throw new Error(`DLR loss: needs at least 3 classes, the classifier has ${k}; use the CE loss`);
  checkLabels('DLR loss', y, b, k);
  const loss = new Float32Array(b);
  const dz = new Float32Array(z.length);
  for (let r = 0; r < b; r++) {
    const o = r * k;
    const [i1, i2, i3] = ranked(z, k, r) as [number, number, number];
    const yr = y[r] as number;
    const top = i1 === yr; // ind
    const zy = z[o + yr] as number;
    const s1 = z[o + i1] as number;
    const s2 = z[o + i2] as number;
    const s3 = z[o + i3] as number;
    const num = f(f(zy - (top ? s2 : 0)) - (top ? 0 : s1));
    const den = f(f(s1 - s3) + 1e-12);
    const q = f(num / den);
    loss[r] = -q;
    // loss = -q, dL/dq = -1: d num = -1 / den, d den = -(-1) * ((num / den) / den)
    const gNum = f(-1 / den);
    const gDen = f(q / den);
    // accumulate as autograd does: the index x[u, y] and the sort's scatter into the same row
    dz[o + yr] = f((dz[o + yr] as number) + gNum);
    if (top) dz[o + i2] = f((dz[o + i2] as number) - gNum);
    else dz[o + i1] = f((dz[o + i1] as number) - gNum);
    dz[o + i1] = f((dz[o + i1] as number) + gDen);
    dz[o + i3] = f((dz[o + i3] as number) - gDen);
  }
  return { loss, dz };
}

/** Targeted DLR towards `targets`: -(z_y - z_t) / (z_s1 - (z_s3 + z_s4) / 2 + 1e-12). */
export function dlrTargetedLoss(
  z: Float32Array,
  k: number,
  y: ArrayLike<number>,
  targets: ArrayLike<number>,
): LossAndCotangent {
  const b = z.length / k;
  if (k < 4) throw new Error(`targeted DLR loss: needs at least 4 classes, the classifier has ${k}`);
  checkLabels('targeted DLR loss', y, b, k);
  checkLabels('targeted DLR loss (targets)', targets, b, k);
  const loss = new Float32Array(b);
  const dz = new Float32Array(z.length);
  for (let r = 0; r < b; r++) {
    const o = r * k;
    const [i1, , i3, i4] = ranked(z, k, r) as [number, number, number, number];
    const yr = y[r] as number;
    const tr = targets[r] as number;
    const num = f((z[o + yr] as number) - (z[o + tr] as number));
    const den = f(f((z[o + i1] as number) - f(0.5 * f((z[o + i3] as number) + (z[o + i4] as number)))) + 1e-12);
    const q = f(num / den);
    loss[r] = -q;
    const gNum = f(-1 / den);
    const gDen = f(q / den);
    dz[o + yr] = f((dz[o + yr] as number) + gNum);
    dz[o + tr] = f((dz[o + tr] as number) - gNum);
    dz[o + i1] = f((dz[o + i1] as number) + gDen);
    const half = f(-0.5 * gDen);
    dz[o + i3] = f((dz[o + i3] as number) + half);
    dz[o + i4] = f((dz[o + i4] as number) + half);
  }
  return { loss, dz };
}

/** Square's margin z_y - max_{j != y} z_j per row (no gradient: Square is score-based). */
export function margins(z: Float32Array, k: number, y: ArrayLike<number>): Float32Array {
  const b = z.length / k;
  checkLabels('margin', y, b, k);
  const out = new Float32Array(b);
  for (let r = 0; r < b; r++) {
    const yr = y[r] as number;
    let other = -Infinity;
    for (let j = 0; j < k; j++) if (j !== yr) other = Math.max(other, z[r * k + j] as number);
    out[r] = f((z[r * k + yr] as number) - other);
  }
  return out;
}
