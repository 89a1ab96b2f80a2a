// Cases for the reductions: sum/mean/max/min over random axis sets with and without keepdim,
// argmax/argmin (not differentiable; float32 must pick the same index as float64).

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { distinctTensorArb, type OpCase, type Sample, shapeArb, tensorArb } from '../harness/sample.js';

interface AxesParams {
  axes: number[] | undefined;
  keepdim: boolean;
}

/** A shape (rank >= 1), a random subset of its axes (or undefined = all, sometimes) and keepdim. */
function withAxes(
  values: (shape: number[]) => fc.Arbitrary<Sample['inputs'][number]>,
): fc.Arbitrary<Sample<AxesParams>> {
  return shapeArb(1, 4, 1024).chain((shape) =>
    fc
      .tuple(
        values(shape),
        fc.option(
          fc.subarray(
            shape.map((_, i) => i),
            { minLength: 1 },
          ),
          { nil: undefined, freq: 5 },
        ),
        fc.boolean(),
        fc.boolean(),
      )
      .map(([x, axes, keepdim, negative]) => ({
        inputs: [x],
        // also exercise negative axis numbers
        params: { axes: axes?.map((a) => (negative ? a - shape.length : a)), keepdim },
      })),
  );
}

const anyValues = (shape: number[]) => tensorArb(shape, -2, 2);

export const reduceCases: OpCase<AxesParams>[] = [
  {
    name: 'reduce.sum: random axes, keepdim',
    arb: withAxes(anyValues),
    f: ([x], p) => T.sum(x as T.Tensor, p.axes, p.keepdim),
  },
  {
    name: 'reduce.mean: random axes, keepdim',
    arb: withAxes(anyValues),
    f: ([x], p) => T.mean(x as T.Tensor, p.axes, p.keepdim),
  },
  {
    // distinct values: the derivative of max is undefined at ties
    name: 'reduce.max: random axes, keepdim',
    arb: withAxes(distinctTensorArb),
    f: ([x], p) => T.max(x as T.Tensor, p.axes, p.keepdim),
  },
  {
    name: 'reduce.min: random axes, keepdim',
    arb: withAxes(distinctTensorArb),
    f: ([x], p) => T.min(x as T.Tensor, p.axes, p.keepdim),
  },
  {
    name: 'reduce.max: ties share the gradient evenly',
    // all-equal rows: every element is a maximum; the VJP gives each 1/count (torch.amax)
    arb: shapeArb(1, 3, 256).map((shape) => ({
      inputs: [{ shape, data: new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) }],
      params: { axes: [shape.length - 1], keepdim: false },
    })),
    f: ([x], p) => T.max(x as T.Tensor, p.axes, p.keepdim),
    // finite differences at a tie see a kink; only float32/float64 agreement applies
    noGrad: true,
  },
  ...(
    [
      ['argmax', T.argmax],
      ['argmin', T.argmin],
    ] as const
  ).map(
    ([op, fn]): OpCase<AxesParams> => ({
      name: `argreduce.${op}: one axis or flattened`,
      arb: withAxes(distinctTensorArb).map((s) => ({
        inputs: s.inputs,
        params: { axes: s.params.axes?.slice(0, 1), keepdim: s.params.keepdim },
      })),
      f: ([x], p) => fn(x as T.Tensor, p.axes?.[0], p.keepdim),
      noGrad: true,
      tol32: 0,
    }),
  ),
];
