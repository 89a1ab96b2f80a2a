// Shared by the gemm tests (test/cpu-gemm.test.ts for the JS kernel, test/cpu-wasm-gemm.test.ts for the wasm one):
// random gemm problems with offsets, padded leading dims and NaN around every view, and a check against a float64
// triple loop under a stated error bound.

import fc from 'fast-check';
import { configureGemm, type GemmArgs, gemm } from '../../src/tensor/cpu/gemm.js';

export type F = Float32Array | Float64Array;
const SENTINEL = 12345;

export interface Case {
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
export function rng(seed: number): () => number {
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

export function build(c: Case) {
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

/**
 * The allowed error of one entry: `absDot` is sum_p |A[i, p] B[p, j]|, `prior` C's value before an accumulating call.
 * The default is the JS kernel's (see the top of test/cpu-gemm.test.ts).
 */
export type Bound = (c: Case, absDot: number, prior: number) => number;

export const jsKernelBound: Bound = (c, _absDot, prior) => {
  const eps = c.dtype === 'float64' ? 2 ** -52 : 2 ** -23;
  return 4 * (c.dtype === 'float64' ? c.k : Math.sqrt(c.k)) * c.scale * c.scale * eps + Math.abs(prior) * eps;
};

/** Runs gemm on a fresh copy of the case and checks it against the float64 triple loop; returns C. */
export function check(c: Case, bound: Bound = jsKernelBound): F {
  const g = build(c);
  const c0 = g.c.slice();
  gemm(g);
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      const ci = g.cOff + i * g.ldc + j;
      const prior = c.accumulate ? (c0[ci] as number) : 0;
      let ref = prior;
      let absDot = 0;
      for (let p = 0; p < c.k; p++) {
        const prod = at(g.a, g.aOff, g.lda, c.transA, i, p) * at(g.b, g.bOff, g.ldb, c.transB, p, j);
        ref += prod;
        absDot += Math.abs(prod);
      }
      const got = g.c[ci] as number;
      const tol = bound(c, absDot, prior);
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

export const edge = fc.constantFrom(1, 3, 17, 33, 65);
export const size = fc.oneof(edge, fc.integer({ min: 1, max: 70 }));
export const small = fc.integer({ min: 0, max: 5 });

export function arbCase(dim: fc.Arbitrary<number>): fc.Arbitrary<Case> {
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
export function withConfig<T>(cfg: Parameters<typeof configureGemm>[0], fn: () => T): T {
  const prev = configureGemm(cfg);
  try {
    return fn();
  } finally {
    configureGemm(prev);
  }
}

export const combos = [false, true].flatMap((transA) =>
  [false, true].flatMap((transB) => [false, true].map((accumulate) => ({ transA, transB, accumulate }))),
);
