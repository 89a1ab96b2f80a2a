// float32 gemm through the wasm SIMD kernel: operands copied into the arena, bands of C split across the worker pool.

import type { GemmArgs } from '../gemm.js';
import { callLocal, type WasmCall, WasmPool } from './pool.js';
import type { SgemmJob, WasmRuntime } from './runtime.js';

/** Register tile of the wasm micro-kernel (assembly/gemm.ts): bands are cut at multiples of it. */
const MR = 4;
const NR = 8;

/** Threading thresholds shared with the JS kernel (gemm.ts owns the values). */
export interface ThreadPolicy {
  threads: number;
  minThreadedMacs: number;
  minThreadedDim: number;
}

let pool: WasmPool | null | undefined;

function getPool(rt: WasmRuntime): WasmPool | null {
  if (pool === undefined) pool = WasmPool.create(rt);
  return pool && !pool.broken ? pool : null;
}

/** Counters of the wasm pool (threaded calls, bands done by workers, bands taken over from booting workers). */
export function wasmPoolStats(): { calls: number; workerBands: number; skippedBooting: number } {
  return pool ? { ...pool.stats } : { calls: 0, workerBands: 0, skippedBooting: 0 };
}

export async function shutdownWasmPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  if (p) await p.shutdown();
}

/**
 * Runs independent calls, calls[0] on this thread and the rest on the pool's workers (all here when the pool is
 * unavailable or only one call is given).
 */
export function runCalls(rt: WasmRuntime, calls: readonly WasmCall[]): void {
  const p = calls.length > 1 ? getPool(rt) : null;
  if (p) p.run(calls);
  else for (const c of calls) callLocal(rt, c);
}

/** [start, end) of part i of `parts` of [0, n), cut at multiples of `unit`. */
export function partRange(n: number, parts: number, i: number, unit = 1): [number, number] {
  const s = Math.round((n * i) / parts / unit) * unit;
  const e = i === parts - 1 ? n : Math.round((n * (i + 1)) / parts / unit) * unit;
  return [Math.min(s, n), Math.min(Math.max(s, e), n)];
}

/** How many threads a problem of this size gets under `policy` (1 when it is too small to pay for a wake-up). */
export function threadsFor(m: number, n: number, k: number, policy: ThreadPolicy): number {
  if (policy.threads <= 1) return 1;
  if (m * n * k < policy.minThreadedMacs || Math.min(m, n, k) < policy.minThreadedDim) return 1;
  const byRows = m >= n;
  return Math.max(1, Math.min(policy.threads, Math.floor((byRows ? m : n) / (byRows ? MR : NR))));
}

/**
 * Runs `j` on `threads` threads: C is cut along its longer side into bands aligned to the register tile. Each C entry
 * is summed in the same order whatever the split, so results are bitwise identical for any thread count. The caller
 * has called rt.reset(threads) before allocating the operands (that reserves one workspace per thread).
 */
export function sgemmOnThreads(rt: WasmRuntime, j: SgemmJob, threads: number): void {
  const byRows = j.m >= j.n;
  const len = byRows ? j.m : j.n;
  const calls: WasmCall[] = [];
  for (let i = 0; i < threads; i++) {
    const [s, e] = partRange(len, threads, i, byRows ? MR : NR);
    if (e <= s) continue;
    const band = byRows
      ? { ...j, m: e - s, a: j.a + 4 * (j.transA ? s : s * j.lda), c: j.c + 4 * s * j.ldc }
      : { ...j, n: e - s, b: j.b + 4 * (j.transB ? s * j.ldb : s), c: j.c + 4 * s };
    calls.push({ fn: 'sgemm', args: sgemmArgs(band, rt.workspace(calls.length)) });
  }
  runCalls(rt, calls);
}

function sgemmArgs(j: SgemmJob, work: number): number[] {
  const t = (b: boolean) => (b ? 1 : 0);
  return [j.m, j.n, j.k, j.a, j.lda, t(j.transA), j.b, j.ldb, t(j.transB), j.c, j.ldc, t(j.accumulate), work];
}

/** The span [off, end) of a row-major view rows x cols with leading dim ld (transposed storage if trans). */
function spanEnd(off: number, ld: number, trans: boolean, rows: number, cols: number): number {
  return trans ? off + (cols - 1) * ld + rows : off + (rows - 1) * ld + cols;
}

/** GemmArgs with every array float32. */
export type F32GemmArgs = GemmArgs & { a: Float32Array; b: Float32Array; c: Float32Array };

/** C (+)= op(A) op(B) on JS arrays: A and B's spans are copied into the arena, C's band back out. */
export function wasmGemm(rt: WasmRuntime, g: F32GemmArgs, policy: ThreadPolicy): void {
  const { m, n, k } = g;
  const ta = !!g.transA;
  const tb = !!g.transB;
  const threads = threadsFor(m, n, k, policy);
  rt.reset(threads);
  const aEnd = k > 0 ? spanEnd(g.aOff, g.lda, ta, m, k) : g.aOff;
  const bEnd = k > 0 ? spanEnd(g.bOff, g.ldb, tb, k, n) : g.bOff;
  const aPtr = rt.alloc(4 * (aEnd - g.aOff));
  const bPtr = rt.alloc(4 * (bEnd - g.bOff));
  const cPtr = rt.alloc(4 * m * n);
  rt.f32(aPtr, aEnd - g.aOff).set(g.a.subarray(g.aOff, aEnd));
  rt.f32(bPtr, bEnd - g.bOff).set(g.b.subarray(g.bOff, bEnd));
  const cv = rt.f32(cPtr, m * n);
  const compact = g.ldc === n;
  if (g.accumulate) {
    if (compact) cv.set(g.c.subarray(g.cOff, g.cOff + m * n));
    else for (let i = 0; i < m; i++) cv.set(g.c.subarray(g.cOff + i * g.ldc, g.cOff + i * g.ldc + n), i * n);
  }
  const job: SgemmJob = {
    m,
    n,
    k,
    a: aPtr,
    lda: g.lda,
    transA: ta,
    b: bPtr,
    ldb: g.ldb,
    transB: tb,
    c: cPtr,
    ldc: n,
    accumulate: !!g.accumulate,
  };
  sgemmOnThreads(rt, job, threads);
  const res = rt.f32(cPtr, m * n);
  if (compact) g.c.set(res, g.cOff);
  else for (let i = 0; i < m; i++) g.c.set(res.subarray(i * n, (i + 1) * n), g.cOff + i * g.ldc);
}
