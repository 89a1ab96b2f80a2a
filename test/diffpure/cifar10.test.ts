// CIFAR-10's binary batches (src/diffpure/data/cifar10.ts) on small files in the same format that this test writes:
// record order, plane order (R, G, B = NCHW), scaling to [0, 1], the five training batches in order, and the errors.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeCifar10Bin, loadCifar10 } from '../../src/diffpure/data/cifar10.js';

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
      /test_batch\.bin not found.*cifar-10-binary\.tar\.gz/,
    );
  });
});
