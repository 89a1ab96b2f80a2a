// Cases for the three convolution primitives: conv2d (stride, padding, dilation, groups),
// conv2dInput (= conv_transpose2d, with output padding) and conv2dWeight.

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { type OpCase, tensorArb } from '../harness/sample.js';

interface Geom {
  n: number;
  groups: number;
  cg: number; // input channels per group
  og: number; // output channels per group
  h: number;
  w: number;
  kh: number;
  kw: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
}

const geomArb: fc.Arbitrary<Geom> = fc
  .record({
    n: fc.integer({ min: 1, max: 2 }),
    groups: fc.integer({ min: 1, max: 2 }),
    cg: fc.integer({ min: 1, max: 3 }),
    og: fc.integer({ min: 1, max: 3 }),
    h: fc.constantFrom(1, 3, 4, 5, 7, 17),
    w: fc.constantFrom(1, 2, 3, 6, 9),
    kh: fc.integer({ min: 1, max: 3 }),
    kw: fc.integer({ min: 1, max: 3 }),
    stride: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 })),
    padding: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 1 })),
    dilation: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 })),
  })
  // an output of at least 1x1
  .filter(
    (g) =>
      g.h + 2 * g.padding[0] >= g.dilation[0] * (g.kh - 1) + 1 &&
      g.w + 2 * g.padding[1] >= g.dilation[1] * (g.kw - 1) + 1,
  );

const outSize = (i: number, k: number, s: number, p: number, d: number) =>
  Math.floor((i + 2 * p - d * (k - 1) - 1) / s) + 1;

function shapes(g: Geom) {
  const c = g.cg * g.groups;
  const o = g.og * g.groups;
  const oh = outSize(g.h, g.kh, g.stride[0], g.padding[0], g.dilation[0]);
  const ow = outSize(g.w, g.kw, g.stride[1], g.padding[1], g.dilation[1]);
  return { x: [g.n, c, g.h, g.w], w: [o, g.cg, g.kh, g.kw], y: [g.n, o, oh, ow], b: [o] };
}

const opts = (g: Geom) => ({ stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups });

// float32 sums of K = C/g * KH * KW <= 27 products: 2e-5 of (max|y| + 1), as for matmul.
const tol32 = 2e-5;

export const convCases: OpCase<Geom>[] = [
  {
    name: 'conv2d: stride, padding, dilation, groups, bias',
    arb: geomArb.chain((g) => {
      const s = shapes(g);
      return fc
        .tuple(tensorArb(s.x, -1, 1), tensorArb(s.w, -1, 1), tensorArb(s.b, -1, 1))
        .map((inputs) => ({ inputs, params: g }));
    }),
    f: ([x, w, b], g) => T.conv2d(x as T.Tensor, w as T.Tensor, b, opts(g)),
    tol32,
  },
  {
    name: 'conv2dInput (conv_transpose2d): the input gradient of conv2d',
    arb: geomArb.chain((g) => {
      const s = shapes(g);
      return fc.tuple(tensorArb(s.y, -1, 1), tensorArb(s.w, -1, 1)).map((inputs) => ({ inputs, params: g }));
    }),
    f: ([gy, w], g) => T.conv2dInput(gy as T.Tensor, w as T.Tensor, { ...opts(g), inShape: shapes(g).x }),
    tol32,
  },
  {
    name: 'conv2dWeight: the weight gradient of conv2d',
    arb: geomArb.chain((g) => {
      const s = shapes(g);
      return fc.tuple(tensorArb(s.x, -1, 1), tensorArb(s.y, -1, 1)).map((inputs) => ({ inputs, params: g }));
    }),
    f: ([x, gy], g) => T.conv2dWeight(x as T.Tensor, gy as T.Tensor, { ...opts(g), wShape: shapes(g).w }),
    // sums over N * OH * OW <= 2 * 17 * 9 terms
    tol32: 5e-5,
  },
  {
    name: 'convTranspose2d: stride, padding, output padding, dilation, groups, bias',
    arb: geomArb
      .chain((g) =>
        fc
          .tuple(
            fc.integer({ min: 0, max: Math.max(g.stride[0], g.dilation[0]) - 1 }),
            fc.integer({ min: 0, max: Math.max(g.stride[1], g.dilation[1]) - 1 }),
          )
          .map((op) => ({ g, op })),
      )
      // a non-empty output: (H - 1) * stride - 2 * padding + dilation * (K - 1) + outputPadding + 1 >= 1
      .filter(({ g, op }) =>
        [0, 1].every(
          (i) =>
            ([g.h, g.w][i]! - 1) * g.stride[i]! -
              2 * g.padding[i]! +
              g.dilation[i]! * ([g.kh, g.kw][i]! - 1) +
              op[i]! >=
            0,
        ),
      )
      .chain(({ g, op }) => {
        // convTranspose2d's weight is [Cin, Cout/groups, KH, KW]; its input plays conv2d's output
        const cin = g.og * g.groups;
        const x = [g.n, cin, g.h, g.w];
        const w = [cin, g.cg, g.kh, g.kw];
        return fc
          .tuple(tensorArb(x, -1, 1), tensorArb(w, -1, 1), tensorArb([g.cg * g.groups], -1, 1))
          .map((inputs) => ({ inputs, params: { ...g, outputPadding: op } }));
      }),
    f: ([x, w, b], g) =>
      T.convTranspose2d(x as T.Tensor, w as T.Tensor, b, {
        ...opts(g),
        outputPadding: (g as Geom & { outputPadding: [number, number] }).outputPadding,
      }),
    tol32,
  },
];
