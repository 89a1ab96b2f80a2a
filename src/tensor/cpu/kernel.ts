// Shared types and index helpers for the cpu reference kernels.

import type { TypedArray } from '../backend.js';
import { broadcastStrides, type Shape } from '../shape.js';
import { forEachRow } from './strided.js';

export interface CpuArg {
  readonly data: TypedArray;
  readonly shape: Shape;
}

/** A cpu kernel writes the primitive's output into `out` (freshly zeroed, row-major). */
export type CpuKernel = (ins: readonly CpuArg[], attrs: never, out: TypedArray, outShape: Shape) => void;

/**
 * Visit every element of `outShape` in row-major order, passing for each of k operands the offset
 * base[j] + sum_a idx[a] * strides[j][a]. Built on forEachRow (strided.ts): offsets advance by the row's strides.
 */
export function forEachStrided(
  outShape: Shape,
  bases: readonly number[],
  strides: readonly (readonly number[])[],
  visit: (i: number, offsets: Int32Array) => void,
): void {
  const k = strides.length;
  const offsets = new Int32Array(k);
  let i = 0;
  forEachRow(
    outShape,
    strides,
    (row, n, inner) => {
      offsets.set(row);
      for (let e = 0; e < n; e++, i++) {
        visit(i, offsets);
        for (let j = 0; j < k; j++) offsets[j] += inner[j] as number;
      }
    },
    bases,
  );
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
