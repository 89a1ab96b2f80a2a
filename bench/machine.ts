// The machine a bench ran on, written into every bench JSON so each figure names its machine.

import { spawnSync } from 'node:child_process';
import os from 'node:os';

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
