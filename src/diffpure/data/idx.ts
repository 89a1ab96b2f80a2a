// IDX files (LeCun's MNIST format, also Fashion-MNIST's), gzipped or not, and the Fashion-MNIST / MNIST splits as
// NCHW float32 images in [0, 1] (x / 255, as torchvision's ToTensor) with their labels.
//
// IDX: a 4-byte magic (0, 0, type, rank), rank big-endian uint32 dimensions, then the data row-major. Only type 0x08
// (unsigned byte), the one MNIST-family files use, is read; anything else is refused with the file named.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'fflate';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

const fail = (path: string, why: string): never => {
  throw new Error(`${path}: not a valid IDX file (${why})`);
};

/** Decodes IDX bytes (gunzipping first when they start with the gzip magic). */
export function decodeIdx(bytes: Uint8Array, path = '<bytes>'): IdxArray {
  let b = bytes;
  if (b[0] === 0x1f && b[1] === 0x8b) {
    try {
      b = gunzipSync(b);
    } catch (e) {
      fail(path, `gzip data is corrupt: ${e instanceof Error ? e.message : e}`);
    }
  }
  if (b.length < 4) fail(path, `${b.length} bytes, shorter than the 4-byte magic`);
  if (b[0] !== 0 || b[1] !== 0) fail(path, `magic starts ${b[0]}, ${b[1]} instead of 0, 0`);
  if (b[2] !== 0x08) fail(path, `element type 0x${(b[2] as number).toString(16)}; only unsigned bytes (0x08) are read`);
  const rank = b[3] as number;
  if (rank < 1) fail(path, 'rank 0');
  const head = 4 + 4 * rank;
  if (b.length < head) fail(path, `${b.length} bytes, shorter than its ${rank}-dimension header`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const n = shape.reduce((a, d) => a * d, 1);
  if (b.length !== head + n) fail(path, `shape [${shape}] needs ${n} data bytes, the file has ${b.length - head}`);
  return { shape, data: b.subarray(head, head + n) };
}

export function readIdx(path: string): IdxArray {
  if (!existsSync(path)) throw new Error(`${path}: no such file`);
  return decodeIdx(readFileSync(path), path);
}

/** Where Debian's dataset-fashion-mnist package installs the data set. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export interface LabelledImages {
  /** [N, 1, 28, 28], values k / 255. */
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Uint8Array;
}

/**
 * The train or test split of Fashion-MNIST (or MNIST: the same file names) in `dir`, gzipped or not.
 * `limit` keeps the first `limit` images.
 */
export function loadMnistLike(split: 'train' | 'test', dir = FASHION_MNIST_DIR, limit?: number): LabelledImages {
  const stem = split === 'train' ? 'train' : 't10k';
  const find = (kind: string) => {
    const base = join(dir, `${stem}-${kind}`);
    for (const p of [`${base}.gz`, base]) if (existsSync(p)) return p;
    throw new Error(
      `Fashion-MNIST ${split} ${kind.split('-')[0]} not found: no ${base}.gz or ${base}. ` +
        `Install Debian's data set with 'apt-get install dataset-fashion-mnist' (it fills ${FASHION_MNIST_DIR}), ` +
        'or point to a folder holding the four IDX files.',
    );
  };
  const imgPath = find('images-idx3-ubyte');
  const lblPath = find('labels-idx1-ubyte');
  const img = readIdx(imgPath);
  const lbl = readIdx(lblPath);
  if (img.shape.length !== 3) throw new Error(`${imgPath}: expected images [N, H, W], got shape [${img.shape}]`);
  if (lbl.shape.length !== 1) throw new Error(`${lblPath}: expected labels [N], got shape [${lbl.shape}]`);
  const [n0, h, w] = img.shape as [number, number, number];
  if (lbl.shape[0] !== n0) throw new Error(`${imgPath} holds ${n0} images but ${lblPath} ${lbl.shape[0]} labels`);
  const n = limit === undefined ? n0 : Math.min(n0, limit);
  for (let i = 0; i < n; i++) {
    if ((lbl.data[i] as number) > 9) throw new Error(`${lblPath}: label ${lbl.data[i]} at index ${i} is not in 0..9`);
  }
  const images = new Float32Array(n * h * w);
  for (let i = 0; i < images.length; i++) images[i] = (img.data[i] as number) / 255;
  return { images, shape: [n, 1, h, w], labels: lbl.data.slice(0, n) };
}
