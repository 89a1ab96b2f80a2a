// Every case of the shared catalog (test/cases) on webgpu against the cpu reference, on the same
// generated inputs: (1) forward, (2) VJP with the same cotangent.
//
// Reference: the cpu backend in float64. Tolerance: |gpu - ref| <= 2 * tol32 * (max|ref| + 1),
// with the case's own tol32 (the float32-vs-float64 bound the cpu float32 kernel already meets;
// see test/harness/sample.ts). The factor 2 leaves room for the GPU's different float32 rounding
// order (Kahan-compensated reductions, fma in the GEMMs) and for driver transcendentals (Vulkan
// allows a few ulps). Cases with tol32 = 0 (copies, comparisons, argmax, scatterAdd in order)
// must match exactly.

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { vjp } from '../../src/autograd/index.js';
import { type Tensor, tidy } from '../../src/tensor/index.js';
import { allCases } from '../cases/index.js';
import { evalCase, expectClose, normalHost, vjpCase } from '../harness/check.js';
import { type HostTensor, type OpCase, type Sample, toTensor } from '../harness/sample.js';
import { backend, gpu } from './setup.js';

const f64 = async (t: Tensor) => Float64Array.from(await t.data());

/** Forward on webgpu; the output's host copy. */
async function gpuForward<P>(c: OpCase<P>, inputs: readonly HostTensor[], params: P) {
  const y = tidy(() =>
    c.f(
      inputs.map((h) => toTensor(h, 'float32', 'webgpu')),
      params,
    ),
  );
  const res = { shape: [...y.shape], data: await f64(y) };
  y.dispose();
  return res;
}

/** Output and VJP on webgpu with cotangent w. */
async function gpuVjp<P>(c: OpCase<P>, inputs: readonly HostTensor[], params: P, w: Float64Array) {
  const { out, grads } = tidy(() => {
    const xs = inputs.map((h) => toTensor(h, 'float32', 'webgpu'));
    const r = vjp((...ts) => c.f(ts, params), ...xs);
    const wt = toTensor({ shape: [...r.out.shape], data: w }, 'float32', 'webgpu');
    // the output keeps its graph (and the leaves) alive until disposed below
    return { out: r.out, grads: r.vjpFn(wt) };
  });
  const res = { y: await f64(out), grads: await Promise.all(grads.map(f64)) };
  out.dispose();
  for (const g of grads) g.dispose();
  return res;
}

const isDiff = <P>(c: OpCase<P>, i: number) => !c.noGrad && (c.diff?.[i] ?? true);

async function checkParity<P>(c: OpCase<P>, s: Sample<P>, seed: number): Promise<void> {
  const tol = 2 * (c.tol32 ?? 1e-5);
  const ref = evalCase(c, s.inputs, s.params, 'float64');
  const got = await gpuForward(c, s.inputs, s.params);
  expect(got.shape).toEqual(ref.shape);
  expectClose(`${c.name} forward webgpu vs cpu`, got.data, ref.data, tol);
  if (c.noGrad) return;
  const w = normalHost(ref.data.length, seed, 1);
  const r = vjpCase(c, s.inputs, s.params, w, 'float64');
  const g = await gpuVjp(c, s.inputs, s.params, w);
  r.grads.forEach((gr, j) => {
    if (isDiff(c, j)) expectClose(`${c.name} VJP input ${j} webgpu vs cpu`, g.grads[j] as Float64Array, gr, tol);
  });
}

for (const c of allCases) {
  describe.skipIf(!gpu)(c.name, () => {
    test('webgpu = cpu (forward and VJP)', async () => {
      const before = backend().stats().bytesInUse;
      await fc.assert(
        fc.asyncProperty(c.arb, fc.integer({ min: 0, max: 2 ** 31 - 1 }), (s, seed) => checkParity(c, s, seed)),
        { numRuns: c.runs ?? 20 },
      );
      // every tensor of the property runs was disposed
      expect(backend().stats().bytesInUse).toBe(before);
    });
  });
}
