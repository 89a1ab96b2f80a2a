// CIFAR-10's binary batches (src/diffpure/data/cifar10.ts) on small files in the same format that this test writes:
// record order, plane order (R, G, B = NCHW), scaling to [0, 1], the five training batches in order, and the errors.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeCifar10Bin, decodeCifar10Pickle, loadCifar10 } from '../../src/diffpure/data/cifar10.js';

const dir = mkdtempSync(join(tmpdir(), 'cifar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** n records: label (seed + i) % 10, pixel k of channel c = (seed + 7i + 3c + k) % 256. */
function batch(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n * 3073);
  for (let i = 0; i < n; i++) {
    b[i * 3073] = (seed + i) % 10;
    for (let c = 0; c < 3; c++) {
      for (let k = 0; k < 1024; k++) b[i * 3073 + 1 + c * 1024 + k] = (seed + 7 * i + 3 * c + k) % 256;
    }
  }
  return b;
}

describe('CIFAR-10 binary batches', () => {
  test('records decode to NCHW planes in [0, 1] with their labels', () => {
    const s = decodeCifar10Bin(batch(3, 5), 'b');
    expect(s.shape).toEqual([3, 3, 32, 32]);
    expect([...s.labels]).toEqual([5, 6, 7]);
    // image 2, channel 1 (green), pixel (0, 4): (5 + 14 + 3 + 4) % 256 = 26
    expect(s.images[2 * 3072 + 1 * 1024 + 4]).toBe(Math.fround(26 / 255));
  });

  test('the training split concatenates data_batch_1..5 in order; the test split is test_batch.bin', () => {
    const d = join(dir, 'cifar-10-batches-bin');
    mkdirSync(d, { recursive: true });
    for (let k = 1; k <= 5; k++) writeFileSync(join(d, `data_batch_${k}.bin`), batch(2, 10 * k));
    writeFileSync(join(d, 'test_batch.bin'), batch(4, 1));
    const train = loadCifar10('train', dir);
    expect(train.shape).toEqual([10, 3, 32, 32]);
    expect([...train.labels]).toEqual([0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    expect(train.images[8 * 3072]).toBe(Math.fround(50 / 255)); // first pixel of batch 5's first image
    expect(loadCifar10('test', d).shape).toEqual([4, 3, 32, 32]);
  });

  test('bad sizes, labels and missing files are named', () => {
    expect(() => decodeCifar10Bin(new Uint8Array(3000), 'x.bin')).toThrow(/x\.bin: not a CIFAR-10 binary batch/);
    const bad = batch(1, 0);
    bad[0] = 42;
    expect(() => decodeCifar10Bin(bad, 'y.bin')).toThrow(/record 0 has label 42/);
    expect(() => loadCifar10('test', join(dir, 'nowhere'))).toThrow(
      /no test_batch\.bin or test_batch in .*cifar-10-binary\.tar\.gz/,
    );
  });
});

describe('CIFAR-10 python batches (fixtures/cifar_py*_batch, written by cifar_py.py with NumPy)', () => {
  const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

  test.each(['cifar_py2_batch', 'cifar_py3_batch'])('%s: images and labels as the binary reader gives them', (name) => {
    const s = decodeCifar10Pickle(readFileSync(fixture(name)), name);
    expect(s.shape).toEqual([3, 3, 32, 32]);
    expect([...s.labels]).toEqual([7, 0, 9]);
    // image k, channel c, pixel j = (11 k + 5 c + j) % 256 (cifar_py.py)
    for (const [k, c, j] of [
      [0, 0, 0],
      [1, 2, 1000],
      [2, 1, 1023],
    ] as const) {
      expect(s.images[k * 3072 + c * 1024 + j]).toBe(Math.fround(((11 * k + 5 * c + j) % 256) / 255));
    }
  });

  test('a python-version folder loads as a split; a pickle of something else is named', () => {
    const d = join(dir, 'py', 'cifar-10-batches-py');
    mkdirSync(d, { recursive: true });
    copyFileSync(fixture('cifar_py2_batch'), join(d, 'test_batch'));
    expect(loadCifar10('test', join(dir, 'py')).labels.length).toBe(3);
    const notCifar = new Uint8Array([0x80, 0x02, 0x4b, 0x05, 0x2e]); // pickle of the int 5
    expect(() => decodeCifar10Pickle(notCifar, 'x')).toThrow(
      /x: not a CIFAR-10 python batch \(the pickle holds no dict\)/,
    );
  });
});
