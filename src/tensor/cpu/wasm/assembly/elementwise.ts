// exp, sigmoid and silu on float32 arrays, four lanes at a time (AssemblyScript; see gemm.ts for the conventions).
// Math.exp in V8 costs ~10 ns per element, which made silu and its gradient 13% of a DDPM++ training step.
//
// exp: Cephes' expf (Moshier): n = round(x log2 e), r = x - n ln 2 (ln 2 in two parts), exp(r) by a degree-7
// polynomial, times 2^n built in the exponent bits (as 2^(n>>1) * 2^(n - (n>>1)) so n = 128 does not overflow the
// bit trick). Within 2 ulp of the correctly rounded result over [-87.3, 88.7]. Beyond 88.72 the result is +inf,
// below -87.34 (where exp is a float32 denormal, < 1.2e-38) it is 0. NaN propagates.
// sigmoid(x) = 1 / (1 + exp(-x)): no cancellation for either sign, sigmoid(-inf) = 0, sigmoid(inf) = 1.
// silu(x) = x * sigmoid(x), as PyTorch: silu(-inf) = -inf * 0 = NaN.

const HI: f32 = 88.72283;
const LO: f32 = -87.33654;
const MAGIC: f32 = 12582912; // 1.5 * 2^23
const MAGIC_BITS: i32 = 0x4b400000; // its bit pattern

// @ts-ignore: decorator
@inline
function exp4(x: v128): v128 {
  const hi = f32x4.gt(x, f32x4.splat(HI));
  const lo = f32x4.lt(x, f32x4.splat(LO));
  // pmax/pmin (one maxps/minps each; the NaN-exact min/max lower to ~8 instructions) with x first, so NaN passes
  const xc = f32x4.pmin(f32x4.pmax(x, f32x4.splat(LO)), f32x4.splat(HI));
  // round to nearest by adding 1.5 * 2^23: the integer then sits in the low mantissa bits (no cvt instructions)
  const t = f32x4.add(f32x4.mul(xc, f32x4.splat(1.44269504088896341)), f32x4.splat(MAGIC));
  const fx = f32x4.sub(t, f32x4.splat(MAGIC));
  let z = f32x4.sub(xc, f32x4.mul(fx, f32x4.splat(0.693359375)));
  z = f32x4.sub(z, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = f32x4.add(f32x4.mul(y, z), f32x4.splat(1.3981999507e-3));
  y = f32x4.add(f32x4.mul(y, z), f32x4.splat(8.3334519073e-3));
  y = f32x4.add(f32x4.mul(y, z), f32x4.splat(4.1665795894e-2));
  y = f32x4.add(f32x4.mul(y, z), f32x4.splat(1.6666665459e-1));
  y = f32x4.add(f32x4.mul(y, z), f32x4.splat(5.0000001201e-1));
  y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(y, z), z), z), f32x4.splat(1));
  const n = i32x4.sub(t, i32x4.splat(MAGIC_BITS));
  const n1 = i32x4.shr_s(n, 1);
  const n2 = i32x4.sub(n, n1);
  const bias = i32x4.splat(127);
  const p1 = i32x4.shl(i32x4.add(n1, bias), 23);
  const p2 = i32x4.shl(i32x4.add(n2, bias), 23);
  let r = f32x4.mul(f32x4.mul(y, p1), p2);
  r = v128.bitselect(f32x4.splat(Infinity), r, hi);
  return v128.bitselect(f32x4.splat(0), r, lo);
}

// @ts-ignore: decorator
@inline
function sigmoid4(x: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))));
}

/** out[i] = exp(x[i]) for i < n; reads and writes whole vectors, so both spans must have room up to n rounded to 4. */
export function expF32(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) v128.store(out + (<usize>i << 2), exp4(v128.load(x + (<usize>i << 2))));
}

export function sigmoidF32(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) v128.store(out + (<usize>i << 2), sigmoid4(v128.load(x + (<usize>i << 2))));
}

export function siluF32(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    v128.store(out + (<usize>i << 2), f32x4.mul(v, sigmoid4(v)));
  }
}

/** out[i] = scale * x[i] + shift (whole vectors, as expF32). */
export function affineF32(x: usize, out: usize, n: i32, scale: f32, shift: f32): void {
  const s = f32x4.splat(scale);
  const b = f32x4.splat(shift);
  for (let i = 0; i < n; i += 4) {
    v128.store(out + (<usize>i << 2), f32x4.add(f32x4.mul(s, v128.load(x + (<usize>i << 2))), b));
  }
}

export function squareF32(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    v128.store(out + (<usize>i << 2), f32x4.mul(v, v));
  }
}

/** silu's backward, g s (1 + x (1 - s)) with s = sigmoid(x) (PyTorch's silu_backward). */
// @ts-ignore: decorator
@inline
function siluGrad4(g: v128, x: v128): v128 {
  const one = f32x4.splat(1);
  const s = sigmoid4(x);
  return f32x4.mul(g, f32x4.mul(s, f32x4.add(one, f32x4.mul(x, f32x4.sub(one, s)))));
}

// @ts-ignore: decorator
@inline
function op4(op: i32, a: v128, b: v128): v128 {
  if (op == 0) return f32x4.add(a, b);
  if (op == 1) return f32x4.sub(a, b);
  if (op == 2) return f32x4.mul(a, b);
  if (op == 4) return siluGrad4(a, b);
  if (op == 5) return v128.andnot(a, f32x4.le(b, f32x4.splat(0))); // a where b <= 0 fails (NaN b included)
  return f32x4.div(a, b);
}

// @ts-ignore: decorator
@inline
function op1(op: i32, a: f32, b: f32): f32 {
  if (op == 0) return a + b;
  if (op == 1) return a - b;
  if (op == 2) return a * b;
  // the vector formula on lane 0, so a row's tail rounds as its body does
  if (op == 4) return f32x4.extract_lane(siluGrad4(f32x4.splat(a), f32x4.splat(b)), 0);
  if (op == 5) return b <= 0 ? 0 : a;
  return a / b;
}

/**
 * One row of a broadcasting binary op: out[i] = a[i*sa] op b[i*sb] for i < n, op 0 add, 1 sub, 2 mul, 3 div,
 * 4 siluGrad (a silu'(b)), 5 reluGrad (a where b > 0 or NaN, else 0);
 * sa, sb are element strides (0 for a broadcast operand). Contiguous and scalar operands run four lanes at a time.
 */
export function binaryRowF32(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  let i = 0;
  if (sa == 1 && sb == 1) {
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, op4(op, v128.load(a + o), v128.load(b + o)));
    }
  } else if (sa == 1 && sb == 0) {
    const bv = v128.load32_splat(b);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, op4(op, v128.load(a + o), bv));
    }
  } else if (sa == 0 && sb == 1) {
    const av = v128.load32_splat(a);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, op4(op, av, v128.load(b + o)));
    }
  }
  for (; i < n; i++) {
    store<f32>(out + (<usize>i << 2), op1(op, load<f32>(a + ((<usize>i * sa) << 2)), load<f32>(b + ((<usize>i * sb) << 2))));
  }
}

/** relu as PyTorch: x > 0 ? x : 0, NaN kept (relu(-0) = 0). */
export function reluF32(x: usize, out: usize, n: i32): void {
  const zero = f32x4.splat(0);
  for (let i = 0; i < n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const keep = v128.or(f32x4.gt(v, zero), f32x4.ne(v, v));
    v128.store(out + (<usize>i << 2), v128.and(v, keep));
  }
}
