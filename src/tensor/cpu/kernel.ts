// Shared types and index helpers for the cpu reference kernels.

import type { TypedArray } from '../backend.js';
import { broadcastStrides, type Shape, sizeOf } from '../shape.js';

export interface CpuArg {
  readonly data: TypedArray;
  readonly shape: Shape;
}

/** A cpu kernel writes the primitive's output into `out` (freshly zeroed, row-major). */
export type CpuKernel = (ins: readonly CpuArg[], attrs: never, out: TypedArray, outShape: Shape) => void;

/**
 * Visit every element of `outShape` in row-major order, passing for each of k operands the offset
 * base[j] + sum_a idx[a] * strides[j][a]. Offsets are updated incrementally (no division per element).
 */
export function forEachStrided(
  outShape: Shape,
  bases: readonly number[],
  strides: readonly (readonly number[])[],
  visit: (i: number, offsets: Int32Array) => void,
): void {
  const n = sizeOf(outShape);
  if (n === 0) return;
  const rank = outShape.length;
  const k = strides.length;
  const offsets = Int32Array.from(bases);
  const idx = new Int32Array(rank);
  for (let i = 0; i < n; i++) {
    visit(i, offsets);
    // increment the multi-index from the last axis, carrying into earlier ones
    for (let ax = rank - 1; ax >= 0; ax--) {
      const d = outShape[ax] as number;
      idx[ax]++;
      for (let j = 0; j < k; j++) offsets[j] += (strides[j] as number[])[ax] as number;
      if ((idx[ax] as number) < d) break;
      idx[ax] = 0;
      for (let j = 0; j < k; j++) offsets[j] -= ((strides[j] as number[])[ax] as number) * d;
    }
  }
}

/** forEachStrided with each input read under NumPy broadcasting to outShape. */
export function forEachBroadcast(
  outShape: Shape,
  inShapes: readonly Shape[],
  visit: (i: number, offsets: Int32Array) => void,
): void {
  forEachStrided(
    outShape,
    inShapes.map(() => 0),
    inShapes.map((s) => broadcastStrides(s, outShape)),
    visit,
  );
}
