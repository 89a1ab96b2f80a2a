// Shared by the webgpu fixture tests: the leak check every test ends with, the pool's byte
// counters as a MemoryMeter for the memory runs of test/sde/helpers.ts, and a pause that lets
// Dawn recycle what a long synchronous run released.

import { expect } from 'vitest';
import * as T from '../../src/index.js';
import type { MemoryMeter } from '../sde/helpers.js';
import { backend } from './setup.js';

/**
 * Run body and check the bytes held by live tensors return to where they were (buffers freed but
 * not yet submitted are not in use: stats() leaves them out).
 */
export async function expectNoLeak<R>(what: string, body: () => Promise<R>): Promise<R> {
  const be = backend();
  const base = be.stats().bytesInUse;
  const r = await body();
  expect(be.stats().bytesInUse, `${what}: bytes in use afterwards`).toBe(base);
  return r;
}

/**
 * The webgpu pool as a MemoryMeter. peakBytes counts buffers handed out by the pool, including
 * those freed while the open encoder may still use them (they go back to the pool at the next
 * submit, so they are really held); resetPeak submits first so the peak starts from live bytes.
 */
export function webgpuMeter(): MemoryMeter {
  const be = backend();
  return {
    backend: be.name,
    live: () => be.stats().bytesInUse,
    peak: () => be.stats().peakBytes,
    resetPeak: () => {
      be.flush();
      be.resetPeak();
    },
  };
}

/**
 * Wait for the queue (a readback) and let the event loop turn, so Dawn can process finished work
 * and recycle the objects released meanwhile. Between long synchronous solves on lavapipe this is
 * not optional: every bind group holds a mapping (one mmap each), freed bind groups are recycled
 * only after such a pause, and a process that reaches vm.max_map_count (65530) segfaults.
 */
export async function settle(): Promise<void> {
  const z = T.zeros([1], { backend: backend().name });
  await z.data();
  z.dispose();
  await new Promise((resolve) => setTimeout(resolve, 0));
}
