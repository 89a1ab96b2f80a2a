// Winograd F(2x2, 3x3) convolutions (src/tensor/cpu/wasm/winograd.ts) against the JS reference kernels: the forward
// convolution and its input and weight gradients on random 3x3 stride-1 geometries (odd and even sizes, so tiles hang over the
// edge; paddings 0-2; groups; 1-3 threads), held to a float32 bound on the sums they compute; and the dispatch rule
// (which convolutions take it).

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as T from '../src/index.js';
import { configureGemm } from '../src/tensor/cpu/gemm.js';
import { dims } from '../src/tensor/cpu/im2col.js';
import { type CpuKernelKind, setCpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { configureWinograd, winogradApplies } from '../src/tensor/cpu/wasm/winograd.js';
import { withKind } from './harness/kernels.js';

let prevKind: CpuKernelKind;
let prevWino: ReturnType<typeof configureWinograd>;
beforeAll(() => {
  prevKind = setCpuKernelKind('wasm');
  prevWino = configureWinograd({ enabled: true, minChannels: 1 });
});
afterAll(() => {
  setCpuKernelKind(prevKind);
  configureWinograd(prevWino);
});

/** conv2d's output and both gradients, and the float64 sums of |terms| each entry adds (the error scale). */
function convAndGrads(x: T.Tensor, w: T.Tensor, opts: { padding: number; groups: number }, ctSeed: number) {
  const { out, vjpFn, release } = T.vjp((a, b) => T.conv2d(a, b, undefined, opts), x, w);
  const ct = T.randomNormal(out.shape, { seed: ctSeed });
  const [gx, gw] = vjpFn(ct) as [T.Tensor, T.Tensor];
  const r = { y: out.dataSync().slice(), gx: gx.dataSync().slice(), gw: gw.dataSync().slice() };
  release();
  // |x|, |w| and |ct| through the same (reference) convolution give each entry's sum of |terms|
  const scale = withKind('js', () => {
    const ax = T.abs(x);
    const aw = T.abs(w);
    const act = T.abs(ct);
    const s = T.vjp((a, b) => T.conv2d(a, b, undefined, opts), ax, aw);
    const sy = s.out.dataSync().slice();
    const [sx, sw] = s.vjpFn(act) as [T.Tensor, T.Tensor];
    const res = { y: sy, gx: sx.dataSync().slice(), gw: sw.dataSync().slice() };
    s.release();
    for (const t of [ax, aw, act]) t.dispose();
    return res;
  });
  ct.dispose();
  return { ...r, scale };
}

describe('wasm Winograd F(2x2, 3x3) convolutions', () => {
  test('forward, input and weight gradients agree with the JS kernels on random geometry, 1-3 threads', () => {
    const arb = fc.record({
      n: fc.integer({ min: 1, max: 4 }),
      groups: fc.constantFrom(1, 2),
      cg: fc.integer({ min: 1, max: 20 }),
      og: fc.integer({ min: 1, max: 20 }),
      h: fc.integer({ min: 1, max: 19 }),
      w: fc.integer({ min: 1, max: 19 }),
      padding: fc.integer({ min: 0, max: 2 }),
      seed: fc.integer({ min: 0, max: 1e6 }),
      threads: fc.constantFrom(1, 2, 3),
    });
    let worst = 0;
    fc.assert(
      fc.property(arb, (g) => {
        fc.pre(g.h + 2 * g.padding >= 3 && g.w + 2 * g.padding >= 3);
        const x = T.randomNormal([g.n, g.groups * g.cg, g.h, g.w], { seed: g.seed });
        const w = T.randomNormal([g.groups * g.og, g.cg, 3, 3], { seed: g.seed + 1 });
        const opts = { padding: g.padding, groups: g.groups };
        const prev = configureGemm({ threads: g.threads, minThreadedMacs: 0, minThreadedDim: 0 });
        try {
          const wino = withKind('wasm', () => convAndGrads(x, w, opts, g.seed + 2));
          const ref = withKind('js', () => convAndGrads(x, w, opts, g.seed + 2));
          for (const key of ['y', 'gx', 'gw'] as const) {
            const a = wino[key];
            const b = ref[key];
            const s = ref.scale[key];
            expect(a.length).toBe(b.length);
            // The transforms mix a tile's 16 inputs and 9 outputs, so an entry's error follows its neighbours' sums
            // of |terms|, not its own: the bound is float32's unit roundoff times the largest sum of |terms| in the
            // tensor, times 16 (the JS reference sums in float64). A wrong index or sign errs by O(1) of that scale.
            let scale = 0;
            for (const v of s) scale = Math.max(scale, v);
            const bound = 16 * 2 ** -24 * scale;
            for (let i = 0; i < b.length; i++) {
              const err = Math.abs((a[i] as number) - (b[i] as number));
              worst = Math.max(worst, err / bound);
              expect(err).toBeLessThanOrEqual(bound);
            }
          }
        } finally {
          configureGemm(prev);
          x.dispose();
          w.dispose();
        }
      }),
      { numRuns: 80 },
    );
    console.log(`Winograd vs JS: worst error / bound = ${worst.toFixed(4)}`);
  });

  test('which convolutions take it: 3x3, stride 1, dilation 1, padding <= 2, both channel counts >= minChannels', () => {
    const prev = configureWinograd({ minChannels: 16 });
    try {
      const g = (o: Partial<{ stride: number; padding: number; dilation: number; groups: number }> = {}) => ({
        stride: [o.stride ?? 1, o.stride ?? 1] as const,
        padding: [o.padding ?? 1, o.padding ?? 1] as const,
        dilation: [o.dilation ?? 1, o.dilation ?? 1] as const,
        groups: o.groups ?? 1,
      });
      const d = (c: number, o: number, k: number, geom = g()) =>
        dims([2, c, 8, 8], [o, c / geom.groups, k, k], [2, o, 8, 8], geom);
      expect(winogradApplies(d(16, 16, 3))).toBe(true);
      expect(winogradApplies(d(16, 8, 3))).toBe(false);
      expect(winogradApplies(d(1, 16, 3))).toBe(false);
      expect(winogradApplies(d(32, 32, 1))).toBe(false);
      expect(winogradApplies(d(32, 32, 3, g({ stride: 2 })))).toBe(false);
      expect(winogradApplies(d(32, 32, 3, g({ dilation: 2 })))).toBe(false);
      expect(winogradApplies(d(32, 32, 3, g({ padding: 3 })))).toBe(false);
      expect(winogradApplies(d(64, 64, 3, g({ groups: 2 })))).toBe(true);
      expect(winogradApplies(d(32, 32, 3, g({ groups: 4 })))).toBe(false);
      configureWinograd({ enabled: false });
      expect(winogradApplies(d(16, 16, 3))).toBe(false);
    } finally {
      configureWinograd(prev);
    }
  });
});
