// float32 unary maps through the wasm SIMD kernels (assembly/elementwise.ts), split across threads when large.

import { partRange, runCalls, type ThreadPolicy } from './gemm.js';
import type { WasmCall } from './pool.js';
import { WASM_UNARY, type WasmRuntime } from './runtime.js';

/** Elements per thread below which a unary map stays on one thread (a wake-up costs ~20-60 us, ~30k elements). */
const MIN_PER_THREAD = 1 << 16;

/** out = op(x) (affine: scale * x + shift); x is copied into wasm memory and the result back. */
export function wasmUnary(
  rt: WasmRuntime,
  policy: ThreadPolicy,
  op: keyof typeof WASM_UNARY,
  x: Float32Array,
  out: Float32Array,
  scale = 1,
  shift = 0,
): void {
  const n = out.length;
  const threads = Math.max(1, Math.min(policy.threads, Math.floor(n / MIN_PER_THREAD)));
  rt.reset(1);
  // whole vectors: the kernels read and write n rounded up to 4 (alloc rounds to 64 bytes)
  const xp = rt.alloc(4 * n);
  const op_ = rt.alloc(4 * n);
  rt.f32(xp, n).set(x.subarray(0, n));
  const calls: WasmCall[] = [];
  for (let i = 0; i < threads; i++) {
    const [s, e] = partRange(n, threads, i, 16); // 64-byte aligned parts: no two threads write one vector
    if (e <= s) continue;
    const extra = op === 'affine' ? [scale, shift] : [];
    calls.push({ fn: WASM_UNARY[op], args: [xp + 4 * s, op_ + 4 * s, e - s, ...extra] });
  }
  runCalls(rt, calls);
  out.set(rt.f32(op_, n));
}
