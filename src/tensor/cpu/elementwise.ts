// Elementwise cpu kernels: unary maps, broadcasting binary ops, where, cast.

import type { TypedArray } from '../backend.js';
import type { BinaryOp, UnaryAttrs } from '../prims/elementwise.js';
import { broadcastStrides, type Shape, stridesOf } from '../shape.js';
import { currentConfig } from './gemm.js';
import { type CpuArg, type CpuKernel, forEachBroadcast } from './kernel.js';
import { coalesce, forEachRow } from './strided.js';
import { wasmUnary } from './wasm/elementwise.js';
import { WASM_BINARY, WASM_UNARY } from './wasm/runtime.js';
import { activeWasm } from './wasm/select.js';

/** 2/sqrt(pi) e^{-z^2} sum 2^n z^{2n+1} / (2n+1)!!: erf(z) for z >= 0, all terms positive (no cancellation). */
function erfSeries(z: number): number {
  let term = z;
  let sum = z;
  for (let n = 1; n < 200 && term > 1e-17 * sum; n++) {
    term *= (2 * z * z) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * sum;
}

/** erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), modified Lentz; fast for z >= 1.5. */
function erfcFraction(z: number): number {
  const tiny = 1e-300;
  let f = z;
  let c = z;
  let d = 0;
  for (let k = 1; k < 300; k++) {
    const a = k / 2;
    d = z + a * d;
    d = d === 0 ? tiny : 1 / d;
    c = z + a / c;
    if (c === 0) c = tiny;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

/**
 * erfc to float64 relative accuracy in the right tail: 1 - erf loses about log10(1/erfc(z))
 * digits, so beyond z = 1.5 (erfc 0.034) the continued fraction takes over. erfc(-z) = 2 - erfc(z).
 */
export function erfc(z: number): number {
  if (Number.isNaN(z)) return z;
  if (z < 0) return 2 - erfc(-z);
  return z < 1.5 ? 1 - erfSeries(z) : erfcFraction(z);
}

/** erf to float64 accuracy, so float64 gradient checks of gelu/erf are not limited by it. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const r = z < 3 ? erfSeries(z) : 1 - erfcFraction(z);
  return x < 0 ? -r : r;
}

/**
 * gelu = 0.5 x (1 + erf(x/sqrt 2)); for x < 0 as 0.5 x erfc(|x|/sqrt 2), since 1 + erf cancels
 * there (at x = -4 it keeps 4 fewer digits, enough to break float64 finite-difference checks).
 */
function gelu(x: number): number {
  return x >= 0 ? 0.5 * x * (1 + erf(x / Math.SQRT2)) : 0.5 * x * erfc(-x / Math.SQRT2);
}

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

export const UNARY_FNS: Record<string, (x: number, a: UnaryAttrs) => number> = {
  neg: (x) => -x,
  abs: (x) => Math.abs(x),
  sign: (x) => (Number.isNaN(x) ? 0 : Math.sign(x)), // PyTorch: sign(NaN) = 0
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  sqrt: (x) => Math.sqrt(x),
  rsqrt: (x) => 1 / Math.sqrt(x),
  square: (x) => x * x,
  sin: (x) => Math.sin(x),
  cos: (x) => Math.cos(x),
  tanh: (x) => Math.tanh(x),
  sigmoid,
  relu: (x) => (x > 0 || Number.isNaN(x) ? x : 0), // NaN passes, as in PyTorch
  silu: (x) => x * sigmoid(x),
  gelu,
  softplus: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
  erf,
  floor: (x) => Math.floor(x),
  affine: (x, a) => (a.scale as number) * x + (a.shift as number),
  powScalar: (x, a) => x ** (a.exponent as number),
};

export const BINARY_FNS: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => a ** b,
  // a NaN on either side wins (a NaN a is returned; a NaN b fails both tests and is returned)
  maximum: (a, b) => (a >= b || Number.isNaN(a) ? a : b),
  minimum: (a, b) => (a <= b || Number.isNaN(a) ? a : b),
  // silu_backward as PyTorch writes it: g s (1 + x (1 - s))
  siluGrad: (g, x) => {
    const s = sigmoid(x);
    return g * (s * (1 + x * (1 - s)));
  },
  // threshold_backward: x <= 0 ? 0 : g (a NaN x fails the test and passes g)
  reluGrad: (g, x) => (x <= 0 ? 0 : g),
  eq: (a, b) => +(a === b),
  ne: (a, b) => +(a !== b),
  lt: (a, b) => +(a < b),
  le: (a, b) => +(a <= b),
  gt: (a, b) => +(a > b),
  ge: (a, b) => +(a >= b),
};

type Arr = TypedArray;
/** One row of a binary op: out[oo + i] = a[ao + i*sa] op b[bo + i*sb], i < n. */
type BinaryRow = (
  a: Arr,
  ao: number,
  sa: number,
  b: Arr,
  bo: number,
  sb: number,
  o: Arr,
  oo: number,
  n: number,
) => void;

// The four arithmetic ops as their own loops (one function literal each, so V8 inlines the operator and specialises
// each loop); the rest go through BINARY_FNS. Each loop picks the contiguous / scalar-operand case outside the loop.
// biome-ignore format: four loops of the same shape read best aligned
const BINARY_ROWS: Partial<Record<BinaryOp, BinaryRow>> = {
  add: (a, ao, sa, b, bo, sb, o, oo, n) => {
    if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i] as number) + (b[bo + i] as number);
    else if (sb === 0) { const v = b[bo] as number; for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) + v; }
    else if (sa === 0) { const v = a[ao] as number; for (let i = 0; i < n; i++) o[oo + i] = v + (b[bo + i * sb] as number); }
    else for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) + (b[bo + i * sb] as number);
  },
  sub: (a, ao, sa, b, bo, sb, o, oo, n) => {
    if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i] as number) - (b[bo + i] as number);
    else if (sb === 0) { const v = b[bo] as number; for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) - v; }
    else if (sa === 0) { const v = a[ao] as number; for (let i = 0; i < n; i++) o[oo + i] = v - (b[bo + i * sb] as number); }
    else for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) - (b[bo + i * sb] as number);
  },
  mul: (a, ao, sa, b, bo, sb, o, oo, n) => {
    if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i] as number) * (b[bo + i] as number);
    else if (sb === 0) { const v = b[bo] as number; for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) * v; }
    else if (sa === 0) { const v = a[ao] as number; for (let i = 0; i < n; i++) o[oo + i] = v * (b[bo + i * sb] as number); }
    else for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) * (b[bo + i * sb] as number);
  },
  div: (a, ao, sa, b, bo, sb, o, oo, n) => {
    if (sa === 1 && sb === 1) for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i] as number) / (b[bo + i] as number);
    else if (sb === 0) { const v = b[bo] as number; for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) / v; }
    else if (sa === 0) { const v = a[ao] as number; for (let i = 0; i < n; i++) o[oo + i] = v / (b[bo + i * sb] as number); }
    else for (let i = 0; i < n; i++) o[oo + i] = (a[ao + i * sa] as number) / (b[bo + i * sb] as number);
  },
};

/** Hot unary maps as their own loops (see BINARY_ROWS); the rest call UNARY_FNS per element. */
const UNARY_LOOPS: Partial<Record<string, (x: Arr, o: Arr, a: UnaryAttrs) => void>> = {
  neg: (x, o) => {
    for (let i = 0; i < o.length; i++) o[i] = -(x[i] as number);
  },
  square: (x, o) => {
    for (let i = 0; i < o.length; i++) o[i] = (x[i] as number) * (x[i] as number);
  },
  exp: (x, o) => {
    for (let i = 0; i < o.length; i++) o[i] = Math.exp(x[i] as number);
  },
  sqrt: (x, o) => {
    for (let i = 0; i < o.length; i++) o[i] = Math.sqrt(x[i] as number);
  },
  rsqrt: (x, o) => {
    for (let i = 0; i < o.length; i++) o[i] = 1 / Math.sqrt(x[i] as number);
  },
  relu: (x, o) => {
    for (let i = 0; i < o.length; i++) {
      const v = x[i] as number;
      o[i] = v > 0 || Number.isNaN(v) ? v : 0;
    }
  },
  sigmoid: (x, o) => {
    for (let i = 0; i < o.length; i++) {
      const v = x[i] as number;
      o[i] = v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v));
    }
  },
  silu: (x, o) => {
    for (let i = 0; i < o.length; i++) {
      const v = x[i] as number;
      o[i] = v * (v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v))); // = x * sigmoid(x), same rounding
    }
  },
  affine: (x, o, a) => {
    const scale = a.scale as number;
    const shift = a.shift as number;
    for (let i = 0; i < o.length; i++) o[i] = scale * (x[i] as number) + shift;
  },
};

/** Below this many elements the copy into wasm memory costs more than it saves. */
const WASM_UNARY_MIN = 256;

const unary: CpuKernel = (ins, attrs: UnaryAttrs, out) => {
  const x = (ins[0] as CpuArg).data;
  if (
    out instanceof Float32Array &&
    x instanceof Float32Array &&
    out.length >= WASM_UNARY_MIN &&
    attrs.op in WASM_UNARY
  ) {
    const rt = activeWasm();
    if (rt)
      return wasmUnary(rt, currentConfig(), attrs.op as keyof typeof WASM_UNARY, x, out, attrs.scale, attrs.shift);
  }
  const loop = UNARY_LOOPS[attrs.op];
  if (loop) return loop(x, out, attrs);
  const f = UNARY_FNS[attrs.op];
  if (!f) throw new Error(`cpu: unknown unary op '${attrs.op}'`);
  for (let i = 0; i < out.length; i++) out[i] = f(x[i] as number, attrs);
};

/** Shortest coalesced row worth a call into wasm (each call costs tens of ns). */
const WASM_ROW_MIN = 16;

/** add/sub/mul/div of float32 operands through the SIMD row kernel; false when not applicable (then JS runs it). */
function wasmBinary(
  op: BinaryOp,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  outShape: Shape,
  strides: number[][],
): boolean {
  const code = (WASM_BINARY as Partial<Record<BinaryOp, number>>)[op];
  if (code === undefined || out.length < WASM_UNARY_MIN) return false;
  const { dims } = coalesce(outShape, strides);
  if (dims.length && (dims[dims.length - 1] as number) < WASM_ROW_MIN) return false;
  const rt = activeWasm();
  if (!rt) return false;
  rt.reset(1);
  const ap = rt.alloc(4 * a.length);
  const bp = rt.alloc(4 * b.length);
  const op_ = rt.alloc(4 * out.length);
  rt.f32(ap, a.length).set(a);
  rt.f32(bp, b.length).set(b);
  const row = rt.exports.binaryRowF32;
  forEachRow(outShape, strides, (o, n, s) =>
    row(
      code,
      ap + 4 * (o[1] as number),
      s[1] as number,
      bp + 4 * (o[2] as number),
      s[2] as number,
      op_ + 4 * (o[0] as number),
      n,
    ),
  );
  out.set(rt.f32(op_, out.length));
  return true;
}

const binary: CpuKernel = (ins, attrs: { op: BinaryOp }, out, outShape) => {
  const [a, b] = ins as [CpuArg, CpuArg];
  const ad = a.data;
  const bd = b.data;
  const strides = [stridesOf(outShape), broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)];
  if (
    out instanceof Float32Array &&
    ad instanceof Float32Array &&
    bd instanceof Float32Array &&
    wasmBinary(attrs.op, ad, bd, out, outShape, strides)
  ) {
    return;
  }
  const fast = BINARY_ROWS[attrs.op];
  if (fast) {
    forEachRow(outShape, strides, (o, n, s) =>
      fast(ad, o[1] as number, s[1] as number, bd, o[2] as number, s[2] as number, out, o[0] as number, n),
    );
    return;
  }
  const f = BINARY_FNS[attrs.op];
  forEachRow(outShape, strides, (o, n, s) => {
    const oo = o[0] as number;
    const ao = o[1] as number;
    const bo = o[2] as number;
    const sa = s[1] as number;
    const sb = s[2] as number;
    for (let i = 0; i < n; i++) out[oo + i] = f(ad[ao + i * sa] as number, bd[bo + i * sb] as number);
  });
};

const where: CpuKernel = (ins, _attrs, out, outShape) => {
  const [c, a, b] = ins as [CpuArg, CpuArg, CpuArg];
  forEachBroadcast(outShape, [c.shape, a.shape, b.shape], (i, o) => {
    out[i] =
      (c.data[o[0] as number] as number) !== 0
        ? (a.data[o[1] as number] as number)
        : (b.data[o[2] as number] as number);
  });
};

const cast: CpuKernel = (ins, _attrs, out: TypedArray) => {
  out.set((ins[0] as CpuArg).data);
};

export const elementwiseKernels: Record<string, CpuKernel> = { unary, binary, where, cast };
