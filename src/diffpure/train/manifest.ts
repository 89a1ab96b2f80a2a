// Shipping a trained run: its network as safetensors (PyTorch state-dict keys) beside a manifest JSON that says what
// it is and how it was made: data, options, steps, training seconds and machine, the last losses, the metrics, and the
// sha256 of the weights file.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type HostTensor, writeSafetensors } from '../../nn/io/index.js';
import type { Module } from '../../nn/module.js';

/** Training seconds in a log whose `seconds` restart at every resume: the sum of each segment's last value. */
export function trainingSeconds(log: readonly { seconds: number }[]): number {
  let total = 0;
  let prev = 0;
  for (const r of log) {
    if (r.seconds < prev) total += prev; // a new process started here
    prev = r.seconds;
  }
  return total + prev;
}

/**
 * Seconds a purified set took (diffpure train purified): its log.jsonl holds {batch, images, seconds[, shard]} per
 * batch, seconds restarting at each process; shards running side by side each add theirs (core-seconds).
 */
export function purifiedSetSeconds(log: readonly { seconds: number; shard?: string }[]): number {
  const byShard = new Map<string, { seconds: number }[]>();
  for (const r of log) {
    const k = r.shard ?? 'whole';
    const l = byShard.get(k) ?? [];
    l.push(r);
    byShard.set(k, l);
  }
  return [...byShard.values()].reduce((a, l) => a + trainingSeconds(l), 0);
}

/** A training run's log.jsonl line (train classifier / train score). */
interface TrainLogLine {
  step: number;
  loss: number;
  seconds: number;
}

/** A purified set's log.jsonl line (train purified): no step or loss. */
interface PurifiedLogLine {
  batch: number;
  seconds: number;
  shard?: string;
}

function readLog<L>(path: string): L[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as L);
}

/** Writes `net`'s state dict to `weightsPath` (safetensors) and `<weightsPath minus .safetensors>.json`. */
export function writeShipped(
  runDir: string,
  net: Module,
  weightsPath: string,
  step: number,
  extra: Record<string, unknown>,
): { manifestPath: string; configPath: string; sha256: string } {
  const sd = new Map<string, HostTensor>();
  for (const [k, t] of net.stateDict())
    sd.set(k, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()) });
  writeSafetensors(weightsPath, sd, { format: 'pt', source: 'diffpure-ts train' });
  const sha256 = createHash('sha256').update(readFileSync(weightsPath)).digest('hex');
  // the log may run past the checkpoint (a run stopped between checkpoints): count only the steps the weights hold
  const log = readLog<TrainLogLine>(join(runDir, 'log.jsonl')).filter((r) => r.step <= step);
  const metricsPath = join(runDir, 'metrics.json');
  // a fine-tune (--init) names the checkpoint it started from and that run's training seconds up to it
  const initPath = join(runDir, 'init.json');
  const init = existsSync(initPath)
    ? (JSON.parse(readFileSync(initPath, 'utf8')) as { from: string; step: number; sha256: string })
    : null;
  const initSeconds = init
    ? Math.round(
        trainingSeconds(readLog<TrainLogLine>(join(init.from, 'log.jsonl')).filter((r) => r.step <= init.step)),
      )
    : 0;
  // a classifier fine-tuned on a purified training set names it and the seconds its purification took
  const runJson = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as { purified?: string };
  const purifiedSet =
    typeof runJson.purified === 'string'
      ? {
          from: runJson.purified,
          ...JSON.parse(readFileSync(join(runJson.purified, 'run.json'), 'utf8')),
          seconds: Math.round(purifiedSetSeconds(readLog<PurifiedLogLine>(join(runJson.purified, 'log.jsonl')))),
        }
      : null;
  const manifest = {
    weights: weightsPath.split('/').pop(),
    sha256,
    parameters: [...sd.values()].reduce((a, t) => a + t.data.length, 0),
    run: runJson,
    steps: step,
    trainingSeconds: Math.round(trainingSeconds(log)) + initSeconds,
    ...(init ? { init: { ...init, trainingSeconds: initSeconds } } : {}),
    ...(purifiedSet ? { purifiedSet } : {}),
    lastLosses: log.slice(-10).map((r) => r.loss),
    metrics: existsSync(metricsPath) ? JSON.parse(readFileSync(metricsPath, 'utf8')) : null,
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version },
    ...extra,
  };
  const base = weightsPath.replace(/\.safetensors$/, '');
  const manifestPath = `${base}.json`;
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  // the network's config in its official format beside the weights, where `diffpure eval` protocols and
  // `--config` read it (classifier runs: RobustBench's WRN keywords; score runs: score_sde's config JSON)
  const run = manifest.run as { model?: unknown; config?: unknown };
  const configPath = `${base}.config.json`;
  writeFileSync(configPath, `${JSON.stringify(run.config ?? run.model, null, 2)}\n`);
  return { manifestPath, configPath, sha256 };
}
