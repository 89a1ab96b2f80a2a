// 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on the wasm kernels (assembly/winograd.ts holds the transforms
// and says the algorithm): 16 gemms of K x C x tiles instead of one of K x 9C x pixels, 2.25x fewer multiply-adds.
// The forward convolution and its input gradient both qualify (the input gradient of a 3x3 stride-1 convolution with
// padding p is the convolution of the output gradient with the flipped, transposed filter at padding 2 - p). The
// weight gradient is the same algorithm run backwards: dU[xi] = sum over tiles of (A dY A^T)[xi] (B^T d B)[xi]^T, 16
// gemms that reduce over the tiles, then dW = G^T dU G. Transforms are split across threads by channels, the 16 gemms
// by xi.
//
// Numerics: the transforms only add and subtract (and halve, in the filter transform, done in float64), so the error
// stays a small multiple of the im2col path's; test/cpu-wasm-winograd.test.ts holds it to the same bound on random
// shapes, tile edges included.

import type { ConvGeom, ConvInputAttrs, ConvWeightAttrs } from '../../prims/conv.js';
import type { Shape } from '../../shape.js';
import { type Dims, dims } from '../im2col.js';
import type { CpuArg } from '../kernel.js';
import { partRange, runCalls, type ThreadPolicy } from './gemm.js';
import type { WasmCall } from './pool.js';
import type { WasmRuntime } from './runtime.js';

/**
 * When Winograd runs: both channel counts (per group) at least `minChannels`, below which the transforms cost more
 * than the multiply-adds they save (measured: README "CPU kernels"). `enabled: false` keeps every convolution on
 * im2col (tests and benches compare the two).
 */
const config = { enabled: true, minChannels: 16 };

export function configureWinograd(c: Partial<typeof config>): typeof config {
  const prev = { ...config };
  Object.assign(config, c);
  return prev;
}

/** Tiles one chunk aims for (columns of each of the 16 gemms). */
const TARGET_TILES = 2048;
/** Largest V + M working set of one chunk, in bytes. */
const MAX_CHUNK_BYTES = 64 << 20;

function is3x3Stride1(d: Dims): boolean {
  const g = d.g;
  return (
    d.kh === 3 &&
    d.kw === 3 &&
    g.stride[0] === 1 &&
    g.stride[1] === 1 &&
    g.dilation[0] === 1 &&
    g.dilation[1] === 1 &&
    g.padding[0] <= 2 &&
    g.padding[1] <= 2
  );
}

/** Whether the forward convolution (and, by symmetry of the channel test, its input gradient) runs by Winograd. */
export function winogradApplies(d: Dims): boolean {
  return config.enabled && is3x3Stride1(d) && d.cg >= config.minChannels && d.og >= config.minChannels;
}

/** A Winograd convolution: `cin` -> `kout` channels per group, h x w -> oh x ow at padding ph, pw. */
interface Plan {
  n: number;
  groups: number;
  cin: number;
  kout: number;
  h: number;
  w: number;
  ph: number;
  pw: number;
  oh: number;
  ow: number;
}

/**
 * U[xi][k][c] = (G g G^T)[xi] of the 3x3 filter g = filt(k, c, i, j), G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], in
 * float64, rounded once.
 */
function filterTransform(
  filt: (k: number, c: number, i: number, j: number) => number,
  kout: number,
  cin: number,
  dst: Float32Array,
): void {
  const plane = kout * cin;
  const gg = new Float64Array(12);
  for (let k = 0; k < kout; k++) {
    for (let c = 0; c < cin; c++) {
      // G g: 4 x 3
      for (let j = 0; j < 3; j++) {
        const g0 = filt(k, c, 0, j);
        const g1 = filt(k, c, 1, j);
        const g2 = filt(k, c, 2, j);
        gg[j] = g0;
        gg[3 + j] = 0.5 * (g0 + g1 + g2);
        gg[6 + j] = 0.5 * (g0 - g1 + g2);
        gg[9 + j] = g2;
      }
      // (G g) G^T: 4 x 4
      const at = k * cin + c;
      for (let i = 0; i < 4; i++) {
        const r0 = gg[3 * i] as number;
        const r1 = gg[3 * i + 1] as number;
        const r2 = gg[3 * i + 2] as number;
        dst[4 * i * plane + at] = r0;
        dst[(4 * i + 1) * plane + at] = 0.5 * (r0 + r1 + r2);
        dst[(4 * i + 2) * plane + at] = 0.5 * (r0 - r1 + r2);
        dst[(4 * i + 3) * plane + at] = r2;
      }
    }
  }
}

/** V = B^T d B of `cnt` images from `x` (channel `c0` of the first at x), `cin` channels split across threads. */
function inputTransform(
  rt: WasmRuntime,
  threads: number,
  x: number,
  inImage: number,
  cnt: number,
  cin: number,
  geom: [h: number, w: number, ph: number, pw: number, tH: number, tW: number],
  v: number,
  ld: number,
): void {
  const [h, w] = geom;
  const calls: WasmCall[] = [];
  const parts = Math.min(threads, cin);
  for (let t = 0; t < parts; t++) {
    const [c0, c1] = partRange(cin, parts, t);
    if (c1 <= c0) continue;
    const args = [x + 4 * c0 * h * w, inImage, cnt, c1 - c0, ...geom, v + 4 * c0 * ld, ld, cin * ld];
    calls.push({ fn: 'winogradInputImages', args: [...args, rt.workspace(calls.length)] });
  }
  runCalls(rt, calls);
}

/** An operand of the 16 products: its first matrix, the bytes between matrices, its leading dimension. */
type Batched = [ptr: number, step: number, ld: number];

/** C_q (+)= A_q op(B_q) for q = 0..15, the products shared out among threads by q (each whole on one thread). */
function gemms16(
  rt: WasmRuntime,
  threads: number,
  [m, n, k]: [number, number, number],
  a: Batched,
  b: Batched,
  transB: boolean,
  c: Batched,
  accumulate: boolean,
): void {
  const calls: WasmCall[] = [];
  const parts = Math.min(threads, 16);
  for (let t = 0; t < parts; t++) {
    const [q0, q1] = partRange(16, parts, t);
    if (q1 <= q0) continue;
    const at = (o: Batched): number[] => [o[0] + q0 * o[1], o[1], o[2]];
    const args = [q1 - q0, m, n, k, ...at(a), ...at(b), +transB, ...at(c), +accumulate, rt.workspace(calls.length)];
    calls.push({ fn: 'sgemmBatch', args });
  }
  runCalls(rt, calls);
}

function run(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  x: Float32Array,
  p: Plan,
  filt: (gi: number) => (k: number, c: number, i: number, j: number) => number,
  out: Float32Array,
): void {
  const tH = Math.ceil(p.oh / 2);
  const tW = Math.ceil(p.ow / 2);
  const tiles = tH * tW;
  const perImage = 16 * (p.cin + p.kout) * tiles * 4;
  let nb = Math.max(1, Math.min(p.n, Math.ceil(TARGET_TILES / tiles)));
  while (nb > 1 && nb * perImage > MAX_CHUNK_BYTES) nb--;
  const cinTotal = p.groups * p.cin;
  const koutTotal = p.groups * p.kout;
  const macs = 16 * p.kout * p.cin * p.n * tiles;
  const threads = policy.threads > 1 && macs >= policy.minThreadedMacs ? policy.threads : 1;
  rt.reset(threads);
  const xPtr = rt.alloc(4 * x.length);
  const uPtr = rt.alloc(4 * 16 * p.kout * p.cin);
  const vPtr = rt.alloc(4 * 16 * p.cin * nb * tiles);
  const mPtr = rt.alloc(4 * (16 * p.kout * nb * tiles + 4)); // + 4: the output transform reads 3 floats past
  const yPtr = rt.alloc(4 * out.length);
  rt.f32(xPtr, x.length).set(x);
  const u = rt.f32(uPtr, 16 * p.kout * p.cin);
  const inImage = 4 * cinTotal * p.h * p.w;
  const outImage = 4 * koutTotal * p.oh * p.ow;
  for (let gi = 0; gi < p.groups; gi++) {
    filterTransform(filt(gi), p.kout, p.cin, u);
    for (let b0 = 0; b0 < p.n; b0 += nb) {
      const cnt = Math.min(nb, p.n - b0);
      const ld = cnt * tiles;
      const xAt = xPtr + inImage * b0 + 4 * gi * p.cin * p.h * p.w;
      inputTransform(rt, threads, xAt, inImage, cnt, p.cin, [p.h, p.w, p.ph, p.pw, tH, tW], vPtr, ld);
      // M[xi] = U[xi] V[xi]
      const uB = [uPtr, 4 * p.kout * p.cin, p.cin] as Batched;
      const vB = [vPtr, 4 * p.cin * ld, ld] as Batched;
      gemms16(rt, threads, [p.kout, ld, p.cin], uB, vB, false, [mPtr, 4 * p.kout * ld, ld], false);
      // Y = A^T M A into the output images, channels split across threads
      const yOut: WasmCall[] = [];
      const partsOut = Math.min(threads, p.kout);
      for (let t = 0; t < partsOut; t++) {
        const [k0, k1] = partRange(p.kout, partsOut, t);
        if (k1 <= k0) continue;
        const yAt = yPtr + outImage * b0 + 4 * (gi * p.kout + k0) * p.oh * p.ow;
        const args = [mPtr + 4 * k0 * ld, ld, p.kout * ld, cnt, k1 - k0, p.oh, p.ow, tH, tW, yAt, outImage];
        yOut.push({ fn: 'winogradOutputImages', args });
      }
      runCalls(rt, yOut);
    }
  }
  out.set(rt.f32(yPtr, out.length));
}

/** conv2d by Winograd; the caller checked winogradApplies. */
export function winogradConv2d(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvGeom,
  out: Float32Array,
  outShape: Shape,
): void {
  const [x, w] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, w.shape, outShape, attrs);
  const wd = w.data as Float32Array;
  const plan: Plan = {
    n: d.n,
    groups: attrs.groups,
    cin: d.cg,
    kout: d.og,
    h: d.h,
    w: d.w,
    ph: attrs.padding[0],
    pw: attrs.padding[1],
    oh: d.oh,
    ow: d.ow,
  };
  // w[o, c, i, j], o = gi*og + k
  const filt = (gi: number) => (k: number, c: number, i: number, j: number) =>
    wd[(((gi * d.og + k) * d.cg + c) * 3 + i) * 3 + j] as number;
  run(rt, policy, x.data as Float32Array, plan, filt, out);
}

/**
 * conv2d's input gradient by Winograd: the output gradient convolved with w flipped in space and transposed per group
 * (w'[c, k, i, j] = w[gi*og + k, c, 2 - i, 2 - j]) at padding 2 - p. The caller checked winogradApplies.
 */
export function winogradConv2dInput(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvInputAttrs,
  out: Float32Array,
  outShape: Shape,
): void {
  const [gy, w] = ins as [CpuArg, CpuArg];
  const d = dims(outShape, w.shape, gy.shape, attrs);
  const wd = w.data as Float32Array;
  const plan: Plan = {
    n: d.n,
    groups: attrs.groups,
    cin: d.og,
    kout: d.cg,
    h: d.oh,
    w: d.ow,
    ph: 2 - attrs.padding[0],
    pw: 2 - attrs.padding[1],
    oh: d.h,
    ow: d.w,
  };
  const filt = (gi: number) => (c: number, k: number, i: number, j: number) =>
    wd[(((gi * d.og + k) * d.cg + c) * 3 + (2 - i)) * 3 + (2 - j)] as number;
  run(rt, policy, gy.data as Float32Array, plan, filt, out);
}

/**
 * conv2d's weight gradient by Winograd: dU[xi] (og x cg) = sum over images and tiles of Mg[xi] V[xi]^T, with V the
 * forward input transform and Mg = A dY A^T of the output gradient's 2x2 tiles, then dW = G^T dU G per filter, in
 * float64. The caller checked winogradApplies.
 */
export function winogradConv2dWeight(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  ins: readonly CpuArg[],
  attrs: ConvWeightAttrs,
  out: Float32Array,
): void {
  const [x, gy] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, attrs.wShape, gy.shape, attrs);
  const cin = d.cg;
  const kout = d.og;
  const tH = Math.ceil(d.oh / 2);
  const tW = Math.ceil(d.ow / 2);
  const tiles = tH * tW;
  const perImage = 16 * (cin + kout) * tiles * 4;
  let nb = Math.max(1, Math.min(d.n, Math.ceil(TARGET_TILES / tiles)));
  while (nb > 1 && nb * perImage > MAX_CHUNK_BYTES) nb--;
  const macs = 16 * kout * cin * d.n * tiles;
  const threads = policy.threads > 1 && macs >= policy.minThreadedMacs ? policy.threads : 1;
  rt.reset(threads);
  const xd = x.data as Float32Array;
  const gyd = gy.data as Float32Array;
  const xPtr = rt.alloc(4 * xd.length);
  const gyPtr = rt.alloc(4 * gyd.length);
  const vPtr = rt.alloc(4 * 16 * cin * nb * tiles);
  const mPtr = rt.alloc(4 * 16 * kout * nb * tiles);
  const duPtr = rt.alloc(4 * 16 * kout * cin);
  rt.f32(xPtr, xd.length).set(xd);
  rt.f32(gyPtr, gyd.length).set(gyd);
  const inImage = 4 * d.c * d.h * d.w;
  const outImage = 4 * d.o * d.oh * d.ow;
  const [ph, pw] = attrs.padding;
  for (let gi = 0; gi < attrs.groups; gi++) {
    for (let b0 = 0; b0 < d.n; b0 += nb) {
      const cnt = Math.min(nb, d.n - b0);
      const ld = cnt * tiles;
      // V = B^T d B of the input, then Mg = A dY A^T of the output gradient, channels split across threads
      const xAt = xPtr + inImage * b0 + 4 * gi * cin * d.h * d.w;
      inputTransform(rt, threads, xAt, inImage, cnt, cin, [d.h, d.w, ph, pw, tH, tW], vPtr, ld);
      const mg: WasmCall[] = [];
      const partsG = Math.min(threads, kout);
      for (let t = 0; t < partsG; t++) {
        const [k0, k1] = partRange(kout, partsG, t);
        if (k1 <= k0) continue;
        const gAt = gyPtr + outImage * b0 + 4 * (gi * kout + k0) * d.oh * d.ow;
        const args = [gAt, outImage, cnt, k1 - k0, d.oh, d.ow, tH, tW, mPtr + 4 * k0 * ld, ld, kout * ld];
        mg.push({ fn: 'winogradGradOutputImages', args: [...args, rt.workspace(mg.length)] });
      }
      runCalls(rt, mg);
      // dU[xi] (+)= Mg[xi] V[xi]^T
      const mgB = [mPtr, 4 * kout * ld, ld] as Batched;
      const vB = [vPtr, 4 * cin * ld, ld] as Batched;
      gemms16(rt, threads, [kout, cin, ld], mgB, vB, true, [duPtr, 4 * kout * cin, cin], b0 > 0);
    }
    // dW = G^T dU G, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]
    const du = rt.f32(duPtr, 16 * kout * cin);
    const plane = kout * cin;
    const t = new Float64Array(12);
    for (let k = 0; k < kout; k++) {
      for (let c = 0; c < cin; c++) {
        const at = k * cin + c;
        // G^T dU: 3 x 4
        for (let j = 0; j < 4; j++) {
          const u0 = du[j * plane + at] as number;
          const u1 = du[(4 + j) * plane + at] as number;
          const u2 = du[(8 + j) * plane + at] as number;
          const u3 = du[(12 + j) * plane + at] as number;
          t[j] = u0 + 0.5 * (u1 + u2);
          t[4 + j] = 0.5 * (u1 - u2);
          t[8 + j] = 0.5 * (u1 + u2) + u3;
        }
        // (G^T dU) G: 3 x 3
        const o = ((gi * kout + k) * cin + c) * 9;
        for (let i = 0; i < 3; i++) {
          const r0 = t[4 * i] as number;
          const r1 = t[4 * i + 1] as number;
          const r2 = t[4 * i + 2] as number;
          const r3 = t[4 * i + 3] as number;
          out[o + 3 * i] = r0 + 0.5 * (r1 + r2);
          out[o + 3 * i + 1] = 0.5 * (r1 - r2);
          out[o + 3 * i + 2] = 0.5 * (r1 + r2) + r3;
        }
      }
    }
  }
}
