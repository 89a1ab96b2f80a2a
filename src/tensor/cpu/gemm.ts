// The cpu matrix-multiply entry every matmul and conv goes through.
// C[m, n] (+)= sum_k A[m, k] B[k, n]; all row-major with explicit offsets and leading dims.
//
// float32 goes to the wasm SIMD kernel (wasm/gemm.ts) unless the js kernels are selected (wasm/select.ts); float64,
// and float32 under DIFFPURE_CPU_KERNELS=js, run the readable JS kernel: a cache- and register-blocked loop
// (gemm-kernel.ts). Large problems are split across worker threads
// (gemm-pool.ts) while this call still returns only when C is complete, so ops stay synchronous.

import type { TypedArray } from '../backend.js';
import { makeGemmKernel } from './gemm-kernel.js';
import { gemmThreaded, poolStats, shutdownGemmPool, threadsAvailable } from './gemm-pool.js';
import { type F32GemmArgs, wasmGemm } from './wasm/gemm.js';
import { activeWasm } from './wasm/select.js';

export interface GemmArgs {
  m: number;
  n: number;
  k: number;
  a: TypedArray;
  aOff: number;
  /** Elements between rows of A (A[i, p] at aOff + i*lda + p), or, if transA, A[i, p] at aOff + p*lda + i. */
  lda: number;
  transA?: boolean;
  b: TypedArray;
  bOff: number;
  /** B[p, j] at bOff + p*ldb + j, or, if transB, at bOff + j*ldb + p. */
  ldb: number;
  transB?: boolean;
  c: TypedArray;
  cOff: number;
  ldc: number;
  /** Add into C instead of overwriting it. */
  accumulate?: boolean;
}

export interface GemmConfig {
  /** Threads one gemm may use, this one included (1 = never start workers). Default: the machine's parallelism (at
   *  most 8), or the environment variable DIFFPURE_CPU_THREADS. */
  threads: number;
  /** Multiply-adds (m*n*k) from which a gemm is split across threads. Default 2^19, about 0.2 ms on one thread:
   *  below it, waking a worker (~20 us) and copying operands to shared memory do not pay (measured break-even on a
   *  2-core machine: between 64^3 and 96^3). */
  minThreadedMacs: number;
  /** Smallest m, n and k that go threaded (default 16): thinner products, such as matrix-vector ones, would spend
   *  as long copying operands to shared memory as computing. */
  minThreadedDim: number;
}

function defaultThreads(): number {
  const proc = typeof process === 'undefined' ? undefined : process;
  const env = Number(proc?.env?.DIFFPURE_CPU_THREADS);
  if (Number.isInteger(env) && env >= 1) return env;
  const os = proc?.getBuiltinModule?.('node:os') as typeof import('node:os') | undefined;
  return Math.max(1, Math.min(8, os?.availableParallelism?.() ?? 1));
}

let config: GemmConfig | undefined;
const kernel = makeGemmKernel();

export function currentConfig(): GemmConfig {
  config ??= { threads: defaultThreads(), minThreadedMacs: 1 << 19, minThreadedDim: 16 };
  return config;
}

/** Changes the threading settings; returns the previous ones (so tests and benchmarks can restore them). */
export function configureGemm(opts: Partial<GemmConfig>): GemmConfig {
  const prev = { ...currentConfig() };
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
    throw new Error(`configureGemm: threads must be a positive integer, got ${opts.threads}`);
  }
  for (const key of ['minThreadedMacs', 'minThreadedDim'] as const) {
    const v = opts[key];
    if (v !== undefined && !(v >= 0)) throw new Error(`configureGemm: ${key} must be >= 0, got ${v}`);
  }
  config = { ...prev, ...opts };
  return prev;
}

/** Whether gemm can use worker threads here (Node with worker_threads, pool healthy). */
export const gemmThreadsAvailable = threadsAvailable;

/** Counts of threaded gemms, bands computed by workers, and bands a slow worker had to hand back. */
export const gemmThreadStats = (): Readonly<typeof poolStats> => ({ ...poolStats });

/** Stops the gemm worker threads and frees their shared buffers; they restart on the next large gemm. */
export const shutdownGemmThreads = shutdownGemmPool;

export function gemm(g: GemmArgs): void {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.c instanceof Float32Array && g.a instanceof Float32Array && g.b instanceof Float32Array) {
    const rt = activeWasm();
    if (rt) {
      wasmGemm(rt, g as F32GemmArgs, currentConfig());
      return;
    }
  }
  const { threads, minThreadedMacs, minThreadedDim } = currentConfig();
  const big = g.m * g.n * g.k >= minThreadedMacs && Math.min(g.m, g.n, g.k) >= minThreadedDim;
  if (threads > 1 && big && gemmThreaded(g, kernel, threads)) return;
  kernel(g);
}
