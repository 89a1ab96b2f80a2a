// Cases for the shape primitives and the composites built on them: reshape, permute/transpose,
// expand, slice/narrow/flip, concat/stack, pad (zero and replicate), gather/scatterAdd/indexSelect,
// squeeze/unsqueeze. Random shapes with size-1 axes and the odd tile edges of dimArb.
//
// Tolerances: cases whose forward and VJP only move elements (no arithmetic; the VJP is another
// copy or an embed into zeros) must agree exactly in float32 and float64 (tol32: 0), since every
// input and cotangent is float32-representable. Cases whose VJP sums (expand -> sumTo, gather ->
// scatterAdd with duplicate indices, replicate pad) keep the default 1e-5.

import fc from 'fast-check';
import * as T from '../../src/index.js';
import type { SliceSpec } from '../../src/tensor/prims/shape.js';
import { dimArb, type HostTensor, type OpCase, type Sample, shapeArb, tensorArb } from '../harness/sample.js';

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** An axis of a rank-r tensor, given as a negative number about half the time. */
const axisArb = (r: number) => fc.integer({ min: -r, max: r - 1 });
const norm = (a: number, r: number) => (a < 0 ? a + r : a);

/** Erase a case's parameter type for the shared catalog (P is only seen by its own arb and f). */
const def = <P>(c: OpCase<P>): OpCase => c as unknown as OpCase;

/** Integer values in [lo, hi] (index tensors; exact in float32). */
function intTensorArb(shape: number[], lo: number, hi: number): fc.Arbitrary<HostTensor> {
  const n = prod(shape);
  return fc
    .array(fc.integer({ min: lo, max: hi }), { minLength: n, maxLength: n })
    .map((v) => ({ shape, data: Float64Array.from(v) }));
}

/** A shape, one tensor on it and extra generated parameters. */
function withShape<E, P>(
  shapes: fc.Arbitrary<number[]>,
  extra: (s: number[]) => fc.Arbitrary<E>,
  params: (s: number[], e: E) => P,
): fc.Arbitrary<Sample<P>> {
  return shapes.chain((s) => fc.tuple(tensorArb(s), extra(s)).map(([x, e]) => ({ inputs: [x], params: params(s, e) })));
}

const COPY = { tol32: 0 } as const;

// ---- reshape / squeeze / unsqueeze ------------------------------------------------------------

const reshapeCases: OpCase[] = [
  def<{ shape: number[] }>({
    name: 'reshape: two factors, one of them given as -1',
    arb: withShape(
      shapeArb(0, 4, 512),
      (s) => fc.tuple(fc.integer({ min: 0, max: s.length }), fc.constantFrom(0, 1, 2)),
      (s, [k, minus]) => {
        const shape = [prod(s.slice(0, k)), prod(s.slice(k))];
        if (minus < 2) shape[minus] = -1;
        return { shape };
      },
    ),
    f: ([x], p) => T.reshape(x as T.Tensor, p.shape),
    ...COPY,
  }),
  def<{ shape: number[] }>({
    name: 'reshape: reversed axes with a size-1 axis inserted',
    arb: withShape(
      shapeArb(0, 4, 512),
      (s) => fc.integer({ min: 0, max: s.length }),
      (s, k) => {
        const shape = [...s].reverse();
        shape.splice(k, 0, 1);
        return { shape };
      },
    ),
    f: ([x], p) => T.reshape(x as T.Tensor, p.shape),
    ...COPY,
  }),
  def<{ axis: number }>({
    name: 'unsqueeze: any axis of rank + 1',
    arb: withShape(
      shapeArb(0, 4, 512),
      (s) => fc.integer({ min: -s.length - 1, max: s.length }),
      (_s, axis) => ({ axis }),
    ),
    f: ([x], p) => T.unsqueeze(x as T.Tensor, p.axis),
    ...COPY,
  }),
  def<{ axes: number[] | undefined }>({
    name: 'squeeze: all size-1 axes, or a chosen subset of them',
    arb: shapeArb(0, 4, 512)
      .chain((s) =>
        fc.tuple(fc.constant(s), fc.array(fc.integer({ min: 0, max: s.length }), { maxLength: 2 })).map(([s0, at]) => {
          // insert extra size-1 axes so there is something to squeeze
          const t = [...s0];
          for (const a of at) t.splice(Math.min(a, t.length), 0, 1);
          return t;
        }),
      )
      .chain((s) =>
        fc
          .tuple(
            tensorArb(s),
            fc.option(fc.subarray(s.flatMap((d, i) => (d === 1 ? [i] : []))), { nil: undefined }),
            fc.boolean(),
          )
          .map(([x, axes, negative]) => ({
            inputs: [x],
            params: { axes: negative && axes ? axes.map((a) => a - s.length) : axes },
          })),
      ),
    f: ([x], p) => T.squeeze(x as T.Tensor, p.axes),
    ...COPY,
  }),
];

// ---- permute / transpose / expand --------------------------------------------------------------

const permuteCases: OpCase[] = [
  def<{ perm: number[] }>({
    name: 'permute: random permutation (some entries negative)',
    arb: withShape(
      shapeArb(1, 4, 512),
      (s) =>
        fc.tuple(
          fc.shuffledSubarray(range(s.length), { minLength: s.length, maxLength: s.length }),
          fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }),
        ),
      (s, [perm, neg]) => ({ perm: perm.map((p, i) => (neg[i] ? p - s.length : p)) }),
    ),
    f: ([x], p) => T.permute(x as T.Tensor, p.perm),
    ...COPY,
  }),
  def<{ a: number; b: number }>({
    name: 'transpose: two random axes (possibly equal)',
    arb: withShape(
      shapeArb(1, 4, 512),
      (s) => fc.tuple(axisArb(s.length), axisArb(s.length)),
      (_s, [a, b]) => ({ a, b }),
    ),
    f: ([x], p) => T.transpose(x as T.Tensor, p.a, p.b),
    ...COPY,
  }),
  {
    name: 'transpose: default (last two axes)',
    arb: withShape(
      shapeArb(2, 4, 512),
      () => fc.constant(undefined),
      () => undefined,
    ),
    f: ([x]) => T.transpose(x as T.Tensor),
    ...COPY,
  },
  def<{ shape: number[] }>({
    name: 'expand: size-1 and missing leading axes broadcast to a larger shape',
    arb: shapeArb(0, 4, 512).chain((out) =>
      fc
        .tuple(
          fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
          fc.integer({ min: 0, max: out.length }),
        )
        .chain(([ones, drop]) =>
          tensorArb(out.map((d, i) => (ones[i] ? 1 : d)).slice(drop)).map((x) => ({
            inputs: [x],
            params: { shape: out },
          })),
        ),
    ),
    f: ([x], p) => T.expand(x as T.Tensor, p.shape),
  }),
];

// ---- slice / narrow / flip ---------------------------------------------------------------------

/**
 * A non-empty slice spec for an axis of size n with step 1, 2, -1 or -2. Starts and ends are
 * written positive, negative or omitted at random (and, for negative steps, a start of n, which
 * is clamped to n - 1 as in Python).
 */
function sliceSpecArb(n: number): fc.Arbitrary<SliceSpec> {
  const forms = (k: number, options: (number | null)[]) => options[k % options.length] ?? null;
  const spec = fc.constantFrom(1, 2, -1, -2).chain((step) => {
    if (step > 0) {
      return fc
        .integer({ min: 0, max: n - 1 })
        .chain((b) => fc.tuple(fc.constant(b), fc.integer({ min: b + 1, max: n }), fc.nat(5), fc.nat(5)))
        .map(([b, e, fs, fe]): SliceSpec => {
          const start = forms(fs, b === 0 ? [b, b - n, null] : [b, b - n]);
          const end = forms(fe, e === n ? [e, null] : [e, e - n]);
          return [start, end, step];
        });
    }
    return fc
      .integer({ min: 0, max: n - 1 })
      .chain((b) => fc.tuple(fc.constant(b), fc.integer({ min: -1, max: b - 1 }), fc.nat(5), fc.nat(5)))
      .map(([b, e, fs, fe]): SliceSpec => {
        const start = forms(fs, b === n - 1 ? [b, b - n, null, n] : [b, b - n]);
        // end -1 means "past index 0" here, which only an omitted end can say
        const end = e === -1 ? null : forms(fe, [e, e - n]);
        return [start, end, step];
      });
  });
  return fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 4, arbitrary: spec });
}

const sliceCases: OpCase[] = [
  def<{ specs: SliceSpec[] }>({
    name: 'slice: random [start, end, step] per leading axis, steps 1, 2, -1, -2, negative bounds',
    arb: shapeArb(1, 4, 512).chain((s) =>
      fc
        .tuple(tensorArb(s), fc.tuple(...s.map(sliceSpecArb)), fc.integer({ min: 1, max: s.length }))
        .map(([x, specs, k]) => ({ inputs: [x], params: { specs: specs.slice(0, k) } })),
    ),
    f: ([x], p) => T.slice(x as T.Tensor, p.specs),
    ...COPY,
  }),
  def<{ axis: number; start: number; length: number }>({
    name: 'narrow: random axis, start and length',
    arb: shapeArb(1, 4, 512).chain((s) =>
      axisArb(s.length).chain((axis) => {
        const n = s[norm(axis, s.length)] as number;
        return fc
          .integer({ min: 0, max: n - 1 })
          .chain((start) => fc.tuple(tensorArb(s), fc.constant(start), fc.integer({ min: 1, max: n - start })))
          .map(([x, start, length]) => ({ inputs: [x], params: { axis, start, length } }));
      }),
    ),
    f: ([x], p) => T.narrow(x as T.Tensor, p.axis, p.start, p.length),
    ...COPY,
  }),
  def<{ axes: number[] }>({
    name: 'flip: random subset of axes',
    arb: withShape(
      shapeArb(1, 4, 512),
      (s) => fc.tuple(fc.subarray(range(s.length), { minLength: 1 }), fc.boolean()),
      (s, [axes, neg]) => ({ axes: neg ? axes.map((a) => a - s.length) : axes }),
    ),
    f: ([x], p) => T.flip(x as T.Tensor, p.axes),
    ...COPY,
  }),
];

// ---- concat / stack / pad ----------------------------------------------------------------------

const joinCases: OpCase[] = [
  def<{ axis: number }>({
    name: 'concat: 2-3 inputs of different sizes along a random axis',
    arb: shapeArb(1, 3, 256).chain((base) =>
      fc
        .tuple(axisArb(base.length), fc.array(dimArb(17), { minLength: 2, maxLength: 3 }))
        .chain(([axis, sizes]) =>
          fc
            .tuple(...sizes.map((d) => tensorArb(base.map((b, i) => (i === norm(axis, base.length) ? d : b)))))
            .map((inputs) => ({ inputs, params: { axis } })),
        ),
    ),
    f: (xs, p) => T.concat(xs, p.axis),
    ...COPY,
  }),
  def<{ axis: number }>({
    name: 'stack: 2-3 inputs along a random new axis',
    arb: shapeArb(0, 3, 256).chain((s) =>
      fc
        .tuple(fc.integer({ min: -s.length - 1, max: s.length }), fc.integer({ min: 2, max: 3 }))
        .chain(([axis, k]) =>
          fc.tuple(...range(k).map(() => tensorArb(s))).map((inputs) => ({ inputs, params: { axis } })),
        ),
    ),
    f: (xs, p) => T.stack(xs, p.axis),
    ...COPY,
  }),
  ...(['zero', 'replicate'] as const).map((mode) =>
    def<{ pads: [number, number][] }>({
      name: `pad: ${mode}, random pads on the last 1-3 axes`,
      arb: withShape(
        shapeArb(1, 4, 512),
        (s) =>
          fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })), {
            minLength: 1,
            maxLength: Math.min(3, s.length),
          }),
        (_s, pads) => ({ pads }),
      ),
      f: ([x], p) => T.pad(x as T.Tensor, p.pads, mode),
      // zero padding is an embed (VJP a slice): exact. Replicate's VJP sums the copies of each edge.
      ...(mode === 'zero' ? COPY : {}),
    }),
  ),
];

// ---- gather / scatterAdd / indexSelect ---------------------------------------------------------

const indexCases: OpCase[] = [
  def<{ axis: number }>({
    name: 'gather: random axis, index smaller on other axes, repeated index values',
    arb: shapeArb(1, 3, 256).chain((s) =>
      axisArb(s.length).chain((axis) => {
        const a = norm(axis, s.length);
        const n = s[a] as number;
        return fc
          .tuple(...s.map((d, k) => (k === a ? fc.integer({ min: 1, max: 6 }) : fc.integer({ min: 1, max: d }))))
          .chain((is) => fc.tuple(tensorArb(s), intTensorArb(is, 0, n - 1)))
          .map(([x, index]) => ({ inputs: [x, index], params: { axis } }));
      }),
    ),
    f: ([x, index], p) => T.gather(x as T.Tensor, p.axis, index as T.Tensor),
    diff: [true, false],
  }),
  def<{ shape: number[]; axis: number }>({
    // more index entries along the axis than the axis has positions: duplicates on every line
    name: 'scatterAdd: duplicate indices along a random axis',
    arb: shapeArb(1, 3, 256, 17).chain((s) =>
      axisArb(s.length).chain((axis) => {
        const a = norm(axis, s.length);
        const n = s[a] as number;
        return fc
          .tuple(
            ...s.map((d, k) => (k === a ? fc.integer({ min: n + 1, max: n + 4 }) : fc.integer({ min: 1, max: d }))),
          )
          .chain((is) => fc.tuple(intTensorArb(is, 0, n - 1), tensorArb(is)))
          .map(([index, src]) => ({ inputs: [index, src], params: { shape: s, axis } }));
      }),
    ),
    f: ([index, src], p) => T.scatterAdd(p.shape, p.axis, index as T.Tensor, src as T.Tensor),
    diff: [false, true],
  }),
  def<{ axis: number; indices: number[] }>({
    name: 'indexSelect: index list with repeats and negative entries',
    arb: shapeArb(1, 4, 512).chain((s) =>
      axisArb(s.length).chain((axis) => {
        const n = s[norm(axis, s.length)] as number;
        return fc
          .tuple(tensorArb(s), fc.array(fc.integer({ min: -n, max: n - 1 }), { minLength: 1, maxLength: 6 }))
          .map(([x, idx]) => ({ inputs: [x], params: { axis, indices: [...idx, idx[0] as number] } }));
      }),
    ),
    f: ([x], p) => T.indexSelect(x as T.Tensor, p.axis, p.indices),
  }),
  def<{ axis: number }>({
    name: 'indexSelect: 1-D index tensor with repeats',
    arb: shapeArb(1, 4, 512).chain((s) =>
      axisArb(s.length).chain((axis) => {
        const n = s[norm(axis, s.length)] as number;
        return fc
          .integer({ min: 1, max: 8 })
          .chain((k) => fc.tuple(tensorArb(s), intTensorArb([k], 0, n - 1)))
          .map(([x, idx]) => ({ inputs: [x, idx], params: { axis } }));
      }),
    ),
    f: ([x, idx], p) => T.indexSelect(x as T.Tensor, p.axis, idx as T.Tensor),
    diff: [true, false],
  }),
];

export const shapeCases: OpCase[] = [...reshapeCases, ...permuteCases, ...sliceCases, ...joinCases, ...indexCases];
