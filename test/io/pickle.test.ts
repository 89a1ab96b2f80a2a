// The restricted unpickler: Python-written pickles of every protocol (test/io/data/pickles.json,
// made by make_fixtures.py), hand-made pickles that name forbidden globals, malformed streams
// with huge declared sizes, and a fast-check fuzz of the opcode stream.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isTuple, type PyValue, pyAttributes, unpickle } from '../../src/nn/io/pickle.js';
import { DATA, expectCleanOutcome, readJson } from './helpers.js';

const enc = (s: string) => Array.from(new TextEncoder().encode(s));
const u32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
/** A protocol-2 pickle from opcode bytes (PROTO 2 prefix, STOP appended). */
const p2 = (...ops: (number | number[])[]) => new Uint8Array([0x80, 2, ...ops.flat(), 0x2e]);

describe('pickles written by CPython, protocols 0 to 5', () => {
  const { pickles } = readJson<{ pickles: Record<string, string> }>(`${DATA}pickles.json`);
  for (const [proto, hex] of Object.entries(pickles)) {
    test(`protocol ${proto}`, () => {
      const v = unpickle(new Uint8Array(Buffer.from(hex, 'hex'))) as Map<string, PyValue>;
      // the value make_fixtures.py pickled, written out in JS
      expect(v.get('ints')).toEqual([
        0,
        1,
        -1,
        255,
        256,
        65535,
        65536,
        -(2 ** 31),
        2 ** 31 - 1,
        2 ** 31,
        2n ** 63n,
        -(2n ** 70n),
      ]);
      expect(v.get('floats')).toEqual([0.5, -1.25, 1e300, Number.POSITIVE_INFINITY]);
      expect(v.get('str')).toEqual(['', 'ascii', 'caf\u00e9', '\u2603 snow', 'a\nb']);
      expect(v.get('bytes')).toEqual(new Uint8Array([0, 1, 0xfe, 0xff]));
      expect(v.get('tuple')).toEqual([1, [2, [3]], []]);
      expect(isTuple(v.get('tuple'))).toBe(true);
      expect(v.get('consts')).toEqual([null, true, false]);
      expect(isTuple(v.get('consts'))).toBe(false);
      expect(v.get('dict')).toEqual(
        new Map<PyValue, PyValue>([
          [1, 'one'],
          ['two', 2],
        ]),
      );
      expect([...(v.get('ordered') as Map<string, number>)]).toEqual([
        ['b', 1],
        ['a', 2],
      ]);
      expect(v.get('set')).toEqual(new Set([7]));
      expect(v.get('frozenset')).toEqual(new Set([8]));
      expect(v.get('bytearray')).toEqual(new Uint8Array([0x78, 0x79]));
      // memoised objects keep their identity
      const shared = v.get('shared') as PyValue[][];
      expect(shared[0]).toBe(shared[1]);
    });
  }
});

describe('refusals', () => {
  const refused = (bytes: Uint8Array, name: string) =>
    expect(() => unpickle(bytes)).toThrow(`refusing global '${name}' (not on the allow-list of checkpoint types)`);

  test('GLOBAL and STACK_GLOBAL outside the allow-list are refused by name, before any call', () => {
    refused(p2(0x63, enc('os\nsystem\n'), 0x58, u32(2), enc('ls'), 0x85, 0x52), 'os.system');
    refused(p2(0x63, enc('posix\nsystem\n')), 'posix.system');
    refused(p2(0x63, enc('subprocess\nPopen\n')), 'subprocess.Popen');
    refused(p2(0x63, enc('builtins\neval\n')), 'builtins.eval');
    refused(p2(0x63, enc('__builtin__\ngetattr\n')), "__builtin__.getattr' ('builtins.getattr");
    refused(p2(0x63, enc('torch\nload\n')), 'torch.load');
    refused(p2(0x63, enc('collections\nOrderedDict.__init__\n')), 'collections.OrderedDict.__init__');
    // protocol 4: STACK_GLOBAL takes the names from the stack
    const sg = new Uint8Array([0x80, 4, 0x8c, 2, ...enc('os'), 0x8c, 6, ...enc('system'), 0x93, 0x2e]);
    refused(sg, 'os.system');
    // INST (protocol 0) names its class inline
    refused(new Uint8Array([0x28, ...enc('ios\nsystem\n'), 0x2e]), 'os.system');
    // a torch global is only allowed where the checkpoint reader adds it
    refused(p2(0x63, enc('torch._utils\n_rebuild_tensor_v2\n')), 'torch._utils._rebuild_tensor_v2');
  });

  test('allow-listed names that are not callables, and calls on non-globals, are errors', () => {
    expect(() => unpickle(p2(0x63, enc('numpy\ndtype\n'), 0x29, 0x52))).toThrow(/numpy.dtype: expected a type string/);
    expect(() => unpickle(p2(0x4b, 1, 0x29, 0x52))).toThrow(/cannot call a int \(REDUCE at offset 5\)/);
    expect(() => unpickle(p2(0x82, 1))).toThrow(/extension registry/);
    expect(() =>
      unpickle(p2(0x63, enc('_codecs\nencode\n'), 0x8c, 1, enc('x'), 0x8c, 5, enc('utf-8'), 0x86, 0x52)),
    ).toThrow(/only \(str, 'latin1'\)/);
    expect(() => unpickle(p2(0x4e, 0x51))).toThrow(/persistent id without a persistent_load/);
  });
});

describe('malformed streams fail with the opcode and offset', () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['unknown opcode', p2(0xff), /unknown opcode 0xff at offset 2/],
    ['unknown opcode 0x00', new Uint8Array([0x80, 2, 0x00]), /unknown opcode 0x00 at offset 2/],
    ['unsupported protocol', new Uint8Array([0x80, 9, 0x4e, 0x2e]), /unsupported pickle protocol 9/],
    ['no STOP', new Uint8Array([0x80, 2, 0x4e]), /no STOP opcode/],
    ['empty', new Uint8Array([]), /no STOP opcode/],
    ['stack underflow', p2(0x85), /stack underflow \(TUPLE1 at offset 2\)/],
    ['STOP on empty stack', p2(), /stack underflow \(STOP/],
    ['no MARK', p2(0x74), /no MARK on the stack \(TUPLE at offset 2\)/],
    ['memo miss', p2(0x68, 7), /memo key 7 was never stored \(BINGET/],
    ['setitem on a list', p2(0x5d, 0x4b, 1, 0x4b, 2, 0x73), /cannot set items on a list/],
    ['append to a tuple', p2(0x29, 0x4b, 1, 0x61), /cannot append to a tuple/],
    [
      'BINUNICODE8 of 2^63 bytes',
      p2(0x8d, [0, 0, 0, 0, 0, 0, 0, 0x80]),
      /truncated: needs \d+ bytes but 1 remain \(BINUNICODE8 at offset 2\)/,
    ],
    ['BINBYTES of 4 GiB', p2(0x42, u32(0xffffffff)), /needs 4294967295 bytes but 1 remain \(BINBYTES at offset 2\)/],
    ['BINBYTES8 of 2^56', p2(0x8e, [0, 0, 0, 0, 0, 0, 0, 1]), /truncated/],
    ['BYTEARRAY8 huge', p2(0x96, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /truncated/],
    ['FRAME longer than the file', p2(0x95, [0, 0, 0, 0, 1, 0, 0, 0]), /frame of 4294967296 bytes/],
    ['LONG4 of 2 GiB', p2(0x8b, u32(0x7fffffff)), /integer of 2147483647 bytes is too long/],
    ['LONG4 negative', p2(0x8b, u32(0xffffffff)), /negative byte count/],
    ['BINSTRING negative', p2(0x54, u32(0x80000000)), /negative length/],
    ['invalid UTF-8', p2(0x8c, 2, [0xc3, 0x28]), /invalid UTF-8 in string \(SHORT_BINUNICODE/],
    ['text INT too long', new Uint8Array([0x49, ...enc('9'.repeat(5000)), 10, 0x2e]), /longer than 4300 digits/],
    ['text line without newline', new Uint8Array([0x49, ...enc('12')]), /no end of line/],
    ['NEXT_BUFFER', p2(0x97), /out-of-band buffers/],
  ];
  for (const [name, bytes, re] of cases) {
    test(name, () => {
      const t0 = performance.now();
      expect(() => unpickle(bytes)).toThrow(re);
      expect(performance.now() - t0).toBeLessThan(500);
    });
  }

  test('a memoised value passed to many calls cannot amplify a small file into quadratic work', () => {
    // a list of 20000 pairs, memoised, then OrderedDict(list) 100000 times: 0.7 MB of pickle that
    // would build 2e9 dict entries; the call-argument budget (linear in the input) stops it
    const ops: number[] = [0x80, 2, 0x63, ...enc('collections\nOrderedDict\n'), 0x71, 0, 0x4e, 0x4e, 0x86, 0x71, 2];
    ops.push(0x30, 0x5d, 0x28);
    for (let i = 0; i < 20000; i++) ops.push(0x68, 2);
    ops.push(0x65, 0x71, 1, 0x30);
    for (let i = 0; i < 100000; i++) ops.push(0x68, 0, 0x68, 1, 0x85, 0x52, 0x30);
    ops.push(0x4e, 0x2e);
    const t0 = performance.now();
    expect(() => unpickle(new Uint8Array(ops))).toThrow(/the arguments of its calls add up to more than \d+ items/);
    expect(performance.now() - t0).toBeLessThan(2000);
    // the same with a 100 kB string re-encoded as bytes again and again
    const str = [0x58, ...u32(100000), ...enc('x'.repeat(100000)), 0x71, 1, 0x30];
    const enc2: number[] = [
      0x80,
      2,
      0x63,
      ...enc('_codecs\nencode\n'),
      0x71,
      0,
      0x30,
      ...str,
      0x8c,
      6,
      ...enc('latin1'),
      0x71,
      2,
      0x30,
    ];
    for (let i = 0; i < 20000; i++) enc2.push(0x68, 0, 0x68, 1, 0x68, 2, 0x86, 0x52, 0x30);
    enc2.push(0x4e, 0x2e);
    expect(() => unpickle(new Uint8Array(enc2))).toThrow(/add up to more than/);
  });

  test('BUILD on an OrderedDict keeps its attributes (state dicts carry _metadata this way)', () => {
    const v = unpickle(
      p2(0x63, enc('collections\nOrderedDict\n'), 0x29, 0x52, 0x7d, 0x8c, 9, enc('_metadata'), 0x4e, 0x73, 0x62),
    ) as Map<PyValue, PyValue>;
    expect(v).toBeInstanceOf(Map);
    expect(pyAttributes.get(v)?.has('_metadata')).toBe(true);
  });
});

describe('fuzz: the unpickler', () => {
  const PREFIXES = ['pickle:'];
  const { pickles } = readJson<{ pickles: Record<string, string> }>(`${DATA}pickles.json`);
  const corpus = Object.values(pickles).map((h) => new Uint8Array(Buffer.from(h, 'hex')));
  const run = (b: Uint8Array) => expectCleanOutcome(() => unpickle(b, { persistentLoad: (pid) => pid }), PREFIXES);

  test('random byte strings, with and without a PROTO header', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 300 }), (proto, body) => {
        run(proto ? new Uint8Array([0x80, 2, ...body]) : body);
      }),
      { numRuns: 2000, seed: 7 },
    );
  });

  test('sequences of valid opcodes with random arguments', () => {
    // every opcode byte the unpickler knows, followed by a few random argument bytes
    const ops = [
      0x28, 0x2e, 0x30, 0x31, 0x32, 0x46, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56,
      0x58, 0x61, 0x62, 0x63, 0x64, 0x7d, 0x65, 0x67, 0x68, 0x69, 0x6a, 0x6c, 0x5d, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74,
      0x29, 0x75, 0x47, 0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x42, 0x43, 0x8c, 0x8d, 0x8e, 0x8f, 0x90,
      0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x98,
    ];
    const step = fc.tuple(fc.constantFrom(...ops), fc.uint8Array({ maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        run(new Uint8Array([0x80, 4, ...steps.flatMap(([op, args]) => [op, ...args]), 0x2e]));
      }),
      { numRuns: 2000, seed: 8 },
    );
  });

  test('mutated CPython pickles', () => {
    fc.assert(
      fc.property(
        fc.nat(corpus.length - 1),
        fc.array(fc.tuple(fc.nat(100000), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 5 }),
        fc.option(fc.nat(100000)),
        (which, flips, cut) => {
          const b = new Uint8Array(corpus[which] as Uint8Array);
          for (const [at, x] of flips) b[at % b.length] = (b[at % b.length] as number) ^ x;
          run(cut === null ? b : b.subarray(0, cut % b.length));
        },
      ),
      { numRuns: 2000, seed: 9 },
    );
  });
});
