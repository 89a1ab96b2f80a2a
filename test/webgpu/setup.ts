// Shared setup of the webgpu tests: the backend, or a failure when CI requires a GPU.
// Without an adapter and without DIFFPURE_REQUIRE_WEBGPU=1 the suites are skipped (a laptop
// without Vulkan); with it, importing this module throws, so every webgpu test file fails and
// CI can never pass by skipping.

import { getBackend, initBackend } from '../../src/tensor/runtime.js';
import { requestAdapter } from '../../src/wgsl/device.js';
import { noAdapterHint, type WebGPUBackend, webgpuRequiredByEnv } from '../../src/wgsl/index.js';

export const gpuRequired = webgpuRequiredByEnv();

async function open(): Promise<WebGPUBackend | null> {
  if (!(await requestAdapter())) {
    if (gpuRequired) throw new Error(`DIFFPURE_REQUIRE_WEBGPU=1 but ${noAdapterHint()}`);
    return null;
  }
  await initBackend('webgpu');
  return getBackend('webgpu') as WebGPUBackend;
}

/** The webgpu backend, or null when there is no adapter and none is required (tests skip). */
export const gpu: WebGPUBackend | null = await open();

/** The backend inside a test body of a suite declared with describe.skipIf(!gpu). */
export function backend(): WebGPUBackend {
  if (!gpu) throw new Error('webgpu backend is not available');
  return gpu;
}
