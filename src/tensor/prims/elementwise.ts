// Elementwise primitives (unary, binary with broadcasting, where, cast) and their VJPs.

import type { DType } from '../backend.js';
import { apply } from '../runtime.js';
import { broadcastShapes, fmt } from '../shape.js';
import { type Prim, Tensor } from '../tensor.js';
import { full } from './creation.js';
import { sumTo } from './reduce.js';

// ---- unary ----------------------------------------------------------------------------------

export type UnaryOp =
  | 'neg'
  | 'abs'
  | 'sign'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'square'
  | 'sin'
  | 'cos'
  | 'tanh'
  | 'sigmoid'
  | 'relu'
  | 'silu'
  | 'gelu'
  | 'softplus'
  | 'erf'
  | 'floor'
  | 'affine'
  | 'powScalar';

/** `affine` is scale*x + shift; `powScalar` is x ** exponent (scalar constants stay off the device). */
export interface UnaryAttrs {
  readonly op: UnaryOp;
  readonly scale?: number;
  readonly shift?: number;
  readonly exponent?: number;
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** d op(x)/dx times g, written with tensor ops. `y` is the forward output. */
const unaryVjp: Record<UnaryOp, ((g: Tensor, x: Tensor, y: Tensor, a: UnaryAttrs) => Tensor) | null> = {
  neg: (g) => neg(g),
  abs: (g, x) => mul(g, sign(x)),
  sign: null,
  exp: (g, _x, y) => mul(g, y),
  log: (g, x) => div(g, x),
  sqrt: (g, _x, y) => div(g, mul(y, 2)),
  rsqrt: (g, _x, y) => mul(g, mul(powScalar(y, 3), -0.5)),
  square: (g, x) => mul(g, mul(x, 2)),
  sin: (g, x) => mul(g, cos(x)),
  cos: (g, x) => mul(g, neg(sin(x))),
  tanh: (g, _x, y) => mul(g, sub(1, square(y))),
  sigmoid: (g, _x, y) => mul(g, mul(y, sub(1, y))),
  // one fused kernel (reluGrad, PyTorch's threshold_backward) instead of a comparison and a product
  relu: (g, x) => reluGrad(g, x),
  // silu' = s (1 + x (1 - s)), s = sigmoid(x): one fused kernel (siluGrad) instead of six elementwise passes,
  // which were ~6% of a DDPM++ training step on cpu
  silu: (g, x) => siluGrad(g, x),
  // gelu' = Phi(x) + x phi(x)
  gelu: (g, x) => {
    const Phi = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5);
    const phi = mul(exp(mul(square(x), -0.5)), INV_SQRT_2PI);
    return mul(g, add(Phi, mul(x, phi)));
  },
  softplus: (g, x) => mul(g, sigmoid(x)),
  erf: (g, x) => mul(g, mul(exp(neg(square(x))), 2 / Math.sqrt(Math.PI))),
  floor: null,
  affine: (g, _x, _y, a) => mul(g, a.scale as number),
  powScalar: (g, x, _y, a) => {
    const p = a.exponent as number;
    return mul(g, mul(powScalar(x, p - 1), p));
  },
};

export const unaryPrim: Prim<UnaryAttrs> = {
  name: 'unary',
  vjp: (g, { inputs, output, attrs }) => {
    const rule = unaryVjp[attrs.op];
    return [rule ? rule(g, inputs[0] as Tensor, output, attrs) : null];
  },
};

function unary(x: Tensor, attrs: UnaryAttrs): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${attrs.op}: argument x must be a Tensor, got ${typeof x}`);
  return apply(unaryPrim, [x], attrs, x.shape);
}

export const neg = (x: Tensor) => unary(x, { op: 'neg' });
export const abs = (x: Tensor) => unary(x, { op: 'abs' });
export const sign = (x: Tensor) => unary(x, { op: 'sign' });
export const exp = (x: Tensor) => unary(x, { op: 'exp' });
export const log = (x: Tensor) => unary(x, { op: 'log' });
export const sqrt = (x: Tensor) => unary(x, { op: 'sqrt' });
export const rsqrt = (x: Tensor) => unary(x, { op: 'rsqrt' });
export const square = (x: Tensor) => unary(x, { op: 'square' });
export const sin = (x: Tensor) => unary(x, { op: 'sin' });
export const cos = (x: Tensor) => unary(x, { op: 'cos' });
export const tanh = (x: Tensor) => unary(x, { op: 'tanh' });
export const sigmoid = (x: Tensor) => unary(x, { op: 'sigmoid' });
export const relu = (x: Tensor) => unary(x, { op: 'relu' });
export const silu = (x: Tensor) => unary(x, { op: 'silu' });
/** GELU, erf form (PyTorch's default approximate='none'). */
export const gelu = (x: Tensor) => unary(x, { op: 'gelu' });
export const softplus = (x: Tensor) => unary(x, { op: 'softplus' });
export const erf = (x: Tensor) => unary(x, { op: 'erf' });
/** Not differentiable (zero gradient almost everywhere). */
export const floor = (x: Tensor) => unary(x, { op: 'floor' });
/** scale * x + shift, with the constants as kernel parameters. */
export const affine = (x: Tensor, scale: number, shift: number) => unary(x, { op: 'affine', scale, shift });
export const powScalar = (x: Tensor, exponent: number) => unary(x, { op: 'powScalar', exponent });

// ---- binary ---------------------------------------------------------------------------------

export type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'pow'
  | 'maximum'
  | 'minimum'
  | 'siluGrad'
  | 'reluGrad'
  | CompareOp;
export type CompareOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';
export type TensorLike = Tensor | number;

const half = (t: Tensor) => mul(t, 0.5);

/** Cotangents before un-broadcasting, i.e. at the output's shape. */
const binaryVjp: Partial<
  Record<BinaryOp, (g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null]>
> = {
  add: (g) => [g, g],
  sub: (g) => [g, neg(g)],
  mul: (g, a, b) => [mul(g, b), mul(g, a)],
  div: (g, a, b) => [div(g, b), neg(div(mul(g, a), square(b)))],
  // d a^b/da = b a^(b-1); d a^b/db = a^b log a (defined for a > 0)
  pow: (g, a, b, y) => [mul(g, mul(b, pow(a, sub(b, 1)))), mul(g, mul(y, log(a)))],
  // ties split the gradient evenly, as PyTorch does
  maximum: (g, a, b) => {
    const wa = add(gt(a, b), half(eq(a, b)));
    return [mul(g, wa), mul(g, sub(1, wa))];
  },
  minimum: (g, a, b) => {
    const wa = add(lt(a, b), half(eq(a, b)));
    return [mul(g, wa), mul(g, sub(1, wa))];
  },
  // y = a silu'(b): dy/da = silu'(b); dy/db = a silu''(b), silu'' = s (1 - s) (2 + b (1 - 2 s)), s = sigmoid(b)
  siluGrad: (g, a, b) => {
    const s = sigmoid(b);
    const second = mul(mul(s, sub(1, s)), add(mul(b, sub(1, mul(s, 2))), 2));
    return [siluGrad(g, b), mul(g, mul(a, second))];
  },
  // y = a where b > 0, else 0: piecewise constant in b
  reluGrad: (g, _a, b) => [reluGrad(g, b), null],
};

export const binaryPrim: Prim<{ op: BinaryOp }> = {
  name: 'binary',
  vjp: (g, { inputs, output, attrs }) => {
    const rule = binaryVjp[attrs.op];
    const [a, b] = inputs as [Tensor, Tensor];
    if (!rule) return [null, null];
    const [ga, gb] = rule(g, a, b, output);
    return [ga && a.requiresGrad ? sumTo(ga, a.shape) : null, gb && b.requiresGrad ? sumTo(gb, b.shape) : null];
  },
};

/** A scalar constant as a rank-0 tensor beside `like`. */
function scalarLike(v: number, like: Tensor): Tensor {
  return full([], v, { dtype: like.dtype, backend: like.backend.name });
}

function binary(op: BinaryOp, a: TensorLike, b: TensorLike): Tensor {
  if (typeof a === 'number' && typeof b === 'number') {
    throw new Error(`${op}: at least one argument must be a Tensor (got two numbers)`);
  }
  for (const [name, v] of [
    ['a', a],
    ['b', b],
  ] as const) {
    if (!(v instanceof Tensor) && typeof v !== 'number')
      throw new Error(`${op}: argument ${name} must be a Tensor or number`);
  }
  // Scalar constants become kernel parameters where the op allows, instead of device tensors.
  if (typeof b === 'number') {
    const x = a as Tensor;
    if (op === 'add') return affine(x, 1, b);
    if (op === 'sub') return affine(x, 1, -b);
    if (op === 'mul') return affine(x, b, 0);
    if (op === 'div') return affine(x, 1 / b, 0);
    if (op === 'pow') return powScalar(x, b);
    b = scalarLike(b, x);
  }
  if (typeof a === 'number') {
    const y = b as Tensor;
    if (op === 'add' || op === 'mul') return binary(op, y, a);
    if (op === 'sub') return affine(y, -1, a);
    a = scalarLike(a, y);
  }
  const tb = b as Tensor;
  if (a.dtype !== tb.dtype) {
    throw new Error(`${op}: a ${fmt(a.shape)} is ${a.dtype} but b ${fmt(tb.shape)} is ${tb.dtype}; cast with astype()`);
  }
  const shape = broadcastShapes(op, a.shape, tb.shape);
  return apply(binaryPrim, [a, tb], { op }, shape);
}

export const add = (a: TensorLike, b: TensorLike) => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike) => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike) => binary('mul', a, b);
export const div = (a: TensorLike, b: TensorLike) => binary('div', a, b);
/** g * silu'(x) = g s (1 + x (1 - s)), s = sigmoid(x): silu's backward (PyTorch's silu_backward) as one kernel. */
export const siluGrad = (g: TensorLike, x: TensorLike) => binary('siluGrad', g, x);
/**
 * relu's backward, g where x > 0 and 0 where x <= 0 (PyTorch's threshold_backward: a NaN x passes g through, and
 * x <= 0 gives 0 whatever g is, an infinite or NaN g included).
 */
export const reluGrad = (g: TensorLike, x: TensorLike) => binary('reluGrad', g, x);
export const pow = (a: TensorLike, b: TensorLike) => binary('pow', a, b);
export const maximum = (a: TensorLike, b: TensorLike) => binary('maximum', a, b);
export const minimum = (a: TensorLike, b: TensorLike) => binary('minimum', a, b);
/** Comparisons return 1 where true and 0 where false, in the inputs' dtype; not differentiable. */
export const eq = (a: TensorLike, b: TensorLike) => binary('eq', a, b);
export const ne = (a: TensorLike, b: TensorLike) => binary('ne', a, b);
export const lt = (a: TensorLike, b: TensorLike) => binary('lt', a, b);
export const le = (a: TensorLike, b: TensorLike) => binary('le', a, b);
export const gt = (a: TensorLike, b: TensorLike) => binary('gt', a, b);
export const ge = (a: TensorLike, b: TensorLike) => binary('ge', a, b);

/** Clamp to [lo, hi]; either bound may be omitted. The gradient passes where lo < x < hi. */
export function clamp(x: Tensor, lo?: number, hi?: number): Tensor {
  if (lo !== undefined && hi !== undefined && lo > hi) throw new Error(`clamp: lo ${lo} is greater than hi ${hi}`);
  if (Number.isNaN(lo)) throw new Error('clamp: lower bound lo is NaN');
  if (Number.isNaN(hi)) throw new Error('clamp: upper bound hi is NaN');
  let y = x;
  if (lo !== undefined) y = maximum(y, lo);
  if (hi !== undefined) y = minimum(y, hi);
  return y;
}

// ---- where ----------------------------------------------------------------------------------

export const wherePrim: Prim<undefined> = {
  name: 'where',
  vjp: (g, { inputs }) => {
    const [c, a, b] = inputs as [Tensor, Tensor, Tensor];
    const zero = scalarLike(0, g);
    return [
      null,
      a.requiresGrad ? sumTo(where(c, g, zero), a.shape) : null,
      b.requiresGrad ? sumTo(where(c, zero, g), b.shape) : null,
    ];
  },
};

/** Elementwise `cond != 0 ? a : b`, broadcasting all three. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (!(cond instanceof Tensor)) throw new Error('where: argument cond must be a Tensor');
  const ta = typeof a === 'number' ? scalarLike(a, cond) : a;
  const tb = typeof b === 'number' ? scalarLike(b, cond) : b;
  const shape = broadcastShapes('where', cond.shape, ta.shape, tb.shape);
  return apply(wherePrim, [cond, ta, tb], undefined, shape);
}

// ---- cast -----------------------------------------------------------------------------------

export const castPrim: Prim<{ dtype: DType }> = {
  name: 'cast',
  vjp: (g, { inputs }) => [astype(g, (inputs[0] as Tensor).dtype)],
};

export function astype(x: Tensor, dtype: DType): Tensor {
  if (dtype !== 'float32' && dtype !== 'float64')
    throw new Error(`astype: unknown dtype '${dtype}' (float32 or float64)`);
  if (x.dtype === dtype) return x;
  return apply(castPrim, [x], { dtype }, x.shape, { dtype, mixedDtypes: true });
}

export function checkFinite(op: string, arg: string, data: ArrayLike<number>, shape: readonly number[]): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i] as number)) {
      throw new Error(`${op}: ${arg} ${fmt(shape)} contains ${data[i]} at flat index ${i}; it must be finite`);
    }
  }
}
