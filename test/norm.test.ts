// The fused normalisation primitive against the unfused composite it replaces, on cpu in float64:
// normalizeLastAxis = normalizeComposite(x, -1) and layerNorm/groupNorm = their *Composite
// versions, forward and VJP (every input, affine parameters included). The primitive's own
// properties (VJP vs finite differences, float32 vs float64) are in the catalog (test/cases/norm.ts);
// the webgpu kernel against both is in test/webgpu/norm.test.ts.
//
// Tolerance 1e-11 * (max|ref| + 1). Both evaluate the same formula in float64 and differ only in
// summation order (the fused kernel compensates, the composite's reduce sums plainly): the mean
// and variance differ by ~K eps64 max|x| ~ 1e-12 for rows of K = 4096 with |x| <= 5, and the
// offset rows below (std 0.01) amplify that by rsqrt(var + eps) ~ 100. Measured: < 1e-14.
// A different formula (unbiased variance, eps outside the root) errs by 1e-4 or more.

import { describe, expect, test } from 'vitest';
import * as T from '../src/index.js';
import { expectClose, normalHost, vjpCase } from './harness/check.js';
import type { HostTensor, OpCase } from './harness/sample.js';

const TOL = 1e-11;

const host = (shape: number[], seed: number, scale = 1, offset = 0): HostTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: normalHost(n, seed, 9).map((v) => Math.fround(offset + scale * v)) };
};

/** Forward and VJP of fused and composite on the same inputs and cotangent, compared. */
function compare(name: string, fused: OpCase['f'], composite: OpCase['f'], inputs: HostTensor[]): void {
  const size = inputs[0]?.data.length as number;
  const w = normalHost(size, 5, 1);
  const a = vjpCase({ name, arb: null as never, f: fused }, inputs, undefined, w);
  const b = vjpCase({ name, arb: null as never, f: composite }, inputs, undefined, w);
  expectClose(`${name}: forward fused vs composite`, a.y, b.y, TOL);
  b.grads.forEach((g, j) => {
    expectClose(`${name}: VJP input ${j} fused vs composite`, a.grads[j] as Float64Array, g, TOL);
  });
}

describe('normalizeLastAxis (fused) = normalizeComposite (float64, cpu)', () => {
  const rows: [string, number[], number, number, number][] = [
    // name, shape, scale, offset, eps
    ['rows of 1 (var 0: output and VJP 0)', [7, 1], 1, 0, 1e-5],
    ['rows of 3, 17, 65', [5, 3], 1, 0, 1e-5],
    ['rows of 17', [4, 17], 2, 0.5, 1e-5],
    ['rows of 65', [3, 65], 1, -1, 1e-5],
    ['rows of 1000 (leading axes)', [2, 2, 1000], 1, 0, 1e-6],
    ['rows of 4096 (a DDPM++ group)', [2, 4096], 1, 0, 1e-6],
    ['near-constant rows (std 0.01 about 50)', [3, 257], 0.01, 50, 1e-6],
  ];
  for (const [name, shape, scale, offset, eps] of rows) {
    test(name, () => {
      compare(
        `normalizeLastAxis ${name}`,
        ([x]) => T.normalizeLastAxis(x as T.Tensor, eps),
        ([x]) => T.normalizeComposite(x as T.Tensor, -1, eps),
        [host(shape, shape.length * 100 + (shape.at(-1) as number), scale, offset)],
      );
    });
  }

  test('a row of 1 gives 0 and a zero gradient, as torch', () => {
    const y = T.normalizeLastAxis(T.fromArray([3, -2], [2, 1], { dtype: 'float64' }));
    expect(Array.from(y.dataSync())).toEqual([0, 0]);
  });

  test('errors name the op', () => {
    expect(() => T.normalizeLastAxis(T.ones([]))).toThrow(/normalizeLastAxis: x must have at least one axis/);
    expect(() => T.normalizeLastAxis(T.ones([2, 2]), -1)).toThrow(/normalizeLastAxis: eps must be/);
  });
});

describe('layerNorm and groupNorm = their composite versions (float64, cpu, with affine)', () => {
  test('groupNorm [2, 64, 4, 4], 32 groups, weight and bias', () => {
    const eps = 1e-6;
    compare(
      'groupNorm',
      ([x, w, b]) => T.groupNorm(x as T.Tensor, 32, w, b, eps),
      ([x, w, b]) => T.groupNormComposite(x as T.Tensor, 32, w, b, eps),
      [host([2, 64, 4, 4], 1), host([64], 2, 0.5, 1), host([64], 3)],
    );
  });

  test('groupNorm [3, 6] (no spatial axes), 3 groups, no affine', () => {
    compare(
      'groupNorm 2-D',
      ([x]) => T.groupNorm(x as T.Tensor, 3),
      ([x]) => T.groupNormComposite(x as T.Tensor, 3),
      [host([3, 6], 4)],
    );
  });

  test('layerNorm [3, 4, 5] over [4, 5], weight and bias', () => {
    compare(
      'layerNorm',
      ([x, w, b]) => T.layerNorm(x as T.Tensor, [4, 5], w, b),
      ([x, w, b]) => T.layerNormComposite(x as T.Tensor, [4, 5], w, b),
      [host([3, 4, 5], 5), host([4, 5], 6, 0.5, 1), host([4, 5], 7)],
    );
  });
});
