// CIFAR-10's binary version (cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin): records of 1 label byte and
// 3072 image bytes, the red, green and blue 32x32 planes in turn, which is already NCHW. Images come out float32 in
// [0, 1] (x / 255, torchvision's ToTensor), as DiffPure's CIFAR-10 loader feeds its classifiers.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabelledImages } from './idx.js';

const RECORD = 1 + 3 * 32 * 32;

/** Decodes one binary batch file's bytes. */
export function decodeCifar10Bin(bytes: Uint8Array, path = '<bytes>'): LabelledImages {
  if (bytes.length === 0 || bytes.length % RECORD !== 0) {
    throw new Error(
      `${path}: not a CIFAR-10 binary batch (${bytes.length} bytes is not a whole number of ${RECORD}-byte records)`,
    );
  }
  const n = bytes.length / RECORD;
  const images = new Float32Array(n * 3072);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = i * RECORD;
    const label = bytes[r] as number;
    if (label > 9) throw new Error(`${path}: record ${i} has label ${label}, not in 0..9 (is this CIFAR-100?)`);
    labels[i] = label;
    for (let k = 0; k < 3072; k++) images[i * 3072 + k] = (bytes[r + 1 + k] as number) / 255;
  }
  return { images, shape: [n, 3, 32, 32], labels };
}

/** The test split (test_batch.bin) or the training split (data_batch_1..5.bin, in order) under `dir`. */
export function loadCifar10(split: 'train' | 'test', dir: string): LabelledImages {
  const sub = existsSync(join(dir, 'cifar-10-batches-bin')) ? join(dir, 'cifar-10-batches-bin') : dir;
  const names = split === 'test' ? ['test_batch.bin'] : [1, 2, 3, 4, 5].map((k) => `data_batch_${k}.bin`);
  const parts = names.map((f) => {
    const p = join(sub, f);
    if (!existsSync(p)) {
      throw new Error(
        `CIFAR-10 ${split} split: ${p} not found. Download and unpack the binary version ` +
          '(https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) and pass its folder.',
      );
    }
    return decodeCifar10Bin(readFileSync(p), p);
  });
  if (parts.length === 1) return parts[0] as LabelledImages;
  const n = parts.reduce((a, p) => a + p.labels.length, 0);
  const images = new Float32Array(n * 3072);
  const labels = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * 3072);
    labels.set(p.labels, at);
    at += p.labels.length;
  }
  return { images, shape: [n, 3, 32, 32], labels };
}
