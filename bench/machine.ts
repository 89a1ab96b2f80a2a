// The machine a bench ran on, written into every bench JSON so each figure names its machine; and small helpers
// the benches share (environment lists, timing, the attacks fixture's images, the PyTorch peer).

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import type { Images } from '../src/diffpure/attacks/model.js';
import { readNpy } from '../src/nn/io/index.js';

export function machineInfo(): Record<string, unknown> {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadavg: os.loadavg(),
  };
}

/** A comma-separated list from the environment variable `name` (or `dflt`), empty items dropped. */
export function envList(name: string, dflt: string): string[] {
  return (process.env[name] ?? dflt).split(',').filter((v) => v !== '');
}

/** Wall seconds of an async call, and its value. */
export async function timedAsync<T>(f: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { seconds: (performance.now() - t0) / 1000, value };
}

/** `b` images of the attacks fixture (`dir`: its x.npy [16, 3, 32, 32] and y.npy), cycling through its 16. */
export function attackImages(dir: string, b: number): { x: Images; y: number[] } {
  const a = readNpy(join(dir, 'x.npy'));
  const y = readNpy(join(dir, 'y.npy'));
  const d = 3 * 32 * 32;
  const data = new Float32Array(b * d);
  for (let i = 0; i < b; i++) data.set(Float32Array.from(a.data.subarray((i % 16) * d, ((i % 16) + 1) * d)), i * d);
  return { x: { data, shape: [b, 3, 32, 32] }, y: Array.from({ length: b }, (_, i) => y.data[i % 16] as number) };
}

/**
 * Runs a PyTorch peer: Debian's /usr/bin/python3 on `script` with the JSON `spec` as argv[1] and `threads` OpenMP
 * threads; its last stdout line is JSON. Returns { measured: true, ...that } or { measured: false, why }.
 */
export function pythonPeer(script: string, spec: unknown, threads: number, timeoutMs: number): Record<string, unknown> {
  const r = spawnSync('/usr/bin/python3', ['-c', script, JSON.stringify(spec)], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  if (r.error || r.status !== 0) {
    return {
      measured: false,
      why: (r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' ')).slice(0, 400),
    };
  }
  return { measured: true, ...JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') };
}
