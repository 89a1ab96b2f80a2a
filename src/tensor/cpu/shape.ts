// Data movement on cpu: permute, expand, slice/embed, concat, gather/scatterAdd.

import type { StridedAttrs } from '../prims/shape.js';
import { broadcastStrides, fmt, sizeOf, stridesOf } from '../shape.js';
import { type CpuArg, type CpuKernel, forEachStrided } from './kernel.js';
import { stridedCopy } from './strided.js';

const permute: CpuKernel = (ins, attrs: { perm: readonly number[] }, out, outShape) => {
  const x = ins[0] as CpuArg;
  const st = stridesOf(x.shape);
  stridedCopy(
    outShape,
    out,
    0,
    stridesOf(outShape),
    x.data,
    0,
    attrs.perm.map((p) => st[p] as number),
  );
};

const expand: CpuKernel = (ins, _attrs, out, outShape) => {
  const x = ins[0] as CpuArg;
  stridedCopy(outShape, out, 0, stridesOf(outShape), x.data, 0, broadcastStrides(x.shape, outShape));
};

/** Offset of element 0 and per-axis strides of the strided sub-grid begin + i*step. */
function stridedView(full: readonly number[], a: StridedAttrs): [number, number[]] {
  const st = stridesOf(full);
  let base = 0;
  a.begin.forEach((b, k) => {
    base += b * (st[k] as number);
  });
  return [base, a.step.map((s, k) => s * (st[k] as number))];
}

const slice: CpuKernel = (ins, attrs: StridedAttrs, out, outShape) => {
  const x = ins[0] as CpuArg;
  const [base, strides] = stridedView(x.shape, attrs);
  stridedCopy(outShape, out, 0, stridesOf(outShape), x.data, base, strides);
};

const embed: CpuKernel = (ins, attrs: StridedAttrs, out, outShape) => {
  const x = ins[0] as CpuArg;
  const [base, strides] = stridedView(outShape, attrs);
  stridedCopy(x.shape, out, base, strides, x.data, 0, stridesOf(x.shape));
};

const concat: CpuKernel = (ins, attrs: { axis: number }, out, outShape) => {
  const outer = sizeOf(outShape.slice(0, attrs.axis));
  const outRow = sizeOf(outShape.slice(attrs.axis));
  let col = 0;
  for (const x of ins) {
    const row = sizeOf(x.shape.slice(attrs.axis));
    for (let o = 0; o < outer; o++) out.set(x.data.subarray(o * row, (o + 1) * row), o * outRow + col);
    col += row;
  }
};

function indexAt(op: string, v: number, n: number, axis: number): number {
  if (!Number.isInteger(v) || v < 0 || v >= n) {
    throw new Error(`${op}: index value ${v} is out of range for axis ${axis} of size ${n}`);
  }
  return v;
}

const gather: CpuKernel = (ins, attrs: { axis: number }, out) => {
  const [x, index] = ins as [CpuArg, CpuArg];
  const xs = stridesOf(x.shape);
  const strides = xs.map((s, k) => (k === attrs.axis ? 0 : s));
  const n = x.shape[attrs.axis] as number;
  const sa = xs[attrs.axis] as number;
  forEachStrided(index.shape, [0], [strides], (i, o) => {
    out[i] = x.data[(o[0] as number) + indexAt('gather', index.data[i] as number, n, attrs.axis) * sa] as number;
  });
};

const scatterAdd: CpuKernel = (ins, attrs: { axis: number }, out, outShape) => {
  const [index, src] = ins as [CpuArg, CpuArg];
  const os = stridesOf(outShape);
  const strides = os.map((s, k) => (k === attrs.axis ? 0 : s));
  const n = outShape[attrs.axis] as number;
  const sa = os[attrs.axis] as number;
  if (index.shape.length !== outShape.length) throw new Error(`scatterAdd: index rank differs from ${fmt(outShape)}`);
  forEachStrided(index.shape, [0], [strides], (i, o) => {
    out[(o[0] as number) + indexAt('scatterAdd', index.data[i] as number, n, attrs.axis) * sa] += src.data[i] as number;
  });
};

export const shapeKernels: Record<string, CpuKernel> = { permute, expand, slice, embed, concat, gather, scatterAdd };
