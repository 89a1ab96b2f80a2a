// gemm (src/tensor/cpu/gemm.ts): every trans/accumulate combination, odd sizes at the register-tile edges, offsets
// and padded leading dims, single-threaded and on the worker threads, against a naive float64 triple loop.
//
// Tolerance. Entry C[i, j] is a dot product of length K.
// - float32: the design's bound for a float32 reduction of length K is an absolute error of order
//   sqrt(K) * max|a| * max|b| * 2^-23 (roundings of random sign add up like a random walk, and a blocked sum keeps the
//   partial sums short); we allow 4x that. Our kernel is well inside it: float32 inputs convert to float64 exactly,
//   products and sums are float64, and C is rounded to float32 once per KC = 256 block of K (at most 4 roundings
//   here, each <= 2^-24 |C|, with |C| ~ sqrt(K) * max|a| * max|b| / 3 for the zero-mean uniform inputs used). The
//   float64 reference's own error is negligible at this scale.
// - float64: kernel and reference both sum in float64, each rounding up to K partial sums of size up to
//   ~sqrt(K) * max|a| * max|b|; their difference is of order K * max|a| * max|b| * 2^-52 (sqrt(K) roundings of size
//   sqrt(K)); we allow 4x that. It is still ~2^25 times tighter than the float32 bound, so a float32 rounding
//   anywhere in the float64 path would fail it.
// With accumulate, the prior value of C is rounded in as well: add eps * |C0|.
// Out-of-view elements of A and B are NaN (reading one would poison a result), C's view starts as NaN unless
// accumulating (so every entry must be written), and C's out-of-view elements must keep their sentinel.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import {
  configureGemm,
  type GemmArgs,
  gemm,
  gemmThreadStats,
  gemmThreadsAvailable,
  shutdownGemmThreads,
} from '../src/tensor/cpu/gemm.js';

type F = Float32Array | Float64Array;
const SENTINEL = 12345;

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  accumulate: boolean;
  dtype: 'float32' | 'float64';
  /** Offsets of A, B, C in their arrays and extra elements per row beyond the matrix width. */
  offs: [number, number, number];
  pads: [number, number, number];
  /** Inputs uniform in [-scale, scale). */
  scale: number;
  seed: number;
  /** Back the arrays with SharedArrayBuffer (the threaded path then uses them in place). */
  shared?: boolean;
}

/** mulberry32: a small deterministic generator, so fast-check only has to pick a seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function alloc(c: Case, n: number): F {
  if (c.dtype === 'float64') return c.shared ? new Float64Array(new SharedArrayBuffer(8 * n)) : new Float64Array(n);
  return c.shared ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n);
}

/** A stored matrix of `rows x cols` (as laid out in memory) at `off`, row stride cols + pad, NaN around it. */
function matrix(c: Case, rows: number, cols: number, off: number, pad: number, fill: (() => number) | null) {
  const ld = cols + pad;
  const data = alloc(c, off + Math.max(0, rows - 1) * ld + cols + 3);
  data.fill(fill ? Number.NaN : SENTINEL);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) data[off + i * ld + j] = fill ? fill() : Number.NaN;
  return { data, ld };
}

function build(c: Case) {
  const r = rng(c.seed);
  const u = () => (2 * r() - 1) * c.scale;
  const A = c.transA ? matrix(c, c.k, c.m, c.offs[0], c.pads[0], u) : matrix(c, c.m, c.k, c.offs[0], c.pads[0], u);
  const B = c.transB ? matrix(c, c.n, c.k, c.offs[1], c.pads[1], u) : matrix(c, c.k, c.n, c.offs[1], c.pads[1], u);
  const C = matrix(c, c.m, c.n, c.offs[2], c.pads[2], null);
  if (c.accumulate) for (let i = 0; i < c.m; i++) for (let j = 0; j < c.n; j++) C.data[c.offs[2] + i * C.ld + j] = u();
  const args: GemmArgs = {
    m: c.m,
    n: c.n,
    k: c.k,
    a: A.data,
    aOff: c.offs[0],
    lda: A.ld,
    transA: c.transA,
    b: B.data,
    bOff: c.offs[1],
    ldb: B.ld,
    transB: c.transB,
    c: C.data,
    cOff: c.offs[2],
    ldc: C.ld,
    accumulate: c.accumulate,
  };
  return args;
}

const at = (x: F, off: number, ld: number, trans: boolean, i: number, j: number) =>
  x[trans ? off + j * ld + i : off + i * ld + j] as number;

/** Runs gemm on a fresh copy of the case and checks it against the float64 triple loop; returns C. */
function check(c: Case): F {
  const g = build(c);
  const c0 = g.c.slice();
  gemm(g);
  const f64 = c.dtype === 'float64';
  const eps = f64 ? 2 ** -52 : 2 ** -23;
  const bound = 4 * (f64 ? c.k : Math.sqrt(c.k)) * c.scale * c.scale * eps;
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      const ci = g.cOff + i * g.ldc + j;
      const prior = c.accumulate ? (c0[ci] as number) : 0;
      let ref = prior;
      for (let p = 0; p < c.k; p++)
        ref += at(g.a, g.aOff, g.lda, c.transA, i, p) * at(g.b, g.bOff, g.ldb, c.transB, p, j);
      const got = g.c[ci] as number;
      const tol = bound + Math.abs(prior) * eps;
      if (!(Math.abs(got - ref) <= tol)) {
        throw new Error(
          `C[${i}, ${j}] = ${got}, expected ${ref} +- ${tol} (${JSON.stringify({ ...c, seed: c.seed })})`,
        );
      }
      c0[ci] = got; // out-of-view entries are compared below
    }
  }
  for (let x = 0; x < g.c.length; x++) {
    if (!Object.is(g.c[x], c0[x])) throw new Error(`element ${x} outside C's view changed: ${c0[x]} -> ${g.c[x]}`);
  }
  return g.c;
}

const edge = fc.constantFrom(1, 3, 17, 33, 65);
const size = fc.oneof(edge, fc.integer({ min: 1, max: 70 }));
const small = fc.integer({ min: 0, max: 5 });

function arbCase(dim: fc.Arbitrary<number>): fc.Arbitrary<Case> {
  return fc.record({
    m: dim,
    n: dim,
    k: dim,
    transA: fc.boolean(),
    transB: fc.boolean(),
    accumulate: fc.boolean(),
    dtype: fc.constantFrom('float32' as const, 'float64' as const),
    offs: fc.tuple(small, small, small),
    pads: fc.tuple(small, small, small),
    scale: fc.constantFrom(2 ** -3, 1, 2 ** 5),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    shared: fc.boolean(),
  });
}

/** Runs fn with the given gemm settings, restoring the previous ones afterwards. */
function withConfig<T>(cfg: Parameters<typeof configureGemm>[0], fn: () => T): T {
  const prev = configureGemm(cfg);
  try {
    return fn();
  } finally {
    configureGemm(prev);
  }
}

const combos = [false, true].flatMap((transA) =>
  [false, true].flatMap((transB) => [false, true].map((accumulate) => ({ transA, transB, accumulate }))),
);

afterAll(() => shutdownGemmThreads());

describe('gemm single-threaded', () => {
  test('matches the float64 triple loop: odd sizes, trans, accumulate, offsets, leading dims', () => {
    withConfig({ threads: 1 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c)),
        { numRuns: 300 },
      ),
    );
  });

  test.each(combos)('larger than one cache block (k > 256, n > 2048) %o', (t) => {
    withConfig({ threads: 1 }, () => {
      check({ m: 9, n: 2053, k: 300, ...t, dtype: 'float32', offs: [1, 2, 3], pads: [1, 0, 2], scale: 1, seed: 1 });
      check({ m: 131, n: 37, k: 600, ...t, dtype: 'float64', offs: [0, 0, 0], pads: [0, 3, 0], scale: 1, seed: 2 });
    });
  });

  test('k = 0 zeroes C, or leaves it when accumulating; m = 0 and n = 0 do nothing', () => {
    for (const accumulate of [false, true]) {
      const c = new Float32Array([1, 2, 3, 4, 5, 6]);
      const a = new Float32Array(0);
      gemm({ m: 2, n: 3, k: 0, a, aOff: 0, lda: 0, b: a, bOff: 0, ldb: 3, c, cOff: 0, ldc: 3, accumulate });
      expect([...c]).toEqual(accumulate ? [1, 2, 3, 4, 5, 6] : [0, 0, 0, 0, 0, 0]);
    }
    const c = new Float64Array([7]);
    gemm({ m: 0, n: 1, k: 1, a: c, aOff: 0, lda: 1, b: c, bOff: 0, ldb: 1, c, cOff: 0, ldc: 1 });
    gemm({ m: 1, n: 0, k: 1, a: c, aOff: 0, lda: 1, b: c, bOff: 0, ldb: 1, c, cOff: 0, ldc: 1 });
    expect(c[0]).toBe(7);
  });
});

describe('gemm on worker threads', () => {
  test('worker threads are available under Node', () => {
    expect(gemmThreadsAvailable()).toBe(true);
  });

  test('every problem forced onto 3 threads matches the float64 triple loop', () => {
    const before = gemmThreadStats();
    withConfig({ threads: 3, minThreadedMacs: 0, minThreadedDim: 0 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c)),
        { numRuns: 200 },
      ),
    );
    const after = gemmThreadStats();
    expect(after.threadedCalls).toBeGreaterThan(before.threadedCalls);
    expect(after.workerBands).toBeGreaterThan(before.workerBands);
  });

  test.each(combos)('sizes above the default threshold take the threaded path %o', (t) => {
    const before = gemmThreadStats();
    withConfig({ threads: 2 }, () => {
      // split by rows (m >= n), by columns (n > m, and n > one 2048-column panel), float64, shared memory in place
      check({ m: 300, n: 257, k: 129, ...t, dtype: 'float32', offs: [3, 1, 2], pads: [2, 1, 3], scale: 1, seed: 3 });
      check({ m: 17, n: 2100, k: 100, ...t, dtype: 'float32', offs: [0, 5, 1], pads: [0, 0, 1], scale: 4, seed: 4 });
      check({ m: 200, n: 33, k: 257, ...t, dtype: 'float64', offs: [1, 0, 0], pads: [1, 1, 0], scale: 1, seed: 5 });
      const sh = { m: 129, n: 140, k: 100, ...t, offs: [2, 2, 2], pads: [1, 2, 3], scale: 1, seed: 6, shared: true };
      check({ ...sh, dtype: 'float32' } as Case);
    });
    const after = gemmThreadStats();
    expect(after.threadedCalls - before.threadedCalls).toBe(4);
    expect(after.workerBands - before.workerBands).toBe(4);
  });

  test('threaded results are bitwise identical to single-threaded ones (same kernel in the workers)', () => {
    const arb = arbCase(fc.integer({ min: 8, max: 140 }));
    fc.assert(
      fc.property(arb, (c) => {
        const one = withConfig({ threads: 1 }, () => check(c));
        const many = withConfig({ threads: 2, minThreadedMacs: 0, minThreadedDim: 0 }, () => check(c));
        expect(Array.from(many)).toEqual(Array.from(one));
      }),
      { numRuns: 40 },
    );
  });

  test('the worker kernel survives an esbuild bundle (as in dist/*.mjs)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gemm-bundle-'));
    try {
      const entry = join(dir, 'entry.ts');
      const gemmPath = join(process.cwd(), 'src/tensor/cpu/gemm.ts');
      writeFileSync(
        entry,
        `import { gemm, gemmThreadStats } from ${JSON.stringify(gemmPath)};
const n = 160;
const a = Float32Array.from({ length: n * n }, (_, i) => ((i * 7) % 13) - 6);
const b = Float32Array.from({ length: n * n }, (_, i) => ((i * 5) % 11) - 5);
const c = new Float32Array(n * n);
gemm({ m: n, n, k: n, a, aOff: 0, lda: n, b, bOff: 0, ldb: n, c, cOff: 0, ldc: n });
let bad = 0;
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
  let s = 0;
  for (let p = 0; p < n; p++) s += a[i * n + p] * b[p * n + j];
  if (s !== c[i * n + j]) bad++;
}
console.log(JSON.stringify({ bad, ...gemmThreadStats() }));
`,
      );
      const out = join(dir, 'out.mjs');
      await esbuild.build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm' });
      // the workers are unref'd: the script must exit on its own once done
      const env = { ...process.env, DIFFPURE_CPU_THREADS: '2' };
      const r = spawnSync(process.execPath, [out], { encoding: 'utf8', env, timeout: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      // small integers: every product and sum is exact, so the result must be too
      expect(JSON.parse(r.stdout)).toEqual({ bad: 0, threadedCalls: 1, workerBands: 1, takenBack: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
