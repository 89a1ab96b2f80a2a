// normalizeLastAxis, normalizeChannels, their backwards and channelMoments on cpu.
// normalizeLastAxis: per row, the mean and then the variance of the deviations (two
// passes), both accumulated in float64 whatever the dtype, so a float32 output carries one
// rounding. Two passes rather than E[x^2] - E[x]^2: the one-pass form cancels when |mean| >> std.

import type { NormalizeAttrs } from '../prims/norm.js';
import type { CpuArg, CpuKernel } from './kernel.js';

/**
 * The mean and rsqrt(var + eps) of x[o .. o + n). Kahan-compensated: a plain float64 sum of n terms errs by
 * ~n eps64 |x|, which float64 finite differences of long rows (step 1e-6) would amplify past their 1e-6 tolerance.
 */
function rowStats(x: ArrayLike<number>, o: number, n: number, eps: number): [number, number] {
  let s = 0;
  let c = 0;
  for (let i = 0; i < n; i++) {
    const v = (x[o + i] as number) - c;
    const t = s + v;
    c = t - s - v;
    s = t;
  }
  const m = s / n;
  let ss = 0;
  c = 0;
  for (let i = 0; i < n; i++) {
    const d = (x[o + i] as number) - m;
    const v = d * d - c;
    const t = ss + v;
    c = t - ss - v;
    ss = t;
  }
  return [m, 1 / Math.sqrt(ss / n + eps)];
}

const normalizeLastAxis: CpuKernel = (ins, attrs: NormalizeAttrs, out, outShape) => {
  const x = (ins[0] as CpuArg).data;
  const n = outShape[outShape.length - 1] as number;
  if (n === 0) return;
  const rows = out.length / n;
  for (let r = 0, o = 0; r < rows; r++, o += n) {
    const [m, rstd] = rowStats(x, o, n, attrs.eps);
    for (let i = 0; i < n; i++) out[o + i] = ((x[o + i] as number) - m) * rstd;
  }
};

/**
 * Per-channel statistics of x [N, C, S...] (S = the trailing axes flattened): the mean and rsqrt(var + eps), in one
 * float64 pass over values shifted by the channel's first element k: var = mean((x - k)^2) - mean(x - k)^2. With k
 * inside the channel's spread the subtraction loses about (|mean - k| / std)^2 eps64 relative, nothing at float32's
 * scale, and one pass instead of two is a third of batch norm's cpu time. Sums run per row of S, then over rows.
 */
function channelStats(
  x: ArrayLike<number>,
  n: number,
  c: number,
  s: number,
  eps: number,
  variance?: Float64Array,
): [Float64Array, Float64Array] {
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  const count = n * s;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const o = (b * c + ch) * s;
      const k = x[ch * s] as number;
      let a = 0;
      let a2 = 0;
      for (let i = 0; i < s; i++) {
        const d = (x[o + i] as number) - k;
        a += d;
        a2 += d * d;
      }
      sum[ch] = (sum[ch] as number) + a;
      sq[ch] = (sq[ch] as number) + a2;
    }
  }
  const mean = new Float64Array(c);
  const rstd = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    const md = (sum[ch] as number) / count;
    const v = Math.max(0, (sq[ch] as number) / count - md * md);
    mean[ch] = (x[ch * s] as number) + md;
    rstd[ch] = 1 / Math.sqrt(v + eps);
    if (variance) variance[ch] = v;
  }
  return [mean, rstd];
}

function channelDims(shape: readonly number[]): [number, number, number] {
  const n = shape[0] as number;
  const c = shape[1] as number;
  let s = 1;
  for (let i = 2; i < shape.length; i++) s *= shape[i] as number;
  return [n, c, s];
}

/** normalizeChannels: y = (x - mean_c) rstd_c. */
const normalizeChannels: CpuKernel = (ins, attrs: NormalizeAttrs, out, outShape) => {
  const x = (ins[0] as CpuArg).data;
  const [n, c, s] = channelDims(outShape);
  if (n * c * s === 0) return;
  const [mean, rstd] = channelStats(x, n, c, s, attrs.eps);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const o = (b * c + ch) * s;
      const m = mean[ch] as number;
      const r = rstd[ch] as number;
      for (let i = 0; i < s; i++) out[o + i] = ((x[o + i] as number) - m) * r;
    }
  }
};

/**
 * dx = rstd (g - mean(g) - y mean(g y)) per channel of [n, c, s] data, y recomputed from x: normalizeChannelsGrad,
 * and normalizeLastAxisGrad as the same on [1, rows, row length] (a row is then a channel). The statistics take
 * channelStats' one pass: the backward needs them to float32's accuracy, not the forward's finite-difference standard.
 */
function normalizeGrad(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  out: { [i: number]: number },
  [n, c, s]: [number, number, number],
  eps: number,
): void {
  if (n * c * s === 0) return;
  const [mean, rstd] = channelStats(x, n, c, s, eps);
  const gSum = new Float64Array(c);
  const gySum = new Float64Array(c);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const o = (b * c + ch) * s;
      const m = mean[ch] as number;
      let a = 0;
      let ay = 0;
      for (let i = 0; i < s; i++) {
        const gi = g[o + i] as number;
        a += gi;
        ay += gi * ((x[o + i] as number) - m);
      }
      gSum[ch] = (gSum[ch] as number) + a;
      gySum[ch] = (gySum[ch] as number) + ay * (rstd[ch] as number);
    }
  }
  const count = n * s;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const o = (b * c + ch) * s;
      const m = mean[ch] as number;
      const r = rstd[ch] as number;
      const gm = (gSum[ch] as number) / count;
      const gym = (gySum[ch] as number) / count;
      for (let i = 0; i < s; i++) {
        const y = ((x[o + i] as number) - m) * r;
        out[o + i] = r * ((g[o + i] as number) - gm - y * gym);
      }
    }
  }
}

const normalizeChannelsGrad: CpuKernel = (ins, attrs: NormalizeAttrs, out, outShape) =>
  normalizeGrad((ins[0] as CpuArg).data, (ins[1] as CpuArg).data, out, channelDims(outShape), attrs.eps);

const normalizeLastAxisGrad: CpuKernel = (ins, attrs: NormalizeAttrs, out, outShape) => {
  const n = outShape[outShape.length - 1] as number;
  const rows = n === 0 ? 0 : out.length / n;
  normalizeGrad((ins[0] as CpuArg).data, (ins[1] as CpuArg).data, out, [1, rows, n], attrs.eps);
};

/** channelMoments: [mean_c; biased var_c] of x [N, C, ...]. */
const channelMoments: CpuKernel = (ins, _attrs, out) => {
  const x = ins[0] as CpuArg;
  const [n, c, s] = channelDims(x.shape);
  const variance = new Float64Array(c);
  const [mean] = channelStats(x.data, n, c, s, 0, variance);
  out.set(mean, 0);
  out.set(variance, c);
};

export const normKernels: Record<string, CpuKernel> = {
  normalizeLastAxis,
  normalizeLastAxisGrad,
  normalizeChannels,
  normalizeChannelsGrad,
  channelMoments,
};
