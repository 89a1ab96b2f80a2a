// normalizeLastAxis: (x - mean) * rsqrt(var + eps) over the last axis, one fused primitive that
// layerNorm and groupNorm reshape onto (their statistics are over one contiguous run of elements).
// The unfused composite of the same formula, normalizeComposite in composite/norm.ts, is the
// reference it is tested against (test/norm.test.ts, test/webgpu/norm.test.ts); bench/norm.ts
// measures what fusing buys.

import { apply } from '../runtime.js';
import { fmt } from '../shape.js';
import { type Prim, Tensor } from '../tensor.js';
import { add, mul, rsqrt, square, sub } from './elementwise.js';
import { mean } from './reduce.js';

export interface NormalizeAttrs {
  /** Added to the biased variance before the reciprocal square root. */
  readonly eps: number;
}

/**
 * With y = (x - m) r, r = rsqrt(v + eps), over a row of n elements:
 *   dL/dx = r (g - mean(g) - y mean(g y)).
 * Only y is kept by the graph, so r is recomputed from x (two-pass, as the forward does):
 * deriving it from y alone (1 - mean(y^2) = eps r^2) cancels catastrophically when v >> eps.
 */
export const normalizePrim: Prim<NormalizeAttrs> = {
  name: 'normalizeLastAxis',
  vjp: (g, { inputs, output: y, attrs }) => {
    const x = inputs[0] as Tensor;
    const d = sub(x, mean(x, -1, true));
    const r = rsqrt(add(mean(square(d), -1, true), attrs.eps));
    const inner = sub(sub(g, mean(g, -1, true)), mul(y, mean(mul(g, y), -1, true)));
    return [mul(inner, r)];
  },
};

/**
 * (x - mean) / sqrt(var + eps) along the last axis, var biased (divided by n), as torch's
 * layer_norm/group_norm compute it. A row of length 1 has var 0 and gives 0.
 */
export function normalizeLastAxis(x: Tensor, eps = 1e-5): Tensor {
  if (!(x instanceof Tensor)) throw new Error('normalizeLastAxis: argument x must be a Tensor');
  if (x.rank === 0) throw new Error('normalizeLastAxis: x must have at least one axis, got a scalar');
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new Error(`normalizeLastAxis: eps must be a finite number >= 0, got ${eps} (x ${fmt(x.shape)})`);
  }
  return apply(normalizePrim, [x], { eps }, x.shape);
}
