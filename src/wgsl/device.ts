// Opening a WebGPU device: Dawn through npm `webgpu` in Node, navigator.gpu in a browser.
// The device asks for the adapter's own limits (the defaults are far below what GPUs offer:
// 128 MiB storage bindings, 16 KiB workgroup memory) and for the optional features we can use.

/** Features requested where the adapter offers them; kernels check `device.features` before use. */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** Limits raised to the adapter's maximum. */
export const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
] as const;

export interface GpuContext {
  readonly gpu: GPU;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
}

const LINUX_HINT =
  'on Linux without a GPU install Mesa lavapipe 25 from bookworm-backports ' +
  '(apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1) and set XDG_RUNTIME_DIR ' +
  '(e.g. mkdir -p /tmp/xdg && chmod 700 /tmp/xdg && export XDG_RUNTIME_DIR=/tmp/xdg)';

/** The fix to print when no adapter is found. */
export function noAdapterHint(): string {
  return `no WebGPU adapter found; ${LINUX_HINT}`;
}

let gpuPromise: Promise<GPU | null> | null = null;

/** navigator.gpu in a browser; Dawn (npm `webgpu`) in Node. Null when neither loads. */
export function getGpu(): Promise<GPU | null> {
  gpuPromise ??= (async () => {
    const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
    if (nav?.gpu) return nav.gpu;
    try {
      const mod = (await import('webgpu')) as { create: (o: string[]) => GPU; globals: object };
      // GPUBufferUsage and friends as globals, as in a browser
      Object.assign(globalThis, mod.globals);
      return mod.create([]);
    } catch {
      return null;
    }
  })();
  return gpuPromise;
}

/** The adapter, or null when there is none (no GPU and no software Vulkan driver). */
export async function requestAdapter(): Promise<{ gpu: GPU; adapter: GPUAdapter } | null> {
  const gpu = await getGpu();
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  return adapter ? { gpu, adapter } : null;
}

/** A device with the adapter's limits and every optional feature it offers. Throws with the fix if none. */
export async function createGpuContext(): Promise<GpuContext> {
  const found = await requestAdapter();
  if (!found) throw new Error(noAdapterHint());
  const { gpu, adapter } = found;
  const requiredLimits: Record<string, number> = {};
  for (const k of REQUESTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return { gpu, adapter, device };
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Software rasteriser (lavapipe, SwiftShader, WARP): figures are CPU figures. */
  software: boolean;
  features: string[];
  limits: Record<string, number>;
}

function infoOf(adapter: GPUAdapter): GPUAdapterInfo | undefined {
  return (adapter as unknown as { info?: GPUAdapterInfo }).info;
}

/** Adapter identity, features and limits, for `diffpure info` and bench JSON. */
export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = infoOf(adapter);
  const limits: Record<string, number> = {};
  // limits are accessors on the prototype, so enumerate with for..in
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const text = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.device ?? ''} ${info?.description ?? ''}`;
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
    software: /llvmpipe|lavapipe|swiftshader|warp|cpu/i.test(text),
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** describeAdapter for the default adapter, or null when there is none. */
export async function describeDefaultAdapter(): Promise<AdapterDescription | null> {
  const found = await requestAdapter();
  return found ? describeAdapter(found.adapter) : null;
}
