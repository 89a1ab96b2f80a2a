// Generated inputs for op property tests, and turning them into tensors.

import fc from 'fast-check';
import { fromArray, type Tensor } from '../../src/index.js';
import type { DType } from '../../src/tensor/backend.js';

export interface HostTensor {
  readonly shape: number[];
  /** Values exactly representable in float32, so float32 and float64 runs see the same inputs. */
  readonly data: Float64Array;
}

export interface Sample<P = unknown> {
  readonly inputs: HostTensor[];
  readonly params: P;
}

export interface OpCase<P = unknown> {
  /** `<primitive or op>: <variant>`; test names are built from it. */
  readonly name: string;
  readonly arb: fc.Arbitrary<Sample<P>>;
  readonly f: (xs: Tensor[], params: P) => Tensor;
  /** Which inputs are differentiable (default: all). */
  readonly diff?: readonly boolean[];
  /**
   * float32 vs float64 agreement: |y32 - y64| <= tol32 * (max|y64| + 1), default 1e-5.
   * A float32 op of depth d over K-term sums errs by about (d + sqrt(K)) * 2^-24 relative;
   * 1e-5 is ~170 ulps, room for transcendental approximations and accumulated rounding.
   */
  readonly tol32?: number;
  /** Relative tolerance of the float64 finite-difference checks (default 1e-6, see check.ts). */
  readonly tolFd?: number;
  /** fast-check runs per property (default 20). */
  readonly runs?: number;
  /** Skip the finite-difference checks for non-differentiable outputs (comparisons, argmax). */
  readonly noGrad?: boolean;
}

export function toTensor(h: HostTensor, dtype: DType, backend = 'cpu'): Tensor {
  return fromArray(dtype === 'float64' ? h.data : Float32Array.from(h.data), h.shape, { dtype, backend });
}

// ---- arbitraries ----------------------------------------------------------------------------

/** Axis sizes: mostly small, with the kernel tile edges 1, 3, 17, 33, 65 mixed in. */
export const dimArb = (max = 65) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: Math.min(5, max) }) },
    { weight: 1, arbitrary: fc.constantFrom(...[1, 3, 17, 33, 65].filter((d) => d <= max)) },
  );

/** A shape of rank in [minRank, maxRank] with at most maxSize elements. */
export function shapeArb(minRank = 0, maxRank = 4, maxSize = 2048, maxDim = 65): fc.Arbitrary<number[]> {
  return fc
    .array(dimArb(maxDim), { minLength: minRank, maxLength: maxRank })
    .filter((s) => s.reduce((a, b) => a * b, 1) <= maxSize);
}

/** Values in [lo, hi] rounded to float32, optionally kept at least `gap` away from `avoid` points. */
export function valuesArb(
  n: number,
  lo = -2,
  hi = 2,
  avoid: readonly number[] = [],
  gap = 1e-2,
): fc.Arbitrary<Float64Array> {
  const v = fc
    .double({ min: lo, max: hi, noNaN: true, noDefaultInfinity: true })
    .map((x) => Math.fround(x))
    .filter((x) => avoid.every((a) => Math.abs(x - a) >= gap));
  return fc.array(v, { minLength: n, maxLength: n }).map((a) => Float64Array.from(a));
}

export function tensorArb(
  shape: number[],
  lo = -2,
  hi = 2,
  avoid: readonly number[] = [],
  gap = 1e-2,
): fc.Arbitrary<HostTensor> {
  return valuesArb(
    shape.reduce((a, b) => a * b, 1),
    lo,
    hi,
    avoid,
    gap,
  ).map((data) => ({ shape, data }));
}

/** Distinct values (no ties), for max/min/sort-like ops whose derivative is undefined at ties. */
export function distinctTensorArb(shape: number[]): fc.Arbitrary<HostTensor> {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc
    .shuffledSubarray(
      Array.from({ length: 4 * n + 4 }, (_, i) => i),
      { minLength: n, maxLength: n },
    )
    .chain((perm) =>
      fc.double({ min: -0.2, max: 0.2, noNaN: true }).map((jitter) => ({
        shape,
        data: Float64Array.from(perm, (p) => Math.fround((p - 2 * n) * 0.05 + jitter * 0.01)),
      })),
    );
}

/** Two shapes that broadcast against each other (some axes 1 on one side, fewer leading axes). */
export function broadcastPairArb(maxRank = 4, maxSize = 1024): fc.Arbitrary<[number[], number[]]> {
  return shapeArb(0, maxRank, maxSize).chain((out) =>
    fc
      .tuple(
        fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
        fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
        fc.integer({ min: 0, max: out.length }),
      )
      .map(([ma, mb, drop]) => {
        const a = out.map((d, i) => (ma[i] ? 1 : d));
        const b = out.map((d, i) => (mb[i] ? 1 : d)).slice(drop);
        return [a, b] as [number[], number[]];
      }),
  );
}
