// The three properties every primitive is held to (cpu, float64 as the reference):
//   (a) its VJP equals float64 central finite differences, coordinate by coordinate;
//   (b) the dot-product identity <J v, w> = <v, J^T w>, with J v by finite differences along v;
//   (c) float32 agrees with float64, forward and VJP.
// Finite differences: step h = 1e-6 (scaled by |x|), truncation O(h^2 f''') ~ 1e-12 and rounding
// O(eps64 |w.f| / h) ~ 1e-10 |w.f|, so a relative tolerance of 1e-6 leaves 4 orders of margin
// while a wrong rule (errors of order 1) fails by 6.

import fc from 'fast-check';
import { expect } from 'vitest';
import { randomNormal, type Tensor, tidy, vjp } from '../../src/index.js';
import type { DType } from '../../src/tensor/backend.js';
import { type HostTensor, type OpCase, type Sample, toTensor } from './sample.js';

const H = 1e-6;

function hostOf(t: Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** f on host inputs in `dtype`, returned as float64. */
export function evalCase<P>(
  c: OpCase<P>,
  inputs: readonly HostTensor[],
  params: P,
  dtype: DType = 'float64',
  backend = 'cpu',
): { shape: number[]; data: Float64Array } {
  return tidy(() => {
    const y = c.f(
      inputs.map((h) => toTensor(h, dtype, backend)),
      params,
    );
    return { shape: [...y.shape], data: hostOf(y) };
  });
}

/** Output and VJP of f at `inputs` with cotangent `w`, in `dtype`. */
export function vjpCase<P>(
  c: OpCase<P>,
  inputs: readonly HostTensor[],
  params: P,
  w: Float64Array,
  dtype: DType = 'float64',
  backend = 'cpu',
): { y: Float64Array; grads: Float64Array[] } {
  return tidy(() => {
    const xs = inputs.map((h) => toTensor(h, dtype, backend));
    const { out, vjpFn, release } = vjp((...ts) => c.f(ts, params), ...xs);
    const wt = toTensor({ shape: [...out.shape], data: w }, dtype, backend);
    const gs = vjpFn(wt);
    const res = { y: hostOf(out), grads: gs.map(hostOf) };
    release();
    return res;
  });
}

/** A deterministic standard-normal vector (float32-representable) for cotangents and directions. */
export function normalHost(n: number, seed: number, stream: number): Float64Array {
  return tidy(() => Float64Array.from(randomNormal([n], { seed, stream }).dataSync(), (v) => Math.fround(v)));
}

const isDiff = <P>(c: OpCase<P>, i: number) => !c.noGrad && (c.diff?.[i] ?? true);

function perturbed(
  inputs: readonly HostTensor[],
  j: number,
  k: number | null,
  dir: Float64Array | null,
  h: number,
): HostTensor[] {
  return inputs.map((t, i) => {
    if (i !== j) return t;
    const d = Float64Array.from(t.data);
    if (k !== null) d[k] += h;
    else if (dir) for (let q = 0; q < d.length; q++) d[q] += h * (dir[q] as number);
    return { shape: t.shape, data: d };
  });
}

/** (a) VJP vs float64 central differences at up to 8 coordinates of each differentiable input. */
export function checkVjpFd<P>(c: OpCase<P>, s: Sample<P>, seed: number): void {
  const y0 = evalCase(c, s.inputs, s.params);
  const w = normalHost(y0.data.length, seed, 1);
  const { grads } = vjpCase(c, s.inputs, s.params, w);
  s.inputs.forEach((x, j) => {
    if (!isDiff(c, j) || x.data.length === 0) return;
    const n = x.data.length;
    const coords = new Set([0, n - 1]);
    for (let q = 0; coords.size < Math.min(n, 8); q++) coords.add((seed * 7919 + q * 104729) % n);
    const g = grads[j] as Float64Array;
    const scale = Math.max(1, maxAbs(g));
    for (const k of coords) {
      const h = H * Math.max(1, Math.abs(x.data[k] as number));
      const fp = dot(evalCase(c, perturbed(s.inputs, j, k, null, h), s.params).data, w);
      const fm = dot(evalCase(c, perturbed(s.inputs, j, k, null, -h), s.params).data, w);
      const fd = (fp - fm) / (2 * h);
      const err = Math.abs((g[k] as number) - fd);
      if (err > (c.tolFd ?? 1e-6) * Math.max(scale, Math.abs(fd))) {
        expect.fail(
          `${c.name}: input ${j} coordinate ${k}: VJP ${g[k]} vs finite difference ${fd} (|err| ${err.toExponential(2)})`,
        );
      }
    }
  });
}

/** (b) <J v, w> = <v, J^T w> over all differentiable inputs at once. */
export function checkDotProduct<P>(c: OpCase<P>, s: Sample<P>, seed: number): void {
  const y0 = evalCase(c, s.inputs, s.params);
  const w = normalHost(y0.data.length, seed, 2);
  const { grads } = vjpCase(c, s.inputs, s.params, w);
  let rhs = 0;
  let scale = 0;
  let lhs = 0;
  s.inputs.forEach((x, j) => {
    if (!isDiff(c, j) || x.data.length === 0) return;
    const v = normalHost(x.data.length, seed, 3 + j);
    const g = grads[j] as Float64Array;
    rhs += dot(v, g);
    for (let q = 0; q < v.length; q++) scale += Math.abs((v[q] as number) * (g[q] as number));
    const fp = evalCase(c, perturbed(s.inputs, j, null, v, H), s.params).data;
    const fm = evalCase(c, perturbed(s.inputs, j, null, v, -H), s.params).data;
    for (let q = 0; q < fp.length; q++) lhs += (((fp[q] as number) - (fm[q] as number)) / (2 * H)) * (w[q] as number);
  });
  const err = Math.abs(lhs - rhs);
  // 1e-9 absolute: the O(h^2) truncation of central differences when every term is ~0
  if (err > (c.tolFd ?? 1e-6) * scale + 1e-9) {
    expect.fail(
      `${c.name}: <Jv, w> = ${lhs} but <v, J^T w> = ${rhs} (|err| ${err.toExponential(2)}, scale ${scale.toExponential(2)})`,
    );
  }
}

export function expectClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: number): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const bound = tol * (maxAbs(ref) + 1);
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs((got[i] as number) - (ref[i] as number));
    if (!(e <= bound)) {
      expect.fail(
        `${what}: element ${i}: ${got[i]} vs reference ${ref[i]} (|err| ${e.toExponential(2)} > ${bound.toExponential(2)})`,
      );
    }
  }
}

/** (c) float32 forward and VJP agree with float64 within the case's tolerance. */
export function checkF32<P>(c: OpCase<P>, s: Sample<P>, seed: number): void {
  const tol = c.tol32 ?? 1e-5;
  const y64 = evalCase(c, s.inputs, s.params, 'float64');
  const y32 = evalCase(c, s.inputs, s.params, 'float32');
  expect(y32.shape).toEqual(y64.shape);
  expectClose(`${c.name} forward float32 vs float64`, y32.data, y64.data, tol);
  if (c.noGrad) return;
  const w = normalHost(y64.data.length, seed, 1);
  const g64 = vjpCase(c, s.inputs, s.params, w, 'float64').grads;
  const g32 = vjpCase(c, s.inputs, s.params, w, 'float32').grads;
  g64.forEach((g, j) => {
    if (isDiff(c, j)) expectClose(`${c.name} VJP input ${j} float32 vs float64`, g32[j] as Float64Array, g, tol);
  });
}

/** Run a property over the case's generator with a per-run seed for cotangents and directions. */
export function property<P>(c: OpCase<P>, check: (c: OpCase<P>, s: Sample<P>, seed: number) => void): void {
  fc.assert(
    fc.property(c.arb, fc.integer({ min: 0, max: 2 ** 31 - 1 }), (s, seed) => {
      check(c, s, seed);
    }),
    { numRuns: c.runs ?? 20 },
  );
}
