// Fused normalisations. normalizeLastAxis: (x - mean) * rsqrt(var + eps) over the last axis, one primitive that
// layerNorm and groupNorm reshape onto (their statistics are over one contiguous run of elements); normalizeChannels:
// the same per channel (axis 1), batch norm in training; each with its backward as one primitive; channelMoments for
// batch norm's running buffers.
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
 *   dL/dx = r (g - mean(g) - y mean(g y)),
 * one fused primitive (normalizeLastAxisGrad) where the composite took about ten passes: group norm's backward was the
 * largest elementwise cost of a DDPM++ training step. Only y is kept by the graph, so r is recomputed from x (two-pass,
 * as the forward does): deriving it from y alone (1 - mean(y^2) = eps r^2) cancels catastrophically when v >> eps.
 */
export const normalizePrim: Prim<NormalizeAttrs> = {
  name: 'normalizeLastAxis',
  vjp: (g, { inputs, attrs }) => [normalizeLastAxisGrad(inputs[0] as Tensor, g, attrs.eps)],
};

/**
 * The VJP of a normalisation's backward G(x, g) = r (g - mean(g) - y mean(g y)), the means over the normalised
 * elements (`meanOf`, kept as broadcastable). G = r Q g with Q = I - 11^T/n - y y^T/n symmetric, so
 * d<c, G>/dg = G(x, c); and
 *   d<c, G>/dx = -r (mean(c G) y + mean(g y) G(x, c) + mean(c y) G)
 * (derived by hand; test/cases/norm.ts checks it against float64 finite differences).
 */
function normGradVjp(
  meanOf: (t: Tensor) => Tensor,
  normalize: (x: Tensor, eps: number) => Tensor,
  grad: (x: Tensor, g: Tensor, eps: number) => Tensor,
): NonNullable<Prim<NormalizeAttrs>['vjp']> {
  return (c, { inputs, output: gOut, attrs }) => {
    const [x, g] = inputs as [Tensor, Tensor];
    const gc = grad(x, c, attrs.eps);
    if (!x.requiresGrad) return [null, gc];
    const y = normalize(x, attrs.eps);
    const r = rsqrt(add(meanOf(square(sub(x, meanOf(x)))), attrs.eps));
    const inner = add(add(mul(meanOf(mul(c, gOut)), y), mul(meanOf(mul(g, y)), gc)), mul(meanOf(mul(c, y)), gOut));
    return [mul(mul(r, inner), -1), g.requiresGrad ? gc : null];
  };
}

export const normalizeLastAxisGradPrim: Prim<NormalizeAttrs> = {
  name: 'normalizeLastAxisGrad',
  vjp: normGradVjp(
    (t) => mean(t, -1, true),
    (x, eps) => normalizeLastAxis(x, eps),
    (x, g, eps) => normalizeLastAxisGrad(x, g, eps),
  ),
};

/** The VJP of normalizeLastAxis at x for the output cotangent g, as one fused primitive. */
export function normalizeLastAxisGrad(x: Tensor, g: Tensor, eps = 1e-5): Tensor {
  checkLastAxis('normalizeLastAxisGrad', x, eps);
  checkSameShape('normalizeLastAxisGrad', x, g);
  return apply(normalizeLastAxisGradPrim, [x, g], { eps }, x.shape);
}

function checkLastAxis(op: string, x: Tensor, eps: number): void {
  if (!(x instanceof Tensor)) throw new Error(`${op}: argument x must be a Tensor`);
  if (x.rank === 0) throw new Error(`${op}: x must have at least one axis, got a scalar`);
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new Error(`${op}: eps must be a finite number >= 0, got ${eps} (x ${fmt(x.shape)})`);
  }
}

function checkSameShape(op: string, x: Tensor, g: Tensor): void {
  if (!(g instanceof Tensor) || g.shape.length !== x.shape.length || g.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${op}: g must have x's shape ${fmt(x.shape)}, got ${fmt((g as Tensor)?.shape)}`);
  }
  if (g.dtype !== x.dtype) throw new Error(`${op}: x is ${x.dtype} but g is ${g.dtype}; cast one with astype()`);
}

/**
 * (x - mean) / sqrt(var + eps) along the last axis, var biased (divided by n), as torch's
 * layer_norm/group_norm compute it. A row of length 1 has var 0 and gives 0.
 */
export function normalizeLastAxis(x: Tensor, eps = 1e-5): Tensor {
  checkLastAxis('normalizeLastAxis', x, eps);
  return apply(normalizePrim, [x], { eps }, x.shape);
}

/**
 * Batch norm's normalisation in training: y = (x - m_c) r_c per channel c (axis 1) over every other axis, with
 * r_c = rsqrt(v_c + eps), v_c biased, as torch.batch_norm(training=True) computes it before its affine. One fused
 * primitive (one pass for the statistics on cpu, two on webgpu, one to write) where the composite took about nine, and
 * its VJP is the
 * fused normalizeChannelsGrad (the composite's backward took about fifteen): a WRN training step spent a quarter of
 * its cpu time in batch norm's elementwise passes.
 */
export const normalizeChannelsPrim: Prim<NormalizeAttrs> = {
  name: 'normalizeChannels',
  vjp: (g, { inputs, attrs }) => [normalizeChannelsGrad(inputs[0] as Tensor, g, attrs.eps)],
};

/** The per-channel mean of t over every axis but 1, kept as [1, C, 1, ...]. */
function channelMean(t: Tensor): Tensor {
  return mean(
    t,
    t.shape.map((_, i) => i).filter((i) => i !== 1),
    true,
  );
}

/** normalizeChannels' backward, G(x, g) = r (g - mean(g) - y mean(g y)) per channel; its VJP as normGradVjp's. */
export const normalizeChannelsGradPrim: Prim<NormalizeAttrs> = {
  name: 'normalizeChannelsGrad',
  vjp: normGradVjp(
    channelMean,
    (x, eps) => normalizeChannels(x, eps),
    (x, g, eps) => normalizeChannelsGrad(x, g, eps),
  ),
};

function checkChannels(op: string, x: Tensor, eps: number): void {
  if (!(x instanceof Tensor)) throw new Error(`${op}: argument x must be a Tensor`);
  if (x.rank < 2) throw new Error(`${op}: x must be [N, C, ...], got ${fmt(x.shape)}`);
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new Error(`${op}: eps must be a finite number >= 0, got ${eps} (x ${fmt(x.shape)})`);
  }
}

/**
 * (x - mean) / sqrt(var + eps) per channel (axis 1) over every other axis, var biased: torch.batch_norm in training
 * mode without its affine. A channel of one element has var 0 and gives 0.
 */
export function normalizeChannels(x: Tensor, eps = 1e-5): Tensor {
  checkChannels('normalizeChannels', x, eps);
  return apply(normalizeChannelsPrim, [x], { eps }, x.shape);
}

/** The VJP of normalizeChannels at x for the output cotangent g, as one fused primitive. */
export function normalizeChannelsGrad(x: Tensor, g: Tensor, eps = 1e-5): Tensor {
  checkChannels('normalizeChannelsGrad', x, eps);
  checkSameShape('normalizeChannelsGrad', x, g);
  return apply(normalizeChannelsGradPrim, [x, g], { eps }, x.shape);
}

/**
 * Per-channel batch statistics [2, C]: row 0 the mean and row 1 the biased variance of each channel (axis 1) over
 * every other axis, in one pass. What BatchNorm2d's running buffers need in training, without the four passes (mean,
 * subtract, square, sum) of the composite. Not differentiable: the running buffers take no gradient.
 */
export const channelMomentsPrim: Prim<NormalizeAttrs> = { name: 'channelMoments' };

export function channelMoments(x: Tensor): Tensor {
  checkChannels('channelMoments', x, 0);
  if (x.size === 0) throw new Error(`channelMoments: x ${fmt(x.shape)} has no elements; statistics need at least one`);
  return apply(channelMomentsPrim, [x], { eps: 0 }, [2, x.shape[1] as number]);
}
