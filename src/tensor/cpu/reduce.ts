// Reductions on cpu. Sums accumulate in float64 whatever the dtype, so float32 results
// carry one rounding, not K of them.

import type { ArgAttrs, ReduceAttrs } from '../prims/reduce.js';
import { broadcastStrides, reducedShape, type Shape, sizeOf, stridesOf } from '../shape.js';
import type { CpuArg, CpuKernel } from './kernel.js';
import { coalesce, forEachRow } from './strided.js';

/**
 * The iteration space with its longest axis innermost when the natural last axis is short: 2x2 pooling's sum over
 * axes 3 and 5 of [N, C, H, 2, W, 2] would otherwise visit rows of 2 elements. The visiting order changes the order of
 * the float64 additions only.
 */
function longRows(shape: Shape, strides: number[][]): [number[], number[][]] {
  const { dims, st } = coalesce(shape, strides);
  if (dims.length < 2 || (dims[dims.length - 1] as number) >= 16) return [dims, st];
  let best = 0;
  for (let a = 1; a < dims.length; a++) if ((dims[a] as number) > (dims[best] as number)) best = a;
  const order = [...dims.keys()].filter((a) => a !== best).concat(best);
  return [order.map((a) => dims[a] as number), st.map((s) => order.map((a) => s[a] as number))];
}

/**
 * The sum of x [N, C, S] (coalesced, contiguous) over axes 0 and 2 into acc [C], as forEachRow would visit it (each
 * row of S summed, then added to its channel) without a callback per row: rows of 49-784 elements made the callback
 * a third of the time. Returns false, touching nothing, for any other layout.
 */
function sumKeepMiddle(
  xd: ArrayLike<number>,
  shape: readonly number[],
  strides: number[][],
  acc: Float64Array,
): boolean {
  if (shape.length !== 3) return false;
  const [n, c, len] = shape as [number, number, number];
  const [sx, sa] = strides as [number[], number[]];
  if (sx[0] !== c * len || sx[1] !== len || sx[2] !== 1 || sa[0] !== 0 || sa[1] !== 1 || sa[2] !== 0) return false;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const o = (b * c + ch) * len;
      let t = 0;
      for (let i = o; i < o + len; i++) t += xd[i] as number;
      acc[ch] = (acc[ch] as number) + t;
    }
  }
  return true;
}

const reduce: CpuKernel = (ins, attrs: ReduceAttrs, out) => {
  const x = ins[0] as CpuArg;
  const xd = x.data;
  const keep = reducedShape(x.shape, attrs.axes, true);
  const acc = new Float64Array(out.length);
  // rows of x (coalesced), each added into acc at stride 0 (a reduced inner axis) or elementwise
  const [shape, strides] = longRows(x.shape, [stridesOf(x.shape), broadcastStrides(keep, x.shape)]);
  if (attrs.op === 'sum' && sumKeepMiddle(xd, shape, strides, acc)) {
    // done: [N, C, S] summed to [C] (batch norm's weight and bias gradients), the generic path's additions in its order
  } else if (attrs.op === 'sum') {
    forEachRow(shape, strides, (o, n, s) => {
      const xo = o[0] as number;
      const ao = o[1] as number;
      const sx = s[0] as number;
      const sa = s[1] as number;
      if (sa === 0) {
        let t = 0;
        for (let i = 0; i < n; i++) t += xd[xo + i * sx] as number;
        acc[ao] += t;
      } else {
        for (let i = 0; i < n; i++) acc[ao + i * sa] += xd[xo + i * sx] as number;
      }
    });
  } else {
    const isMax = attrs.op === 'max';
    acc.fill(isMax ? -Infinity : Infinity);
    forEachRow(shape, strides, (o, n, s) => {
      for (let i = 0; i < n; i++) {
        const v = xd[(o[0] as number) + i * (s[0] as number)] as number;
        const j = (o[1] as number) + i * (s[1] as number);
        const a = acc[j] as number;
        // NaN propagates, as in PyTorch
        if (Number.isNaN(v) || (isMax ? v > a : v < a)) acc[j] = v;
        else if (Number.isNaN(a)) acc[j] = a;
      }
    });
  }
  out.set(acc);
};

const argreduce: CpuKernel = (ins, attrs: ArgAttrs, out) => {
  const x = ins[0] as CpuArg;
  const isMax = attrs.op === 'argmax';
  // View x as [outer, n, inner] with n the reduced axis (or everything).
  const a = attrs.axis;
  const n = a === null ? x.data.length : (x.shape[a] as number);
  const inner = a === null ? 1 : sizeOf(x.shape.slice(a + 1));
  const outer = a === null ? 1 : sizeOf(x.shape.slice(0, a));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let best = 0;
      let bv = x.data[o * n * inner + i] as number;
      for (let k = 1; k < n && !Number.isNaN(bv); k++) {
        const v = x.data[(o * n + k) * inner + i] as number;
        if (Number.isNaN(v) || (isMax ? v > bv : v < bv)) {
          best = k;
          bv = v;
        }
      }
      out[o * inner + i] = best;
    }
  }
};

export const reduceKernels: Record<string, CpuKernel> = { reduce, argreduce };
