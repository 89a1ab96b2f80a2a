// safetensors (https://github.com/huggingface/safetensors): the project's own weight format.
//
//   [8 bytes: N, little-endian u64] [N bytes: JSON header] [data]
//   header = { "__metadata__"?: {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ... }
//
// Offsets are relative to the start of the data section. We check what the reference
// implementation checks: N within the file and at most 100 MB, a JSON object, known dtypes,
// end - begin == numel * itemsize, and offsets that tile the data section exactly (in range, no
// overlap, no hole, nothing after). The writer sorts tensors by element size (largest first,
// otherwise keeping their order) and pads the header with spaces to 8 bytes, so every tensor is
// aligned for a zero-copy view.

import { writeFileSync } from 'node:fs';
import { readWholeFile } from './file.js';
import {
  DTYPE_BYTES,
  decodeLE,
  encodeLE,
  HOST_ARRAY,
  HOST_LITTLE_ENDIAN,
  type HostDType,
  type HostTensor,
  isHostTensor,
  numel,
  type StateDict,
} from './types.js';

/** The reference implementation's limit on the header (safetensors MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100_000_000;

const FROM_ST: Readonly<Record<string, HostDType | 'float16' | 'bfloat16'>> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

const TO_ST: Readonly<Record<HostDType, string>> = {
  float64: 'F64',
  float32: 'F32',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

const ST_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface SafetensorsFile {
  /** Tensors in the order of their data offsets (the order the writer laid them out). */
  tensors: StateDict;
  /** The free-form string map under __metadata__ ({} when absent). */
  metadata: Record<string, string>;
}

function fail(source: string, why: string): never {
  throw new Error(`safetensors: ${source}: ${why}`);
}

interface Entry {
  name: string;
  st: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Decode a safetensors file. Tensors whose bytes are aligned are views on `bytes` (no copy);
 * float16/bfloat16 are widened to float32 (sourceDtype records it).
 */
export function decodeSafetensors(bytes: Uint8Array, source = '<bytes>'): SafetensorsFile {
  if (bytes.length < 8) fail(source, `file of ${bytes.length} bytes is shorter than the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > bytes.length - 8) fail(source, `header length ${n} runs past the end of the file (${bytes.length} bytes)`);
  if (n > MAX_HEADER_BYTES) fail(source, `header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2) fail(source, `header length ${n} is too short for a JSON object`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    fail(source, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail(source, "header does not start with '{'");
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(source, `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail(source, 'header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Array.isArray(info))
        fail(source, '__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(source, `__metadata__['${k}'] is not a string`);
        // defineProperty, not assignment: a key named __proto__ must stay a plain entry
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (typeof info !== 'object' || info === null) fail(source, `${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offs } = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string') fail(source, `${where}: missing dtype`);
    const size = ST_BYTES[dtype as string];
    if (size === undefined) fail(source, `${where}: unsupported dtype '${String(dtype).slice(0, 20)}'`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      fail(source, `${where}: shape must be a list of non-negative integers`);
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      (offs[0] as number) > (offs[1] as number)
    )
      fail(source, `${where}: data_offsets must be [begin, end] with 0 <= begin <= end`);
    const [begin, end] = offs as [number, number];
    if (end > dataLen) fail(source, `${where}: data_offsets [${begin}, ${end}] run past the data (${dataLen} bytes)`);
    // element count, bounded by the bytes in range before it is multiplied out further
    let count = (shape as number[]).includes(0) ? 0 : 1;
    for (const d of shape as number[]) {
      if (count * (size as number) > dataLen) break;
      count *= d;
    }
    if (count * (size as number) !== end - begin)
      fail(
        source,
        `${where}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${count * (size as number)} bytes ` +
          `but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    entries.push({ name, st: dtype as string, shape: shape as number[], begin, end });
  }
  // the data section must be tiled exactly
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin < at) fail(source, `tensor '${e.name}' at [${e.begin}, ${e.end}] overlaps the tensor before it`);
    if (e.begin > at) fail(source, `bytes [${at}, ${e.begin}) of the data belong to no tensor`);
    at = e.end;
  }
  if (at !== dataLen) fail(source, `bytes [${at}, ${dataLen}) at the end of the data belong to no tensor`);
  const tensors: StateDict = new Map();
  for (const e of sorted) {
    const raw = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    const r = decodeLE(raw, FROM_ST[e.st] as HostDType, numel(e.shape), `safetensors: ${source}: tensor '${e.name}'`);
    tensors.set(e.name, {
      dtype: r.dtype,
      shape: e.shape,
      data: r.data,
      ...(r.sourceDtype ? { sourceDtype: r.sourceDtype } : {}),
    });
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string): SafetensorsFile {
  return decodeSafetensors(readWholeFile(path, 'safetensors'), path);
}

/** Encode tensors (a Map keeps its order; a Record its key order) and string metadata. */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const list: [string, HostTensor][] =
    tensors instanceof Map ? [...tensors] : Object.entries(tensors as Record<string, HostTensor>);
  for (const [name, t] of list) {
    const where = `safetensors: tensor '${name}'`;
    if (name === '__metadata__' || name.length === 0) throw new Error(`${where}: reserved or empty name`);
    if (!isHostTensor(t) || !(t.dtype in TO_ST)) throw new Error(`${where}: not a HostTensor of a supported dtype`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new Error(`${where}: bad shape [${t.shape.join(', ')}]`);
    if (numel(t.shape) !== t.data.length)
      throw new Error(
        `${where}: shape [${t.shape.join(', ')}] needs ${numel(t.shape)} elements, data has ${t.data.length}`,
      );
  }
  for (const [k, v] of Object.entries(metadata))
    if (typeof v !== 'string') throw new Error(`safetensors: metadata '${k}' is not a string`);
  // largest element first keeps every tensor aligned; the sort is stable, so order is kept otherwise
  const order = list
    .map(([name, t], i) => ({ name, t, i }))
    .sort((a, b) => DTYPE_BYTES[b.t.dtype] - DTYPE_BYTES[a.t.dtype] || a.i - b.i);
  // entries + fromEntries (not assignment), so that a name like __proto__ stays a plain key
  const header: [string, unknown][] = [];
  if (Object.keys(metadata).length) header.push(['__metadata__', Object.fromEntries(Object.entries(metadata))]);
  let offset = 0;
  const blobs: Uint8Array[] = [];
  for (const { name, t } of order) {
    const blob =
      HOST_LITTLE_ENDIAN && t.dtype !== 'int64' && t.data instanceof HOST_ARRAY[t.dtype]
        ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
        : encodeLE(t, `safetensors: tensor '${name}'`);
    header.push([name, { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + blob.length] }]);
    offset += blob.length;
    blobs.push(blob);
  }
  let json = JSON.stringify(Object.fromEntries(header));
  json += ' '.repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, head.length % 2 ** 32, true);
  dv.setUint32(4, Math.floor(head.length / 2 ** 32), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

export function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}
