// Registers the webgpu backend and picks the default backend: webgpu where an adapter exists,
// otherwise cpu with one notice, or an error naming the fix when webgpu is required.

// the tensor layer's entry registers the cpu backend, the fallback here
import '../tensor/index.js';
import type { Backend } from '../tensor/backend.js';
import { getBackend, initBackend, registerBackend, setBackend } from '../tensor/runtime.js';
import { WebGPUBackend, type WebGPUOptions } from './backend.js';
import { createGpuContext, noAdapterHint, requestAdapter } from './device.js';

export { WebGPUBackend, type WebGPUOptions, type WebGPUStats } from './backend.js';
export { type AdapterDescription, describeAdapter, describeDefaultAdapter, noAdapterHint } from './device.js';

/** Create a webgpu backend on the default adapter (throws with the fix if there is none). */
export async function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  return new WebGPUBackend(await createGpuContext(), opts);
}

registerBackend('webgpu', () => createWebGPUBackend());

/** True when DIFFPURE_REQUIRE_WEBGPU=1 (CI sets it): a missing adapter is then an error. */
export function webgpuRequiredByEnv(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.DIFFPURE_REQUIRE_WEBGPU === '1';
}

let notified = false;

/**
 * Make webgpu the current backend if an adapter exists; otherwise cpu, saying so once.
 * With `require: true` (or DIFFPURE_REQUIRE_WEBGPU=1) a missing adapter throws instead.
 */
export async function initDefaultBackend(opts: { require?: boolean } = {}): Promise<Backend> {
  const required = opts.require ?? webgpuRequiredByEnv();
  const found = await requestAdapter();
  if (!found) {
    if (required) throw new Error(`webgpu backend required but ${noAdapterHint()}`);
    if (!notified) {
      notified = true;
      console.warn(`diffpure: ${noAdapterHint()}; using the cpu backend`);
    }
    return setBackend('cpu');
  }
  await initBackend('webgpu');
  return setBackend('webgpu');
}

/** The initialised webgpu backend (for stats, trim, destroy). */
export function webgpuBackend(): WebGPUBackend {
  return getBackend('webgpu') as WebGPUBackend;
}
