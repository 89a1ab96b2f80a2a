// normalizeLastAxis on cpu: per row, the mean and then the variance of the deviations (two
// passes), both accumulated in float64 whatever the dtype, so a float32 output carries one
// rounding. Two passes rather than E[x^2] - E[x]^2: the one-pass form cancels when |mean| >> std.

import type { NormalizeAttrs } from '../prims/norm.js';
import type { CpuArg, CpuKernel } from './kernel.js';

const normalizeLastAxis: CpuKernel = (ins, attrs: NormalizeAttrs, out, outShape) => {
  const x = (ins[0] as CpuArg).data;
  const n = outShape[outShape.length - 1] as number;
  if (n === 0) return;
  const rows = out.length / n;
  for (let r = 0, o = 0; r < rows; r++, o += n) {
    // Kahan-compensated: a plain float64 sum of n terms errs by ~n eps64 |x|, which float64
    // finite differences of long rows (step 1e-6) would amplify past their 1e-6 tolerance
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
    const rstd = 1 / Math.sqrt(ss / n + attrs.eps);
    for (let i = 0; i < n; i++) out[o + i] = ((x[o + i] as number) - m) * rstd;
  }
};

export const normKernels: Record<string, CpuKernel> = { normalizeLastAxis };
