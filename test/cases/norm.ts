// Cases for the fused normalisation primitive normalizeLastAxis (layerNorm and groupNorm run on it;
// their own cases are in composite.ts). Row lengths: the tile edges 1 (var 0, so the output is 0
// and rsqrt(eps) multiplies zeros), 3, 17, 33, 65 among small random ones (one webgpu lane per
// row, 256 rows per workgroup); 1000 and 1024 (4 lanes per row), 1500 (8) and 4096 (16; a DDPM++
// group of 128 channels / 32 groups at 32x32), see normLanes. Random row counts leave the last
// workgroup part empty. Every lane count and a grid past 65535 workgroups are tested in
// test/webgpu/norm.test.ts (they need the kernel's tuning overrides).
//
// Tolerance: the default tol32 1e-5 (see test/harness/sample.ts). The cpu forward accumulates in
// float64 and rounds once; the webgpu forward shifts each row by its first element, so the
// mean's rounding is relative to the row's spread and is not amplified by rsqrt(var + eps) on
// near-constant rows (the composite needed 3e-4 there; see composite.ts). The VJP recomputes
// rsqrt(var + eps) from float32 ops, where the mean's rounding enters the variance only squared
// (the first-order term sums to 0), so it stays within 1e-5 relative too. Stress runs: 1500 of
// (a)-(c) and 300 of webgpu parity per case passed, parity at a 5x tighter bound (2e-6).

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { dimArb, type OpCase, shapeArb, tensorArb } from '../harness/sample.js';

type NormP = { eps: number };

/** 1e-5 is torch's default; DDPM++ (score_sde) builds its GroupNorms with 1e-6. */
const epsArb = fc.constantFrom(1e-5, 1e-6);

const rowsOf = (lead: fc.Arbitrary<number[]>, n: fc.Arbitrary<number>) =>
  fc.tuple(lead, n, epsArb).chain(([s, k, eps]) => tensorArb([...s, k]).map((x) => ({ inputs: [x], params: { eps } })));

const f = ([x]: T.Tensor[], p: NormP) => T.normalizeLastAxis(x as T.Tensor, p.eps);

/** [N, C, ...] with 0-2 trailing axes: a channel holds N x S elements (1 among them: var 0). */
const channelsArb = fc
  .tuple(
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 5 }),
    fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 2 }),
    epsArb,
  )
  .chain(([n, c, rest, eps]) => tensorArb([n, c, ...rest]).map((x) => ({ x, eps })));

export const normCases: OpCase<NormP>[] = [
  {
    // group and layer norm's fused backward, and its own VJP: x and the cotangent g both differentiated
    name: 'normalizeLastAxisGrad: x and the cotangent g, short rows',
    arb: rowsOf(shapeArb(0, 3, 64, 17), dimArb(65)).chain(({ inputs: [x], params }) =>
      tensorArb((x as { shape: number[] }).shape).map((g) => ({ inputs: [x, g], params })),
    ),
    f: ([x, g], p) => T.normalizeLastAxisGrad(x as T.Tensor, g as T.Tensor, p.eps),
    tolFd: 1e-5, // near-constant rows at eps 1e-6, as for normalizeLastAxis below
  },
  {
    // batch norm's training normalisation (BatchNorm2d runs on it), statistics over every axis but 1
    name: 'normalizeChannels: [N, C], [N, C, L], [N, C, H, W]',
    arb: channelsArb.map(({ x, eps }) => ({ inputs: [x], params: { eps } })),
    f: ([x], p) => T.normalizeChannels(x as T.Tensor, p.eps),
    tolFd: 1e-5, // near-constant channels at eps 1e-6, as for normalizeLastAxis below
  },
  {
    // BatchNorm2d's running statistics: [mean; biased variance] per channel, not differentiable
    name: 'channelMoments: [N, C], [N, C, L], [N, C, H, W]',
    arb: channelsArb.map(({ x }) => ({ inputs: [x], params: { eps: 0 } })),
    f: ([x]) => T.channelMoments(x as T.Tensor),
    noGrad: true,
  },
  {
    // its fused backward, and that backward's own VJP (derived by hand in prims/norm.ts): x and g both differentiated
    name: 'normalizeChannelsGrad: x and the cotangent g',
    arb: channelsArb.chain(({ x, eps }) =>
      tensorArb(x.shape as number[]).map((g) => ({ inputs: [x, g], params: { eps } })),
    ),
    f: ([x, g], p) => T.normalizeChannelsGrad(x as T.Tensor, g as T.Tensor, p.eps),
    tolFd: 1e-5,
  },
  {
    name: 'normalizeLastAxis: short rows (1, 3, 17, 33, 65 among them), 0-3 leading axes',
    arb: rowsOf(shapeArb(0, 3, 64, 17), dimArb(65)),
    f,
    // Near-constant short rows (fast-check's biased values make them) at eps 1e-6: the output
    // bends on the scale sigma = sqrt(var + eps) >= 1e-3, so central differences with step h <= 2e-6
    // carry a truncation error of order (h / sigma)^2 ~ 4e-6 relative, over the default 1e-6.
    // 1e-5 leaves a margin; a wrong rule still fails by five orders.
    tolFd: 1e-5,
  },
  {
    name: 'normalizeLastAxis: long rows of 1000, 1024, 1500, 4096',
    arb: rowsOf(
      fc.integer({ min: 1, max: 3 }).map((r) => [r]),
      fc.constantFrom(1000, 1024, 1500, 4096),
    ),
    f,
    // The default finite-difference tolerance holds because the cpu kernel compensates its float64
    // sums (plain ones put rounding noise at the bound: worst err/bound 1.08 vs 0.09 over 800 runs).
    // 8 runs: each evaluates up to 12k elements some 40 times in float64.
    runs: 8,
  },
];
