// Bytes of live tensors during a bench, the same way on both backends: the webgpu pool's own
// counters, or on cpu the counting backend of test/sde/helpers.ts (a cpu backend that adds up
// every storage it hands out and frees).

import * as T from '../src/index.js';
import { countingBackend } from '../test/sde/helpers.js';

export interface Meter {
  base: number;
  reset(): void;
  /** Peak bytes above the baseline since reset(). */
  peak(): number;
  live(): number;
}

/** Initialise `backend` (cpu runs on the counting backend) and make it the default; its name. */
export async function useMeteredBackend(backend: string): Promise<string> {
  const name = backend === 'cpu' ? 'cpu-counting' : backend;
  if (backend === 'cpu') countingBackend();
  else await T.initBackend(backend);
  await T.setBackend(name);
  return name;
}

export function meter(backend: string): Meter {
  if (backend === 'webgpu') {
    const b = T.webgpuBackend();
    return {
      base: 0,
      reset() {
        this.base = b.stats().bytesInUse;
        b.resetPeak();
      },
      peak() {
        return b.stats().peakBytes - this.base;
      },
      live: () => b.stats().bytesInUse,
    };
  }
  const c = countingBackend();
  return {
    base: 0,
    reset() {
      this.base = c.live;
      c.resetPeak();
    },
    peak() {
      return c.peak - this.base;
    },
    live: () => c.live,
  };
}

/** Wall seconds of fn and its peak bytes above what was live before, its result read back to the host (the readback waits for all queued work). */
export async function timed(
  m: Meter,
  fn: () => T.Tensor,
): Promise<{ seconds: number; peakBytes: number; host: Float32Array }> {
  m.reset();
  const t0 = performance.now();
  const y = fn();
  const host = Float32Array.from(await y.data());
  const seconds = (performance.now() - t0) / 1000;
  y.dispose();
  const peakBytes = m.peak();
  return { seconds, peakBytes, host };
}
