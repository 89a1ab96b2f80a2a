// CIFAR-10, binary and python versions. The binary one (cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin): records of 1 label byte and
// 3072 image bytes, the red, green and blue 32x32 planes in turn, which is already NCHW. Images come out float32 in
// [0, 1] (x / 255, torchvision's ToTensor), as DiffPure's CIFAR-10 loader feeds its classifiers.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type GlobalHandler, isTuple, PyObject, type PyValue, unpickle } from '../../nn/io/pickle.js';
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

/**
 * The test split or the training split (the five batches, in order) under `dir`: the binary version
 * (cifar-10-batches-bin/*.bin) or the python version (cifar-10-batches-py/), in `dir` or its subfolder.
 */
export function loadCifar10(split: 'train' | 'test', dir: string): LabelledImages {
  const names = split === 'test' ? ['test_batch'] : [1, 2, 3, 4, 5].map((k) => `data_batch_${k}`);
  const candidates = [join(dir, 'cifar-10-batches-bin'), join(dir, 'cifar-10-batches-py'), dir];
  const found = candidates
    .flatMap((d) => [
      { d, bin: true },
      { d, bin: false },
    ])
    .find(({ d, bin }) => existsSync(join(d, `${names[0]}${bin ? '.bin' : ''}`)));
  if (!found) {
    throw new Error(
      `CIFAR-10 ${split} split: no ${names[0]}.bin or ${names[0]} in ${dir} (or its cifar-10-batches-bin / -py). ` +
        'Download and unpack https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (or the python version) and pass its folder.',
    );
  }
  const parts = names.map((f) => {
    const p = join(found.d, `${f}${found.bin ? '.bin' : ''}`);
    if (!existsSync(p)) throw new Error(`CIFAR-10 ${split} split: ${p} is missing (the folder is incomplete)`);
    return found.bin ? decodeCifar10Bin(readFileSync(p), p) : decodeCifar10Pickle(readFileSync(p), p);
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

// ---- the python version (cifar-10-batches-py: data_batch_1..5, test_batch) --------------------------------------
// Each file is a pickled dict {'data': uint8 ndarray [10000, 3072] (R, G, B planes), 'labels': [int], ...}, written
// by Python 2 (keys and the array's bytes as str; Python 3's protocol 2 writes them as bytes via _codecs.encode).
// The ndarray arrives as numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b') plus a BUILD with
// (version, shape, dtype, fortran, raw bytes): the two names allowed here beyond the unpickler's base list.

const reconstruct: GlobalHandler = {
  call: () => new PyObject('numpy.ndarray', {}),
  build: (obj, state) => {
    if (!(obj instanceof PyObject) || !isTuple(state) || state.length < 5) {
      throw new Error('numpy.ndarray: unexpected state (expected (version, shape, dtype, fortran, data))');
    }
    const [, shape, dtype, fortran, raw] = state;
    const descr = dtype instanceof PyObject ? dtype.fields.descr : undefined;
    if (descr !== 'u1')
      throw new Error(`numpy.ndarray: only uint8 ('u1') arrays are read here, got '${String(descr)}'`);
    if (fortran) throw new Error('numpy.ndarray: Fortran-ordered arrays are not read');
    obj.fields.shape = shape as PyValue;
    obj.fields.data = typeof raw === 'string' ? Uint8Array.from(raw, (c) => c.charCodeAt(0)) : (raw as PyValue);
    return obj;
  },
};

const PICKLE_GLOBALS: Record<string, GlobalHandler> = {
  'numpy.core.multiarray._reconstruct': reconstruct,
  'numpy._core.multiarray._reconstruct': reconstruct,
  'numpy.ndarray': {},
};

/** dict[key] where Python 2 pickled the key as str and Python 3 as bytes. */
function field(d: Map<PyValue, PyValue>, key: string): PyValue | undefined {
  for (const [k, v] of d) {
    const s = k instanceof Uint8Array ? String.fromCharCode(...k) : k;
    if (s === key) return v;
  }
  return undefined;
}

/** Decodes one python-version batch file. */
export function decodeCifar10Pickle(bytes: Uint8Array, path = '<bytes>'): LabelledImages {
  let root: PyValue;
  try {
    root = unpickle(bytes, { globals: PICKLE_GLOBALS, source: path });
  } catch (e) {
    throw new Error(`${path}: not a CIFAR-10 python batch (${e instanceof Error ? e.message : e})`);
  }
  if (!(root instanceof Map)) throw new Error(`${path}: not a CIFAR-10 python batch (the pickle holds no dict)`);
  const arr = field(root, 'data');
  const labels = field(root, 'labels');
  if (!(arr instanceof PyObject) || !(arr.fields.data instanceof Uint8Array) || !Array.isArray(labels)) {
    throw new Error(`${path}: not a CIFAR-10 python batch (no uint8 'data' array and 'labels' list)`);
  }
  const shape = arr.fields.shape as number[];
  const raw = arr.fields.data;
  const n = labels.length;
  if (!isTuple(shape) || shape[0] !== n || shape[1] !== 3072 || raw.length !== n * 3072) {
    throw new Error(
      `${path}: 'data' has shape [${String(shape)}] and ${raw.length} bytes for ${n} labels; expected [${n}, 3072]`,
    );
  }
  const out = new Uint8Array(n * RECORD);
  for (let i = 0; i < n; i++) {
    out[i * RECORD] = labels[i] as number;
    out.set(raw.subarray(i * 3072, (i + 1) * 3072), i * RECORD + 1);
  }
  return decodeCifar10Bin(out, path);
}
