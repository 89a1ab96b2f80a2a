// Cases for the elementwise primitives: every unary op, every binary op under broadcasting,
// where, clamp and cast.

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { broadcastPairArb, type OpCase, type Sample, shapeArb, tensorArb } from '../harness/sample.js';

/** One input of a random shape (with size-1 and odd axes) and values in [lo, hi] away from `avoid`. */
function oneInput(lo: number, hi: number, avoid: number[] = [], gap = 1e-2): fc.Arbitrary<Sample<undefined>> {
  return shapeArb(0, 4, 1024)
    .chain((s) => tensorArb(s, lo, hi, avoid, gap))
    .map((x) => ({ inputs: [x], params: undefined }));
}

const INTEGERS = [-3, -2, -1, 0, 1, 2, 3];

const unaryCases: [string, (x: T.Tensor) => T.Tensor, number, number, number[]?][] = [
  ['neg', T.neg, -2, 2],
  ['abs', T.abs, -2, 2, [0]],
  ['sign', T.sign, -2, 2, [0]],
  ['exp', T.exp, -2, 2],
  ['log', T.log, 0.1, 3],
  ['sqrt', T.sqrt, 0.1, 3],
  ['rsqrt', T.rsqrt, 0.1, 3],
  ['square', T.square, -2, 2],
  ['sin', T.sin, -3, 3],
  ['cos', T.cos, -3, 3],
  ['tanh', T.tanh, -3, 3],
  ['sigmoid', T.sigmoid, -6, 6],
  ['relu', T.relu, -2, 2, [0]],
  ['silu', T.silu, -4, 4],
  ['gelu', T.gelu, -4, 4],
  ['softplus', T.softplus, -6, 6],
  ['erf', T.erf, -4, 4],
  ['floor', T.floor, -3, 3, INTEGERS],
  ['affine (2.5 x - 0.75)', (x) => T.affine(x, 2.5, -0.75), -2, 2],
  ['powScalar (x^2.5)', (x) => T.powScalar(x, 2.5), 0.1, 3],
  ['powScalar (x^-1.5)', (x) => T.powScalar(x, -1.5), 0.2, 3],
  ['powScalar (x^3, any sign)', (x) => T.powScalar(x, 3), -2, 2],
];

export const unary: OpCase[] = unaryCases.map(([name, op, lo, hi, avoid]) => ({
  name: `unary.${name}`,
  arb: oneInput(lo, hi, avoid ?? []),
  f: ([x]) => op(x as T.Tensor),
}));

/** Two broadcastable inputs; b's values optionally from a different range. */
function twoInputs(a: [number, number], b: [number, number], avoidB: number[] = []): fc.Arbitrary<Sample<undefined>> {
  return broadcastPairArb(4, 512).chain(([sa, sb]) =>
    fc
      .tuple(tensorArb(sa, a[0], a[1]), tensorArb(sb, b[0], b[1], avoidB, 0.3))
      .map((inputs) => ({ inputs, params: undefined })),
  );
}

/** Values on a 1/64 grid for a and a grid offset by 1/128 for b: never tied, at least 1/128 apart. */
function untiedPair(): fc.Arbitrary<Sample<undefined>> {
  const grid = (shape: number[], offset: number) =>
    fc
      .array(fc.integer({ min: -128, max: 128 }), {
        minLength: shape.reduce((p, d) => p * d, 1),
        maxLength: shape.reduce((p, d) => p * d, 1),
      })
      .map((v) => ({ shape, data: Float64Array.from(v, (k) => k / 64 + offset) }));
  return broadcastPairArb(4, 512).chain(([sa, sb]) =>
    fc.tuple(grid(sa, 0), grid(sb, 1 / 128)).map((inputs) => ({ inputs, params: undefined })),
  );
}

/** Small integers, so equality and ties are frequent for comparisons. */
function tiedPair(): fc.Arbitrary<Sample<undefined>> {
  const ints = (shape: number[]) =>
    fc
      .array(fc.integer({ min: -2, max: 2 }), {
        minLength: shape.reduce((p, d) => p * d, 1),
        maxLength: shape.reduce((p, d) => p * d, 1),
      })
      .map((v) => ({ shape, data: Float64Array.from(v) }));
  return broadcastPairArb(4, 512).chain(([sa, sb]) =>
    fc.tuple(ints(sa), ints(sb)).map((inputs) => ({ inputs, params: undefined })),
  );
}

type Bin = (a: T.Tensor, b: T.Tensor) => T.Tensor;
const bin = (name: string, op: Bin, arb: fc.Arbitrary<Sample<undefined>>, extra: Partial<OpCase> = {}): OpCase => ({
  name: `binary.${name}`,
  arb,
  f: ([a, b]) => op(a as T.Tensor, b as T.Tensor),
  ...extra,
});

export const binary: OpCase[] = [
  bin('add', T.add, twoInputs([-2, 2], [-2, 2])),
  bin('sub', T.sub, twoInputs([-2, 2], [-2, 2])),
  bin('mul', T.mul, twoInputs([-2, 2], [-2, 2])),
  bin('div', T.div, twoInputs([-2, 2], [-2, 2], [0])),
  bin('pow', T.pow, twoInputs([0.2, 3], [-2, 2])),
  bin('maximum', T.maximum, untiedPair()),
  bin('minimum', T.minimum, untiedPair()),
  bin('siluGrad', T.siluGrad, twoInputs([-2, 2], [-4, 4])),
  bin('reluGrad', T.reluGrad, twoInputs([-2, 2], [-2, 2], [0])),
  ...(
    [
      ['eq', T.eq],
      ['ne', T.ne],
      ['lt', T.lt],
      ['le', T.le],
      ['gt', T.gt],
      ['ge', T.ge],
    ] as const
  ).map(([op, fn]) => bin(op, fn as Bin, tiedPair(), { noGrad: true, tol32: 0 })),
];

export const others: OpCase[] = [
  {
    name: 'where: broadcast cond, a, b',
    arb: broadcastPairArb(3, 256).chain(([sa, sb]) =>
      fc
        .tuple(
          fc.array(fc.boolean(), {
            minLength: sa.reduce((p, d) => p * d, 1),
            maxLength: sa.reduce((p, d) => p * d, 1),
          }),
          tensorArb(sa, -2, 2),
          tensorArb(sb, -2, 2),
        )
        .map(([c, a, b]) => ({ inputs: [{ shape: sa, data: Float64Array.from(c, Number) }, a, b], params: undefined })),
    ),
    f: ([c, a, b]) => T.where(c as T.Tensor, a as T.Tensor, b as T.Tensor),
    diff: [false, true, true],
  },
  {
    name: 'clamp: [-0.5, 0.75]',
    arb: oneInput(-2, 2, [-0.5, 0.75]),
    f: ([x]) => T.clamp(x as T.Tensor, -0.5, 0.75),
  },
  {
    name: 'clamp: lower bound only',
    arb: oneInput(-2, 2, [0.25]),
    f: ([x]) => T.clamp(x as T.Tensor, 0.25),
  },
  {
    name: 'scalar operands: 3 - x, x / 4, 2 ** x',
    arb: oneInput(-2, 2),
    f: ([x]) => T.add(T.sub(3, x as T.Tensor), T.add(T.div(x as T.Tensor, 4), T.pow(2, x as T.Tensor))),
  },
];

export const elementwiseCases: OpCase[] = [...unary, ...binary, ...others];
