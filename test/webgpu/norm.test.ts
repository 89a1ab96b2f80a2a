// The fused normalizeLastAxis kernel on webgpu against the unfused composite (normalizeComposite,
// groupNormComposite) on webgpu, both float32, and both against the cpu float64 reference, forward
// and VJP; then what only the kernel has: every lane count (rows per workgroup) and a grid past
// 65535 workgroups. The catalog (test/cases/norm.ts) already holds it to the cpu on random rows.
//
// Tolerance 1e-5 * (max|ref| + 1), both paths. design.md's bound for a float32 reduction of
// length K, sqrt(K) max|x| 2^-23, is 3.5e-5 for K = 4096 and max|x| ~ 4.5 (unit normal data),
// carried into y by rsqrt(var + eps) ~ 1: 6e-6 of max|y| + 1 ~ 5.5. Both paths compensate their
// sums (Kahan), so they stay far inside (measured: at most 5e-7 of that scale).
// Near-constant rows are where the two differ: the composite's float32 mean of values about 50
// errs by up to ulp(50) / 2 = 1.9e-6, which rsqrt(var + eps) = 100 (std 0.01) turns into ~2e-4;
// the fused kernel shifts each row by its first element and stays within 1e-5 there too
// (measured: fused 1.8e-6, composite 4.3e-4).

import { afterEach, describe, expect, test } from 'vitest';
import { vjp } from '../../src/autograd/index.js';
import * as T from '../../src/tensor/index.js';
import { normTuning } from '../../src/wgsl/kernels/norm.js';
import { evalCase, expectClose, normalHost, vjpCase } from '../harness/check.js';
import { type HostTensor, type OpCase, toTensor } from '../harness/sample.js';
import { backend, gpu } from './setup.js';

const TOL = 1e-5;

type F = OpCase['f'];

const host = (shape: number[], seed: number, scale = 1, offset = 0): HostTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: normalHost(n, seed, 9).map((v) => Math.fround(offset + scale * v)) };
};

/** normalizeLastAxis with the default eps, for the cpu float64 reference. */
const fusedCase: OpCase = {
  name: 'normalizeLastAxis',
  arb: null as never,
  f: ([t]) => T.normalizeLastAxis(t as T.Tensor),
};

const f64 = async (t: T.Tensor) => Float64Array.from(await t.data());

/** Output and VJP (all inputs) of f on webgpu in float32 with cotangent w. */
async function gpuVjp(f: F, inputs: HostTensor[], w: Float64Array) {
  const { out, grads } = T.tidy(() => {
    const xs = inputs.map((h) => toTensor(h, 'float32', 'webgpu'));
    const r = vjp((...ts) => f(ts, undefined), ...xs);
    return { out: r.out, grads: r.vjpFn(toTensor({ shape: [...r.out.shape], data: w }, 'float32', 'webgpu')) };
  });
  const res = { y: await f64(out), grads: await Promise.all(grads.map(f64)) };
  T.dispose(out, grads);
  return res;
}

/** Max |got - ref| / (max|ref| + 1) over output and gradients: the scale the tolerance is stated in. */
function relErr(got: { y: Float64Array; grads: Float64Array[] }, ref: { y: Float64Array; grads: Float64Array[] }) {
  const one = (a: Float64Array, b: Float64Array) => {
    let m = 0;
    let e = 0;
    for (let i = 0; i < b.length; i++) {
      m = Math.max(m, Math.abs(b[i] as number));
      e = Math.max(e, Math.abs((a[i] as number) - (b[i] as number)));
    }
    return e / (m + 1);
  };
  return Math.max(one(got.y, ref.y), ...ref.grads.map((g, j) => one(got.grads[j] as Float64Array, g)));
}

/** Fused and composite on webgpu, each against the cpu float64 reference and each other. */
async function compare(name: string, fused: F, composite: F, inputs: HostTensor[], compositeTol = TOL) {
  const w = normalHost(inputs[0]?.data.length as number, 11, 1);
  const ref = vjpCase({ name, arb: null as never, f: fused }, inputs, undefined, w);
  const a = await gpuVjp(fused, inputs, w);
  const b = await gpuVjp(composite, inputs, w);
  console.log(
    `${name}: error / (max|ref| + 1): fused ${relErr(a, ref).toExponential(1)}, composite ${relErr(b, ref).toExponential(1)}`,
  );
  expectClose(`${name}: fused forward vs float64`, a.y, ref.y, TOL);
  expectClose(`${name}: composite forward vs float64`, b.y, ref.y, compositeTol);
  ref.grads.forEach((g, j) => {
    expectClose(`${name}: fused VJP ${j} vs float64`, a.grads[j] as Float64Array, g, TOL);
    expectClose(`${name}: composite VJP ${j} vs float64`, b.grads[j] as Float64Array, g, compositeTol);
    if (compositeTol === TOL) {
      expectClose(`${name}: fused vs composite VJP ${j}`, a.grads[j] as Float64Array, b.grads[j] as Float64Array, TOL);
    }
  });
  if (compositeTol === TOL) expectClose(`${name}: fused vs composite forward`, a.y, b.y, TOL);
}

describe.skipIf(!gpu)('normalizeLastAxis on webgpu: fused kernel vs composite (float32)', () => {
  afterEach(() => {
    normTuning.lanes = null;
    normTuning.wg = 256;
  });

  test('groupNorm at a DDPM++ shape [1, 128, 32, 32], 32 groups, eps 1e-6, weight and bias', async () => {
    const before = backend().stats().bytesInUse;
    await compare(
      'groupNorm [1, 128, 32, 32]',
      ([x, w, b]) => T.groupNorm(x as T.Tensor, 32, w, b, 1e-6),
      ([x, w, b]) => T.groupNormComposite(x as T.Tensor, 32, w, b, 1e-6),
      [host([1, 128, 32, 32], 1), host([128], 2, 0.5, 1), host([128], 3)],
    );
    expect(backend().stats().bytesInUse).toBe(before);
  });

  test('rows of 1, 3, 17, 33, 65, 1000 and 1500', async () => {
    for (const n of [1, 3, 17, 33, 65, 1000, 1500]) {
      await compare(
        `rows of ${n}`,
        ([x]) => T.normalizeLastAxis(x as T.Tensor),
        ([x]) => T.normalizeComposite(x as T.Tensor, -1),
        [host([Math.max(3, Math.ceil(2000 / n)), n], n)],
      );
    }
  });

  test('near-constant rows (std 0.01 about 50, eps 1e-6): the fused kernel stays within 1e-5', async () => {
    await compare(
      'near-constant rows',
      ([x]) => T.normalizeLastAxis(x as T.Tensor, 1e-6),
      ([x]) => T.normalizeComposite(x as T.Tensor, -1, 1e-6),
      [host([16, 257], 4, 0.01, 50)],
      // the composite's: 1.9e-4 forward as derived above, and its VJP (through the composite's
      // own graph) about twice that; measured 4.3e-4
      1e-3,
    );
  });

  test('every lane count (1 to 256 lanes per row) gives the same rows', async () => {
    const x = host([5, 300], 5);
    const ref = evalCase(fusedCase, [x], undefined);
    for (let lanes = 1; lanes <= 256; lanes *= 2) {
      normTuning.lanes = lanes;
      const y = T.normalizeLastAxis(toTensor(x, 'float32', 'webgpu'));
      expectClose(`${lanes} lanes per row`, await f64(y), ref.data, TOL);
      y.dispose();
    }
  });

  test('a grid past 65535 workgroups (65537 rows, forced one per workgroup)', async () => {
    // one invocation per workgroup: the shape of the grid without lavapipe's cost of 65537
    // barrier-synchronised workgroups of 256 (20 s)
    normTuning.lanes = 1;
    normTuning.wg = 1;
    const x = host([65537, 2], 6);
    const ref = evalCase(fusedCase, [x], undefined);
    const y = T.normalizeLastAxis(toTensor(x, 'float32', 'webgpu'));
    expectClose('65537 rows', await f64(y), ref.data, TOL);
    y.dispose();
  });
});
