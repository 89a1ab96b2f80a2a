// The purified training set (src/diffpure/train/purified-set.ts) on synthetic images with a stand-in score network:
// which images, which seeds, continuing a killed set gives the same bytes, a changed option is refused by name, and
// the batch-slot mixing of `train classifier --purified` (mixedIndices).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { LabelledImages } from '../../src/diffpure/data/idx.js';
import { RandomState } from '../../src/diffpure/data/numpy-random.js';
import { mixedIndices } from '../../src/diffpure/train/classifier.js';
import { purifiedSetSeconds, trainingSeconds } from '../../src/diffpure/train/manifest.js';
import {
  buildPurifiedSet,
  loadPurifiedSet,
  type PurifiedSetOptions,
  purifiedBatchSeed,
  purifiedSetIndices,
} from '../../src/diffpure/train/purified-set.js';
import { mul, type Tensor } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'purified-set-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 12 images 1x6x6 in [0, 1], labels i mod 10
const n = 12;
const train: LabelledImages = {
  images: Float32Array.from({ length: n * 36 }, (_, i) => ((i * 37) % 101) / 100),
  shape: [n, 1, 6, 6],
  labels: Uint8Array.from({ length: n }, (_, i) => i % 10),
};
// a stand-in score network: s(x, t) = -x (the score of a standard normal in the [-1, 1] scale)
const score = (x: Tensor, _t: Tensor) => mul(x, -1);
const weights = join(dir, 'score.safetensors');
writeFileSync(weights, 'stand-in bytes: only their sha256 is read');
const opts: PurifiedSetOptions = {
  scoreWeights: weights,
  scoreConfig: join(dir, 'score.config.json'),
  tStar: 0.1,
  dt: 0.02,
  count: 7,
  batch: 3,
  seed: 5,
};

test('the images are the first count of NumPy RandomState(seed).permutation(n); batch seeds are disjoint', () => {
  expect(purifiedSetIndices(60000, 50, 3)).toEqual(new RandomState(3).permutation(60000).slice(0, 50));
  // a smaller count is a prefix of a larger one: the same seed gives the same first batches
  expect(purifiedSetIndices(100, 40, 1).slice(0, 20)).toEqual(purifiedSetIndices(100, 20, 1));
  expect(() => purifiedSetIndices(10, 11, 0)).toThrow(/--count 11: the training set has 10 images/);
  const seeds = new Set<number>();
  for (let s = 0; s < 4; s++) for (let b = 0; b < 100; b++) seeds.add(purifiedBatchSeed(s, b));
  expect(seeds.size).toBe(400);
  // away from the small seeds evaluations and attacks use
  expect(Math.min(...seeds)).toBeGreaterThanOrEqual(2 ** 30);
});

describe('buildPurifiedSet', () => {
  test('one .npy per batch; a killed set continues to the same bytes; labels follow the indices', () => {
    const a = join(dir, 'a');
    expect(buildPurifiedSet(a, opts, train, score)).toBe(3);
    const files = [0, 1, 2].map((b) => join(a, `batch-0000${b}.npy`));
    for (const f of files) expect(existsSync(f)).toBe(true);
    const bytes = files.map((f) => readFileSync(f));
    // a second run has nothing left to do
    expect(buildPurifiedSet(a, opts, train, score)).toBe(0);
    // as if killed before the last two batches were renamed into place
    rmSync(files[1] as string);
    rmSync(files[2] as string);
    expect(buildPurifiedSet(a, opts, train, score)).toBe(2);
    files.forEach((f, i) => {
      expect(Buffer.compare(readFileSync(f), bytes[i] as Buffer)).toBe(0);
    });
    expect(readFileSync(join(a, 'log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(5); // 3 batches, then 2

    const set = loadPurifiedSet(a, train);
    expect(set.shape).toEqual([7, 1, 6, 6]);
    expect(set.indices).toEqual(purifiedSetIndices(n, 7, 5));
    expect([...set.labels]).toEqual(set.indices.map((i) => i % 10));
    // purified, not copied: each image moved away from its source
    const i0 = set.indices[0] as number;
    let diff = 0;
    for (let k = 0; k < 36; k++) diff += Math.abs((set.images[k] as number) - (train.images[i0 * 36 + k] as number));
    expect(diff).toBeGreaterThan(0.1);
  });

  test('shards i/n make batches i, i+n, ...: two shards side by side give the files one process gives', () => {
    const a = join(dir, 'unsharded');
    buildPurifiedSet(a, opts, train, score);
    const s = join(dir, 'sharded');
    expect(buildPurifiedSet(s, opts, train, score, undefined, { index: 1, count: 2 })).toBe(1); // batch 1
    expect(existsSync(join(s, 'batch-00000.npy'))).toBe(false);
    expect(() => loadPurifiedSet(s, train)).toThrow(/2 of 3 batches are not purified yet/);
    expect(buildPurifiedSet(s, opts, train, score, undefined, { index: 0, count: 2 })).toBe(2); // batches 0 and 2
    for (const b of [0, 1, 2]) {
      const f = `batch-0000${b}.npy`;
      expect(Buffer.compare(readFileSync(join(s, f)), readFileSync(join(a, f)))).toBe(0);
    }
    const log = readFileSync(join(s, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log.map((r) => [r.batch, r.shard])).toEqual([
      [1, '1/2'],
      [0, '0/2'],
      [2, '0/2'],
    ]);
  });

  test('purifiedSetSeconds: each shard (and each process within it) adds its seconds', () => {
    // an unsharded process killed after 2 batches, then two shards side by side, their lines interleaved
    const log = [
      { seconds: 50 },
      { seconds: 100 },
      { seconds: 52, shard: '0/2' },
      { seconds: 51, shard: '1/2' },
      { seconds: 104, shard: '0/2' },
      { seconds: 103, shard: '1/2' },
    ];
    expect(purifiedSetSeconds(log)).toBe(100 + 104 + 103);
    // trainingSeconds alone would read each drop between the shards' lines as a new process
    expect(trainingSeconds(log)).toBe(100 + 52 + 104 + 103); // reads 52 -> 51 and 104 -> 103 as restarts
  });

  test('another seed draws other images and noise; changed options, bad seeds and a partial set are refused', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    buildPurifiedSet(b, { ...opts, seed: 6 }, train, score);
    expect(Buffer.compare(readFileSync(join(a, 'batch-00000.npy')), readFileSync(join(b, 'batch-00000.npy')))).not.toBe(
      0,
    );
    expect(() => buildPurifiedSet(a, { ...opts, tStar: 0.2 }, train, score)).toThrow(
      /run\.json was made with other options \(tStar\)/,
    );
    expect(() => buildPurifiedSet(join(dir, 'c'), { ...opts, seed: 2 ** 14 }, train, score)).toThrow(
      /--seed 16384: .*\[0, 16384\)/,
    );
    rmSync(join(b, 'batch-00002.npy'));
    expect(() => loadPurifiedSet(b, train)).toThrow(/1 of 3 batches are not purified yet .*batch-00002\.npy/);
    expect(() => loadPurifiedSet(join(dir, 'none'), train)).toThrow(/no run\.json here .*diffpure train purified/);
  });
});

test('mixedIndices: a fraction of the slots, keyed by (seed, step, slot), swapped for purified images n + j', () => {
  const idx = Array.from({ length: 256 }, (_, i) => i);
  expect(mixedIndices(idx, 1000, 50, 0, 0, 3)).toEqual(idx);
  const all = mixedIndices(idx, 1000, 50, 1, 0, 3);
  for (const i of all) expect(i >= 1000 && i < 1050).toBe(true);
  const half = mixedIndices(idx, 1000, 50, 0.5, 0, 3);
  const swapped = half.filter((i, k) => i !== idx[k]).length;
  expect(swapped).toBeGreaterThan(96); // 128 expected; 4 standard deviations each side
  expect(swapped).toBeLessThan(160);
  expect(mixedIndices(idx, 1000, 50, 0.5, 0, 3)).toEqual(half);
  expect(mixedIndices(idx, 1000, 50, 0.5, 0, 4)).not.toEqual(half);
});
