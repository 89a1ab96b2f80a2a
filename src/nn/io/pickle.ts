// A restricted unpickler: reads the Python pickles that torch.save writes (protocols 0-5) into
// plain JS values, and never runs anything. A pickle names the Python callables that rebuild its
// objects (GLOBAL / STACK_GLOBAL); here each name is looked up in an allow-list of data-only
// handlers written in TypeScript, and any other name is refused with an error that names it, before
// anything is built. There is no eval, no import, no attribute lookup by name.
//
// Value mapping:
//   None -> null, bool -> boolean, int -> number (bigint outside the safe-integer range),
//   float -> number, str -> string, bytes / bytearray -> Uint8Array, list -> mutable Array,
//   tuple -> frozen Array (Object.isFrozen), dict / OrderedDict -> Map (insertion order kept),
//   set / frozenset -> Set, an allow-listed name that is not called -> PyGlobal,
//   anything a handler builds (tensors, numpy scalars...) -> whatever the handler returns.
//
// Memory: every length read from the stream is checked against the bytes that remain before
// anything is allocated or sliced, so a declared size can never allocate more than the input holds.
// Time: one pass over the opcodes; each opcode does work bounded by what it consumes or pops.

import { halfBitsToFloat } from './types.js';

/** Anything an unpickled value can be. Handlers may return other object types too. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | Map<PyValue, PyValue>
  | Set<PyValue>
  | PyGlobal
  | PyObject
  | object;

/** A handler for an allow-listed global. Handlers receive values, never code. */
export interface GlobalHandler {
  /** REDUCE / INST / OBJ: the call `f(*args)`. Omit for names that are only data (dtypes...). */
  call?: (args: PyValue[]) => PyValue;
  /** NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`. */
  newobj?: (args: PyValue[]) => PyValue;
  /** BUILD (`__setstate__`) on an object this handler made; return the object to keep. */
  build?: (obj: PyValue, state: PyValue) => PyValue;
}

/** A resolved, allow-listed global that has not been called (e.g. torch.float32, a storage type). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly handler: GlobalHandler,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
  toString(): string {
    return this.qualname;
  }
}

/** A generic data object built by a handler (e.g. numpy.dtype): its class name and fields. */
export class PyObject {
  constructor(
    readonly className: string,
    readonly fields: Record<string, PyValue>,
  ) {}
}

/**
 * Instance attributes set by BUILD on a dict (e.g. the `_metadata` of a PyTorch state dict, which
 * pickles as an OrderedDict with a `__dict__`). Keyed by the Map the dict became.
 */
export const pyAttributes = new WeakMap<object, Map<PyValue, PyValue>>();

export interface UnpickleOptions {
  /** Extra allow-listed globals, keyed 'module.name' (after the Python 2 -> 3 renames). */
  globals?: Readonly<Record<string, GlobalHandler>>;
  /** Resolve a persistent id (BINPERSID / PERSID); without it such a pickle is refused. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /** Name of the source for error messages. */
  source?: string;
}

export function isTuple(v: unknown): v is readonly PyValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

export function isDict(v: unknown): v is Map<PyValue, PyValue> {
  return v instanceof Map;
}

/** A short description of a value's type for error messages. */
export function pyTypeName(v: unknown): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (v instanceof PyGlobal) return `global ${v.qualname}`;
  if (v instanceof PyObject) return v.className;
  if (typeof v === 'object' && v !== null && 'dtype' in v && 'shape' in v) return 'tensor';
  return typeof v;
}

/** Python 2 module names that protocol 0-2 pickles use, mapped to their Python 3 names. */
const MODULE_RENAMES: Readonly<Record<string, string>> = {
  __builtin__: 'builtins',
  copy_reg: 'copyreg',
};

/** Python refuses int(str) beyond 4300 digits (sys.int_info.default_max_str_digits); so do we. */
const MAX_INT_DIGITS = 4300;

function safeInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Coerce an int-like pickle value (number, bigint, bool) to a JS number, or undefined. */
export function asInt(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER))
    return Number(v);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Built-in allow-list: data-only types that appear in PyTorch checkpoints.

function latin1Bytes(s: string, who: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new Error(`${who}: character U+${c.toString(16)} is not latin-1`);
    out[i] = c;
  }
  return out;
}

/** numpy dtype kinds numpy.core.multiarray.scalar can decode (itemsize by descr). */
const NUMPY_SCALAR_KINDS: Record<string, { size: number; read: (v: DataView, le: boolean) => number | bigint }> = {
  f8: { size: 8, read: (v, le) => v.getFloat64(0, le) },
  f4: { size: 4, read: (v, le) => v.getFloat32(0, le) },
  f2: { size: 2, read: (v, le) => halfBitsToFloat(v.getUint16(0, le)) },
  i8: { size: 8, read: (v, le) => safeInt(v.getBigInt64(0, le)) },
  i4: { size: 4, read: (v, le) => v.getInt32(0, le) },
  i2: { size: 2, read: (v, le) => v.getInt16(0, le) },
  i1: { size: 1, read: (v) => v.getInt8(0) },
  u8: { size: 8, read: (v, le) => safeInt(v.getBigUint64(0, le)) },
  u4: { size: 4, read: (v, le) => v.getUint32(0, le) },
  u2: { size: 2, read: (v, le) => v.getUint16(0, le) },
  u1: { size: 1, read: (v) => v.getUint8(0) },
  b1: { size: 1, read: (v) => v.getUint8(0) },
};

/** Bytes as a string of the code points 0-255 (Python's latin-1; not WHATWG's windows-1252). */
function latin1String(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

const numpyDtype: GlobalHandler = {
  // numpy.dtype('f8', False, True): the type string; BUILD then sets the byte order.
  call: (args) => {
    const descr = args[0];
    if (typeof descr !== 'string') throw new Error(`numpy.dtype: expected a type string, got ${pyTypeName(descr)}`);
    return new PyObject('numpy.dtype', { descr, byteorder: '=' });
  },
  // state = (version, byteorder, subdtype, names, fields, elsize, alignment, flags[, metadata])
  build: (obj, state) => {
    if (!(obj instanceof PyObject) || !isTuple(state) || typeof state[1] !== 'string')
      throw new Error('numpy.dtype: unexpected state');
    obj.fields.byteorder = state[1];
    return obj;
  },
};

const numpyScalar: GlobalHandler = {
  // numpy.core.multiarray.scalar(dtype, raw_bytes) -> the number those bytes hold
  call: (args) => {
    const [dt, raw] = args;
    if (!(dt instanceof PyObject) || dt.className !== 'numpy.dtype' || !(raw instanceof Uint8Array))
      throw new Error('numpy scalar: expected (numpy.dtype, bytes)');
    const descr = String(dt.fields.descr);
    const kind = NUMPY_SCALAR_KINDS[descr.replace(/^[<>=|]/, '')];
    if (!kind) throw new Error(`numpy scalar: unsupported dtype '${descr}'`);
    if (raw.length !== kind.size)
      throw new Error(`numpy scalar: dtype '${descr}' needs ${kind.size} bytes, got ${raw.length}`);
    const le = dt.fields.byteorder !== '>';
    const v = kind.read(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), le);
    return descr.endsWith('b1') ? v !== 0 : v;
  },
};

function dictFromPairs(arg: PyValue, who: string): Map<PyValue, PyValue> {
  const m = new Map<PyValue, PyValue>();
  if (arg === undefined || arg === null) return m;
  if (arg instanceof Map) return new Map(arg);
  if (!Array.isArray(arg)) throw new Error(`${who}: expected a list of pairs, got ${pyTypeName(arg)}`);
  for (const p of arg) {
    if (!Array.isArray(p) || p.length !== 2) throw new Error(`${who}: expected (key, value) pairs`);
    m.set(p[0] as PyValue, p[1] as PyValue);
  }
  return m;
}

function setFrom(arg: PyValue, who: string): Set<PyValue> {
  if (arg === undefined || arg === null) return new Set();
  if (Array.isArray(arg) || arg instanceof Set) return new Set(arg as Iterable<PyValue>);
  throw new Error(`${who}: expected a list, got ${pyTypeName(arg)}`);
}

/**
 * The built-in allow-list (module.name after Python 2 -> 3 renames). Everything here only
 * rearranges data: no handler can reach the file system, the network or a Python callable.
 */
export const BASE_GLOBALS: Readonly<Record<string, GlobalHandler>> = {
  'collections.OrderedDict': {
    call: (args) => dictFromPairs(args[0] as PyValue, 'OrderedDict'),
    newobj: () => new Map(),
  },
  'builtins.set': { call: (args) => setFrom(args[0] as PyValue, 'set') },
  'builtins.frozenset': { call: (args) => setFrom(args[0] as PyValue, 'frozenset') },
  'builtins.bytes': {
    call: (args) => {
      if (args.length === 0) return new Uint8Array(0);
      const [a] = args;
      if (a instanceof Uint8Array) return new Uint8Array(a);
      if (Array.isArray(a) && a.every((x) => typeof x === 'number' && x >= 0 && x < 256 && Number.isInteger(x)))
        return Uint8Array.from(a as number[]);
      throw new Error(`bytes: unsupported argument ${pyTypeName(a)}`);
    },
  },
  'builtins.bytearray': {
    call: (args) => {
      if (args.length === 0) return new Uint8Array(0);
      const [a, enc] = args;
      if (a instanceof Uint8Array) return new Uint8Array(a);
      if (typeof a === 'string' && (enc === 'latin-1' || enc === 'latin1')) return latin1Bytes(a, 'bytearray');
      throw new Error(`bytearray: unsupported argument ${pyTypeName(a)}`);
    },
  },
  // Protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): only that encoding is accepted.
  '_codecs.encode': {
    call: (args) => {
      const [s, enc] = args;
      if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1'))
        throw new Error(`_codecs.encode: only (str, 'latin1') is supported, got (${pyTypeName(s)}, ${String(enc)})`);
      return latin1Bytes(s, '_codecs.encode');
    },
  },
  'numpy.dtype': numpyDtype,
  'numpy.core.multiarray.scalar': numpyScalar,
  'numpy._core.multiarray.scalar': numpyScalar,
};

// ---------------------------------------------------------------------------------------------

const OP_NAMES: Record<number, string> = {
  40: 'MARK',
  46: 'STOP',
  48: 'POP',
  49: 'POP_MARK',
  50: 'DUP',
  70: 'FLOAT',
  73: 'INT',
  74: 'BININT',
  75: 'BININT1',
  76: 'LONG',
  77: 'BININT2',
  78: 'NONE',
  80: 'PERSID',
  81: 'BINPERSID',
  82: 'REDUCE',
  83: 'STRING',
  84: 'BINSTRING',
  85: 'SHORT_BINSTRING',
  86: 'UNICODE',
  88: 'BINUNICODE',
  97: 'APPEND',
  98: 'BUILD',
  99: 'GLOBAL',
  100: 'DICT',
  125: 'EMPTY_DICT',
  101: 'APPENDS',
  103: 'GET',
  104: 'BINGET',
  105: 'INST',
  106: 'LONG_BINGET',
  108: 'LIST',
  93: 'EMPTY_LIST',
  111: 'OBJ',
  112: 'PUT',
  113: 'BINPUT',
  114: 'LONG_BINPUT',
  115: 'SETITEM',
  116: 'TUPLE',
  41: 'EMPTY_TUPLE',
  117: 'SETITEMS',
  71: 'BINFLOAT',
  128: 'PROTO',
  129: 'NEWOBJ',
  130: 'EXT1',
  131: 'EXT2',
  132: 'EXT4',
  133: 'TUPLE1',
  134: 'TUPLE2',
  135: 'TUPLE3',
  136: 'NEWTRUE',
  137: 'NEWFALSE',
  138: 'LONG1',
  139: 'LONG4',
  66: 'BINBYTES',
  67: 'SHORT_BINBYTES',
  140: 'SHORT_BINUNICODE',
  141: 'BINUNICODE8',
  142: 'BINBYTES8',
  143: 'EMPTY_SET',
  144: 'ADDITEMS',
  145: 'FROZENSET',
  146: 'NEWOBJ_EX',
  147: 'STACK_GLOBAL',
  148: 'MEMOIZE',
  149: 'FRAME',
  150: 'BYTEARRAY8',
  151: 'NEXT_BUFFER',
  152: 'READONLY_BUFFER',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

function tuple(items: PyValue[]): PyValue[] {
  return Object.freeze(items) as PyValue[];
}

/** Little-endian two's-complement bytes (LONG1 / LONG4) to an int. */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let hex = '';
  for (let i = b.length - 1; i >= 0; i--) hex += (b[i] as number).toString(16).padStart(2, '0');
  let v = BigInt(`0x${hex}`);
  if ((b[b.length - 1] as number) & 0x80) v -= 1n << BigInt(8 * b.length);
  return safeInt(v);
}

/** Decode the body of a protocol-0 STRING: a Python repr in single or double quotes. */
function decodeReprString(s: string, fail: (why: string) => never): string {
  if (s.length < 2 || s[0] !== s[s.length - 1] || (s[0] !== "'" && s[0] !== '"')) fail('STRING is not quoted');
  const body = s.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = body[++i];
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0' };
    if (n !== undefined && n in simple) out += simple[n];
    else if (n === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
      out += String.fromCharCode(Number.parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else fail(`unsupported escape '\\${n ?? ''}' in STRING`);
  }
  return out;
}

/** Decode raw-unicode-escape (protocol-0 UNICODE): latin-1 bytes plus \uXXXX and \UXXXXXXXX. */
function decodeRawUnicodeEscape(b: Uint8Array, fail: (why: string) => never): string {
  let out = '';
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    if (c === 0x5c && (b[i + 1] === 0x75 || b[i + 1] === 0x55)) {
      const len = b[i + 1] === 0x75 ? 4 : 8;
      const hex = String.fromCharCode(...b.subarray(i + 2, i + 2 + len));
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) fail('bad \\u escape in UNICODE');
      const cp = Number.parseInt(hex, 16);
      if (cp > 0x10ffff) fail('code point out of range in UNICODE');
      out += String.fromCodePoint(cp);
      i += 1 + len;
    } else out += String.fromCharCode(c);
  }
  return out;
}

/**
 * Unpickle `bytes`. Throws an Error (never anything else) for a malformed stream, an unknown
 * opcode, or a global outside the allow-list (BASE_GLOBALS plus `opts.globals`).
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): PyValue {
  const src = opts.source ?? '<bytes>';
  const allowed: Readonly<Record<string, GlobalHandler>> = { ...BASE_GLOBALS, ...(opts.globals ?? {}) };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.length;
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  const builders = new WeakMap<object, GlobalHandler>();
  let pos = 0;
  let opPos = 0;
  let op = 0;

  const opName = () => OP_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
  const fail = (why: string): never => {
    throw new Error(`pickle: ${src}: ${why} (${opName()} at offset ${opPos})`);
  };
  const need = (n: number): number => {
    if (!Number.isSafeInteger(n) || n < 0 || n > end - pos) fail(`truncated: needs ${n} bytes but ${end - pos} remain`);
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = () => bytes[need(1)] as number;
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = (): number => {
    const p = need(8);
    const lo = view.getUint32(p, true);
    const hi = view.getUint32(p + 4, true);
    // anything >= 2^53 is larger than any input could hold; report it as such
    return hi >= 0x200000 ? Number.MAX_SAFE_INTEGER + 1 : hi * 2 ** 32 + lo;
  };
  const take = (n: number): Uint8Array => {
    const p = need(n);
    return bytes.subarray(p, p + n);
  };
  const readline = (): string => {
    const nl = bytes.indexOf(0x0a, pos);
    if (nl < 0) fail('truncated: no end of line');
    if (nl - pos > 65536) fail('text argument longer than 64 KiB');
    const s = latin1String(bytes.subarray(pos, nl));
    pos = nl + 1;
    return s.endsWith('\r') ? s.slice(0, -1) : s;
  };
  const text = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('invalid UTF-8 in string');
    }
  };
  const floor = () => marks[marks.length - 1] ?? 0;
  const pop = (): PyValue => {
    if (stack.length <= floor()) fail('stack underflow');
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length <= floor()) fail('stack underflow');
    return stack[stack.length - 1] as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK on the stack');
    return stack.splice(m as number);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored`);
    return memo.get(i) as PyValue;
  };
  const memoPut = (i: number) => memo.set(i, top());
  const resolve = (module: string, name: string): PyGlobal => {
    const mod = MODULE_RENAMES[module] ?? module;
    const qual = `${mod}.${name}`;
    const handler = Object.hasOwn(allowed, qual) ? allowed[qual] : undefined;
    if (!handler) {
      const shown = mod === module ? qual : `${module}.${name}' ('${qual}`;
      fail(`refusing global '${shown}' (not on the allow-list of checkpoint types)`);
    }
    return new PyGlobal(mod, name, handler as GlobalHandler);
  };
  // Handlers copy their arguments (a list into a dict, a str into bytes...). A short pickle can
  // pass one memoised large value to many calls (BINGET + REDUCE, 3 bytes each), so the total
  // size of what calls receive is held to a budget linear in the input: no quadratic time or
  // memory from a small file. Legitimate checkpoints use a small fraction of it.
  let work = 0;
  const workLimit = 4 * end + 65536; // fixtures use 0.1-0.25 items per byte
  const charge = (args: readonly PyValue[]) => {
    work += 1 + args.length;
    for (const a of args) {
      if (Array.isArray(a) || typeof a === 'string' || a instanceof Uint8Array) work += a.length;
      else if (a instanceof Map || a instanceof Set) work += a.size;
    }
    if (work > workLimit)
      fail(`the arguments of its calls add up to more than ${workLimit} items for a ${end}-byte pickle`);
  };
  const record = (made: PyValue, h: GlobalHandler): PyValue => {
    if (typeof made === 'object' && made !== null && h.build) builders.set(made, h);
    return made;
  };
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.startsWith('pickle:')) throw e;
      return fail(`${what}: ${msg}`);
    }
  };
  const callGlobal = (f: PyValue, args: PyValue[]): PyValue => {
    if (!(f instanceof PyGlobal)) return fail(`cannot call a ${pyTypeName(f)}`);
    const h = f.handler;
    if (!h.call) return fail(`${f.qualname} is data, not callable`);
    charge(args);
    return record(
      guard(f.qualname, () => h.call?.(args) ?? null),
      h,
    );
  };
  const newObj = (cls: PyValue, args: PyValue[]): PyValue => {
    if (!(cls instanceof PyGlobal)) return fail(`cannot instantiate a ${pyTypeName(cls)}`);
    const h = cls.handler;
    if (!h.newobj) return fail(`${cls.qualname} cannot be created with NEWOBJ`);
    charge(args);
    return record(
      guard(cls.qualname, () => h.newobj?.(args) ?? null),
      h,
    );
  };
  const asArgs = (v: PyValue): PyValue[] => {
    if (!Array.isArray(v)) return fail(`expected an argument tuple, got ${pyTypeName(v)}`);
    return [...v];
  };
  const setItems = (target: PyValue, kv: PyValue[]) => {
    if (!(target instanceof Map)) fail(`cannot set items on a ${pyTypeName(target)}`);
    if (kv.length % 2) fail('odd number of items');
    const m = target as Map<PyValue, PyValue>;
    for (let i = 0; i < kv.length; i += 2) m.set(kv[i] as PyValue, kv[i + 1] as PyValue);
  };
  const appendItems = (target: PyValue, items: PyValue[]) => {
    if (!Array.isArray(target) || Object.isFrozen(target)) fail(`cannot append to a ${pyTypeName(target)}`);
    for (const it of items) (target as PyValue[]).push(it);
  };
  const addItems = (target: PyValue, items: PyValue[]) => {
    if (!(target instanceof Set)) fail(`cannot add items to a ${pyTypeName(target)}`);
    for (const it of items) (target as Set<PyValue>).add(it);
  };
  const parseIntText = (s: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) fail(`not an integer: ${JSON.stringify(s.slice(0, 40))}`);
    if (t.length > MAX_INT_DIGITS) fail(`integer literal longer than ${MAX_INT_DIGITS} digits`);
    return safeInt(BigInt(t));
  };
  const memoIndex = (s: string): number => {
    if (!/^\d{1,15}$/.test(s)) fail(`bad memo index ${JSON.stringify(s.slice(0, 40))}`);
    return Number(s);
  };

  while (true) {
    if (pos >= end) {
      opPos = pos;
      op = -1;
      throw new Error(`pickle: ${src}: truncated: no STOP opcode before the end (offset ${pos})`);
    }
    opPos = pos;
    op = bytes[pos++] as number;
    switch (op) {
      case 0x80: {
        const v = u8();
        if (v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: {
        const n = u64();
        if (n > end - pos) fail(`frame of ${n} bytes but ${end - pos} remain`);
        break;
      }
      case 0x2e: {
        // STOP
        const v = pop();
        return v;
      }
      case 0x28:
        marks.push(stack.length);
        break;
      case 0x30:
        if (stack.length > floor()) stack.pop();
        else popMark();
        break;
      case 0x31:
        popMark();
        break;
      case 0x32:
        stack.push(top());
        break;
      // --- constants and numbers
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a:
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b:
        stack.push(u8());
        break;
      case 0x4d:
        stack.push(u16());
        break;
      case 0x8a: {
        const n = u8();
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x8b: {
        const n = view.getInt32(need(4), true);
        if (n < 0) fail(`negative byte count ${n}`);
        if (n > 2 * MAX_INT_DIGITS) fail(`integer of ${n} bytes is too long`);
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x47:
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x49: {
        const s = readline();
        if (s === '00') stack.push(false);
        else if (s === '01') stack.push(true);
        else stack.push(parseIntText(s));
        break;
      }
      case 0x4c:
        stack.push(parseIntText(readline()));
        break;
      case 0x46: {
        const s = readline().trim();
        if (!/^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)$/.test(s))
          fail(`not a float: ${JSON.stringify(s.slice(0, 40))}`);
        const sign = s.startsWith('-') ? -1 : 1;
        const body = s.replace(/^[+-]/, '');
        stack.push(body === 'inf' ? sign * Infinity : body === 'nan' ? Number.NaN : Number(s));
        break;
      }
      // --- strings and bytes
      case 0x58:
        stack.push(text(take(u32())));
        break;
      case 0x8c:
        stack.push(text(take(u8())));
        break;
      case 0x8d:
        stack.push(text(take(u64())));
        break;
      case 0x56:
        stack.push(decodeRawUnicodeEscape(latin1Bytes(readline(), 'UNICODE'), fail));
        break;
      case 0x53:
        stack.push(decodeReprString(readline(), fail));
        break;
      case 0x54: {
        const n = view.getInt32(need(4), true);
        if (n < 0) fail(`negative length ${n}`);
        stack.push(latin1String(take(n)));
        break;
      }
      case 0x55:
        stack.push(latin1String(take(u8())));
        break;
      case 0x42:
        stack.push(new Uint8Array(take(u32())));
        break;
      case 0x43:
        stack.push(new Uint8Array(take(u8())));
        break;
      case 0x8e:
      case 0x96:
        stack.push(new Uint8Array(take(u64())));
        break;
      case 0x97:
        fail('out-of-band buffers (NEXT_BUFFER) are not supported');
        break;
      case 0x98:
        top();
        break;
      // --- containers
      case 0x7d:
        stack.push(new Map());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x29:
        stack.push(tuple([]));
        break;
      case 0x8f:
        stack.push(new Set());
        break;
      case 0x64: {
        const items = popMark();
        const m = new Map<PyValue, PyValue>();
        setItems(m, items);
        stack.push(m);
        break;
      }
      case 0x6c:
        stack.push(popMark());
        break;
      case 0x74:
        stack.push(tuple(popMark()));
        break;
      case 0x85: {
        const a = pop();
        stack.push(tuple([a]));
        break;
      }
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x91:
        stack.push(new Set(popMark()));
        break;
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x90: {
        const items = popMark();
        addItems(top(), items);
        break;
      }
      // --- memo
      case 0x71:
        memoPut(u8());
        break;
      case 0x72:
        memoPut(u32());
        break;
      case 0x70:
        memoPut(memoIndex(readline()));
        break;
      case 0x94:
        memoPut(memo.size);
        break;
      case 0x68:
        stack.push(memoGet(u8()));
        break;
      case 0x6a:
        stack.push(memoGet(u32()));
        break;
      case 0x67:
        stack.push(memoGet(memoIndex(readline())));
        break;
      // --- globals and object construction (allow-listed handlers only)
      case 0x63: {
        const module = readline();
        const name = readline();
        stack.push(resolve(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          fail(`STACK_GLOBAL needs two strings, got ${pyTypeName(module)} and ${pyTypeName(name)}`);
        stack.push(resolve(module as string, name as string));
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84:
        fail('the copyreg extension registry (EXT1/EXT2/EXT4) is not supported');
        break;
      case 0x52: {
        const args = asArgs(pop());
        const f = pop();
        stack.push(callGlobal(f, args));
        break;
      }
      case 0x81: {
        const args = asArgs(pop());
        const cls = pop();
        stack.push(newObj(cls, args));
        break;
      }
      case 0x92: {
        const kwargs = pop();
        const args = asArgs(pop());
        const cls = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) fail('NEWOBJ_EX with keyword arguments is not supported');
        stack.push(newObj(cls, args));
        break;
      }
      case 0x69: {
        const module = readline();
        const name = readline();
        const f = resolve(module, name);
        stack.push(callGlobal(f, popMark()));
        break;
      }
      case 0x6f: {
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        stack.push(callGlobal(items[0] as PyValue, items.slice(1)));
        break;
      }
      case 0x62: {
        const state = pop();
        const obj = top();
        const h = typeof obj === 'object' && obj !== null ? builders.get(obj) : undefined;
        if (h?.build) {
          charge([state]);
          const built = guard('BUILD', () => h.build?.(obj, state) ?? obj);
          stack[stack.length - 1] = built;
        } else if (obj instanceof Map && (state instanceof Map || state === null)) {
          // a dict subclass with a __dict__ (OrderedDict state dicts carry _metadata this way)
          if (state) pyAttributes.set(obj, state);
        } else if (state !== null) {
          fail(`cannot set the state of a ${pyTypeName(obj)} (from ${pyTypeName(state)})`);
        }
        break;
      }
      case 0x51: {
        const pid = pop();
        if (!opts.persistentLoad) fail('persistent id without a persistent_load (not a checkpoint data.pkl?)');
        charge([pid]);
        stack.push(guard('persistent_load', () => opts.persistentLoad?.(pid) ?? null));
        break;
      }
      case 0x50: {
        const pid = readline();
        if (!opts.persistentLoad) fail('persistent id without a persistent_load');
        stack.push(guard('persistent_load', () => opts.persistentLoad?.(pid) ?? null));
        break;
      }
      default:
        throw new Error(`pickle: ${src}: unknown opcode 0x${op.toString(16).padStart(2, '0')} at offset ${opPos}`);
    }
  }
}
