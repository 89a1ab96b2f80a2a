// DiffPure's evaluation subsets: our NumPy legacy RandomState against the indices NumPy 1.24 drew
// (../shared/fixtures/subsets: np.random.RandomState(seed).choice(N, n, replace=False) for CIFAR-10's and ImageNet's
// seeds and sizes, plus the edge cases N = 10, n = 10 and N = 1), and its first 32-bit outputs.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { diffpureSubset, RandomState } from '../../src/diffpure/data/numpy-random.js';
import { readNpy } from '../../src/nn/io/npy.js';
import { fixtureDir, readMeta } from '../harness/fixtures.js';

const dir = fixtureDir('subsets');

describe.skipIf(!dir)('NumPy RandomState(seed).choice(N, n, replace=False) (fixture subsets)', () => {
  const d = dir as string;
  const meta = readMeta<{ files: Record<string, { seed: number; N: number; n: number }> } & Record<string, unknown>>(d);
  const files = readdirSync(d).filter((f) => f.endsWith('.npy'));

  test('the fixture lists every file it holds', () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const f of files) expect(meta.files[f]).toBeDefined();
  });

  test.each(files)('%s index for index', (f) => {
    const { seed, N, n } = meta.files[f] as { seed: number; N: number; n: number };
    const want = Array.from(readNpy(join(d, f)).data);
    expect(diffpureSubset(seed, N, n)).toEqual(want);
  });

  test('the first eight 32-bit outputs of seed 0 match the fixture', () => {
    const values = meta.first_8_uint32_of_seed0 as number[];
    const rs = new RandomState(0);
    expect(values.map(() => rs.nextUint32())).toEqual(values);
  });
});

describe('RandomState input checks', () => {
  test('bad seeds and sizes name the problem', () => {
    expect(() => new RandomState(-1)).toThrow(/seed must be an integer in \[0, 2\^32 - 1\]/);
    expect(() => new RandomState(1.5)).toThrow(/seed/);
    expect(() => diffpureSubset(0, 10, 11)).toThrow(/cannot take 11 samples without replacement from 10/);
  });
});
