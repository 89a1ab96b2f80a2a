// NumPy .npy read and write (format versions 1-3): float32/float64 (and integer types, read as
// float64), C order, little- or big-endian. Enough to exchange tensors with PyTorch users.

import { readFileSync, writeFileSync } from 'node:fs';
import { halfBitsToFloat } from './types.js';

export interface NpyArray {
  shape: number[];
  /** dtype as written in the header, e.g. '<f4'. */
  descr: string;
  data: Float32Array | Float64Array;
}

const MAGIC = '\x93NUMPY';

function fail(source: string, why: string): never {
  throw new Error(`npy: ${source}: ${why}`);
}

/** Parse the Python-literal header dict {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }. */
function parseHeader(h: string, source: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr':\s*'([^']+)'/.exec(h)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(h)?.[1];
  const shapeStr = /'shape':\s*\(([^)]*)\)/.exec(h)?.[1];
  if (descr === undefined || fortran === undefined || shapeStr === undefined)
    fail(source, `malformed header ${JSON.stringify(h)}`);
  const shape = shapeStr
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const v = Number(s.replace(/L$/, ''));
      if (!Number.isSafeInteger(v) || v < 0) fail(source, `bad dimension '${s}' in shape (${shapeStr})`);
      return v;
    });
  return { descr, fortran: fortran === 'True', shape };
}

const KINDS: Record<string, { size: number; get: (v: DataView, o: number, le: boolean) => number }> = {
  f4: { size: 4, get: (v, o, le) => v.getFloat32(o, le) },
  f8: { size: 8, get: (v, o, le) => v.getFloat64(o, le) },
  f2: { size: 2, get: (v, o, le) => halfBitsToFloat(v.getUint16(o, le)) },
  i1: { size: 1, get: (v, o) => v.getInt8(o) },
  u1: { size: 1, get: (v, o) => v.getUint8(o) },
  i2: { size: 2, get: (v, o, le) => v.getInt16(o, le) },
  i4: { size: 4, get: (v, o, le) => v.getInt32(o, le) },
  i8: { size: 8, get: (v, o, le) => Number(v.getBigInt64(o, le)) },
  u4: { size: 4, get: (v, o, le) => v.getUint32(o, le) },
  b1: { size: 1, get: (v, o) => v.getUint8(o) },
};

/** Decode .npy bytes. float32 stays float32; every other dtype is returned as float64. */
export function decodeNpy(bytes: Uint8Array, source = '<bytes>'): NpyArray {
  if (bytes.length < 10 || String.fromCharCode(...bytes.subarray(0, 6)) !== MAGIC)
    fail(source, 'not a .npy file (bad magic)');
  const major = bytes[6] as number;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major < 1 || major > 3) fail(source, `unsupported format version ${major}`);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + hlen > bytes.length) fail(source, `header length ${hlen} runs past the end of the file`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + hlen));
  const { descr, fortran, shape } = parseHeader(header, source);
  if (fortran) fail(source, 'Fortran-order arrays are not supported; save with np.ascontiguousarray');
  const order = descr[0];
  const kind = KINDS[descr.slice(1)];
  if (!kind || !'<>|='.includes(order ?? '')) fail(source, `unsupported dtype '${descr}'`);
  const le = order !== '>';
  const n = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  if (off + n * kind.size > bytes.length) {
    fail(
      source,
      `shape (${shape.join(', ')}) of ${descr} needs ${n * kind.size} bytes but ${bytes.length - off} remain`,
    );
  }
  const data = descr.slice(1) === 'f4' ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = kind.get(view, off + i * kind.size, le);
  return { shape, descr, data };
}

export function readNpy(path: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`npy: cannot read '${path}': ${e instanceof Error ? e.message : e}`);
  }
  return decodeNpy(bytes, path);
}

/** Encode a float32 or float64 array as .npy version 1.0 (little-endian, C order). */
export function encodeNpy(data: Float32Array | Float64Array, shape: readonly number[]): Uint8Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length)
    throw new Error(`npy: shape (${shape.join(', ')}) needs ${n} elements, data has ${data.length}`);
  const descr = data instanceof Float32Array ? '<f4' : '<f8';
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  // pad so the data starts on a 64-byte boundary, header ends with a newline (the format's rule)
  const total = 10 + header.length + 1;
  header += `${' '.repeat((64 - (total % 64)) % 64)}\n`;
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...Array.from('NUMPY', (c) => c.charCodeAt(0)), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const body = new DataView(out.buffer, 10 + header.length);
  const f32 = data instanceof Float32Array;
  for (let i = 0; i < data.length; i++) {
    if (f32) body.setFloat32(i * 4, data[i] as number, true);
    else body.setFloat64(i * 8, data[i] as number, true);
  }
  return out;
}

export function writeNpy(path: string, data: Float32Array | Float64Array, shape: readonly number[]): void {
  writeFileSync(path, encodeNpy(data, shape));
}
