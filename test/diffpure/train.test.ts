// `diffpure train classifier` end to end on Debian's Fashion-MNIST (installed by .ci/run): a tiny WRN-10-1 on the
// first 256 images writes its checkpoint, run.json, log and test accuracy (metrics.json); a run killed with SIGKILL after a checkpoint and resumed
// ends with the same checkpoint bytes as an uninterrupted one; bad options are named.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { FASHION_MNIST_DIR } from '../../src/diffpure/data/idx.js';
import { loadNetwork } from '../../src/diffpure/models.js';
import { trainingSeconds } from '../../src/diffpure/train/manifest.js';
import { differingKeys } from '../../src/diffpure/train/run-folder.js';
import { listTensors, loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { TINY_SCORE } from './tiny-score.js';

const dir = mkdtempSync(join(tmpdir(), 'train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cfg = join(dir, 'wrn.json');
writeFileSync(cfg, JSON.stringify({ depth: 10, widen_factor: 1 }));
writeFileSync(join(dir, 'other.json'), JSON.stringify({ depth: 10, widen_factor: 2 }));
const bin = join(process.cwd(), 'bin', 'diffpure.mjs');
const args = (out: string, extra: string[] = []) => [
  bin,
  'train',
  'classifier',
  '--steps',
  '24',
  '--batch',
  '16',
  '--limit',
  '256',
  '--checkpoint-every',
  '4',
  '--config',
  cfg,
  '--eval-limit',
  '50',
  '--out',
  out,
  ...extra,
];

/**
 * Starts the run `argsFor(b)`, kills it with SIGKILL once its first checkpoint exists, resumes it, and expects the
 * final checkpoint to equal the uninterrupted run's in folder `a` byte for byte.
 */
async function killAfterCheckpointThenResume(
  argsFor: (out: string, extra?: string[]) => string[],
  a: string,
  b: string,
  steps: number,
): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, argsFor(b), { stdio: 'ignore' });
  const ckpt = join(b, 'checkpoint.safetensors');
  const exited = new Promise((res) => child.on('exit', res));
  for (let i = 0; i < 6000 && !existsSync(ckpt); i++) await new Promise((res) => setTimeout(res, 10));
  child.kill('SIGKILL');
  await exited;
  expect(existsSync(ckpt)).toBe(true);
  expect(readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n').length).toBeLessThan(steps); // killed mid-run
  const resumed = spawnSync(process.execPath, argsFor(b, ['--resume']), { encoding: 'utf8', timeout: 300_000 });
  expect(resumed.status, resumed.stderr).toBe(0);
  expect(resumed.stderr).toMatch(/resuming/);
  expect(Buffer.compare(readFileSync(join(a, 'checkpoint.safetensors')), readFileSync(ckpt))).toBe(0);
  expect(readFileSync(join(b, 'log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(steps);
}

/** A CLI run without blocking the test worker (a long spawnSync starves vitest's 60 s RPC to the main process). */
function runCli(argv: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (status) => res({ status, stderr }));
  });
}

test('run options compare by value, not by the order their keys were parsed in', () => {
  // a run.json written before the option parser was reordered must still resume (runs/fmnist-wrn-16-2 is one)
  const saved = { batch: 128, lr: 0.1, seed: 0, model: { depth: 16, in_channels: 1 } };
  const now = { seed: 0, limit: undefined, model: { in_channels: 1, depth: 16 }, lr: 0.1, batch: 128 };
  expect(differingKeys(saved, now)).toEqual([]);
  expect(differingKeys(saved, { ...now, lr: 0.2, augment: true })).toEqual(['augment', 'lr']);
  expect(differingKeys(saved, { ...now, model: { depth: 28, in_channels: 1 } })).toEqual(['model']);
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('diffpure train classifier', () => {
  test('kill -9 after a checkpoint, --resume: the same final weights as an uninterrupted run', async () => {
    const a = join(dir, 'a');
    const r = spawnSync(process.execPath, args(a), { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const log = readFileSync(join(a, 'log.jsonl'), 'utf8').trim().split('\n');
    expect(log).toHaveLength(24);
    expect(JSON.parse(log[23] as string)).toMatchObject({ step: 24, steps: 24 });
    expect(existsSync(join(a, 'loss.png'))).toBe(true);
    const metrics = JSON.parse(readFileSync(join(a, 'metrics.json'), 'utf8'));
    expect(metrics).toMatchObject({ step: 24, testImages: 50 });
    expect(metrics.testAccuracy).toBeGreaterThanOrEqual(0);
    expect(r.stderr).toMatch(/test accuracy [\d.]+% on 50 images at step 24/);
    const pt = join(dir, 'a.pt');
    const ex = spawnSync(process.execPath, [bin, 'train', 'classifier', '--out', a, '--config', cfg, '--export', pt], {
      encoding: 'utf8',
    });
    expect(ex.status, ex.stderr).toBe(0);
    const keys = listTensors(loadTorchCheckpoint(readFileSync(pt))).map(([k]) => k);
    expect(keys).toContain('state_dict/conv1.weight');
    expect(keys).toContain('state_dict/block1.layer.0.bn1.running_var');

    const shipped = join(dir, 'clf.safetensors');
    const sh = spawnSync(
      process.execPath,
      [bin, 'train', 'classifier', '--out', a, '--config', cfg, '--ship', shipped],
      { encoding: 'utf8' },
    );
    expect(sh.status, sh.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(dir, 'clf.json'), 'utf8'));
    expect(manifest.sha256).toBe(createHash('sha256').update(readFileSync(shipped)).digest('hex'));
    expect(manifest).toMatchObject({ steps: 24, metrics: { testImages: 50 }, run: { batch: 16 } });
    // beside them the WRN config a protocol's classifier.config names; the shipped weights load strictly with it
    const shippedConfig = JSON.parse(readFileSync(join(dir, 'clf.config.json'), 'utf8'));
    expect(shippedConfig).toEqual(manifest.run.model);
    const net = await loadNetwork('wrn', shippedConfig, shipped, 'cpu');
    net.module.dispose();

    const b = join(dir, 'b');
    await killAfterCheckpointThenResume(args, a, b, 24);
  });

  test('--init a run --noise-std: a fine-tune from its weights on noisy images; kill -9 and resume: the same bytes', async () => {
    const a = join(dir, 'a');
    if (!existsSync(join(a, 'checkpoint.safetensors')))
      expect(spawnSync(process.execPath, args(a, ['--no-eval']), { encoding: 'utf8' }).status).toBe(0);
    const fine = (out: string, extra: string[] = []) =>
      args(out, ['--init', a, '--noise-std', '0.1', '--steps', '8', '--no-eval', '--lr', '0.01', ...extra]);
    const na = join(dir, 'noisy-a');
    const r = spawnSync(process.execPath, fine(na), { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(na, 'run.json'), 'utf8'))).toMatchObject({ noiseStd: 0.1, init: a });
    expect(JSON.parse(readFileSync(join(na, 'init.json'), 'utf8'))).toMatchObject({ from: a, step: 24 });
    // starting from a's weights, the first loss is far below a fresh network's (log(10) = 2.30)
    const first = JSON.parse(readFileSync(join(na, 'log.jsonl'), 'utf8').split('\n')[0] as string);
    const fresh = JSON.parse(readFileSync(join(a, 'log.jsonl'), 'utf8').split('\n')[0] as string);
    expect(first.loss).toBeLessThan(fresh.loss);
    // shipped, its manifest names the starting checkpoint and counts that run's seconds in
    const sh = spawnSync(
      process.execPath,
      [bin, 'train', 'classifier', '--out', na, '--ship', join(dir, 'noisy.safetensors')],
      {
        encoding: 'utf8',
      },
    );
    expect(sh.status, sh.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(dir, 'noisy.json'), 'utf8'));
    expect(manifest).toMatchObject({ steps: 8, init: { from: a, step: 24 } });
    expect(manifest.init.trainingSeconds).toBeGreaterThan(0);
    expect(manifest.trainingSeconds).toBeGreaterThanOrEqual(manifest.init.trainingSeconds);
    await killAfterCheckpointThenResume(fine, na, join(dir, 'noisy-b'), 8);
    const other = spawnSync(process.execPath, [...fine(join(dir, 'noisy-c')), '--config', join(dir, 'other.json')], {
      encoding: 'utf8',
    });
    expect(other.stderr).toMatch(/--init .*: that run trained .*this one is/);
  });

  test('train purified, then --purified: a fine-tune on purified images; kill -9 and resume: the same bytes', async () => {
    const a = join(dir, 'a');
    if (!existsSync(join(a, 'checkpoint.safetensors'))) expect((await runCli(args(a, ['--no-eval']))).status).toBe(0);
    // 4 training images purified by the shipped score model (weights/), 2 per batch
    const set = join(dir, 'purified');
    const p = await runCli([bin, 'train', 'purified', '--out', set, '--count', '4', '--batch', '2']);
    expect(p.status, p.stderr).toBe(0);
    expect(p.stderr).toMatch(/purifying 4 training images .* at t\* 0\.1, dt 0\.005, batches of 2/);
    expect(existsSync(join(set, 'batch-00001.npy'))).toBe(true);
    const fine = (out: string, extra: string[] = []) =>
      args(out, ['--init', a, '--purified', set, '--steps', '8', '--no-eval', '--lr', '0.01', ...extra]);
    const pa = join(dir, 'pur-a');
    const r = await runCli(fine(pa));
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(pa, 'run.json'), 'utf8'))).toMatchObject({
      purified: set,
      purifiedFraction: 0.5,
    });
    const sh = await runCli([bin, 'train', 'classifier', '--out', pa, '--ship', join(dir, 'pur.safetensors')]);
    expect(sh.status, sh.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(dir, 'pur.json'), 'utf8'));
    expect(manifest.purifiedSet).toMatchObject({ from: set, count: 4, tStar: 0.1, dt: 0.005 });
    expect(manifest.purifiedSet.seconds).toBeGreaterThan(0);
    await killAfterCheckpointThenResume(fine, pa, join(dir, 'pur-b'), 8);
    // without the set's run.json, or a fraction without a set: named
    const none = await runCli(args(join(dir, 'pur-c'), ['--purified', join(dir, 'nowhere')]));
    expect(none.stderr).toMatch(/--purified '.*nowhere': no run\.json there; make the set first/);
    const frac = await runCli(args(join(dir, 'pur-d'), ['--purified-fraction', '0.3']));
    expect(frac.stderr).toMatch(/--purified-fraction needs --purified DIR/);
  });

  test('a resume with other options, and bad values, are refused by name', () => {
    const a = join(dir, 'a');
    const other = spawnSync(process.execPath, args(a, ['--resume', '--lr', '0.2']), { encoding: 'utf8' });
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/--resume: .*run\.json was started with other options \(lr\)/);
    const longer = spawnSync(process.execPath, args(a, ['--resume', '--steps', '30']), { encoding: 'utf8' });
    expect(longer.status).toBe(1);
    expect(longer.stderr).toMatch(/follows a cosine schedule over 24 steps; resume with --steps 24/);
    const bad = spawnSync(process.execPath, [bin, 'train', 'classifier', '--batch', 'x'], { encoding: 'utf8' });
    expect(bad.stderr).toMatch(/--batch must be a positive integer, got 'x'/);
    const what = spawnSync(process.execPath, [bin, 'train', 'gan'], { encoding: 'utf8' });
    expect(what.stderr).toMatch(/unknown target 'gan'/);
  });
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('diffpure train score', () => {
  // a tiny NCSN++ in score_sde's config format, dropout on (its masks must replay on resume too)
  const scoreCfg = join(dir, 'score.json');
  writeFileSync(scoreCfg, JSON.stringify(TINY_SCORE));
  const sargs = (out: string, extra: string[] = []) => [
    bin,
    'train',
    'score',
    '--steps',
    '10',
    '--batch',
    '4',
    '--limit',
    '64',
    '--warmup',
    '3',
    '--checkpoint-every',
    '2',
    '--config',
    scoreCfg,
    '--out',
    out,
    ...extra,
  ];

  test('kill -9 after a checkpoint, --resume: the same weights, EMA and Adam moments as an uninterrupted run', async () => {
    const a = join(dir, 'sa');
    const r = spawnSync(process.execPath, sargs(a), { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    const log = readFileSync(join(a, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log).toHaveLength(10);
    for (const l of log) expect(Number.isFinite(l.loss) && Number.isFinite(l.gradNorm)).toBe(true);
    expect(existsSync(join(a, 'denoise.png'))).toBe(true);
    expect(existsSync(join(a, 'loss.png'))).toBe(true);

    await killAfterCheckpointThenResume(sargs, a, join(dir, 'sb'), 10);
  });

  test('--evaluate: the classifier on purified test images at each t*, seeded, into metrics.json and the manifest', () => {
    const a = join(dir, 'sa');
    if (!existsSync(join(a, 'checkpoint.safetensors'))) {
      const r = spawnSync(process.execPath, sargs(a), { encoding: 'utf8', timeout: 300_000 });
      expect(r.status, r.stderr).toBe(0);
    }
    const clf = join(dir, 'eval-clf');
    const c = spawnSync(process.execPath, [...args(clf), '--steps', '2', '--no-eval'], { encoding: 'utf8' });
    expect(c.status, c.stderr).toBe(0);
    const own = spawnSync(
      process.execPath,
      [bin, 'train', 'classifier', '--evaluate', '--out', clf, '--eval-limit', '6', '--json'],
      { encoding: 'utf8' },
    );
    expect(own.status, own.stderr).toBe(0);
    const evalArgs = [
      bin,
      'train',
      'score',
      '--evaluate',
      '--out',
      a,
      '--classifier-weights',
      clf,
      '--eval-limit',
      '6',
    ];
    const run = () => {
      const e = spawnSync(
        process.execPath,
        [...evalArgs, '--eval-batch', '4', '--t-star', '0.01,0.02', '--dt', '0.005', '--seed', '3'],
        { encoding: 'utf8', timeout: 300_000 },
      );
      expect(e.status, e.stderr).toBe(0);
      const metrics = JSON.parse(readFileSync(join(a, 'metrics.json'), 'utf8'));
      expect(metrics).toMatchObject({ step: 10, parameterSet: 'EMA' });
      expect(metrics.evaluations).toHaveLength(1); // a rerun replaces its own entry
      return metrics.evaluations[0];
    };
    const m = run();
    expect(m).toMatchObject({ testImages: 6, dt: 0.005, seed: 3, classifierStep: 2 });
    // the bare column is the classifier's own test accuracy on the same images
    expect(m.classifierAccuracy).toBe(JSON.parse(own.stdout).testAccuracy);
    expect(Object.keys(m.purifiedAccuracy)).toEqual(['0.01', '0.02']);
    for (const acc of Object.values(m.purifiedAccuracy) as number[]) expect(acc * 6).toBe(Math.round(acc * 6));
    expect(run().purifiedAccuracy).toEqual(m.purifiedAccuracy); // reproducible from the seed
    // two classifiers read on one purification: each entry equals what that classifier alone would have read
    const clf2 = join(dir, 'eval-clf2');
    const c2 = spawnSync(process.execPath, [...args(clf2), '--steps', '1', '--seed', '1', '--no-eval'], {
      encoding: 'utf8',
    });
    expect(c2.status, c2.stderr).toBe(0);
    // the same evaluation as run(), with other classifiers; returns the evaluations in metrics.json
    const evalOptions = ['--eval-batch', '4', '--t-star', '0.01,0.02', '--dt', '0.005', '--seed', '3'];
    const evaluateWith = (weights: string) => {
      const e = spawnSync(
        process.execPath,
        [...evalArgs.slice(0, -4), '--classifier-weights', weights, '--eval-limit', '6', ...evalOptions],
        { encoding: 'utf8', timeout: 300_000 },
      );
      expect(e.status, e.stderr).toBe(0);
      return JSON.parse(readFileSync(join(a, 'metrics.json'), 'utf8')).evaluations;
    };
    const evs = evaluateWith(`${clf},${clf2}`);
    expect(evs.map((e: { classifier: string }) => e.classifier)).toEqual([clf, clf2]);
    expect(evs[0].purifiedAccuracy).toEqual(m.purifiedAccuracy);
    // the second entry is clf2's reading, not clf's again: these two small nets disagree on these images
    expect(evs[1].classifierSha256).not.toBe(evs[0].classifierSha256);
    expect([evs[1].classifierAccuracy, evs[1].purifiedAccuracy]).not.toEqual([
      evs[0].classifierAccuracy,
      evs[0].purifiedAccuracy,
    ]);
    const evs2 = evaluateWith(clf2);
    expect(evs2).toHaveLength(2); // clf2's rerun replaced its own entry
    expect(evs2[1].purifiedAccuracy).toEqual(evs[1].purifiedAccuracy);
    expect(evs2[1].classifierAccuracy).toEqual(evs[1].classifierAccuracy);
    const shipped = join(dir, 'shipped-score.safetensors');
    const sh = spawnSync(process.execPath, [bin, 'train', 'score', '--out', a, '--ship', shipped], {
      encoding: 'utf8',
    });
    expect(sh.status, sh.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(dir, 'shipped-score.json'), 'utf8'));
    expect(manifest).toMatchObject({ kind: 'score', steps: 10 });
    expect(manifest.metrics.evaluations[0].purifiedAccuracy).toEqual(m.purifiedAccuracy);
    const bad = spawnSync(process.execPath, [...evalArgs, '--t-star', '0.0005'], { encoding: 'utf8' });
    expect(bad.stderr).toMatch(/--t-star: each t\* must be a multiple of 0.001 in \(0, 1\], got '0.0005'/);
    const none = spawnSync(process.execPath, [...evalArgs, '--classifier-weights', join(dir, 'nope.safetensors')], {
      encoding: 'utf8',
    });
    expect(none.stderr).toMatch(/--classifier-weights '.*nope.safetensors' does not exist/);
  });
});

test('training seconds add up the segments of a resumed log', () => {
  expect(trainingSeconds([{ seconds: 1 }, { seconds: 2 }, { seconds: 0.5 }, { seconds: 3 }])).toBe(5);
  expect(trainingSeconds([])).toBe(0);
});
