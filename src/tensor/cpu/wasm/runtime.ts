// The WebAssembly SIMD kernels at run time: the module, its memory, a bump arena for operands, and the worker pool.
//
// Memory (decided by measurement, see README "CPU kernels"): tensors stay in ordinary JS Float32Arrays, and a kernel
// call copies its operands into one WebAssembly.Memory and its result back out. The copies are O(n^2) against O(n^3)
// work (4 MiB in 0.2 ms against 45 ms for a 1024^3 gemm on this project's 2-core EPYC), and keeping tensors out of
// wasm memory keeps the rest of the library (views, GC, float64, the 4 GiB wasm32 cap) exactly as it was. Convolutions
// write their im2col matrix straight into the arena, so the largest operand is never copied.
//
// The memory only grows (wasm cannot shrink one): after a call it keeps the largest working set seen so far, which is
// what a loop over the same shapes needs again on its next step anyway.
//
// Threads: every worker instantiates the same module on the same shared memory once, at start-up, then sleeps in
// Atomics.wait on its slot of a control block. A job is its 12 arguments written into the slot, a ticket bump and a
// notify; the worker writes DONE and notifies back. No postMessage per call. A worker that has not finished booting
// when a job comes is skipped (this thread computes its band instead), so a first call never waits for start-up.

import { plainRelaxedWasm, plainWasm, sharedRelaxedWasm, sharedWasm } from './kernels.generated.js';

export interface WasmExports {
  sgemm(
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    transA: number,
    b: number,
    ldb: number,
    transB: number,
    c: number,
    ldc: number,
    accumulate: number,
    work: number,
  ): void;
  gemmWorkspaceBytes(): number;
  /** im2colImages(x, xStep, count, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col, colStep, ld). */
  im2colImages(...args: number[]): void;
  /** col2imImages(col, colStep, ld, count, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x, xStep). */
  col2imImages(...args: number[]): void;
  /** winogradInputImages(x, xStep, count, c, h, w, ph, pw, tH, tW, v, ld, xiStride, scratch): assembly/winograd.ts. */
  winogradInputImages(...args: number[]): void;
  /** winogradOutputImages(m, ld, xiStride, count, k, oh, ow, tH, tW, y, yStep). */
  winogradOutputImages(...args: number[]): void;
  /** winogradGradOutputImages(gy, gyStep, count, k, oh, ow, tH, tW, mg, ld, xiStride, scratch). */
  winogradGradOutputImages(...args: number[]): void;
  /** sgemmBatch(count, m, n, k, a, aStep, lda, b, bStep, ldb, transB, c, cStep, ldc, accumulate, work). */
  sgemmBatch(...args: number[]): void;
  reluF32(x: number, out: number, n: number): void;
  expF32(x: number, out: number, n: number): void;
  sigmoidF32(x: number, out: number, n: number): void;
  siluF32(x: number, out: number, n: number): void;
  squareF32(x: number, out: number, n: number): void;
  affineF32(x: number, out: number, n: number, scale: number, shift: number): void;
  binaryRowF32(op: number, a: number, sa: number, b: number, sb: number, out: number, n: number): void;
}

/** The unary maps with a wasm SIMD kernel (assembly/elementwise.ts); affine takes its scale and shift. */
export const WASM_UNARY = {
  exp: 'expF32',
  sigmoid: 'sigmoidF32',
  silu: 'siluF32',
  square: 'squareF32',
  affine: 'affineF32',
  relu: 'reluF32',
} as const;

/** Opcodes of binaryRowF32. */
export const WASM_BINARY = { add: 0, sub: 1, mul: 2, div: 3, siluGrad: 4, reluGrad: 5 } as const;

/** A float32 gemm on arena pointers: C (+)= op(A) op(B); the fields of GemmArgs with byte addresses for arrays. */
export interface SgemmJob {
  m: number;
  n: number;
  k: number;
  a: number;
  lda: number;
  transA: boolean;
  b: number;
  ldb: number;
  transB: boolean;
  c: number;
  ldc: number;
  accumulate: boolean;
}

const PAGE = 65536;
/** Bytes below the arena left to the module itself (the stub runtime keeps no data, but leave it its page). */
const RESERVED = PAGE;
const MAX_PAGES = 65536;
const ALIGN = 64;

function decode(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export class WasmRuntime {
  readonly exports: WasmExports;
  readonly workspaceBytes: number;
  /** Number of per-thread workspaces at the bottom of the memory. */
  private workspaces = 1;
  private top = 0;

  constructor(
    readonly module: WebAssembly.Module,
    readonly memory: WebAssembly.Memory,
    readonly shared: boolean,
    /** Built with relaxed SIMD (the gemm's fused multiply-add): this engine validates it. */
    readonly relaxed: boolean,
  ) {
    const inst = new WebAssembly.Instance(module, { env: { memory } });
    this.exports = inst.exports as unknown as WasmExports;
    this.workspaceBytes = Math.ceil(this.exports.gemmWorkspaceBytes() / ALIGN) * ALIGN;
    this.reset(1);
  }

  /** Address of thread t's packing workspace. */
  workspace(t: number): number {
    return RESERVED + t * this.workspaceBytes;
  }

  /** Frees the whole arena (operands of the previous call) and makes room for `threads` workspaces. */
  reset(threads: number): void {
    this.workspaces = Math.max(this.workspaces, threads);
    this.top = RESERVED + this.workspaces * this.workspaceBytes;
    this.ensure(this.top);
  }

  /** Bump-allocates `bytes` (64-byte aligned) in the arena, growing the memory when needed. */
  alloc(bytes: number): number {
    const p = this.top;
    this.top = Math.ceil((p + bytes) / ALIGN) * ALIGN;
    this.ensure(this.top);
    return p;
  }

  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) {
      throw new Error(
        `cpu wasm kernels: an operation needs ${(end / 2 ** 30).toFixed(2)} GiB of WebAssembly memory, more than ` +
          'wasm32 can address (4 GiB); use a smaller batch, or DIFFPURE_CPU_KERNELS=js',
      );
    }
    this.memory.grow(pages);
  }

  /** A Float32Array over [ptr, ptr + 4*length) of the current memory (take it after the call's last alloc). */
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }
}

/** An environment variable where there is a process (Node), else undefined. */
function processEnv(name: string): string | undefined {
  return typeof process === 'undefined' ? undefined : process.env?.[name];
}

/**
 * Node 20 ships relaxed SIMD behind --experimental-wasm-relaxed-simd (on by default from Node 22). The flag only gates
 * validation of the new opcodes, so turning it on before the module is compiled is enough, and worker isolates
 * started later inherit it. The fused gemm runs 45 against 39 GFLOPS on one core of this project's EPYC (README "CPU
 * kernels"). Browsers and other engines: no `v8` module, nothing happens.
 */
function enableRelaxedSimdFlag(): void {
  const proc = typeof process === 'undefined' ? undefined : process;
  const v8 = proc?.getBuiltinModule?.('node:v8') as typeof import('node:v8') | undefined;
  try {
    v8?.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // an engine that refuses the flag keeps the plain build
  }
}

let runtime: WasmRuntime | null | undefined;
let failure = '';

export function wasmUnavailableReason(): string {
  getWasmRuntime();
  return failure;
}

/** The process-wide runtime, or null when WebAssembly SIMD is not available here. */
export function getWasmRuntime(): WasmRuntime | null {
  if (runtime !== undefined) return runtime;
  try {
    if (typeof WebAssembly === 'undefined') throw new Error('WebAssembly is not available');
    const canShare = typeof SharedArrayBuffer !== 'undefined';
    // the relaxed-SIMD build where the engine has it (Node 22+; Node 20 after the flag below), else plain SIMD128
    const relaxedBytes = decode(canShare ? sharedRelaxedWasm : plainRelaxedWasm);
    const wantRelaxed = processEnv('DIFFPURE_WASM_RELAXED') !== '0';
    if (wantRelaxed && !WebAssembly.validate(relaxedBytes)) enableRelaxedSimdFlag();
    const relaxed = wantRelaxed && WebAssembly.validate(relaxedBytes);
    const bytes = relaxed ? relaxedBytes : decode(canShare ? sharedWasm : plainWasm);
    if (!WebAssembly.validate(bytes)) throw new Error('this host does not validate the SIMD module (no wasm SIMD128?)');
    const module = new WebAssembly.Module(bytes);
    const memory = canShare
      ? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true })
      : new WebAssembly.Memory({ initial: 1 });
    runtime = new WasmRuntime(module, memory, canShare, relaxed);
  } catch (e) {
    failure = e instanceof Error ? e.message : String(e);
    runtime = null;
  }
  return runtime;
}
