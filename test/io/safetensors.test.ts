// safetensors and .npy: round trips of every dtype (fast-check), a checkpoint converted to
// safetensors and back, the reader's validation errors, and a fuzz of the reader.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { extractStateDict } from '../../src/nn/io/checkpoint.js';
import { decodeNpy, encodeNpy, readNpy, writeNpy } from '../../src/nn/io/npy.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  writeSafetensors,
} from '../../src/nn/io/safetensors.js';
import { loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { DTYPE_BYTES, HOST_ARRAY, type HostDType, type HostTensor } from '../../src/nn/io/types.js';
import { expectCleanOutcome, expectSameData, FIXTURES, type Mutation, mutate, readJson } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'diffpure-io-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const DTYPES: HostDType[] = ['float32', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** A value generator per dtype, within the range the dtype holds exactly. */
function valueArb(dtype: HostDType): fc.Arbitrary<number> {
  switch (dtype) {
    case 'float32':
      return fc.float({ noNaN: true });
    case 'float64':
      return fc.double({ noNaN: true });
    case 'int64':
      return fc.maxSafeInteger();
    case 'int32':
      return fc.integer();
    case 'int16':
      return fc.integer({ min: -32768, max: 32767 });
    case 'int8':
      return fc.integer({ min: -128, max: 127 });
    case 'uint8':
      return fc.nat(255);
    case 'bool':
      return fc.nat(1);
  }
}

const tensorArb: fc.Arbitrary<HostTensor> = fc
  .tuple(fc.constantFrom(...DTYPES), fc.array(fc.nat(4), { maxLength: 4 }))
  .chain(([dtype, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fc
      .array(valueArb(dtype), { minLength: n, maxLength: n })
      .map((vals) => ({ dtype, shape, data: HOST_ARRAY[dtype].from(vals) }) as HostTensor);
  });

const nameArb = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== '__metadata__');

describe('safetensors', () => {
  test('round trip of every dtype, shape (incl. scalars and empty) and metadata', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(nameArb, tensorArb), { selector: ([n]) => n, maxLength: 6 }),
        fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })),
        (entries, metadata) => {
          const bytes = encodeSafetensors(new Map(entries), metadata);
          const back = decodeSafetensors(bytes);
          expect(back.metadata).toEqual(metadata);
          expect(back.tensors.size).toBe(entries.length);
          for (const [name, t] of entries) {
            const r = back.tensors.get(name) as HostTensor;
            expect(r.dtype).toBe(t.dtype);
            expect(r.shape).toEqual(t.shape);
            expect(Array.from(r.data)).toEqual(Array.from(t.data));
          }
          // layout: header padded to 8 bytes, so each tensor sits aligned to its element size
          const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
          expect(n % 8).toBe(0);
          const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
            string,
            { data_offsets: [number, number] }
          >;
          for (const [name, t] of entries)
            expect((header[name]?.data_offsets[0] as number) % DTYPE_BYTES[t.dtype]).toBe(0);
        },
      ),
      { numRuns: 300, seed: 11 },
    );
  });

  test('names and metadata keys such as __proto__ stay plain entries', () => {
    const t: HostTensor = { dtype: 'float32', shape: [1], data: new Float32Array([7]) };
    const back = decodeSafetensors(
      encodeSafetensors(
        new Map([
          ['__proto__', t],
          ['constructor', t],
        ]),
        JSON.parse('{"__proto__": "x"}'),
      ),
    );
    expect([...back.tensors.keys()]).toEqual(['__proto__', 'constructor']);
    expect(Object.keys(back.metadata)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(back.metadata)).toBe(Object.prototype);
  });

  test('float16 / bfloat16 are read as float32 (the values a Python writer would store)', () => {
    // F16 0x3c00 = 1, 0xc000 = -2, 0x7c00 = inf; BF16 0x3f80 = 1, 0xc040 = -3 (IEEE bit patterns)
    const header = JSON.stringify({
      h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [6, 10] },
    });
    const head = new TextEncoder().encode(header);
    const bytes = new Uint8Array(8 + head.length + 10);
    new DataView(bytes.buffer).setUint32(0, head.length, true);
    bytes.set(head, 8);
    bytes.set([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c, 0x80, 0x3f, 0x40, 0xc0], 8 + head.length);
    const { tensors } = decodeSafetensors(bytes);
    expect(tensors.get('h')).toMatchObject({ dtype: 'float32', sourceDtype: 'float16', shape: [3] });
    expect(Array.from(tensors.get('h')?.data ?? [])).toEqual([1, -2, Number.POSITIVE_INFINITY]);
    expect(Array.from(tensors.get('b')?.data ?? [])).toEqual([1, -3]);
  });

  test('a fixture checkpoint converted to safetensors and back is unchanged', () => {
    const sd = extractStateDict(loadTorchCheckpoint(`${FIXTURES}wrn/model.pt`));
    const path = join(tmp, 'wrn.safetensors');
    writeSafetensors(path, sd, { source: 'wrn/model.pt' });
    const back = readSafetensors(path);
    expect(back.metadata).toEqual({ source: 'wrn/model.pt' });
    // all float32 and int64 (num_batches_tracked): the writer keeps the order within a size class
    expect([...back.tensors.keys()].sort()).toEqual([...sd.keys()].sort());
    for (const [k, t] of sd) {
      const r = back.tensors.get(k) as HostTensor;
      expect(r.dtype, k).toBe(t.dtype);
      expect(r.shape, k).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expectSameData(r.data, t.data, k);
    }
  });

  const base = () =>
    encodeSafetensors(
      new Map<string, HostTensor>([
        ['a', { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }],
        ['b', { dtype: 'int8', shape: [3], data: new Int8Array([1, 2, 3]) }],
      ]),
    );
  /** A file with a hand-written header and `dataLen` zero bytes of data. */
  const withHeader = (header: unknown, dataLen: number) => {
    const head = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
    const out = new Uint8Array(8 + head.length + dataLen);
    new DataView(out.buffer).setUint32(0, head.length, true);
    out.set(head, 8);
    return out;
  };
  const f32 = (b: number, e: number, shape = [(e - b) / 4]) => ({ dtype: 'F32', shape, data_offsets: [b, e] });

  const errors: [string, Uint8Array, RegExp][] = [
    ['too short', new Uint8Array(5), /shorter than the 8-byte header length/],
    [
      'header past the end',
      (() => {
        const b = base();
        b[0] = 0xff;
        b[1] = 0xff;
        return b;
      })(),
      /header length \d+ runs past the end/,
    ],
    [
      'header length 2^56',
      (() => {
        const b = base();
        b[7] = 1;
        return b;
      })(),
      /runs past the end of the file/,
    ],
    ['not JSON', withHeader('{nope', 0), /not valid JSON/],
    ['not an object', withHeader('[1, 2]', 0), /does not start with '\{'/],
    [
      'bad UTF-8',
      (() => {
        const b = withHeader('{"a":1}', 0);
        b[10] = 0xff;
        return b;
      })(),
      /not valid UTF-8/,
    ],
    [
      'unknown dtype',
      withHeader({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, 8),
      /unsupported dtype 'C64'/,
    ],
    [
      'negative dim',
      withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4),
      /non-negative integers/,
    ],
    ['offsets reversed', withHeader({ a: f32(8, 4, [1]) }, 8), /0 <= begin <= end/],
    ['offsets out of range', withHeader({ a: f32(0, 16) }, 8), /run past the data \(8 bytes\)/],
    ['size mismatch', withHeader({ a: f32(0, 8, [3]) }, 8), /needs 12 bytes but data_offsets \[0, 8\] hold 8/],
    ['huge shape', withHeader({ a: f32(0, 8, [2 ** 40, 2 ** 40, 2 ** 40]) }, 8), /needs \d+(e\+\d+)? bytes but/],
    ['overlap', withHeader({ a: f32(0, 8), b: f32(4, 12) }, 12), /overlaps the tensor before it/],
    ['hole', withHeader({ a: f32(0, 4), b: f32(8, 12) }, 12), /bytes \[4, 8\) of the data belong to no tensor/],
    ['trailing bytes', withHeader({ a: f32(0, 4) }, 8), /bytes \[4, 8\) at the end/],
    ['bad metadata', withHeader({ __metadata__: { k: 1 } }, 0), /__metadata__\['k'\] is not a string/],
    ['missing offsets', withHeader({ a: { dtype: 'F32', shape: [1] } }, 4), /data_offsets must be/],
  ];
  for (const [name, bytes, re] of errors) {
    test(`reader error: ${name}`, () => {
      expect(() => decodeSafetensors(bytes, 'x.safetensors')).toThrow(re);
      expect(() => decodeSafetensors(bytes, 'x.safetensors')).toThrow(/^safetensors: x\.safetensors: /);
    });
  }

  test('writer refuses malformed tensors', () => {
    const t = (x: Partial<HostTensor>) =>
      new Map([['a', { dtype: 'float32', shape: [2], data: new Float32Array(2), ...x } as HostTensor]]);
    expect(() => encodeSafetensors(t({ shape: [3] }))).toThrow(/needs 3 elements, data has 2/);
    expect(() => encodeSafetensors(t({ dtype: 'complex64' as HostDType }))).toThrow(/supported dtype/);
    expect(() => encodeSafetensors(new Map([['__metadata__', t({}).get('a') as HostTensor]]))).toThrow(/reserved/);
    expect(() => encodeSafetensors(t({ dtype: 'int64', data: new Float64Array([0.5, 1]) }))).toThrow(/not an integer/);
  });

  test('fuzz: mutated files and random headers give a value or a clear error', () => {
    const good = encodeSafetensors(
      new Map<string, HostTensor>([
        ['w', { dtype: 'float32', shape: [3, 2], data: new Float32Array(6).fill(1.5) }],
        ['i', { dtype: 'int64', shape: [2], data: new Float64Array([3, -4]) }],
        ['b', { dtype: 'bool', shape: [1], data: new Uint8Array([1]) }],
      ]),
      { format: 'pt' },
    );
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(4096), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({
        kind: fc.constant('set32' as const),
        at: fc.nat(4096),
        value: fc.constantFrom(0xffffffff, 0x80000000, 0),
      }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(4096) }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(4096),
        bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 4 }),
      }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(4096), len: fc.integer({ min: 1, max: 8 }) }),
    );
    const check = (b: Uint8Array) =>
      expectCleanOutcome(() => {
        const { tensors } = decodeSafetensors(b);
        for (const t of tensors.values()) expect(t.data.length).toBe(t.shape.reduce((x, y) => x * y, 1));
      }, ['safetensors:']);
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (muts) => {
        check(mutate(good, muts));
      }),
      { numRuns: 1500, seed: 12 },
    );
    // structured: random dtype / shape / offsets, some huge, with a random amount of data
    const big = fc.oneof(fc.nat(16), fc.constantFrom(2 ** 31, 2 ** 53 - 1, 2 ** 60, -1, 0.5));
    const info = fc.record({
      dtype: fc.constantFrom('F32', 'F64', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16', 'X'),
      shape: fc.array(big, { maxLength: 4 }),
      data_offsets: fc.tuple(big, big),
    });
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 4 }), info, { maxKeys: 4 }), fc.nat(64), (header, dataLen) => {
        check(withHeader(header, dataLen));
      }),
      { numRuns: 1500, seed: 13 },
    );
  });
});

describe('npy', () => {
  test('round trip float32 / float64 of random shapes', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(fc.nat(4), { maxLength: 4 }), fc.integer(), (f32, shape, seed) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = f32 ? new Float32Array(n) : new Float64Array(n);
        for (let i = 0; i < n; i++) data[i] = Math.sin(seed + i) * 10 ** ((i % 7) - 3);
        const back = decodeNpy(encodeNpy(data, shape));
        expect(back.shape).toEqual(shape);
        expect(back.descr).toBe(f32 ? '<f4' : '<f8');
        expect(back.data).toEqual(data);
      }),
      { numRuns: 200, seed: 14 },
    );
  });

  test('every fixture .npy file reads with the shape meta.json states, and round-trips', () => {
    let files = 0;
    for (const dir of ['ddpmpp', 'ddpmpp/nf8_with_adam_state', 'adm', 'wrn']) {
      const meta = readJson<{ files: Record<string, { shape?: number[] }> }>(`${FIXTURES}${dir}/meta.json`);
      for (const name of readdirSync(`${FIXTURES}${dir}`).filter((f) => f.endsWith('.npy'))) {
        const a = readNpy(`${FIXTURES}${dir}/${name}`);
        expect(a.shape, `${dir}/${name}`).toEqual(meta.files[name]?.shape);
        expect(a.descr).toBe('<f4');
        const p = join(tmp, 'x.npy');
        writeNpy(p, a.data, a.shape);
        expectSameData(readNpy(p).data, a.data, name);
        files++;
      }
    }
    expect(files).toBeGreaterThan(20);
  });

  test('npy reader refuses truncated data and huge shapes before allocating', () => {
    const good = encodeNpy(new Float32Array([1, 2, 3]), [3]);
    expect(() => decodeNpy(good.subarray(0, good.length - 1))).toThrow(/needs 12 bytes but 11 remain/);
    // same header length: the shape grows by 10 characters, the space padding shrinks by 10
    const huge = Buffer.from(good)
      .toString('latin1')
      .replace('(3,)', '(99999999999,)')
      .replace(`${' '.repeat(10)}\n`, '\n');
    expect(huge.length).toBe(good.length);
    expect(() => decodeNpy(new Uint8Array(Buffer.from(huge, 'latin1')))).toThrow(/needs \d+ bytes but 12 remain/);
  });
});
