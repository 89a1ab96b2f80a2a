// IDX reading (src/diffpure/data/idx.ts): small files we write, raw and gzipped, every malformation named; and
// Debian's Fashion-MNIST (dataset-fashion-mnist, installed by .ci/run): 60,000 / 10,000 images of 28x28 with 6,000 /
// 1,000 of each of the 10 classes, the split sizes and balance the data set's README states (Xiao et al., 2017).

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'fflate';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeIdx, FASHION_MNIST_DIR, loadMnistLike } from '../../src/diffpure/data/idx.js';

function idx(shape: number[], data: number[]): Uint8Array {
  const head = new Uint8Array(4 + 4 * shape.length);
  head.set([0, 0, 8, shape.length]);
  const v = new DataView(head.buffer);
  for (let i = 0; i < shape.length; i++) v.setUint32(4 + 4 * i, shape[i] as number, false);
  return new Uint8Array([...head, ...data]);
}

const dir = mkdtempSync(join(tmpdir(), 'idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('IDX files', () => {
  test('raw and gzipped decode to the same shape and bytes', () => {
    const raw = idx([2, 2, 3], [0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]);
    for (const b of [raw, gzipSync(raw)]) {
      const a = decodeIdx(b, 'x');
      expect(a.shape).toEqual([2, 2, 3]);
      expect([...a.data]).toEqual([0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255]);
    }
  });

  test('malformed files are refused with the file and the problem named', () => {
    expect(() => decodeIdx(new Uint8Array([0, 0]), 'a.idx')).toThrow(/a\.idx: not a valid IDX file \(2 bytes/);
    expect(() => decodeIdx(new Uint8Array([1, 0, 8, 1, 0, 0, 0, 0]), 'b')).toThrow(/magic starts 1, 0/);
    expect(() => decodeIdx(new Uint8Array([0, 0, 0x0d, 1, 0, 0, 0, 0]), 'c')).toThrow(/element type 0xd/);
    expect(() => decodeIdx(idx([3], [1, 2]), 'd')).toThrow(/shape \[3\] needs 3 data bytes, the file has 2/);
    expect(() => decodeIdx(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), 'e')).toThrow(/e: not a valid IDX file \(gzip/);
  });

  test('a split in [0, 1], NCHW, labels checked; a missing split says how to install it', () => {
    const d = join(dir, 'ok');
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d);
    writeFileSync(join(d, 't10k-images-idx3-ubyte.gz'), gzipSync(idx([2, 2, 2], [0, 51, 102, 255, 1, 2, 3, 4])));
    writeFileSync(join(d, 't10k-labels-idx1-ubyte'), idx([2], [3, 9]));
    const s = loadMnistLike('test', d);
    expect(s.shape).toEqual([2, 1, 2, 2]);
    expect([...s.images.slice(0, 4)]).toEqual([0, 0.2, 0.4, 1].map(Math.fround));
    expect([...s.labels]).toEqual([3, 9]);
    expect(() => loadMnistLike('train', d)).toThrow(/apt-get install dataset-fashion-mnist/);
    writeFileSync(join(d, 't10k-labels-idx1-ubyte'), idx([2], [3, 10]));
    expect(() => loadMnistLike('test', d)).toThrow(/label 10 at index 1 is not in 0\.\.9/);
  });
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))(`Fashion-MNIST in ${FASHION_MNIST_DIR}`, () => {
  test.each([
    ['train', 60000, 6000],
    ['test', 10000, 1000],
  ] as const)('%s: %i images of 28x28, %i per class, values in [0, 1]', (split, n, perClass) => {
    const s = loadMnistLike(split);
    expect(s.shape).toEqual([n, 1, 28, 28]);
    const counts = new Array(10).fill(0);
    for (const l of s.labels) counts[l]++;
    expect(counts).toEqual(new Array(10).fill(perClass));
    let lo = 1;
    let hi = 0;
    for (const v of s.images) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect([lo, hi]).toEqual([0, 1]);
  });
});
