// AssemblyScript source of the float32 SIMD gemm (compiled to wasm by scripts/build-wasm.mjs; not part of tsc's
// program). It computes C[m, n] (+)= A[m, k] B[k, n] on matrices that live in this module's linear memory; every
// pointer is a byte address in that memory and every leading dimension is in elements.
//
// Algorithm: the same Goto/BLIS blocking as the readable JS kernel (src/tensor/cpu/gemm-kernel.ts):
//   for each block of NC columns of B, for each block of KC rows of B: pack B into NR-wide strips
//     for each block of MC rows of A: pack A into MR-tall strips
//       for each NR strip of B, each MR strip of A: the 4 x 8 micro-kernel
// The micro-kernel keeps its 4 x 8 tile in 8 f32x4 accumulators (a row of the tile is two vectors): measured on this
// project's 2-core EPYC, tiles with more than 8 vector accumulators spill in V8's register allocator and run at half
// speed. Plain wasm SIMD has no fused multiply-add, so each step is a mul and an add (42 GFLOPS on one core here); the
// relaxed-SIMD build fuses them (50 GFLOPS, see madd). Sums are float32, as in any float32 BLAS (the JS kernel sums in
// float64).

const MR: i32 = 4;
const NR: i32 = 8;
const KC: i32 = 512; // a packed B strip KC x NR floats = 16 KiB (L1); 512 beat 256 and 768 here (42 vs 39-40 GFLOPS)
const MC: i32 = 128; // a packed A block MC x KC floats = 256 KiB (L2)
const NC: i32 = 2048; // a packed B panel KC x NC floats = 4 MiB

/** Bytes of packing workspace one gemm thread needs (packed A block, then packed B panel). */
export function gemmWorkspaceBytes(): i32 {
  return (MC * KC + KC * NC) * 4 + MR * NR * 4; // + the edge tile
}

/**
 * Four rows r0..r3 of 4 floats each (at src, src + step, ...) stored as four columns: dst + 16*i*dstep gets
 * [r0[i], r1[i], r2[i], r3[i]]. The 4x4 transpose of the packing routines, in six shuffles.
 */
// @ts-ignore: decorator
@inline
function transpose4(src: usize, step: usize, dst: usize, dstep: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + step);
  const r2 = v128.load(src + 2 * step);
  const r3 = v128.load(src + 3 * step);
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f64>(t0, t2, 0, 2));
  v128.store(dst + dstep, v128.shuffle<f64>(t0, t2, 1, 3));
  v128.store(dst + 2 * dstep, v128.shuffle<f64>(t1, t3, 0, 2));
  v128.store(dst + 3 * dstep, v128.shuffle<f64>(t1, t3, 1, 3));
}

/** dst[(s*kc + p)*NR + q] = B[p0 + p, j0 + s*NR + q], zero beyond column j0 + nc. */
function packB(b: usize, ldb: i32, transB: bool, p0: i32, kc: i32, j0: i32, nc: i32, dst: usize): void {
  for (let j = j0; j < j0 + nc; j += NR) {
    const w = min(NR, j0 + nc - j);
    if (!transB && w == NR) {
      // the common case: two contiguous vectors per row
      let src = b + ((<usize>p0 * ldb + j) << 2);
      const step = <usize>ldb << 2;
      for (let p = 0; p < kc; p++) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        src += step;
        dst += 32;
      }
      continue;
    }
    if (transB && w == NR) {
      // B^T stored row-major: column j of B is contiguous in p; transpose 4 x 4 blocks of two 4-column groups
      const step = <usize>ldb << 2;
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const src = b + ((<usize>j * ldb + p0 + p) << 2);
        transpose4(src, step, dst, 32);
        transpose4(src + 4 * step, step, dst + 16, 32);
        dst += 128;
      }
      for (; p < kc; p++) {
        for (let q = 0; q < NR; q++) {
          store<f32>(dst + (<usize>q << 2), load<f32>(b + ((<usize>(j + q) * ldb + p0 + p) << 2)));
        }
        dst += 32;
      }
      continue;
    }
    for (let p = p0; p < p0 + kc; p++) {
      let q = 0;
      if (transB) {
        for (; q < w; q++) store<f32>(dst + (<usize>q << 2), load<f32>(b + ((<usize>(j + q) * ldb + p) << 2)));
      } else {
        const src = b + ((<usize>p * ldb + j) << 2);
        for (; q < w; q++) store<f32>(dst + (<usize>q << 2), load<f32>(src + (<usize>q << 2)));
      }
      for (; q < NR; q++) store<f32>(dst + (<usize>q << 2), 0);
      dst += NR << 2;
    }
  }
}

/** dst[(s*kc + p)*MR + r] = A[i0 + s*MR + r, p0 + p], zero beyond row i0 + mc. */
function packA(a: usize, lda: i32, transA: bool, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  for (let i = i0; i < i0 + mc; i += MR) {
    const h = min(MR, i0 + mc - i);
    if (transA && h == MR) {
      // A^T stored row-major: the MR values of one p are contiguous
      let src = a + ((<usize>p0 * lda + i) << 2);
      const step = <usize>lda << 2;
      for (let p = 0; p < kc; p++) {
        v128.store(dst, v128.load(src));
        src += step;
        dst += 16;
      }
      continue;
    }
    if (!transA && h == MR) {
      const step = <usize>lda << 2;
      let r0 = a + ((<usize>i * lda + p0) << 2);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        transpose4(r0, step, dst, 16);
        r0 += 16;
        dst += 64;
      }
      for (; p < kc; p++) {
        store<f32>(dst, load<f32>(r0));
        store<f32>(dst, load<f32>(r0 + step), 4);
        store<f32>(dst, load<f32>(r0 + 2 * step), 8);
        store<f32>(dst, load<f32>(r0 + 3 * step), 12);
        r0 += 4;
        dst += 16;
      }
      continue;
    }
    for (let p = p0; p < p0 + kc; p++) {
      let r = 0;
      for (; r < h; r++) {
        const src = transA ? a + ((<usize>p * lda + i + r) << 2) : a + ((<usize>(i + r) * lda + p) << 2);
        store<f32>(dst + (<usize>r << 2), load<f32>(src));
      }
      for (; r < MR; r++) store<f32>(dst + (<usize>r << 2), 0);
      dst += MR << 2;
    }
  }
}

/**
 * c + a * b: one fused multiply-add when the module is built with relaxed SIMD (V8 enables it by default from Node
 * 22; Node 20 needs --experimental-wasm-relaxed-simd), else a mul and an add. Fused or not is the engine's choice per
 * host, so the two builds may differ in the last bit; both are within the float32 dot-product bound.
 */
// @ts-ignore: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/**
 * One 4 x 8 tile: T = sum_p pa[p*4 + r] * pb[p*8 + q]. A full tile is written (or added) straight into C; an edge
 * tile goes through `tmp` and only its valid h x w corner is written.
 */
function micro(
  kc: i32,
  pa: usize,
  pb: usize,
  c: usize,
  ldc: i32,
  add: bool,
  h: i32,
  w: i32,
  tmp: usize,
): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    let av = v128.load32_splat(pa);
    c00 = madd(av, b0, c00);
    c01 = madd(av, b1, c01);
    av = v128.load32_splat(pa, 4);
    c10 = madd(av, b0, c10);
    c11 = madd(av, b1, c11);
    av = v128.load32_splat(pa, 8);
    c20 = madd(av, b0, c20);
    c21 = madd(av, b1, c21);
    av = v128.load32_splat(pa, 12);
    c30 = madd(av, b0, c30);
    c31 = madd(av, b1, c31);
    pa += 16;
    pb += 32;
  }
  const full = h == MR && w == NR;
  const step = <usize>ldc << 2;
  let dst = full ? c : tmp;
  const dstep: usize = full ? step : 32;
  if (add && full) {
    c00 = f32x4.add(c00, v128.load(dst));
    c01 = f32x4.add(c01, v128.load(dst, 16));
    c10 = f32x4.add(c10, v128.load(dst + dstep));
    c11 = f32x4.add(c11, v128.load(dst + dstep, 16));
    c20 = f32x4.add(c20, v128.load(dst + 2 * dstep));
    c21 = f32x4.add(c21, v128.load(dst + 2 * dstep, 16));
    c30 = f32x4.add(c30, v128.load(dst + 3 * dstep));
    c31 = f32x4.add(c31, v128.load(dst + 3 * dstep, 16));
  }
  v128.store(dst, c00);
  v128.store(dst, c01, 16);
  v128.store(dst + dstep, c10);
  v128.store(dst + dstep, c11, 16);
  v128.store(dst + 2 * dstep, c20);
  v128.store(dst + 2 * dstep, c21, 16);
  v128.store(dst + 3 * dstep, c30);
  v128.store(dst + 3 * dstep, c31, 16);
  if (full) return;
  for (let r = 0; r < h; r++) {
    const crow = c + <usize>r * step;
    const trow = tmp + (<usize>r << 5);
    for (let q = 0; q < w; q++) {
      const o = <usize>q << 2;
      const v = load<f32>(trow + o);
      store<f32>(crow + o, add ? load<f32>(crow + o) + v : v);
    }
  }
}

/**
 * C (+)= op(A) op(B), all float32. A[i, p] at a + 4*(i*lda + p) (transA: a + 4*(p*lda + i)); B[p, j] at
 * b + 4*(p*ldb + j) (transB: b + 4*(j*ldb + p)); C[i, j] at c + 4*(i*ldc + j). `work` is gemmWorkspaceBytes() of
 * scratch owned by the calling thread (16-byte aligned).
 */
export function sgemm(
  m: i32,
  n: i32,
  k: i32,
  a: usize,
  lda: i32,
  transA: bool,
  b: usize,
  ldb: i32,
  transB: bool,
  c: usize,
  ldc: i32,
  accumulate: bool,
  work: usize,
): void {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) for (let i = 0; i < m; i++) memory.fill(c + ((<usize>i * ldc) << 2), 0, <usize>n << 2);
    return;
  }
  const packedA = work;
  const packedB = work + ((<usize>MC * KC) << 2);
  const tmp = packedB + ((<usize>KC * NC) << 2); // 4 x 8 floats for edge tiles, after the workspace proper
  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = min(NC, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = min(KC, k - p0);
      const add = accumulate || p0 > 0; // the first KC block overwrites C unless accumulating
      packB(b, ldb, transB, p0, kc, j0, nc, packedB);
      for (let i0 = 0; i0 < m; i0 += MC) {
        const mc = min(MC, m - i0);
        packA(a, lda, transA, i0, mc, p0, kc, packedA);
        for (let jr = 0; jr < nc; jr += NR) {
          const w = min(NR, nc - jr);
          const pb = packedB + ((<usize>jr * kc) << 2);
          for (let ir = 0; ir < mc; ir += MR) {
            const h = min(MR, mc - ir);
            const cp = c + ((<usize>(i0 + ir) * ldc + j0 + jr) << 2);
            micro(kc, packedA + ((<usize>ir * kc) << 2), pb, cp, ldc, add, h, w, tmp);
          }
        }
      }
    }
  }
}
