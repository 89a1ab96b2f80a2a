// Host-side tensors as read from weight files (PyTorch checkpoints, safetensors). They are plain
// data, not library Tensors: Module.loadStateDict uploads them to whichever backend a model uses.

/** Element types a HostTensor can hold. float16 and bfloat16 are widened to float32 on read. */
export type HostDType = 'float32' | 'float64' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

/** The typed array that holds each HostDType. int64 is held in a Float64Array (see HostTensor). */
export interface HostDataOf {
  float32: Float32Array;
  float64: Float64Array;
  int64: Float64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

export type HostData = HostDataOf[HostDType];

/**
 * A dense, C-contiguous (row-major) tensor in host memory.
 *
 * - `data.length` is the product of `shape` (1 for a scalar, shape []).
 * - int64 values are held in a Float64Array so that every dtype is `ArrayLike<number>` (what
 *   Module.loadStateDict takes); readers refuse an int64 value outside +-2^53, which a Float64Array
 *   could not hold exactly, rather than round it.
 * - bool is 0/1 bytes.
 * - `sourceDtype` records a narrower type the file stored (float16, bfloat16) before widening.
 * - `data` may be a view that shares memory with other tensors read from the same storage (as
 *   PyTorch views share a storage); copy it before mutating if that matters.
 */
export interface HostTensor {
  readonly dtype: HostDType;
  readonly shape: readonly number[];
  readonly data: HostData;
  readonly sourceDtype?: 'float16' | 'bfloat16';
  /** Set for tensors that were torch.nn.Parameter in the checkpoint. */
  readonly requiresGrad?: boolean;
}

/** Named tensors in a fixed order (PyTorch's state-dict order when read from a checkpoint). */
export type StateDict = Map<string, HostTensor>;

/** The typed-array constructor for each HostDType. */
export const HOST_ARRAY = {
  float32: Float32Array,
  float64: Float64Array,
  int64: Float64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
} as const;

export const DTYPE_BYTES: Readonly<Record<HostDType, number>> = {
  float32: 4,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isHostTensor(v: unknown): v is HostTensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as HostTensor).dtype === 'string' &&
    Array.isArray((v as HostTensor).shape) &&
    ArrayBuffer.isView((v as HostTensor).data)
  );
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The host's byte order; every file format here is little-endian on disk. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An IEEE half (binary16) bit pattern as a number. */
export function halfBitsToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const f32scratch = new Float32Array(1);
const u32scratch = new Uint32Array(f32scratch.buffer);

/** A bfloat16 bit pattern (the top half of a float32) as a number. */
export function bfloat16BitsToFloat(b: number): number {
  u32scratch[0] = (b & 0xffff) << 16;
  return f32scratch[0] as number;
}

/**
 * Decode `count` little-endian elements of a file dtype starting at `bytes[0]` into the HostTensor
 * typed array. Zero-copy (a view) where the host is little-endian, the dtype needs no widening and
 * the bytes are aligned; otherwise a copy. The caller has checked that the bytes are there.
 */
export function decodeLE(
  bytes: Uint8Array,
  fileDtype: HostDType | 'float16' | 'bfloat16',
  count: number,
  where: string,
): { dtype: HostDType; data: HostData; sourceDtype?: 'float16' | 'bfloat16' } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (fileDtype === 'float16' || fileDtype === 'bfloat16') {
    const out = new Float32Array(count);
    const conv = fileDtype === 'float16' ? halfBitsToFloat : bfloat16BitsToFloat;
    for (let i = 0; i < count; i++) out[i] = conv(dv.getUint16(2 * i, true));
    return { dtype: 'float32', data: out, sourceDtype: fileDtype };
  }
  if (fileDtype === 'int64') {
    const out = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const v = dv.getBigInt64(8 * i, true);
      if (v > 9007199254740992n || v < -9007199254740992n)
        throw new Error(`${where}: int64 value ${v} is outside +-2^53 and cannot be held exactly as a JS number`);
      out[i] = Number(v);
    }
    return { dtype: 'int64', data: out };
  }
  const size = DTYPE_BYTES[fileDtype];
  const Ctor = HOST_ARRAY[fileDtype];
  if (HOST_LITTLE_ENDIAN && bytes.byteOffset % size === 0) {
    return { dtype: fileDtype, data: new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, count) as HostData };
  }
  const out = new Ctor(count);
  const get = {
    float32: (o: number) => dv.getFloat32(o, true),
    float64: (o: number) => dv.getFloat64(o, true),
    int32: (o: number) => dv.getInt32(o, true),
    int16: (o: number) => dv.getInt16(o, true),
    int8: (o: number) => dv.getInt8(o),
    uint8: (o: number) => dv.getUint8(o),
    bool: (o: number) => dv.getUint8(o),
  }[fileDtype];
  for (let i = 0; i < count; i++) out[i] = get(i * size);
  return { dtype: fileDtype, data: out as HostData };
}

/** Encode a HostTensor's data as little-endian bytes of its dtype (int64 written exactly). */
export function encodeLE(t: HostTensor, where: string): Uint8Array {
  const n = t.data.length;
  const size = DTYPE_BYTES[t.dtype];
  const out = new Uint8Array(n * size);
  const dv = new DataView(out.buffer);
  const d = t.data;
  switch (t.dtype) {
    case 'float32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, d[i] as number, true);
      break;
    case 'float64':
      for (let i = 0; i < n; i++) dv.setFloat64(8 * i, d[i] as number, true);
      break;
    case 'int64':
      for (let i = 0; i < n; i++) {
        const v = d[i] as number;
        if (!Number.isSafeInteger(v) && Math.abs(v) !== 2 ** 53)
          throw new Error(`${where}: int64 tensor holds ${v} at flat index ${i}, not an integer within +-2^53`);
        dv.setBigInt64(8 * i, BigInt(v), true);
      }
      break;
    case 'int32':
      for (let i = 0; i < n; i++) dv.setInt32(4 * i, d[i] as number, true);
      break;
    case 'int16':
      for (let i = 0; i < n; i++) dv.setInt16(2 * i, d[i] as number, true);
      break;
    case 'int8':
      for (let i = 0; i < n; i++) dv.setInt8(i, d[i] as number);
      break;
    case 'uint8':
    case 'bool':
      out.set(d as Uint8Array);
      break;
    default:
      throw new Error(`${where}: unknown dtype '${String(t.dtype)}'`);
  }
  return out;
}
