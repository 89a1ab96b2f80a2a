// The run folder every `diffpure train` target writes, and what makes a run resumable bit for bit:
//   run.json                the options the run was started with (a resume must match them)
//   checkpoint.safetensors  named tensors (weights, optimizer state, ...); metadata: the step
//   log.jsonl               one JSON line per step (lines past the checkpoint are dropped on resume)
//   loss.png                the loss curve, redrawn at every checkpoint
// Batches are a pure function of (seed, step), so nothing else needs saving. Checkpoints go to a temporary file that
// is then renamed: a kill while writing one leaves the previous one whole.

import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type HostTensor, readSafetensors, writeSafetensors } from '../../nn/io/index.js';
import type { Tensor } from '../../tensor/index.js';
import { RandomState } from '../data/numpy-random.js';
import { lossCurve, writePng } from '../png.js';

/** The images of training step `step`: the epoch's permutation (NumPy's MT19937 from seed and epoch), sliced. */
export function batchIndices(n: number, batch: number, seed: number, step: number): number[] {
  const perEpoch = Math.floor(n / batch);
  if (perEpoch < 1) throw new Error(`train: batch ${batch} is larger than the ${n} training images`);
  const epoch = Math.floor(step / perEpoch);
  const k = step % perEpoch;
  const perm = new RandomState((Math.imul(seed, 1000003) + epoch) >>> 0).permutation(n);
  return perm.slice(k * batch, (k + 1) * batch);
}

/**
 * Opens a run folder: a fresh run writes run.json and an empty log; a resume checks run.json against `identity`,
 * trims the log to the checkpoint and returns the checkpoint's tensors and step (null when there is none yet).
 */
export function openRun(
  out: string,
  identity: unknown,
  resume: boolean,
): { step: number; tensors: Map<string, HostTensor> } | null {
  mkdirSync(out, { recursive: true });
  const runPath = join(out, 'run.json');
  const ckptPath = join(out, 'checkpoint.safetensors');
  const logPath = join(out, 'log.jsonl');
  if (resume && existsSync(ckptPath)) {
    const saved = JSON.parse(readFileSync(runPath, 'utf8'));
    const differ = differingKeys(saved, identity);
    if (differ.length > 0) {
      throw new Error(
        `--resume: ${runPath} was started with other options (${differ.join(', ')}): ${JSON.stringify(saved)}; ` +
          'resume with the same options, or start a fresh run in another --out folder',
      );
    }
    const f = readSafetensors(ckptPath);
    const step = Number(f.metadata.step);
    const lines = existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').filter(Boolean) : [];
    const kept = lines.filter((l) => (JSON.parse(l) as { step: number }).step <= step);
    writeFileSync(logPath, kept.map((l) => `${l}\n`).join(''));
    return { step, tensors: f.tensors };
  }
  writeFileSync(runPath, `${JSON.stringify(identity, null, 2)}\n`);
  writeFileSync(logPath, '');
  return null;
}

/** Canonical JSON: object keys sorted, so that the order options were parsed in does not matter. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The top-level keys whose values differ between two option objects (key order ignored). */
export function differingKeys(a: unknown, b: unknown): string[] {
  const ra = (a ?? {}) as Record<string, unknown>;
  const rb = (b ?? {}) as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort();
  return keys.filter((k) => canonical(ra[k]) !== canonical(rb[k]));
}

export function appendLog(out: string, record: { step: number }): void {
  appendFileSync(join(out, 'log.jsonl'), `${JSON.stringify(record)}\n`);
}

/** Writes float32 tensors as the run's checkpoint at `step`, atomically. */
export function saveCheckpoint(out: string, tensors: Map<string, Tensor>, step: number, format: string): void {
  const host = new Map<string, HostTensor>();
  for (const [k, t] of tensors)
    host.set(k, { dtype: 'float32', shape: [...t.shape], data: t.dataSync() as Float32Array });
  const tmp = join(out, 'checkpoint.safetensors.tmp');
  writeSafetensors(tmp, host, { step: String(step), format });
  renameSync(tmp, join(out, 'checkpoint.safetensors'));
  writeLossCurve(out);
}

/** loss.png in the run folder: the log's losses so far (see png.ts). */
export function writeLossCurve(out: string): void {
  const logPath = join(out, 'log.jsonl');
  if (!existsSync(logPath)) return;
  const losses = readFileSync(logPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { loss: number }).loss);
  const { rgba, w, h } = lossCurve(losses);
  writePng(join(out, 'loss.png'), rgba, w, h);
}

/** The tensors under `prefix.` of a checkpoint, with the prefix removed. */
export function withPrefix(tensors: Map<string, HostTensor>, prefix: string): Map<string, HostTensor> {
  const p = `${prefix}.`;
  return new Map([...tensors].filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v]));
}
