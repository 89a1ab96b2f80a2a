// Cases for the composite ops (built from primitives, so their gradients come for free and these
// properties check the composition): softmax/logSoftmax/logsumexp, variance, layerNorm, groupNorm,
// batchNorm (inference), avgPool2d, nearest and bilinear upsampling, gridSample.
// silu and gelu are unary primitives here and are covered in elementwise.ts.

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { dimArb, type HostTensor, type OpCase, type Sample, shapeArb, tensorArb } from '../harness/sample.js';

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const axisArb = (r: number) => fc.integer({ min: -r, max: r - 1 });

/** Erase a case's parameter type for the shared catalog (P is only seen by its own arb and f). */
const def = <P>(c: OpCase<P>): OpCase => c as unknown as OpCase;

// layerNorm and groupNorm run on the fused primitive normalizeLastAxis and meet the default tol32
// (1e-5). They needed 3e-4 as composites: on near-constant groups the float32 rounding of the
// mean, up to 2^-24 max|x|, was amplified by rsqrt(var + eps) <= 316 (e.g. layerNorm([2, 2 - 2^-22,
// 2 - 2^-22]) erred by 1.26e-5). The fused forward rounds once on cpu and shifts each row on
// webgpu (see test/cases/norm.ts); 1000 runs of (c) passed at 1e-5, the worst at 3.2e-6.

// ---- softmax family ----------------------------------------------------------------------------

type AxisP = { axis: number; keepdim: boolean };

/** A tensor of rank >= 1 with values in [-4, 4] and a random axis (negative half the time). */
const axisSample: fc.Arbitrary<Sample<AxisP>> = shapeArb(1, 4, 512).chain((s) =>
  fc
    .tuple(tensorArb(s, -4, 4), axisArb(s.length), fc.boolean())
    .map(([x, axis, keepdim]) => ({ inputs: [x], params: { axis, keepdim } })),
);

const softmaxCases: OpCase[] = [
  def<AxisP>({ name: 'softmax: random axis', arb: axisSample, f: ([x], p) => T.softmax(x as T.Tensor, p.axis) }),
  def<AxisP>({
    name: 'logSoftmax: random axis',
    arb: axisSample,
    f: ([x], p) => T.logSoftmax(x as T.Tensor, p.axis),
  }),
  def<AxisP>({
    name: 'logsumexp: random axis, keepdim or not',
    arb: axisSample,
    f: ([x], p) => T.logsumexp(x as T.Tensor, p.axis, p.keepdim),
  }),
];

// ---- variance and normalisations --------------------------------------------------------------

type VarP = { axes: number[] | undefined; correction: number; keepdim: boolean };

const varianceCases: OpCase[] = [0, 1].map((correction) =>
  def<VarP>({
    name: `variance: correction ${correction}, random axes (or all), keepdim or not`,
    // with correction 1, some axis must have two or more elements (else no subset can)
    arb: shapeArb(1, 4, 512)
      .filter((s) => prod(s) > correction)
      .chain((s) =>
        fc
          .tuple(
            tensorArb(s),
            fc.option(fc.subarray(range(s.length), { minLength: 1 }), { nil: undefined }),
            fc.boolean(),
          )
          .filter(([, axes]) => prod((axes ?? range(s.length)).map((a) => s[a] as number)) > correction)
          .map(([x, axes, keepdim]) => ({ inputs: [x], params: { axes, correction, keepdim } })),
      ),
    f: ([x], p) => T.variance(x as T.Tensor, p.axes, { correction: p.correction, keepdim: p.keepdim }),
  }),
);

type Affine = 'none' | 'weight and bias' | 'weight only';
const AFFINE: Affine[] = ['none', 'weight and bias', 'weight only'];

/** Optional weight (values in [0.5, 2], either sign) and bias of `shape`. */
function affineArb(shape: number[], a: Affine): fc.Arbitrary<HostTensor[]> {
  const w = tensorArb(shape, -2, 2, [0], 0.5);
  const b = tensorArb(shape, -1, 1);
  if (a === 'none') return fc.constant([]);
  if (a === 'weight only') return w.map((x) => [x]);
  return fc.tuple(w, b);
}

const layerNormCases: OpCase[] = AFFINE.map((affine) =>
  def<{ normalized: number[] }>({
    name: `layerNorm: last 1-3 axes, affine: ${affine}`,
    arb: shapeArb(1, 4, 512).chain((s) =>
      fc.integer({ min: 1, max: Math.min(3, s.length) }).chain((k) => {
        const normalized = s.slice(s.length - k);
        return fc
          .tuple(tensorArb(s), affineArb(normalized, affine))
          .map(([x, ps]) => ({ inputs: [x, ...ps], params: { normalized } }));
      }),
    ),
    f: ([x, w, b], p) => T.layerNorm(x as T.Tensor, p.normalized, w, b),
  }),
);

/** [N, C, ...spatial] with C = groups * k and 0-2 spatial axes. */
const nchwLike = (groups: number, maxSpatial = 2) =>
  fc
    .tuple(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 3 }),
      fc.array(dimArb(17), { minLength: 0, maxLength: maxSpatial }),
    )
    .map(([n, k, sp]) => [n, groups * k, ...sp])
    .filter((s) => prod(s) <= 512);

const groupNormCases: OpCase[] = AFFINE.slice(0, 2).map((affine) =>
  def<{ groups: number }>({
    name: `groupNorm: random groups dividing C, affine: ${affine}`,
    arb: fc
      .integer({ min: 1, max: 4 })
      .chain((groups) =>
        nchwLike(groups).chain((s) =>
          fc
            .tuple(tensorArb(s), affineArb([s[1] as number], affine))
            .map(([x, ps]) => ({ inputs: [x, ...ps], params: { groups } })),
        ),
      ),
    f: ([x, w, b], p) => T.groupNorm(x as T.Tensor, p.groups, w, b),
  }),
);

const batchNormCases: OpCase[] = AFFINE.slice(0, 2).map((affine) =>
  def<undefined>({
    // inference mode: running statistics are inputs, runningVar in [0.2, 2] keeps rsqrt smooth
    name: `batchNorm (inference): affine: ${affine}`,
    arb: fc.integer({ min: 1, max: 2 }).chain((g) =>
      nchwLike(g).chain((s) => {
        const c = s[1] as number;
        return fc
          .tuple(tensorArb(s), tensorArb([c], -1, 1), tensorArb([c], 0.2, 2), affineArb([c], affine))
          .map(([x, m, v, ps]) => ({ inputs: [x, m, v, ...ps], params: undefined }));
      }),
    ),
    f: ([x, m, v, w, b]) => T.batchNorm(x as T.Tensor, m as T.Tensor, v as T.Tensor, w, b),
  }),
);

// ---- pooling and resampling --------------------------------------------------------------------

/** [N, C, H, W] with small N, C and H, W from dimArb(maxHw). */
const nchwArb = (maxHw = 17, maxSize = 1024) =>
  fc
    .tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 }), dimArb(maxHw), dimArb(maxHw))
    .filter((s) => prod(s) <= maxSize);

type PoolP = { kernel: number; stride: number | undefined; padding: number };

const poolCases: OpCase[] = [
  def<PoolP>({
    name: 'avgPool2d: kernel 2 or 3, stride 1-3 or default, padding <= kernel/2',
    arb: fc
      .tuple(fc.constantFrom(2, 3), fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }))
      .chain(([kernel, stride]) =>
        fc.integer({ min: 0, max: Math.floor(kernel / 2) }).chain((padding) =>
          nchwArb()
            .filter(([, , h, w]) => h + 2 * padding >= kernel && w + 2 * padding >= kernel)
            .chain((s) => tensorArb(s).map((x) => ({ inputs: [x], params: { kernel, stride, padding } }))),
        ),
      ),
    f: ([x], p) => T.avgPool2d(x as T.Tensor, p.kernel, p.stride, p.padding),
  }),
];

type SizeP = { size?: [number, number]; scaleFactor?: number };

/** scaleFactor 2, or an output size that is no integer multiple (up- or downsampling per axis). */
const resampleArb: fc.Arbitrary<Sample<SizeP>> = nchwArb(17, 512).chain((s) =>
  fc
    .tuple(
      tensorArb(s),
      fc.oneof(
        fc.constant<SizeP>({ scaleFactor: 2 }),
        fc
          .tuple(
            fc.integer({ min: 1, max: 3 * (s[2] as number) + 1 }),
            fc.integer({ min: 1, max: 3 * (s[3] as number) + 1 }),
          )
          .map((size): SizeP => ({ size })),
      ),
    )
    .map(([x, params]) => ({ inputs: [x], params })),
);

const resampleCases: OpCase[] = [
  def<SizeP>({
    name: 'upsampleNearest2d: scaleFactor 2 or a random size',
    arb: resampleArb,
    f: ([x], p) => T.upsampleNearest2d(x as T.Tensor, p),
  }),
  def<SizeP>({
    name: 'upsampleBilinear2d: scaleFactor 2 or a random size',
    arb: resampleArb,
    f: ([x], p) => T.upsampleBilinear2d(x as T.Tensor, p),
  }),
];

/**
 * Grid values (align_corners=False) whose pixel coordinate k + frac has frac in [0.1, 0.9],
 * away from the integer kinks of bilinear interpolation, with k in [-2, size]: some points have
 * one corner outside the image (k = -1 or size - 1), some lie wholly outside (k = -2 or size).
 */
function gridCoordArb(size: number): fc.Arbitrary<number> {
  return fc
    .tuple(fc.integer({ min: -2, max: size }), fc.double({ min: 0.1, max: 0.9, noNaN: true }))
    .map(([k, frac]) => Math.fround((2 * (k + frac) + 1) / size - 1));
}

const gridSampleCase = def<undefined>({
  name: 'gridSample: bilinear, zero padding, points partly and wholly outside',
  arb: fc
    .tuple(nchwArb(17, 512), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }))
    .chain(([s, oh, ow]) => {
      const [n, , h, w] = s as [number, number, number, number];
      const points = fc
        .array(fc.tuple(gridCoordArb(w), gridCoordArb(h)), { minLength: n * oh * ow, maxLength: n * oh * ow })
        .map((xy) => ({ shape: [n, oh, ow, 2], data: Float64Array.from(xy.flat()) }));
      return fc.tuple(tensorArb(s), points).map((inputs) => ({ inputs, params: undefined }));
    }),
  f: ([x, grid]) => T.gridSample(x as T.Tensor, grid as T.Tensor),
  // ~40 small ops per evaluation and 33 evaluations per run of (a): 10 runs keep the case under 1 s
  runs: 10,
  // float32 rounds the unnormalised coordinate ((g + 1) W - 1) / 2 to ~W * 2^-24 = 1e-6 pixels
  // (W <= 17); the output moves by that times the neighbour difference (<= 4), ~4e-6 against a
  // bound of tol * (max|y| + 1) >= tol. The grid VJP scales by W / 2 alike. 1e-5 covers it.
});

export const compositeCases: OpCase[] = [
  ...softmaxCases,
  ...varianceCases,
  ...layerNormCases,
  ...groupNormCases,
  ...batchNormCases,
  ...poolCases,
  ...resampleCases,
  gridSampleCase,
];
