// Fast strided iteration for the elementwise and reduction kernels: the shape is first coalesced (adjacent axes that
// every operand walks contiguously become one axis), then each row of the last axis is a plain loop with a fixed
// stride per operand (0 for a broadcast operand). A per-channel bias [1, C, 1, 1] on [N, C, H, W] becomes rows of
// H*W with stride 0; same-shape operands become one row. The per-element closure of forEachStrided (kernel.ts) cost
// a call per element, a fifth of a DDPM++ training step in the profile that motivated this file.

import type { TypedArray } from '../backend.js';
import type { Shape } from '../shape.js';

/** Shape and per-operand strides with mergeable adjacent axes merged and size-1 axes dropped. */
export function coalesce(shape: Shape, strides: readonly (readonly number[])[]): { dims: number[]; st: number[][] } {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let ax = 0; ax < shape.length; ax++) {
    const d = shape[ax] as number;
    if (d === 1) continue;
    const last = dims.length - 1;
    // axis ax merges into the previous kept one when, for every operand, stepping the previous axis once equals
    // stepping this one d times
    const merge = last >= 0 && strides.every((s, j) => (st[j]?.[last] as number) === (s[ax] as number) * d);
    if (merge) {
      dims[last] = (dims[last] as number) * d;
      for (let j = 0; j < strides.length; j++) (st[j] as number[])[last] = (strides[j] as number[])[ax] as number;
    } else {
      dims.push(d);
      for (let j = 0; j < strides.length; j++) (st[j] as number[]).push((strides[j] as number[])[ax] as number);
    }
  }
  return { dims, st };
}

/**
 * Calls row(offsets, n, innerStrides) once per row of the coalesced iteration space of `shape`, where offsets[j] is
 * operand j's offset of the row's first element. Rows are visited in row-major order; an empty shape visits nothing,
 * a rank-0 (or all-ones) shape one row of length 1.
 */
export function forEachRow(
  shape: Shape,
  strides: readonly (readonly number[])[],
  row: (offsets: Int32Array, n: number, inner: Int32Array) => void,
  bases?: readonly number[],
): void {
  for (const d of shape) if (d === 0) return;
  const { dims, st } = coalesce(shape, strides);
  const k = strides.length;
  const offsets = bases ? Int32Array.from(bases) : new Int32Array(k);
  const inner = new Int32Array(k);
  if (dims.length === 0) {
    row(offsets, 1, inner);
    return;
  }
  const rank = dims.length;
  const n = dims[rank - 1] as number;
  for (let j = 0; j < k; j++) inner[j] = (st[j] as number[])[rank - 1] as number;
  let rows = 1;
  for (let ax = 0; ax < rank - 1; ax++) rows *= dims[ax] as number;
  const idx = new Int32Array(rank);
  for (let r = 0; r < rows; r++) {
    row(offsets, n, inner);
    for (let ax = rank - 2; ax >= 0; ax--) {
      const d = dims[ax] as number;
      idx[ax]++;
      for (let j = 0; j < k; j++) offsets[j] += (st[j] as number[])[ax] as number;
      if ((idx[ax] as number) < d) break;
      idx[ax] = 0;
      for (let j = 0; j < k; j++) offsets[j] -= ((st[j] as number[])[ax] as number) * d;
    }
  }
}

/** dst[dstBase + idx . dstStrides] = src[srcBase + idx . srcStrides] for every index of `shape`. */
export function stridedCopy(
  shape: Shape,
  dst: TypedArray,
  dstBase: number,
  dstStrides: readonly number[],
  src: TypedArray,
  srcBase: number,
  srcStrides: readonly number[],
): void {
  forEachRow(
    shape,
    [dstStrides, srcStrides],
    (o, n, s) => {
      const d0 = o[0] as number;
      const s0 = o[1] as number;
      const ds = s[0] as number;
      const ss = s[1] as number;
      if (ds === 1 && ss === 1) for (let i = 0; i < n; i++) dst[d0 + i] = src[s0 + i] as number;
      else if (ds === 1 && ss === 0) dst.fill(src[s0] as number, d0, d0 + n);
      else for (let i = 0; i < n; i++) dst[d0 + i * ds] = src[s0 + i * ss] as number;
    },
    [dstBase, srcBase],
  );
}
