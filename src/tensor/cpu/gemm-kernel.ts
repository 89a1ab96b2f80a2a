// The blocked gemm kernel, written as one self-contained factory so the worker threads can run the very same code:
// gemm-pool.ts ships `makeGemmKernel.toString()` to each worker. Hence the rules for this file's function body:
// plain JavaScript once the type annotations are stripped, no references to imports or module-level names, no
// closures over anything outside the factory. (Tested from vitest, which transpiles TS, and from the esbuild bundle.)
//
// Algorithm (Goto/BLIS, as in "Anatomy of high-performance matrix multiplication", Goto & van de Geijn 2008):
//   for each block of NC columns of B and C
//     for each block of KC rows of B                          pack B[kc, nc] into NR-wide strips (float64)
//       for each block of MC rows of A and C                  pack A[mc, kc] into MR-tall strips (float64)
//         for each NR strip of B, for each MR strip of A      MR x NR micro-kernel: 32 accumulators in locals
// The packed B strip (KC x NR doubles, 16 KiB) stays in L1 while the micro-kernel walks down the packed A block
// (MC x KC doubles, 256 KiB, L2). Packing also turns transA / transB / leading dims into one contiguous layout, and
// pads edge strips with zeros so the micro-kernel never branches; only the write-back clips to the matrix.
//
// Numerics: products and sums are formed in float64 (JS numbers) and rounded once per KC block when written to a
// Float32Array C, so float32 results are at least as accurate as a float32 BLAS; float64 inputs stay exact float64.

/** C[m, n] (+)= A[m, k] B[k, n]; the same fields as GemmArgs (see gemm.ts), so a job can be posted to a worker as is. */
export interface GemmJob {
  m: number;
  n: number;
  k: number;
  a: Float32Array | Float64Array;
  aOff: number;
  lda: number;
  transA?: boolean;
  b: Float32Array | Float64Array;
  bOff: number;
  ldb: number;
  transB?: boolean;
  c: Float32Array | Float64Array;
  cOff: number;
  ldc: number;
  accumulate?: boolean;
}

/** Register tile of the micro-kernel: MR rows of A times NR columns of B. */
export const MR = 4;
export const NR = 8;

/** Returns a gemm function with its own packing buffers (one per thread). Must stay self-contained: see above. */
export function makeGemmKernel(): (job: GemmJob) => void {
  const MR = 4; // rows of the register tile (keep equal to the exported MR / NR)
  const NR = 8; // columns of the register tile
  const KC = 256; // depth of a packed block: a B strip KC x NR doubles is 16 KiB (L1)
  const MC = 128; // rows of a packed A block: MC x KC doubles is 256 KiB (L2)
  const NC = 2048; // columns of a packed B panel: KC x NC doubles is 4 MiB (L3)

  // Packed A block first, packed B panel after it, in one array: the micro-kernel then reads a single typed array,
  // which V8 compiles to slightly leaner loads (~4% here).
  let packed = new Float64Array(0);
  let bBase = 0; // where the packed B panel starts in `packed`
  const tile = new Float64Array(MR * NR);

  /** packed[bBase + (s*kc + p)*NR + q] = B[p0 + p, j0 + s*NR + q], zero beyond column j0 + nc. */
  function packB(job: GemmJob, p0: number, kc: number, j0: number, nc: number): void {
    const { b, bOff, ldb } = job;
    const tb = !!job.transB;
    const step = tb ? ldb : 1; // B[p, j + q] lives at src + q * step
    const pb = packed;
    let d = bBase;
    for (let j = j0; j < j0 + nc; j += NR) {
      const w = Math.min(NR, j0 + nc - j);
      for (let p = p0; p < p0 + kc; p++) {
        const src = tb ? bOff + j * ldb + p : bOff + p * ldb + j;
        let q = 0;
        for (; q < w; q++) pb[d + q] = b[src + q * step];
        for (; q < NR; q++) pb[d + q] = 0;
        d += NR;
      }
    }
  }

  /** packed[(s*kc + p)*MR + r] = A[i0 + s*MR + r, p0 + p], zero beyond row i0 + mc. */
  function packA(job: GemmJob, i0: number, mc: number, p0: number, kc: number): void {
    const { a, aOff, lda } = job;
    const ta = !!job.transA;
    const step = ta ? 1 : lda; // A[i + r, p] lives at src + r * step
    const pa = packed;
    let d = 0;
    for (let i = i0; i < i0 + mc; i += MR) {
      const h = Math.min(MR, i0 + mc - i);
      for (let p = p0; p < p0 + kc; p++) {
        const src = ta ? aOff + p * lda + i : aOff + i * lda + p;
        let r = 0;
        for (; r < h; r++) pa[d + r] = a[src + r * step];
        for (; r < MR; r++) pa[d + r] = 0;
        d += MR;
      }
    }
  }

  /**
   * tile[r*NR + q] = sum_p x[ia + p*MR + r] * x[ib + p*NR + q] for p < kc: one MR x NR block of C, kept in 32
   * local accumulators (V8 keeps most in registers; the rest spill to the stack, still L1).
   */
  // biome-ignore format: the register tile reads best as a 4 x 8 grid
  function micro(kc: number, x: Float64Array, ia: number, ib: number, t: Float64Array): void {
    let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c04 = 0, c05 = 0, c06 = 0, c07 = 0;
    let c10 = 0, c11 = 0, c12 = 0, c13 = 0, c14 = 0, c15 = 0, c16 = 0, c17 = 0;
    let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c24 = 0, c25 = 0, c26 = 0, c27 = 0;
    let c30 = 0, c31 = 0, c32 = 0, c33 = 0, c34 = 0, c35 = 0, c36 = 0, c37 = 0;
    for (let p = 0; p < kc; p++) {
      const a0 = x[ia], a1 = x[ia + 1], a2 = x[ia + 2], a3 = x[ia + 3];
      let bq = x[ib];
      c00 += a0 * bq; c10 += a1 * bq; c20 += a2 * bq; c30 += a3 * bq;
      bq = x[ib + 1];
      c01 += a0 * bq; c11 += a1 * bq; c21 += a2 * bq; c31 += a3 * bq;
      bq = x[ib + 2];
      c02 += a0 * bq; c12 += a1 * bq; c22 += a2 * bq; c32 += a3 * bq;
      bq = x[ib + 3];
      c03 += a0 * bq; c13 += a1 * bq; c23 += a2 * bq; c33 += a3 * bq;
      bq = x[ib + 4];
      c04 += a0 * bq; c14 += a1 * bq; c24 += a2 * bq; c34 += a3 * bq;
      bq = x[ib + 5];
      c05 += a0 * bq; c15 += a1 * bq; c25 += a2 * bq; c35 += a3 * bq;
      bq = x[ib + 6];
      c06 += a0 * bq; c16 += a1 * bq; c26 += a2 * bq; c36 += a3 * bq;
      bq = x[ib + 7];
      c07 += a0 * bq; c17 += a1 * bq; c27 += a2 * bq; c37 += a3 * bq;
      ia += 4; // MR, NR as literals: TurboFan folds them even when several kernels exist in one thread
      ib += 8;
    }
    t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03; t[4] = c04; t[5] = c05; t[6] = c06; t[7] = c07;
    t[8] = c10; t[9] = c11; t[10] = c12; t[11] = c13; t[12] = c14; t[13] = c15; t[14] = c16; t[15] = c17;
    t[16] = c20; t[17] = c21; t[18] = c22; t[19] = c23; t[20] = c24; t[21] = c25; t[22] = c26; t[23] = c27;
    t[24] = c30; t[25] = c31; t[26] = c32; t[27] = c33; t[28] = c34; t[29] = c35; t[30] = c36; t[31] = c37;
  }

  return function gemmBlocked(job: GemmJob): void {
    const { m, n, k, c, cOff, ldc } = job;
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
      if (!job.accumulate) for (let i = 0; i < m; i++) c.fill(0, cOff + i * ldc, cOff + i * ldc + n);
      return;
    }
    const kcMax = Math.min(KC, k);
    const needA = kcMax * Math.ceil(Math.min(MC, m) / MR) * MR;
    const needB = kcMax * Math.ceil(Math.min(NC, n) / NR) * NR;
    if (packed.length < needA + needB) packed = new Float64Array(needA + needB);
    bBase = packed.length - needB; // at or after the end of the A block
    const x = packed;
    const t = tile;

    for (let j0 = 0; j0 < n; j0 += NC) {
      const nc = Math.min(NC, n - j0);
      for (let p0 = 0; p0 < k; p0 += KC) {
        const kc = Math.min(KC, k - p0);
        const add = !!job.accumulate || p0 > 0; // the first KC block overwrites C unless accumulating
        packB(job, p0, kc, j0, nc);
        for (let i0 = 0; i0 < m; i0 += MC) {
          const mc = Math.min(MC, m - i0);
          packA(job, i0, mc, p0, kc);
          for (let jr = 0; jr < nc; jr += NR) {
            const w = Math.min(NR, nc - jr);
            for (let ir = 0; ir < mc; ir += MR) {
              const h = Math.min(MR, mc - ir);
              micro(kc, x, ir * kc, bBase + jr * kc, t);
              // write back the valid h x w corner of the tile
              let ci = cOff + (i0 + ir) * ldc + j0 + jr;
              for (let r = 0; r < h; r++) {
                const tr = r * NR;
                if (add) for (let q = 0; q < w; q++) c[ci + q] += t[tr + q];
                else for (let q = 0; q < w; q++) c[ci + q] = t[tr + q];
                ci += ldc;
              }
            }
          }
        }
      }
    }
  };
}
