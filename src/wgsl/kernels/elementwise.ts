// Elementwise kernels: unary maps, broadcasting binary ops, where, cast. Each is a strided map
// (map.ts) with the op as a WGSL expression; the math helpers below match src/tensor/cpu/elementwise.ts.

import type { BinaryOp, UnaryAttrs, UnaryOp } from '../../tensor/prims/elementwise.js';
import { broadcastStrides } from '../../tensor/shape.js';
import { f32bits } from '../program.js';
import { bufOf, type WgslKernel } from './kernel.js';
import { contiguous, mapProgram } from './map.js';

/**
 * NaN test on the bits: drivers may compile `x != x` as if NaN could not occur (lavapipe's LLVM
 * does, which dropped NaNs in relu, maximum and max-reductions), but not an integer comparison.
 */
export const NAN_WGSL = /* wgsl */ `
fn isnan_f(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
`;

/**
 * Float32 versions of the functions WGSL lacks or computes inaccurately in some drivers.
 * Written for accuracy over speed: these ops are memory-bound.
 */
export const MATH_WGSL = /* wgsl */ `${NAN_WGSL}
fn nan_f() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
// log(1 + u) to full precision for small u (Goldberg's trick; WGSL has no log1p)
fn log1p_f(u: f32) -> f32 {
  let w = 1.0 + u;
  if (w == 1.0) { return u; }
  return log(w) * (u / (w - 1.0));
}
// exp(x) - 1 to full precision near 0 (Kahan's trick)
fn expm1_f(x: f32) -> f32 {
  let u = exp(x);
  if (u == 1.0) { return x; }
  let um1 = u - 1.0;
  if (um1 == -1.0) { return -1.0; }
  return um1 * (x / log(u));
}
fn sigmoid_f(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
// tanh through expm1: accurate near 0 and no overflow for large |x|
fn tanh_f(x: f32) -> f32 {
  let e = expm1_f(-2.0 * abs(x));
  let r = -e / (2.0 + e);
  return select(r, -r, x < 0.0);
}
fn softplus_f(x: f32) -> f32 { return max(x, 0.0) + log1p_f(exp(-abs(x))); }
// erfc(z) for z >= 2.5: the continued fraction e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + 1/(z + ...))),
// evaluated from a fixed depth backwards (converges to float32 precision for z >= 2.5)
fn erfc_cf(z: f32) -> f32 {
  var f = z;
  for (var k = 48; k >= 1; k--) { f = z + (f32(k) * 0.5) / f; }
  return exp(-z * z) / (1.7724538509055159 * f);
}
// erf(z) for 0 <= z < 2.5: 2/sqrt(pi) e^{-z^2} sum 2^n z^{2n+1}/(2n+1)!! (all terms positive)
fn erf_series(z: f32) -> f32 {
  var term = z;
  var sum = z;
  let z2 = 2.0 * z * z;
  for (var n = 1; n < 80; n++) {
    term *= z2 / f32(2 * n + 1);
    sum += term;
    if (term < 1e-9 * sum) { break; }
  }
  return 1.1283791670955126 * exp(-z * z) * sum;
}
fn erf_f(x: f32) -> f32 {
  if (isnan_f(x)) { return x; }
  let z = abs(x);
  var r = 1.0;
  if (z < 2.5) { r = erf_series(z); } else if (z < 10.0) { r = 1.0 - erfc_cf(z); }
  return select(r, -r, x < 0.0);
}
// erfc for z >= 0 without cancellation in the tail
fn erfc_f(z: f32) -> f32 {
  if (z < 2.5) { return 1.0 - erf_series(z); }
  if (z < 10.0) { return erfc_cf(z); }
  return 0.0;
}
// gelu = 0.5 x (1 + erf(x/sqrt 2)); for x < 0 as 0.5 x erfc(|x|/sqrt 2), which keeps its tail
fn gelu_f(x: f32) -> f32 {
  if (x >= 0.0) { return 0.5 * x * (1.0 + erf_f(x * 0.7071067811865476)); }
  return 0.5 * x * erfc_f(-x * 0.7071067811865476);
}
// x ** p as JavaScript: exact repeated multiplication for integer p, sign for negative x
fn pow_f(x: f32, p: f32) -> f32 {
  if (p == 0.0) { return 1.0; }
  if (p == 1.0) { return x; }
  let isInt = p == floor(p);
  if (isInt && abs(p) <= 64.0) {
    var e = u32(abs(p));
    var b = x;
    var r = 1.0;
    loop {
      if ((e & 1u) == 1u) { r *= b; }
      e = e >> 1u;
      if (e == 0u) { break; }
      b *= b;
    }
    return select(r, 1.0 / r, p < 0.0);
  }
  if (p == 0.5) { return sqrt(x); }
  let m = exp2(p * log2(abs(x)));
  if (x < 0.0) {
    if (!isInt) { return nan_f(); }
    return select(m, -m, fract(p * 0.5) != 0.0);
  }
  return m;
}
`;

const UNARY_WGSL: Record<UnaryOp, string> = {
  neg: '-v0',
  abs: 'abs(v0)',
  sign: 'select(sign(v0), 0.0, isnan_f(v0))', // PyTorch: sign(NaN) = 0
  exp: 'exp(v0)',
  log: 'log(v0)',
  sqrt: 'sqrt(v0)',
  rsqrt: '1.0 / sqrt(v0)',
  square: 'v0 * v0',
  sin: 'sin(v0)',
  cos: 'cos(v0)',
  tanh: 'tanh_f(v0)',
  sigmoid: 'sigmoid_f(v0)',
  relu: 'select(0.0, v0, v0 > 0.0 || isnan_f(v0))',
  silu: 'v0 * sigmoid_f(v0)',
  gelu: 'gelu_f(v0)',
  softplus: 'softplus_f(v0)',
  erf: 'erf_f(v0)',
  floor: 'floor(v0)',
  affine: 'PF(1u) * v0 + PF(2u)',
  powScalar: 'pow_f(v0, PF(1u))',
};

const BINARY_WGSL: Record<BinaryOp, string> = {
  add: 'v0 + v1',
  sub: 'v0 - v1',
  mul: 'v0 * v1',
  div: 'v0 / v1',
  pow: 'pow_f(v0, v1)',
  // a NaN on either side wins, as in PyTorch
  maximum: 'select(select(select(v1, v0, v0 >= v1), v1, isnan_f(v1)), v0, isnan_f(v0))',
  minimum: 'select(select(select(v1, v0, v0 <= v1), v1, isnan_f(v1)), v0, isnan_f(v0))',
  siluGrad: 'v0 * (sigmoid_f(v1) * (1.0 + v1 * (1.0 - sigmoid_f(v1))))',
  reluGrad: 'select(v0, 0.0, v1 <= 0.0)',
  eq: 'select(0.0, 1.0, v0 == v1)',
  ne: 'select(0.0, 1.0, v0 != v1 || isnan_f(v0) || isnan_f(v1))', // lavapipe compiled != as ordered
  lt: 'select(0.0, 1.0, v0 < v1)',
  le: 'select(0.0, 1.0, v0 <= v1)',
  gt: 'select(0.0, 1.0, v0 > v1)',
  ge: 'select(0.0, 1.0, v0 >= v1)',
};

const unary: WgslKernel = (ctx, ins, attrs: UnaryAttrs, outShape, out) => {
  const expr = UNARY_WGSL[attrs.op];
  if (!expr) throw new Error(`webgpu: unknown unary op '${attrs.op}'`);
  const extra =
    attrs.op === 'affine'
      ? [f32bits(attrs.scale as number), f32bits(attrs.shift as number)]
      : attrs.op === 'powScalar'
        ? [f32bits(attrs.exponent as number)]
        : [];
  const p = mapProgram({
    name: `unary.${attrs.op}`,
    expr,
    prelude: MATH_WGSL,
    shape: outShape,
    ins: [contiguous(outShape)],
    extra,
  });
  ctx.dispatch(p, [bufOf(ins[0]!)], out);
};

const binary: WgslKernel = (ctx, ins, attrs: { op: BinaryOp }, outShape, out) => {
  const expr = BINARY_WGSL[attrs.op];
  if (!expr) throw new Error(`webgpu: unknown binary op '${attrs.op}'`);
  const p = mapProgram({
    name: `binary.${attrs.op}`,
    expr,
    prelude: attrs.op === 'pow' || attrs.op === 'siluGrad' ? MATH_WGSL : NAN_WGSL,
    shape: outShape,
    ins: ins.map((a) => ({ base: 0, strides: broadcastStrides(a.shape, outShape) })),
  });
  ctx.dispatch(p, ins.map(bufOf), out);
};

const where: WgslKernel = (ctx, ins, _attrs, outShape, out) => {
  const p = mapProgram({
    name: 'where',
    expr: 'select(v2, v1, v0 != 0.0 || isnan_f(v0))', // a NaN condition is true, as on cpu
    prelude: NAN_WGSL,
    shape: outShape,
    ins: ins.map((a) => ({ base: 0, strides: broadcastStrides(a.shape, outShape) })),
  });
  ctx.dispatch(p, ins.map(bufOf), out);
};

/** float32 -> float32 is the only cast on this backend: a copy. */
const cast: WgslKernel = (ctx, ins, _attrs, outShape, out) => {
  ctx.dispatch(
    mapProgram({ name: 'copy', expr: 'v0', shape: outShape, ins: [contiguous(outShape)] }),
    [bufOf(ins[0]!)],
    out,
  );
};

export const elementwiseKernels: Record<string, WgslKernel> = { unary, binary, where, cast };
