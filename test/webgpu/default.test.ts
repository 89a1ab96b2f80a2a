// initDefaultBackend without an adapter: cpu with one notice, or an error naming the fix when
// webgpu is required. The adapter lookup is mocked to find nothing.

import { afterEach, describe, expect, test, vi } from 'vitest';

vi.mock('../../src/wgsl/device.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/wgsl/device.js')>();
  return { ...real, requestAdapter: async () => null };
});

const { initDefaultBackend } = await import('../../src/wgsl/index.js');

describe('initDefaultBackend with no adapter', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  test('falls back to cpu and says so once', async () => {
    vi.stubEnv('DIFFPURE_REQUIRE_WEBGPU', '');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    expect((await initDefaultBackend()).name).toBe('cpu');
    expect((await initDefaultBackend()).name).toBe('cpu');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/using the cpu backend/);
  });

  test('throws with the fix when webgpu is required (option or DIFFPURE_REQUIRE_WEBGPU=1)', async () => {
    await expect(initDefaultBackend({ require: true })).rejects.toThrow(
      /apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1.*XDG_RUNTIME_DIR/s,
    );
    vi.stubEnv('DIFFPURE_REQUIRE_WEBGPU', '1');
    await expect(initDefaultBackend()).rejects.toThrow(/no WebGPU adapter found/);
  });
});
