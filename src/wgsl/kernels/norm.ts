// normalizeLastAxis: each row is reduced by a group of lanes of one workgroup (the whole
// workgroup for long rows, see normLanes). Each lane strides over the row, partial sums meet in a
// tree in workgroup memory; three sweeps over the row (sum, sum of squared deviations, write),
// which re-read it from memory rather than hold it in registers: rows of any length take one
// shader, and a row of the DDPM++ group norms (2048-4096 floats) stays in cache between sweeps.
//
// Accuracy, float32 (the cpu reference accumulates in float64):
// - values are shifted by the row's first element before summing. The rounding of the mean is
//   then relative to the spread of the row rather than to |mean|; without the shift a near-constant
//   row (std << |mean|) turns the mean's rounding, amplified by rsqrt(var + eps) <= eps^-1/2,
//   into output errors like the composite's 4e-4 on rows of std 0.01 about 50 (at eps 1e-6, as
//   DDPM++ uses; test/webgpu/norm.test.ts), against 2e-6 with the shift;
// - two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels;
// - partial sums with Kahan compensation, as the reduce kernels do.

import type { NormalizeAttrs } from '../../tensor/prims/norm.js';
import { sizeOf } from '../../tensor/shape.js';
import { bindingsWgsl, f32bits, grid1d, PARAMS_WGSL } from '../program.js';
import { bufOf, type WgslKernel } from './kernel.js';

/**
 * Overrides for tests and tuning: lanes per row (a power of two <= wg; null: by row length) and
 * invocations per workgroup (256: lavapipe likes large workgroups, and 64 measured no better).
 */
export const normTuning: { lanes: number | null; wg: number } = { lanes: null, wg: 256 };

/**
 * Lanes (invocations) per row, a power of two: one per 256 elements, so a long row is shared by
 * up to the whole workgroup and rows of <= 256 elements take one lane each (256 rows per
 * workgroup, no barriers). Tuned on lavapipe, where a workgroup barrier costs a coroutine switch
 * per 8 invocations: at 4096 elements 16 lanes ran in 5 ms, 256 in 34; at 64 elements x 8192 rows
 * 1 lane took 5.5 ms, 8 lanes 16.5. A hardware GPU may prefer more lanes (coalesced loads);
 * bench/norm.ts measures the choice (NORM_LANES overrides it).
 */
export function normLanes(n: number, wg = normTuning.wg): number {
  if (normTuning.lanes) return normTuning.lanes;
  let lanes = 1;
  while (lanes < wg && lanes * 256 < n) lanes *= 2;
  return lanes;
}

// one lane per row: its own partial is the row's sum
const ROW_SUM_1 = 'fn row_sum(lid: u32, lane: u32, v: f32) -> f32 { return v; }';

/** The sum of v over the lanes of each row, returned to all of them (call in uniform control flow). */
function rowSumTree(lanes: number, wg: number): string {
  return `var<workgroup> part: array<f32, ${wg}>;
fn row_sum(lid: u32, lane: u32, v: f32) -> f32 {
  part[lid] = v;
  workgroupBarrier();
  for (var s = ${lanes >> 1}u; s > 0u; s = s >> 1u) {
    if (lane < s) { part[lid] = part[lid] + part[lid + s]; }
    workgroupBarrier();
  }
  let total = part[lid - lane];
  // part is written again by the next call
  workgroupBarrier();
  return total;
}`;
}

function lastAxisKernel(name: string, mode: 'forward' | 'grad'): WgslKernel {
  return (ctx, ins, attrs: NormalizeAttrs, outShape, out) => {
    const n = outShape[outShape.length - 1] as number;
    const rows = sizeOf(outShape) / n;
    if (rows * n === 0) return;
    const wg = normTuning.wg;
    const lanes = normLanes(n, wg);
    ctx.dispatch(
      {
        key: `${name}:l${lanes}:w${wg}`,
        nInputs: mode === 'grad' ? 2 : 1,
        // wg / lanes rows per workgroup, folded into 2-D past 65535 workgroups
        grid: grid1d(rows, wg / lanes),
        params: [rows, n, f32bits(attrs.eps)],
        code: () => rowCode(lanes, wg, mode, 'rows'),
      },
      ins.map((t) => bufOf(t)),
      out,
    );
  };
}

/**
 * normalizeChannels, normalizeChannelsGrad and channelMoments: the same row kernel with a channel as the row (moments
 * writes the mean and biased variance, lane 0 of each channel). Channel c's n = N*S elements sit at (i / S)*C*S + c*S + i % S; params [C, n, eps, S]. The backward recomputes
 * the statistics from x (in0), sums g (in1) and g y in one sweep, then writes rstd (g - mean(g) - y mean(g y)).
 */
type ChannelMode = 'forward' | 'grad' | 'moments';

/**
 * The row kernel: each row (a last-axis row for normalizeLastAxis, a channel for the others) reduced by `lanes` lanes,
 * three or four sweeps. Element i of row r sits at r * n + i ('rows', params [rows, n, eps]) or at
 * (i / S) * C * S + r * S + i % S ('channels', params [C, n = N * S, eps, S]).
 */
function rowCode(lanes: number, wg: number, mode: ChannelMode, layout: 'rows' | 'channels'): string {
  const grad = mode === 'grad';
  const kahan = (acc: string, comp: string, v: string) => `{
    let y_ = (${v}) - ${comp};
    let t_ = ${acc} + y_;
    ${comp} = (t_ - ${acc}) - y_;
    ${acc} = t_;
  }`;
  return `${PARAMS_WGSL}${bindingsWgsl(grad ? 2 : 1)}
${lanes === 1 ? ROW_SUM_1 : rowSumTree(lanes, wg)}
fn at(row: u32, i: u32) -> u32 {
${layout === 'rows' ? '  return row * P(1u) + i;' : '  let s = P(3u);\n  return (i / s) * P(0u) * s + row * s + i % s;'}
}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = (wid.y * nwg.x + wid.x) * ${wg / lanes}u + lid / ${lanes}u;
  let lane = lid % ${lanes}u;
  // invocations past the last row still take part in every barrier, over an empty row
  let n = select(0u, P(1u), row < P(0u));
  var k = 0.0;
  if (n > 0u) { k = in0[at(row, 0u)]; }
  var acc = 0.0;
  var comp = 0.0;
  for (var i = lane; i < n; i += ${lanes}u) ${kahan('acc', 'comp', 'in0[at(row, i)] - k')}
  let m = row_sum(lid, lane, acc - comp) / f32(n);
  acc = 0.0;
  comp = 0.0;
  for (var i = lane; i < n; i += ${lanes}u) {
    let d = (in0[at(row, i)] - k) - m;
    ${kahan('acc', 'comp', 'd * d')}
  }
  let variance = row_sum(lid, lane, acc - comp) / f32(n);
  let rstd = 1.0 / sqrt(variance + PF(2u));
${
  mode === 'moments'
    ? `  if (lane == 0u && row < P(0u)) {
    out[row] = k + m;
    out[P(0u) + row] = variance;
  }`
    : grad
      ? `  var ga = 0.0;
  var gc = 0.0;
  var gya = 0.0;
  var gyc = 0.0;
  for (var i = lane; i < n; i += ${lanes}u) {
    let j = at(row, i);
    let g = in1[j];
    ${kahan('ga', 'gc', 'g')}
    ${kahan('gya', 'gyc', 'g * (((in0[j] - k) - m) * rstd)')}
  }
  let gm = row_sum(lid, lane, ga - gc) / f32(n);
  let gym = row_sum(lid, lane, gya - gyc) / f32(n);
  for (var i = lane; i < n; i += ${lanes}u) {
    let j = at(row, i);
    let y = ((in0[j] - k) - m) * rstd;
    out[j] = rstd * ((in1[j] - gm) - y * gym);
  }`
      : `  for (var i = lane; i < n; i += ${lanes}u) {
    let j = at(row, i);
    out[j] = ((in0[j] - k) - m) * rstd;
  }`
}
}
`;
}

function channelKernel(name: string, mode: ChannelMode): WgslKernel {
  return (ctx, ins, attrs: NormalizeAttrs, _outShape, out) => {
    const xShape = ins[0]?.shape as readonly number[];
    const c = xShape[1] as number;
    const s = sizeOf(xShape.slice(2));
    const n = (xShape[0] as number) * s;
    if (c * n === 0) return;
    const wg = normTuning.wg;
    const lanes = normLanes(n, wg);
    ctx.dispatch(
      {
        key: `${name}:l${lanes}:w${wg}`,
        nInputs: mode === 'grad' ? 2 : 1,
        grid: grid1d(c, wg / lanes),
        params: [c, n, f32bits(attrs.eps), s],
        code: () => rowCode(lanes, wg, mode, 'channels'),
      },
      ins.map((t) => bufOf(t)),
      out,
    );
  };
}

export const normKernels: Record<string, WgslKernel> = {
  normalizeLastAxis: lastAxisKernel('normalizeLastAxis', 'forward'),
  normalizeLastAxisGrad: lastAxisKernel('normalizeLastAxisGrad', 'grad'),
  normalizeChannels: channelKernel('normalizeChannels', 'forward'),
  normalizeChannelsGrad: channelKernel('normalizeChannelsGrad', 'grad'),
  channelMoments: channelKernel('channelMoments', 'moments'),
};
