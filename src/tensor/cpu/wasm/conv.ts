// float32 convolutions on the wasm gemm: im2col written straight into the wasm arena, several images side by side in
// one matrix so that small feature maps (8x8, 7x7) still make one wide gemm worth splitting across threads. The input
// (or the input gradient) lives in the arena too, so im2col and col2im run in wasm (assembly/im2col.ts).
//
// Per group and chunk of nb images (col is [kk, nb*p], kk = cg*kh*kw, p = oh*ow, image b in columns b*p..):
//   forward       Y[og, nb*p]  = W[og, kk] @ col                 then scattered to y[b, og, p]
//   input grad    col          = W^T @ GY[og, nb*p]               then col2im into gx per image
//   weight grad   gW[og, kk]  += GY @ col^T                       (sums over the chunk's images in one gemm)

import type { ConvGeom, ConvInputAttrs, ConvWeightAttrs } from '../../prims/conv.js';
import type { Shape } from '../../shape.js';
import { type Dims, dims } from '../im2col.js';
import type { CpuArg } from '../kernel.js';
import { sgemmOnThreads, type ThreadPolicy, threadsFor } from './gemm.js';
import type { WasmRuntime } from './runtime.js';

/** Columns one chunk aims for (a gemm this wide splits well across threads and amortises packing A). */
const TARGET_COLUMNS = 4096;
/** Largest im2col chunk in bytes (the arena keeps its peak: see runtime.ts). */
const MAX_COL_BYTES = 64 << 20;

function chunkImages(d: Dims, kk: number): number {
  const p = d.oh * d.ow;
  let nb = Math.max(1, Math.min(d.n, Math.ceil(TARGET_COLUMNS / p)));
  while (nb > 1 && kk * nb * p * 4 > MAX_COL_BYTES) nb--;
  return nb;
}

/** Geometry arguments shared by the wasm im2col and col2im: c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow. */
function geomArgs(d: Dims): number[] {
  const g = d.g;
  return [
    d.cg,
    d.h,
    d.w,
    d.kh,
    d.kw,
    g.stride[0],
    g.stride[1],
    g.padding[0],
    g.padding[1],
    g.dilation[0],
    g.dilation[1],
    d.oh,
    d.ow,
  ];
}

/** Copies rows of length p of image-major [b, rows, p] data into [rows, nb*p] (or back when `toImages`). */
function gatherRows(
  src: Float32Array,
  dst: Float32Array,
  d: Dims,
  b0: number,
  nb: number,
  chanOff: number,
  rows: number,
  chans: number,
  toImages: boolean,
): void {
  const p = d.oh * d.ow;
  const ld = nb * p;
  for (let b = 0; b < nb; b++) {
    for (let r = 0; r < rows; r++) {
      const img = ((b0 + b) * chans + chanOff + r) * p;
      const mat = r * ld + b * p;
      if (toImages) dst.set(src.subarray(mat, mat + p), img);
      else dst.set(src.subarray(img, img + p), mat);
    }
  }
}

export function wasmConv2d(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvGeom,
  out: Float32Array,
  outShape: Shape,
): void {
  const [x, w] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, w.shape, outShape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const nb = chunkImages(d, kk);
  const threads = threadsFor(d.og, nb * p, kk, policy);
  rt.reset(threads);
  const wPtr = rt.alloc(4 * w.data.length);
  const xPtr = rt.alloc(4 * x.data.length);
  const colPtr = rt.alloc(4 * kk * nb * p);
  const yPtr = rt.alloc(4 * d.og * nb * p);
  rt.f32(wPtr, w.data.length).set(w.data);
  rt.f32(xPtr, x.data.length).set(x.data);
  const y = rt.f32(yPtr, d.og * nb * p);
  const geom = geomArgs(d);
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      for (let b = 0; b < cnt; b++) {
        const xOff = xPtr + 4 * ((b0 + b) * d.c + gi * d.cg) * d.h * d.w;
        rt.exports.im2col(xOff, ...geom, colPtr + 4 * b * p, cnt * p);
      }
      const job = { m: d.og, n: cnt * p, k: kk, a: wPtr + 4 * gi * d.og * kk, lda: kk, transA: false };
      sgemmOnThreads(
        rt,
        { ...job, b: colPtr, ldb: cnt * p, transB: false, c: yPtr, ldc: cnt * p, accumulate: false },
        threads,
      );
      gatherRows(y, out, d, b0, cnt, gi * d.og, d.og, d.o, true);
    }
  }
}

export function wasmConv2dInput(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvInputAttrs,
  out: Float32Array,
  outShape: Shape,
): void {
  const [gy, w] = ins as [CpuArg, CpuArg];
  const d = dims(outShape, w.shape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const nb = chunkImages(d, kk);
  const threads = threadsFor(kk, nb * p, d.og, policy);
  rt.reset(threads);
  const wPtr = rt.alloc(4 * w.data.length);
  const gyPtr = rt.alloc(4 * d.og * nb * p);
  const colPtr = rt.alloc(4 * kk * nb * p);
  const gxPtr = rt.alloc(4 * out.length);
  rt.f32(wPtr, w.data.length).set(w.data);
  const gyM = rt.f32(gyPtr, d.og * nb * p);
  const gx = rt.f32(gxPtr, out.length);
  gx.fill(0);
  const geom = geomArgs(d);
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      gatherRows(gy.data as Float32Array, gyM, d, b0, cnt, gi * d.og, d.og, d.o, false);
      const job = { m: kk, n: cnt * p, k: d.og, a: wPtr + 4 * gi * d.og * kk, lda: kk, transA: true };
      sgemmOnThreads(
        rt,
        { ...job, b: gyPtr, ldb: cnt * p, transB: false, c: colPtr, ldc: cnt * p, accumulate: false },
        threads,
      );
      for (let b = 0; b < cnt; b++) {
        const xOff = gxPtr + 4 * ((b0 + b) * d.c + gi * d.cg) * d.h * d.w;
        rt.exports.col2im(colPtr + 4 * b * p, cnt * p, ...geom, xOff);
      }
    }
  }
  out.set(gx);
}

export function wasmConv2dWeight(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvWeightAttrs,
  out: Float32Array,
): void {
  const [x, gy] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, attrs.wShape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const nb = chunkImages(d, kk);
  const threads = threadsFor(d.og, kk, nb * p, policy);
  rt.reset(threads);
  const gwPtr = rt.alloc(4 * out.length);
  const gyPtr = rt.alloc(4 * d.og * nb * p);
  const colPtr = rt.alloc(4 * kk * nb * p);
  const xPtr = rt.alloc(4 * x.data.length);
  const gw = rt.f32(gwPtr, out.length);
  gw.fill(0);
  const gyM = rt.f32(gyPtr, d.og * nb * p);
  rt.f32(xPtr, x.data.length).set(x.data);
  const geom = geomArgs(d);
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      for (let b = 0; b < cnt; b++) {
        const xOff = xPtr + 4 * ((b0 + b) * d.c + gi * d.cg) * d.h * d.w;
        rt.exports.im2col(xOff, ...geom, colPtr + 4 * b * p, cnt * p);
      }
      gatherRows(gy.data as Float32Array, gyM, d, b0, cnt, gi * d.og, d.og, d.o, false);
      const job = { m: d.og, n: kk, k: cnt * p, a: gyPtr, lda: cnt * p, transA: false };
      sgemmOnThreads(
        rt,
        { ...job, b: colPtr, ldb: cnt * p, transB: true, c: gwPtr + 4 * gi * d.og * kk, ldc: kk, accumulate: true },
        threads,
      );
    }
  }
  out.set(gw);
}
