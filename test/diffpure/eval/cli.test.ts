// `diffpure eval` and `diffpure merge` end to end on Fashion-MNIST with tiny real checkpoints (a WRN-10-1 and an
// NCSN++ of nf 8, untrained: the mechanics, not the numbers): a run killed with SIGKILL mid-run and rerun ends with
// the same records and table as an uninterrupted one; three shards merged give the same table; the PNG is written;
// bad input is named.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FASHION_MNIST_DIR } from '../../../src/diffpure/data/idx.js';
import { buildNetwork } from '../../../src/diffpure/models.js';
import { type HostTensor, readSafetensors, writeSafetensors } from '../../../src/nn/io/index.js';
import { initBackend } from '../../../src/tensor/index.js';
import { TINY_SCORE } from '../tiny-score.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(process.cwd(), 'bin', 'diffpure.mjs');
const protocolPath = join(dir, 'tiny.json');

function save(path: string, kind: 'wrn' | 'ddpmpp', config: unknown): void {
  const sd = new Map<string, HostTensor>();
  for (const [k, t] of buildNetwork(kind, config).module.stateDict())
    sd.set(k, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()) });
  writeSafetensors(path, sd, { format: 'pt' });
}

beforeAll(async () => {
  await initBackend('cpu');
  const wrn = { depth: 10, widen_factor: 1, num_classes: 10, in_channels: 1 };
  save(join(dir, 'cls.safetensors'), 'wrn', wrn);
  save(join(dir, 'score.safetensors'), 'ddpmpp', TINY_SCORE);
  writeFileSync(
    protocolPath,
    JSON.stringify({
      name: 'tiny',
      description: 'untrained tiny models',
      data: { set: 'fashion-mnist', sample: { rule: 'diffpure', perDataSeed: 6, dataSeeds: [0] } },
      classifier: { model: 'wrn', config: wrn, weights: join(dir, 'cls.safetensors') },
      purifier: { model: 'ddpmpp', config: TINY_SCORE, weights: join(dir, 'score.safetensors'), dt: 0.05 },
      seeds: [3],
      batch: 2,
      attacks: [
        {
          id: 'apgd-ce',
          attack: 'autoattack',
          version: 'custom',
          attacks: ['apgd-ce'],
          norm: 'Linf',
          eps: 0.1,
          tStar: 0.1,
          settings: { apgdIter: 2 },
        },
      ],
    }),
  );
});

const run = (out: string, extra: string[] = []) =>
  spawnSync(process.execPath, [bin, 'eval', '--protocol', protocolPath, '--out', out, ...extra], {
    encoding: 'utf8',
    timeout: 300_000,
  });
const sampleLines = (f: string) =>
  readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l.includes('"type":"sample"'))
    .sort();
const table = (out: string) => {
  const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  return JSON.stringify(r.rows);
};

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('diffpure eval', () => {
  const a = join(dir, 'a');
  test('a run prints the table, writes records, results and the PNG', () => {
    const r = run(a);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| DiffPure \| apgd-ce \| [\d.]+ \| [\d.]+ \| 3\/3 \|/);
    expect(r.stdout).toMatch(/\| classifier alone \| apgd-ce \| [\d.]+ \| [\d.]+ \| 3\/3 \|/);
    expect(r.stdout).toMatch(
      /apgd-ce: AutoAttack custom \[apgd-ce\], Linf eps 0.1 \(25.5\/255\) \(apgdIter 2; the rest as the version\); t\* 0.1, dt 0.05/,
    );
    expect(r.stderr).toMatch(/6\/6 batches/);
    expect(sampleLines(join(a, 'records.jsonl'))).toHaveLength(12);
    const png = PNG.sync.read(readFileSync(join(a, 'grid-apgd-ce.png')));
    expect(png.width).toBeGreaterThan(300);
    expect(existsSync(join(a, 'adv', 'apgd-ce.diffpure.seed3.batch2.npy'))).toBe(true);
    // rerunning finds everything done and prints the same table
    const again = run(a);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming: 6 batch/);
  }, 300_000);

  test('kill -9 mid-run, rerun: the same records and table as the uninterrupted run', async () => {
    const b = join(dir, 'b');
    const child: ChildProcess = spawn(process.execPath, [bin, 'eval', '--protocol', protocolPath, '--out', b], {
      stdio: 'ignore',
    });
    const exited = new Promise((res) => child.on('exit', res));
    const recs = join(b, 'records.jsonl');
    const units = () => (existsSync(recs) ? readFileSync(recs, 'utf8').split('"type":"unit"').length - 1 : 0);
    for (let i = 0; i < 30000 && units() < 1; i++) await new Promise((res) => setTimeout(res, 10));
    child.kill('SIGKILL');
    await exited;
    const before = units();
    expect(before).toBeGreaterThanOrEqual(1);
    expect(before).toBeLessThan(6); // killed mid-run
    const r = run(b);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`resuming: ${before} batch`));
    expect(sampleLines(recs)).toEqual(sampleLines(join(a, 'records.jsonl')));
    expect(table(b)).toBe(table(a));
  }, 300_000);

  test('three shards (--shard and the Slurm environment) merged give the same table', () => {
    const c = join(dir, 'c');
    for (const i of [0, 1]) expect(run(c, ['--shard', `${i}/3`]).status).toBe(0);
    const slurm = spawnSync(process.execPath, [bin, 'eval', '--protocol', protocolPath, '--out', c], {
      encoding: 'utf8',
      env: { ...process.env, SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3' },
    });
    expect(slurm.status, slurm.stderr).toBe(0);
    expect(slurm.stderr).toMatch(/shard 2\/3 \(from SLURM_ARRAY_TASK_ID\)/);
    const m = spawnSync(process.execPath, [bin, 'merge', c], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/3 records file\(s\) of a 3-shard split/);
    expect(table(c)).toBe(table(a));
  }, 300_000);

  test('bad input is named with the fix', () => {
    const e = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    expect(e(['eval', '--protocol', 'fmnist-quik']).stderr).toMatch(/no such preset.*--print fmnist-quick/);
    expect(e(['eval', '--protocol', protocolPath, '--out', join(dir, 'x'), '--shard', '3/3']).stderr).toMatch(
      /--shard '3\/3': shard index 3 is out of range/,
    );
    expect(e(['eval', '--classifier-weights', join(dir, 'none.safetensors'), '--out', join(dir, 'y')]).stderr).toMatch(
      /classifier\.weights '.*none\.safetensors' not found/,
    );
    expect(existsSync(join(dir, 'y'))).toBe(false); // no records folder left behind
    // the same folder with another solver step: refused, naming the field
    expect(e(['eval', '--protocol', protocolPath, '--out', a, '--dt', '0.02']).stderr).toMatch(
      /differing: protocol\.purifier\.dt.*--fresh/,
    );
    expect(e(['merge', join(dir, 'nothing-here')]).stderr).toMatch(/no such folder/);
    expect(e(['eval', '--protocol', protocolPath, '--out', a, '--seeds', '3,']).stderr).toMatch(
      /--seeds '3,': an empty item/,
    );
    expect(e(['eval', '--protocol', protocolPath, '--out', a, '--seeds', '3,3']).stderr).toMatch(/seeds.*twice/);
    // a shard of another split in the same folder is refused before any work
    expect(e(['eval', '--protocol', protocolPath, '--out', a, '--shard', '0/2']).stderr).toMatch(
      /records\.jsonl is a shard of a 1-way split, but this run is 2-way/,
    );
    // merge given a records file writes beside it
    const m = e(['merge', join(a, 'records.jsonl')]);
    expect(m.status, m.stderr).toBe(0);
    expect(m.stderr).toMatch(new RegExp(`-> ${join(a, 'results.md')}`));
    expect(e(['eval', '--print', 'fmnist-quick']).stdout).toMatch(/"name": "fmnist-quick"/);
    expect(e(['eval', '--list']).stdout).toMatch(/fmnist-quick \(default\)/);
    // the header names the weights by sha256: a model re-shipped under the same path does not resume old records
    const header = JSON.parse(readFileSync(join(a, 'records.jsonl'), 'utf8').split('\n')[0] as string);
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(header.weights).toEqual({
      classifier: sha(join(dir, 'cls.safetensors')),
      purifier: sha(join(dir, 'score.safetensors')),
    });
    const sd = readSafetensors(join(dir, 'cls.safetensors')).tensors;
    writeSafetensors(join(dir, 'cls.safetensors'), sd, { format: 'pt', note: 'another file, the same shapes' });
    expect(e(['eval', '--protocol', protocolPath, '--out', a]).stderr).toMatch(
      /another run \(differing: weights\.classifier\).*--fresh/,
    );
  }, 120_000);
});
