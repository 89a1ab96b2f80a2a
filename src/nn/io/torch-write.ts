// Writing checkpoints that PyTorch's own torch.load reads (the zip format of torch.save since 1.6): <root>/data.pkl,
// a protocol-2 pickle of the object tree, <root>/data/<k> one little-endian blob per tensor's storage, and
// <root>/version ("3"). Tensors pickle as torch._utils._rebuild_tensor_v2(persistent storage, 0, size, stride,
// False, OrderedDict()), the storage as the persistent id ('storage', torch.FloatStorage, '<k>', 'cpu', numel), the
// same globals torch.load(weights_only=True) allows, so the files load without unpickling any code.
//
// Values this writer pickles: HostTensor, number (int when integral, else float), string, boolean, null, arrays (as
// lists), and Map (as collections.OrderedDict, the type of a state dict) or plain objects (as dict).

import { zipSync } from 'fflate';
import type { HostTensor } from './types.js';

type Py = HostTensor | number | string | boolean | null | readonly Py[] | ReadonlyMap<string, Py> | { [k: string]: Py };

const STORAGE: Record<string, string> = {
  float32: 'FloatStorage',
  float64: 'DoubleStorage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  int16: 'ShortStorage',
  int8: 'CharStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

class PickleWriter {
  private readonly parts: number[] = [];
  readonly storages: Uint8Array[] = [];
  private memo = 0;

  byte(...b: number[]): void {
    for (const x of b) this.parts.push(x);
  }
  u32(n: number): void {
    this.byte(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  /** BINUNICODE: a str (UTF-8). */
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.byte(0x58);
    this.u32(b.length);
    for (const x of b) this.parts.push(x);
    this.put();
  }
  /** BINPUT into the next memo slot (keeps the stream like CPython's; our reader and torch both accept it). */
  put(): void {
    if (this.memo < 256) this.byte(0x71, this.memo++);
  }
  /** GLOBAL 'module\nname\n'. */
  global(module: string, name: string): void {
    this.byte(0x63);
    for (const x of new TextEncoder().encode(`${module}\n${name}\n`)) this.parts.push(x);
    this.put();
  }
  int(n: number): void {
    if (n >= 0 && n < 256)
      this.byte(0x4b, n); // BININT1
    else if (n >= -(2 ** 31) && n < 2 ** 31) {
      this.byte(0x4a); // BININT
      this.u32(n >>> 0);
    } else {
      // LONG1: little-endian two's complement
      const bytes: number[] = [];
      let v = BigInt(n);
      for (let i = 0; i < 8; i++) {
        bytes.push(Number(v & 0xffn));
        v >>= 8n;
      }
      this.byte(0x8a, 8, ...bytes);
    }
  }
  float(x: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false); // BINFLOAT is big-endian
    this.byte(0x47, ...b);
  }
  tuple(items: (() => void)[]): void {
    if (items.length === 0) {
      this.byte(0x29); // EMPTY_TUPLE
      return;
    }
    this.byte(0x28); // MARK
    for (const f of items) f();
    this.byte(0x74); // TUPLE
    this.put();
  }
  tensor(t: HostTensor): void {
    const storage = STORAGE[t.dtype];
    if (!storage) throw new Error(`writeTorchCheckpoint: cannot write a ${t.dtype} tensor`);
    const key = String(this.storages.length);
    // int64 is held as float64 on the host (types.ts): write real int64 bytes
    const d = (
      t.dtype === 'int64' ? BigInt64Array.from(t.data as Float64Array, (v) => BigInt(v)) : t.data
    ) as ArrayBufferView;
    this.storages.push(new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength)));
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.tuple([
      () => {
        this.tuple([
          () => this.str('storage'),
          () => this.global('torch', storage),
          () => this.str(key),
          () => this.str('cpu'),
          () => this.int(numel),
        ]);
        this.byte(0x51); // BINPERSID
      },
      () => this.int(0),
      () => this.tuple(t.shape.map((s) => () => this.int(s))),
      () => this.tuple(strides.map((s) => () => this.int(s))),
      () => this.byte(0x89), // NEWFALSE: requires_grad
      () => {
        this.global('collections', 'OrderedDict');
        this.byte(0x29, 0x52); // EMPTY_TUPLE, REDUCE: backward hooks
        this.put();
      },
    ]);
    this.byte(0x52); // REDUCE
    this.put();
  }
  value(v: Py): void {
    if (v === null) this.byte(0x4e);
    else if (v === true) this.byte(0x88);
    else if (v === false) this.byte(0x89);
    else if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) this.int(v);
      else this.float(v);
    } else if (typeof v === 'string') this.str(v);
    else if (Array.isArray(v)) {
      this.byte(0x5d); // EMPTY_LIST
      this.put();
      if (v.length) {
        this.byte(0x28);
        for (const x of v) this.value(x);
        this.byte(0x65); // APPENDS
      }
    } else if (v instanceof Map) {
      this.global('collections', 'OrderedDict');
      this.byte(0x29, 0x52);
      this.put();
      this.items([...v]);
    } else if (isHost(v)) this.tensor(v);
    else {
      this.byte(0x7d); // EMPTY_DICT
      this.put();
      this.items(Object.entries(v as Record<string, Py>));
    }
  }
  items(entries: [string, Py][]): void {
    if (!entries.length) return;
    this.byte(0x28);
    for (const [k, x] of entries) {
      this.str(k);
      this.value(x);
    }
    this.byte(0x75); // SETITEMS
  }
  finish(root: Py): Uint8Array {
    this.byte(0x80, 2); // PROTO 2
    this.value(root);
    this.byte(0x2e); // STOP
    return Uint8Array.from(this.parts);
  }
}

function isHost(v: unknown): v is HostTensor {
  return typeof v === 'object' && v !== null && 'dtype' in v && 'shape' in v && 'data' in v;
}

/** The bytes of a torch.save-format file holding `root`; `name` is the archive's root folder (torch: the file stem). */
export function encodeTorchCheckpoint(root: Py, name = 'archive'): Uint8Array {
  const w = new PickleWriter();
  const pkl = w.finish(root);
  const files: Record<string, Uint8Array | [Uint8Array, { level: 0 }]> = {
    [`${name}/data.pkl`]: [pkl, { level: 0 }],
  };
  w.storages.forEach((s, i) => {
    files[`${name}/data/${i}`] = [s, { level: 0 }];
  });
  files[`${name}/version`] = [new TextEncoder().encode('3\n'), { level: 0 }];
  return zipSync(files as never);
}

export type { Py as TorchValue };
