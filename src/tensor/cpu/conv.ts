// Convolution on cpu as im2col + gemm (and col2im for the input gradient), per image and group: the readable
// reference. float32 work goes to the wasm version (wasm/conv.ts) when the wasm kernels are selected.

import type { TypedArray } from '../backend.js';
import type { ConvGeom, ConvInputAttrs, ConvWeightAttrs } from '../prims/conv.js';
import { currentConfig, gemm } from './gemm.js';
import { col2im, dims, im2col } from './im2col.js';
import type { CpuArg, CpuKernel } from './kernel.js';
import { wasmConv2d, wasmConv2dInput, wasmConv2dWeight } from './wasm/conv.js';
import { activeWasm } from './wasm/select.js';

/** The wasm runtime when all of a conv's arrays are float32 and the wasm kernels are selected. */
const wasmFor = (ins: readonly CpuArg[], out: TypedArray) =>
  out instanceof Float32Array && ins.every((t) => t.data instanceof Float32Array) ? activeWasm() : null;

function newLike(a: TypedArray, n: number): TypedArray {
  return a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/** Per (image, group): y[og, oh*ow] = W[og, cg*kh*kw] @ col. */
const conv2d: CpuKernel = (ins, attrs: ConvGeom, out, outShape) => {
  const rt = wasmFor(ins, out);
  if (rt) return wasmConv2d(rt, currentConfig(), ins, attrs, out as Float32Array, outShape);
  const [x, w] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, w.shape, outShape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      im2col(x.data, (b * d.c + gi * d.cg) * d.h * d.w, d, col);
      gemm({
        m: d.og,
        n: p,
        k: kk,
        a: w.data,
        aOff: gi * d.og * kk,
        lda: kk,
        b: col,
        bOff: 0,
        ldb: p,
        c: out,
        cOff: (b * d.o + gi * d.og) * p,
        ldc: p,
      });
    }
  }
};

/** Per (image, group): col = W^T @ gy, then col2im. Inputs: [gy, w]. */
const conv2dInput: CpuKernel = (ins, attrs: ConvInputAttrs, out, outShape) => {
  const rt = wasmFor(ins, out);
  if (rt) return wasmConv2dInput(rt, currentConfig(), ins, attrs, out as Float32Array, outShape);
  const [gy, w] = ins as [CpuArg, CpuArg];
  const d = dims(outShape, w.shape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      gemm({
        m: kk,
        n: p,
        k: d.og,
        a: w.data,
        aOff: gi * d.og * kk,
        lda: kk,
        transA: true,
        b: gy.data,
        bOff: (b * d.o + gi * d.og) * p,
        ldb: p,
        c: col,
        cOff: 0,
        ldc: p,
      });
      col2im(col, d, out, (b * d.c + gi * d.cg) * d.h * d.w);
    }
  }
};

/** Per (image, group): gW[og, kk] += gy[og, p] @ col^T. Inputs: [x, gy]. */
const conv2dWeight: CpuKernel = (ins, attrs: ConvWeightAttrs, out) => {
  const rt = wasmFor(ins, out);
  if (rt) return wasmConv2dWeight(rt, currentConfig(), ins, attrs, out as Float32Array);
  const [x, gy] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, attrs.wShape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      im2col(x.data, (b * d.c + gi * d.cg) * d.h * d.w, d, col);
      gemm({
        m: d.og,
        n: kk,
        k: p,
        a: gy.data,
        aOff: (b * d.o + gi * d.og) * p,
        lda: p,
        b: col,
        bOff: 0,
        ldb: p,
        transB: true,
        c: out,
        cOff: gi * d.og * kk,
        ldc: kk,
        accumulate: true,
      });
    }
  }
};

export const convKernels: Record<string, CpuKernel> = { conv2d, conv2dInput, conv2dWeight };
