// The wasm kernels besides gemm (src/tensor/cpu/wasm/): exp / sigmoid / silu against float64 Math, their special
// values, the convolutions (im2col and col2im in wasm, several images per gemm) against the JS reference kernels on
// random geometries, and the cpu backend's array pool (recycled outputs are zeroed where a kernel accumulates; arrays
// handed out by dataSync are never recycled).

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as T from '../src/index.js';
import type { CpuBackend } from '../src/tensor/cpu/backend.js';
import { configureGemm } from '../src/tensor/cpu/gemm.js';
import { type CpuKernelKind, setCpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { withKind } from './harness/kernels.js';

let prevKind: CpuKernelKind;
beforeAll(() => {
  prevKind = setCpuKernelKind('wasm');
});
afterAll(() => {
  setCpuKernelKind(prevKind);
});

const OPS = { exp: T.exp, sigmoid: T.sigmoid, silu: T.silu };
const REF: Record<'exp' | 'sigmoid' | 'silu', (x: number) => number> = {
  exp: Math.exp,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
};

describe('wasm exp / sigmoid / silu', () => {
  // 1027 elements: above the wasm threshold (256) and not a multiple of 4 (the vector tail)
  const xs = Float32Array.from({ length: 1027 }, (_, i) => Math.fround(-95 + (190 * i) / 1026 + Math.sin(i) * 0.01));

  test.each(['exp', 'sigmoid', 'silu'] as const)(
    '%s is within 4 ulp of float64 Math (denormal results aside)',
    (op) => {
      const got = OPS[op](T.fromArray(xs, [xs.length])).dataSync();
      for (let i = 0; i < xs.length; i++) {
        const x = xs[i] as number;
        const ref = REF[op](x);
        // exp's documented range is [-87.3, 88.7] (below, where the result is a float32 denormal, it returns 0; above,
        // inf); the 2^-126 absolute term covers results in the denormal range of the other two
        if (op === 'exp' && (x < -87.33 || x > 88.72)) {
          expect(got[i]).toBe(x < 0 ? 0 : Infinity);
          continue;
        }
        const tol = 4 * 2 ** -24 * Math.abs(ref) + 2 ** -126 * Math.max(1, Math.abs(x));
        if (!(Math.abs((got[i] as number) - ref) <= tol)) throw new Error(`${op}(${x}) = ${got[i]}, float64 ${ref}`);
      }
    },
  );

  test("siluGrad (silu's fused backward) is within a few ulp of float64, in vector body, tail and broadcast", () => {
    const n = xs.length;
    const xm = Float32Array.from(xs, (v) => v / 10); // [-9.5, 9.5]: where silu' is neither 0 nor 1
    const g = Float32Array.from({ length: n }, (_, i) => Math.fround(Math.cos(i) * 2));
    const ref = (gi: number, x: number) => {
      const s = 1 / (1 + Math.exp(-x));
      return gi * s * (1 + x * (1 - s));
    };
    const got = T.siluGrad(T.fromArray(g, [n]), T.fromArray(xm, [n])).dataSync();
    const js = withKind('js', () => T.siluGrad(T.fromArray(g, [n]), T.fromArray(xm, [n])).dataSync());
    const scalarG = T.siluGrad(T.fromArray(Float32Array.of(0.75), [1]), T.fromArray(xm, [n])).dataSync();
    for (let i = 0; i < n; i++) {
      const x = xm[i] as number;
      // every term of g s (1 + x (1 - s)) is at most |g| (1 + |x|): a few roundings of that size
      const bound = (gi: number) => 8 * 2 ** -24 * Math.abs(gi) * (1 + Math.abs(x)) + 2 ** -126;
      const gi = g[i] as number;
      if (!(Math.abs((got[i] as number) - ref(gi, x)) <= bound(gi)))
        throw new Error(`siluGrad(${gi}, ${x}) = ${got[i]}, float64 ${ref(gi, x)}`);
      expect(Math.abs((js[i] as number) - ref(gi, x))).toBeLessThanOrEqual(bound(gi));
      expect(Math.abs((scalarG[i] as number) - ref(0.75, x))).toBeLessThanOrEqual(bound(0.75));
    }
    // PyTorch 1.13's aten.silu_backward(ones, [nan, inf, -inf, 0]) (Debian python3-torch): [nan, nan, nan, 0.5]; the
    // infinities meet 0 (1 - s at +inf, s at -inf) in the product
    const sp = T.siluGrad(
      T.fromArray(new Float32Array(300).fill(1), [300]),
      T.fromArray(
        Float32Array.from({ length: 300 }, (_, i) => [Number.NaN, Infinity, -Infinity, 0][i] ?? 1),
        [300],
      ),
    );
    expect([...sp.dataSync().slice(0, 4)]).toEqual([Number.NaN, Number.NaN, Number.NaN, 0.5]);
  });

  test('relu keeps NaN and maps -0 to 0, as PyTorch; affine, square match float64 to one rounding', () => {
    const x = Float32Array.from({ length: 301 }, (_, i) => (i - 150) / 7);
    x[0] = Number.NaN;
    x[1] = -0;
    const relu = T.relu(T.fromArray(x, [301])).dataSync();
    expect(Number.isNaN(relu[0])).toBe(true);
    expect(Object.is(relu[1], 0)).toBe(true);
    for (let i = 2; i < 301; i++) expect(relu[i]).toBe(Math.max(x[i] as number, 0));
    const sq = T.square(T.fromArray(x, [301])).dataSync();
    for (let i = 2; i < 301; i++) expect(sq[i]).toBe(Math.fround((x[i] as number) ** 2));
    // affine in float32 rounds twice (scale * x, then + shift): within 1 ulp of the float64 value, plus the rounding
    // of the scale itself to float32
    const af = T.affine(T.fromArray(x, [301]), 0.3, -1.7).dataSync();
    for (let i = 2; i < 301; i++) {
      const ref = 0.3 * (x[i] as number) - 1.7;
      expect(Math.abs((af[i] as number) - ref)).toBeLessThanOrEqual(
        3 * 2 ** -24 * (Math.abs(ref) + 1.7 + 0.3 * Math.abs(x[i] as number)),
      );
    }
  });

  test('a large map split across two threads equals the one-thread result bit for bit', () => {
    const n = 300_001; // above the per-thread minimum (65,536) and odd
    const x = T.randomNormal([n], { seed: 9 });
    const run = (threads: number) => {
      const prev = configureGemm({ threads });
      try {
        return [T.silu(x), T.exp(x), T.relu(x)].map((t) => t.dataSync().slice());
      } finally {
        configureGemm(prev);
      }
    };
    const one = run(1);
    const two = run(2);
    for (let i = 0; i < one.length; i++) {
      const [a, b] = [one[i], two[i]] as [Float32Array, Float32Array];
      expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
    }
    x.dispose();
  });

  test('special values follow PyTorch (NaN propagates, silu(-inf) = NaN)', () => {
    const specials = [Number.NaN, Infinity, -Infinity, 0, -0];
    const x = new Float32Array(300).fill(1);
    specials.forEach((v, i) => {
      x[i] = v;
    });
    const run = (op: 'exp' | 'sigmoid' | 'silu') => [
      ...OPS[op](T.fromArray(x, [300]))
        .dataSync()
        .slice(0, 5),
    ];
    expect(run('exp')).toEqual([Number.NaN, Infinity, 0, 1, 1]);
    expect(run('sigmoid')).toEqual([Number.NaN, 1, 0, 0.5, 0.5]);
    expect(run('silu')).toEqual([Number.NaN, Infinity, Number.NaN, 0, -0]);
  });
});

describe('wasm convolutions agree with the JS kernels', () => {
  const geomArb = fc.record({
    n: fc.integer({ min: 1, max: 5 }),
    groups: fc.constantFrom(1, 2),
    cg: fc.integer({ min: 1, max: 5 }),
    og: fc.integer({ min: 1, max: 9 }),
    h: fc.integer({ min: 1, max: 12 }),
    w: fc.integer({ min: 1, max: 12 }),
    k: fc.constantFrom(1, 2, 3),
    stride: fc.constantFrom(1, 2),
    padding: fc.integer({ min: 0, max: 2 }),
    dilation: fc.constantFrom(1, 2),
    seed: fc.integer({ min: 0, max: 1e6 }),
    threads: fc.constantFrom(1, 2),
  });

  const maxAbs = (a: Float32Array | Float64Array) => {
    let m = 0;
    for (const v of a) m = Math.max(m, Math.abs(v));
    return m;
  };

  test('conv2d and both input / weight gradients, random geometry, 1 and 2 threads', () => {
    fc.assert(
      fc.property(geomArb, (g) => {
        const span = (g.k - 1) * g.dilation + 1;
        fc.pre(g.h + 2 * g.padding >= span && g.w + 2 * g.padding >= span);
        const x = T.randomNormal([g.n, g.groups * g.cg, g.h, g.w], { seed: g.seed });
        const wt = T.randomNormal([g.groups * g.og, g.cg, g.k, g.k], { seed: g.seed + 1 });
        const opts = { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups };
        const run = () => {
          const { out, vjpFn, release } = T.vjp((a, b) => T.conv2d(a, b, undefined, opts), x, wt);
          const ct = T.randomNormal(out.shape, { seed: g.seed + 2 });
          const [gx, gw] = vjpFn(ct) as [T.Tensor, T.Tensor];
          const r = [out.dataSync().slice(), gx.dataSync().slice(), gw.dataSync().slice()];
          release();
          return r;
        };
        const prev = configureGemm({ threads: g.threads, minThreadedMacs: 0, minThreadedDim: 0 });
        try {
          const viaWasm = withKind('wasm', run);
          const viaJs = withKind('js', run);
          viaWasm.forEach((a, i) => {
            const b = viaJs[i] as Float32Array;
            // float32 sums of at most 5*9*... terms: relative to the largest entry, far inside 1e-5
            const tol = 1e-5 * Math.max(1, maxAbs(b));
            for (let j = 0; j < b.length; j++)
              expect(Math.abs((a[j] as number) - (b[j] as number))).toBeLessThanOrEqual(tol);
          });
        } finally {
          configureGemm(prev);
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('cpu array pool', () => {
  const cpu = () => T.getBackend('cpu') as unknown as CpuBackend;

  test('a recycled array is zeroed for a kernel that accumulates (conv2dInput)', () => {
    // leave a dirty array of the gradient's size in the pool, then compute conv2dInput into that size
    // several, since creating the zero input below takes one of them too
    const dirty = [0, 1, 2, 3].map(() => T.full([2, 8, 16, 16], 7));
    for (const d of dirty) d.dispose();
    const gy = T.randomNormal([2, 4, 16, 16], { seed: 3 });
    const w = T.randomNormal([4, 8, 3, 3], { seed: 4 });
    const hits = cpu().pool.hits;
    const a = withKind('js', () => {
      const { vjpFn, release } = T.vjp((x) => T.conv2d(x, w, undefined, { padding: 1 }), T.zeros([2, 8, 16, 16]));
      const r = (vjpFn(gy)[0] as T.Tensor).dataSync().slice();
      release();
      return r;
    });
    const ref = withKind('wasm', () => {
      const { vjpFn, release } = T.vjp((x) => T.conv2d(x, w, undefined, { padding: 1 }), T.zeros([2, 8, 16, 16]));
      const r = (vjpFn(gy)[0] as T.Tensor).dataSync().slice();
      release();
      return r;
    });
    expect(cpu().pool.hits).toBeGreaterThan(hits + 1); // the zero input and the JS gradient both came from the pool
    for (let i = 0; i < a.length; i++) expect(Math.abs((a[i] as number) - (ref[i] as number))).toBeLessThan(1e-4);
  });

  test('outputs reuse freed arrays, but never one that dataSync handed out', () => {
    const before = cpu().pool.hits;
    const x = T.randomNormal([64, 64], { seed: 5 });
    const y = T.exp(x);
    const held = y.dataSync(); // the caller keeps this array
    const copy = held.slice();
    y.dispose();
    const z = T.exp(x);
    z.dispose();
    for (let i = 0; i < 10; i++) T.neg(T.exp(x)).dispose();
    expect(Array.from(held)).toEqual(Array.from(copy));
    expect(cpu().pool.hits).toBeGreaterThan(before);
    x.dispose();
  });
});
