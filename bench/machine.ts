// The machine a bench ran on, written into every bench JSON so each figure names its machine.

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
