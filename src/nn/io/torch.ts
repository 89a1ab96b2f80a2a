// PyTorch checkpoints as torch.save writes them since 1.6: a zip archive (read with fflate) holding
// <root>/data.pkl (the object tree, a pickle) and <root>/data/<key> (one raw little-endian byte
// blob per storage; <root>/byteorder says 'big' on big-endian writers). Tensors in the pickle are
// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls whose storages are
// persistent ids ('storage', torch.FloatStorage, key, location, numel); we rebuild them as
// HostTensors (dense, C-contiguous, on the host). The root folder is the file stem when written by
// torch.save(path) ('checkpoint/', 'model/') or 'archive/'; any single root is accepted.
//
// Memory: the zip is read in full (one copy of the file), fflate copies out each stored entry (a
// second copy, after which the file buffer can go), and contiguous tensors are views on their
// storage's bytes. Peak is about twice the file. Every size is checked against the bytes really
// present before allocating, and copies beyond the storages themselves (non-contiguous tensors,
// float16 widening) are held to a budget proportional to the file.

import { type UnzipFileInfo, unzipSync } from 'fflate';
import { readWholeFile } from './file.js';
import {
  asInt,
  BASE_GLOBALS,
  type GlobalHandler,
  isTuple,
  PyGlobal,
  type PyValue,
  pyTypeName,
  unpickle,
} from './pickle.js';
import {
  DTYPE_BYTES,
  decodeLE,
  HOST_ARRAY,
  type HostData,
  type HostDType,
  type HostTensor,
  isHostTensor,
} from './types.js';

type StorageDType = HostDType | 'float16' | 'bfloat16';

/** torch.<X>Storage names (as pickled by torch.save) and the element type each holds. */
const STORAGE_DTYPES: Readonly<Record<string, StorageDType | 'complex'>> = {
  'torch.FloatStorage': 'float32',
  'torch.DoubleStorage': 'float64',
  'torch.HalfStorage': 'float16',
  'torch.BFloat16Storage': 'bfloat16',
  'torch.LongStorage': 'int64',
  'torch.IntStorage': 'int32',
  'torch.ShortStorage': 'int16',
  'torch.CharStorage': 'int8',
  'torch.ByteStorage': 'uint8',
  'torch.BoolStorage': 'bool',
  'torch.UntypedStorage': 'uint8',
  'torch.ComplexFloatStorage': 'complex',
  'torch.ComplexDoubleStorage': 'complex',
};

const STORAGE_ITEM_BYTES: Readonly<Record<StorageDType, number>> = { ...DTYPE_BYTES, float16: 2, bfloat16: 2 };

/** torch dtype objects that may appear as plain data (e.g. in metadata); never called. */
const TORCH_DTYPE_NAMES = [
  'float32',
  'float',
  'float64',
  'double',
  'float16',
  'half',
  'bfloat16',
  'int64',
  'long',
  'int32',
  'int',
  'int16',
  'short',
  'int8',
  'uint8',
  'bool',
  'complex64',
  'complex128',
];

/** A storage referenced by the pickle, with its bytes from the archive. */
class TorchStorage {
  private decoded: HostData | undefined;
  private decodedDtype: HostDType | undefined;
  private widened: 'float16' | 'bfloat16' | undefined;
  constructor(
    readonly key: string,
    readonly dtype: StorageDType,
    readonly numel: number,
    readonly bytes: Uint8Array,
    private readonly ctx: LoadContext,
  ) {}

  /** The whole storage as a HostTensor typed array (decoded once, then shared by its views). */
  elements(): { dtype: HostDType; data: HostData; sourceDtype?: 'float16' | 'bfloat16' } {
    if (!this.decoded) {
      const where = `storage '${this.key}'`;
      const r = decodeLE(this.bytes, this.dtype, this.numel, where);
      if (r.data.buffer !== this.bytes.buffer) this.ctx.spend(r.data.byteLength, where);
      this.decoded = r.data;
      this.decodedDtype = r.dtype;
      this.widened = r.sourceDtype;
    }
    return { dtype: this.decodedDtype as HostDType, data: this.decoded, sourceDtype: this.widened };
  }
}

interface LoadContext {
  spend(bytes: number, where: string): void;
}

function intTuple(v: PyValue, what: string): number[] {
  if (!Array.isArray(v)) throw new Error(`${what} must be a tuple of ints, got ${pyTypeName(v)}`);
  return v.map((x) => {
    const n = asInt(x);
    if (n === undefined || n < 0) throw new Error(`${what} holds ${String(x)}, not a non-negative int`);
    return n;
  });
}

/** torch._utils._rebuild_tensor_v2 / _rebuild_tensor: a (possibly strided) view of a storage. */
function rebuildTensor(ctx: LoadContext, args: PyValue[]): HostTensor {
  const [storage, offsetV, sizeV, strideV] = args;
  if (!(storage instanceof TorchStorage))
    throw new Error(`expected a storage as first argument, got ${pyTypeName(storage)}`);
  const where = `tensor on storage '${storage.key}'`;
  const offset = asInt(offsetV);
  if (offset === undefined || offset < 0) throw new Error(`${where}: bad storage offset ${String(offsetV)}`);
  const shape = intTuple(sizeV as PyValue, 'size');
  const stride = intTuple(strideV as PyValue, 'stride');
  if (shape.length !== stride.length)
    throw new Error(`${where}: size has ${shape.length} dims but stride has ${stride.length}`);
  // element count, checked against the storage before anything is allocated
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > storage.numel && n > 0)
      throw new Error(
        `${where}: size (${shape.join(', ')}) has more elements than its storage (${storage.numel}); ` +
          'expanded (stride-0) tensors are not supported',
      );
  }
  const { dtype, data, sourceDtype } = storage.elements();
  const extra = sourceDtype ? { sourceDtype } : {};
  if (n === 0) return { dtype, shape, data: new HOST_ARRAY[dtype](0) as HostData, ...extra };
  let last = offset;
  for (let i = 0; i < shape.length; i++) last += ((shape[i] as number) - 1) * (stride[i] as number);
  if (last >= storage.numel)
    throw new Error(
      `${where}: view (offset ${offset}, size (${shape.join(', ')}), stride (${stride.join(', ')})) ` +
        `reaches element ${last} of a storage of ${storage.numel}`,
    );
  let contiguous = true;
  for (let i = shape.length - 1, expect = 1; i >= 0; i--) {
    if ((shape[i] as number) !== 1 && stride[i] !== expect) contiguous = false;
    expect *= shape[i] as number;
  }
  if (contiguous) return { dtype, shape, data: data.subarray(offset, offset + n) as HostData, ...extra };
  // non-contiguous: gather into a fresh C-contiguous array
  ctx.spend(n * data.BYTES_PER_ELEMENT, where);
  const out = new HOST_ARRAY[dtype](n) as HostData;
  const idx = new Array<number>(shape.length).fill(0);
  let src = offset;
  for (let k = 0; k < n; k++) {
    out[k] = data[src] as number;
    for (let d = shape.length - 1; d >= 0; d--) {
      src += stride[d] as number;
      if (++(idx[d] as number) < (shape[d] as number)) break;
      src -= (shape[d] as number) * (stride[d] as number);
      idx[d] = 0;
    }
  }
  return { dtype, shape, data: out, ...extra };
}

function asTensor(v: PyValue, what: string): HostTensor {
  if (!isHostTensor(v)) throw new Error(`${what}: expected a tensor, got ${pyTypeName(v)}`);
  return v;
}

/** The torch entries of the allow-list, bound to one load (they need its storages). */
function torchGlobals(ctx: LoadContext): Record<string, GlobalHandler> {
  const g: Record<string, GlobalHandler> = {
    'torch._utils._rebuild_tensor_v2': { call: (a) => rebuildTensor(ctx, a) },
    'torch._utils._rebuild_tensor': { call: (a) => rebuildTensor(ctx, a) },
    'torch._utils._rebuild_parameter': {
      call: (a) => ({ ...asTensor(a[0] as PyValue, 'Parameter'), requiresGrad: a[1] === true }),
    },
    'torch._utils._rebuild_parameter_with_state': {
      call: (a) => ({ ...asTensor(a[0] as PyValue, 'Parameter'), requiresGrad: a[1] === true }),
    },
    // Tensor subclasses / tensors with attributes: (func, new_type, args, state); func is itself
    // an allow-listed rebuild function and new_type one of the plain tensor classes below.
    'torch._tensor._rebuild_from_type_v2': {
      call: (a) => {
        const [func, type, args] = a;
        if (!(func instanceof PyGlobal) || !func.handler.call)
          throw new Error(`expected a rebuild function, got ${pyTypeName(func)}`);
        if (!(type instanceof PyGlobal) || !TENSOR_TYPES.has(type.qualname))
          throw new Error(`tensor subclass ${pyTypeName(type)} is not supported`);
        if (!Array.isArray(args)) throw new Error('expected an argument tuple');
        return func.handler.call([...args]);
      },
    },
    'torch.Size': {
      call: (a) => Object.freeze(intTuple((a[0] ?? []) as PyValue, 'torch.Size')),
    },
    'torch.device': {
      call: (a) => (a.length > 1 && a[1] !== null ? `${String(a[0])}:${String(a[1])}` : String(a[0])),
    },
  };
  for (const t of TENSOR_TYPES) g[t] = {};
  for (const name of Object.keys(STORAGE_DTYPES)) g[name] = {};
  for (const d of TORCH_DTYPE_NAMES) g[`torch.${d}`] = {};
  return g;
}

const TENSOR_TYPES = new Set(['torch._tensor.Tensor', 'torch.Tensor', 'torch.nn.parameter.Parameter']);

/** Every global a checkpoint may name (the base pickle list plus the torch entries), sorted. */
export function checkpointAllowList(): string[] {
  const dummy: LoadContext = { spend: () => {} };
  return [...new Set([...Object.keys(torchGlobals(dummy)), ...Object.keys(BASE_GLOBALS)])].sort();
}

function fail(source: string, why: string): never {
  throw new Error(`torch: ${source}: ${why}`);
}

const LEGACY_HINT =
  're-save it in Python with torch.save(torch.load(path), new_path, _use_new_zipfile_serialization=True) (the default since PyTorch 1.6)';

/** What a torch.save zip holds: the pickle and the storage blobs of its single root folder. */
export interface TorchArchive {
  root: string;
  pickle: Uint8Array;
  /** storage key -> raw bytes (file byte order). */
  storages: Map<string, Uint8Array>;
  byteorder: 'little' | 'big';
}

const ENTRY_RE = /^([^/]+)\/(data\.pkl|byteorder|data\/([^/]+))$/;

/** Unzip a torch.save archive (no unpickling). Exported for tests and tools. */
export function readTorchArchive(bytes: Uint8Array, source = '<bytes>'): TorchArchive {
  const b = bytes;
  // 'PK\x03\x04' starts a zip with entries, 'PK\x05\x06' an empty one
  const isZip = b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6));
  if (!isZip) {
    if (b[0] === 0x80 || (b.length > 262 && String.fromCharCode(...b.subarray(257, 262)) === 'ustar'))
      fail(source, `this file uses PyTorch's legacy (pre-1.6, non-zip) serialization format; ${LEGACY_HINT}`);
    fail(source, 'not a PyTorch checkpoint (no zip signature; torch.save writes a zip archive)');
  }
  let entries = 0;
  let total = 0;
  const maxEntries = Math.floor(b.length / 46) + 1; // a central-directory record is >= 46 bytes
  const declared = new Map<string, number>();
  const other: string[] = [];
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(b, {
      filter: (f: UnzipFileInfo) => {
        if (++entries > maxEntries) fail(source, 'zip directory lists more entries than the file could hold');
        if (!ENTRY_RE.test(f.name)) {
          if (other.length < 16) other.push(f.name);
          return false;
        }
        if (f.compression !== 0)
          fail(
            source,
            `zip entry '${f.name}' is compressed (method ${f.compression}); torch.save writes uncompressed entries, ` +
              're-save the checkpoint with torch.save instead of re-zipping it',
          );
        if (f.size !== f.originalSize || f.size > b.length)
          fail(source, `zip entry '${f.name}' declares ${f.originalSize} bytes, more than the file holds`);
        total += f.size;
        if (total > b.length) fail(source, 'zip entries declare more bytes in total than the file holds');
        declared.set(f.name, f.size);
        return true;
      },
    });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg.startsWith('torch:')) throw e;
    fail(source, `not a readable zip archive (${msg})`);
  }
  const pkls = Object.keys(files).filter((n) => n.endsWith('/data.pkl'));
  if (pkls.length === 0) {
    const hint = other.some((n) => /\/(constants\.pkl|code\/)/.test(n))
      ? ' (this looks like a TorchScript archive from torch.jit.save; save a state_dict with torch.save instead)'
      : '';
    fail(source, `zip archive has no <root>/data.pkl, so it was not written by torch.save${hint}`);
  }
  if (pkls.length > 1) fail(source, `zip archive has several roots with a data.pkl: ${pkls.join(', ')}`);
  const root = (pkls[0] as string).slice(0, -'/data.pkl'.length);
  const storages = new Map<string, Uint8Array>();
  let byteorder: 'little' | 'big' = 'little';
  for (const [name, data] of Object.entries(files)) {
    const m = ENTRY_RE.exec(name);
    if (!m || m[1] !== root) continue;
    if (data.length !== declared.get(name))
      fail(source, `zip entry '${name}' is truncated (${data.length} of ${declared.get(name)} bytes)`);
    if (m[3] !== undefined) storages.set(m[3], data);
    else if (m[2] === 'byteorder') {
      const s = new TextDecoder().decode(data).trim();
      if (s !== 'little' && s !== 'big') fail(source, `byteorder file says '${s.slice(0, 20)}'`);
      byteorder = s;
    }
  }
  return { root, pickle: files[pkls[0] as string] as Uint8Array, storages, byteorder };
}

function byteswap(b: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i + size <= b.length; i += size) b.subarray(i, i + size).reverse();
}

export interface TorchLoadOptions {
  /** Name used in error messages (defaults to the path). */
  source?: string;
}

/**
 * Load a checkpoint written by torch.save (zip format) into plain JS values: dicts become Maps,
 * tensors become HostTensors, see pickle.ts for the rest. Nothing in the file is executed; a
 * global outside `checkpointAllowList()` is refused with an error naming it.
 */
export function loadTorchCheckpoint(src: string | Uint8Array, opts: TorchLoadOptions = {}): PyValue {
  const source = opts.source ?? (typeof src === 'string' ? src : '<bytes>');
  const bytes = typeof src === 'string' ? readWholeFile(src, 'torch') : src;
  const archive = readTorchArchive(bytes, source);
  let budget = 4 * bytes.length + (64 << 20);
  const ctx: LoadContext = {
    spend(n, where) {
      budget -= n;
      if (budget < 0)
        throw new Error(`${where}: tensor copies would exceed ${4 * bytes.length + (64 << 20)} bytes for this file`);
    },
  };
  const loaded = new Map<string, TorchStorage>();
  const swapped = new Set<string>();
  const persistentLoad = (pid: PyValue): PyValue => {
    if (!isTuple(pid) || pid[0] !== 'storage' || pid.length < 5)
      throw new Error(
        `unsupported persistent id ${pyTypeName(pid)} (expected ('storage', type, key, location, numel))`,
      );
    const [, type, keyV, , numelV] = pid;
    if (!(type instanceof PyGlobal)) throw new Error(`storage type is a ${pyTypeName(type)}`);
    const dtype = STORAGE_DTYPES[type.qualname];
    if (dtype === undefined) throw new Error(`unknown storage type ${type.qualname}`);
    if (dtype === 'complex') throw new Error(`${type.qualname}: complex tensors are not supported`);
    const key = typeof keyV === 'string' ? keyV : String(asInt(keyV) ?? '');
    const cached = loaded.get(key);
    if (cached) {
      if (cached.dtype !== dtype) throw new Error(`storage '${key}' is used as ${cached.dtype} and ${dtype}`);
      return cached;
    }
    const raw = archive.storages.get(key);
    if (!raw) throw new Error(`storage '${key}' is missing from the archive (no ${archive.root}/data/${key})`);
    const size = STORAGE_ITEM_BYTES[dtype];
    const n = asInt(numelV);
    if (n === undefined || n < 0) throw new Error(`storage '${key}': bad element count ${String(numelV)}`);
    if (n * size > raw.length)
      throw new Error(
        `storage '${key}': ${n} elements of ${dtype} need ${n * size} bytes, the archive has ${raw.length}`,
      );
    const bytesOf = raw.subarray(0, n * size);
    if (archive.byteorder === 'big' && !swapped.has(key)) {
      byteswap(bytesOf, size);
      swapped.add(key);
    }
    const s = new TorchStorage(key, dtype, n, bytesOf, ctx);
    loaded.set(key, s);
    return s;
  };
  return unpickle(archive.pickle, {
    source: `${source}: ${archive.root}/data.pkl`,
    globals: torchGlobals(ctx),
    persistentLoad,
  });
}

/** Every tensor in a loaded checkpoint with a path like 'model/module.conv.weight' or 'ema/shadow_params/3'. */
export function listTensors(obj: PyValue): [string, HostTensor][] {
  const out: [string, HostTensor][] = [];
  const seen = new Set<object>();
  const todo: [string, PyValue][] = [['', obj]];
  while (todo.length) {
    const [path, v] = todo.pop() as [string, PyValue];
    if (isHostTensor(v)) {
      out.push([path, v]);
      continue;
    }
    if (typeof v !== 'object' || v === null || seen.has(v)) continue;
    seen.add(v);
    const join = (k: unknown) => (path ? `${path}/${String(k)}` : String(k));
    const kids: [string, PyValue][] = [];
    if (v instanceof Map) for (const [k, x] of v) kids.push([join(k), x]);
    else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) kids.push([join(i), v[i] as PyValue]);
    for (let i = kids.length - 1; i >= 0; i--) todo.push(kids[i] as [string, PyValue]);
  }
  return out;
}
