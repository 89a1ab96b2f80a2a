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
import { partRange, runCalls, sgemmOnThreads, type ThreadPolicy, threadsFor } from './gemm.js';
import type { WasmCall } from './pool.js';
import type { WasmRuntime } from './runtime.js';
import { winogradApplies, winogradConv2d, winogradConv2dInput, winogradConv2dWeight } from './winograd.js';

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

/**
 * im2col (or col2im) of images b0..b0+cnt-1 of group gi, split by images across `threads`: each image's columns
 * (or input gradient) are its own, so the parts are independent.
 */
function imagesOnThreads(
  rt: WasmRuntime,
  kind: 'im2col' | 'col2im',
  d: Dims,
  imgPtr: number,
  colPtr: number,
  b0: number,
  cnt: number,
  gi: number,
  threads: number,
): void {
  const p = d.oh * d.ow;
  const xStep = 4 * d.c * d.h * d.w;
  const colStep = 4 * p;
  const geom = geomArgs(d);
  const calls: WasmCall[] = [];
  const parts = Math.min(threads, cnt);
  for (let i = 0; i < parts; i++) {
    const [s, e] = partRange(cnt, parts, i);
    if (e <= s) continue;
    const img = imgPtr + xStep * (b0 + s) + 4 * gi * d.cg * d.h * d.w;
    const col = colPtr + colStep * s;
    calls.push(
      kind === 'im2col'
        ? { fn: 'im2colImages', args: [img, xStep, e - s, ...geom, col, colStep, cnt * p] }
        : { fn: 'col2imImages', args: [col, colStep, cnt * p, e - s, ...geom, img, xStep] },
    );
  }
  runCalls(rt, calls);
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
  if (winogradApplies(d)) {
    winogradConv2d(rt, policy, ins, attrs, out, outShape);
    return;
  }
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
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      imagesOnThreads(rt, 'im2col', d, xPtr, colPtr, b0, cnt, gi, threads);
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
  if (winogradApplies(d)) {
    winogradConv2dInput(rt, policy, ins, attrs, out, outShape);
    return;
  }
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
      imagesOnThreads(rt, 'col2im', d, gxPtr, colPtr, b0, cnt, gi, threads);
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
  if (winogradApplies(d)) {
    winogradConv2dWeight(rt, policy, ins, attrs, out);
    return;
  }
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
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      imagesOnThreads(rt, 'im2col', d, xPtr, colPtr, b0, cnt, gi, threads);
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
