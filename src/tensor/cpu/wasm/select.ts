// Which cpu kernels run float32 work: 'wasm' (the AssemblyScript SIMD kernels) or 'js' (the readable TypeScript
// reference kernels). Float64 always runs the JS kernels (the float64 gradient checks rely on their exact sums).
// Default: 'wasm' when this host validates the module, else 'js'; DIFFPURE_CPU_KERNELS=js|wasm overrides it.

import { getWasmRuntime, type WasmRuntime, wasmUnavailableReason } from './runtime.js';

export type CpuKernelKind = 'js' | 'wasm';

let kind: CpuKernelKind | undefined;

function fromEnv(): CpuKernelKind | undefined {
  const proc = typeof process === 'undefined' ? undefined : process;
  const v = proc?.env?.DIFFPURE_CPU_KERNELS;
  if (v === undefined || v === '') return undefined;
  if (v === 'js' || v === 'wasm') return v;
  throw new Error(`DIFFPURE_CPU_KERNELS must be 'js' or 'wasm', got '${v}' (unset it to pick the fastest available)`);
}

function checked(k: CpuKernelKind): CpuKernelKind {
  if (k === 'wasm' && !getWasmRuntime()) {
    throw new Error(
      `cpu kernels 'wasm' are not available here: ${wasmUnavailableReason()}; use DIFFPURE_CPU_KERNELS=js`,
    );
  }
  return k;
}

/** The kernels float32 cpu work runs on now. */
export function cpuKernelKind(): CpuKernelKind {
  kind ??= checked(fromEnv() ?? (getWasmRuntime() ? 'wasm' : 'js'));
  return kind;
}

/** Switches the float32 cpu kernels; returns the previous choice (tests and benches restore it). */
export function setCpuKernelKind(k: CpuKernelKind): CpuKernelKind {
  const prev = cpuKernelKind();
  if (k !== 'js' && k !== 'wasm') throw new Error(`setCpuKernelKind: expected 'js' or 'wasm', got '${k}'`);
  kind = checked(k);
  return prev;
}

/** The wasm runtime when float32 work should use it, else null. */
export function activeWasm(): WasmRuntime | null {
  return cpuKernelKind() === 'wasm' ? getWasmRuntime() : null;
}

/** What `diffpure info` reports about the cpu kernels: the choice, why wasm is off (if it is), and threads. */
export function cpuKernelsInfo(threads: number): Record<string, unknown> {
  const rt = getWasmRuntime();
  return {
    kernels: cpuKernelKind(),
    wasmSimd: rt
      ? { available: true, sharedMemory: rt.shared, relaxedSimdFma: rt.relaxed }
      : { available: false, reason: wasmUnavailableReason() },
    threads,
    override: 'DIFFPURE_CPU_KERNELS=js|wasm, DIFFPURE_CPU_THREADS=n, DIFFPURE_WASM_RELAXED=0',
  };
}
