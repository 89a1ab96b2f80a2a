// Normalisations (PyTorch semantics): variance, layer_norm, group_norm, batch_norm (inference).
// layerNorm and groupNorm reshape so that their statistics run over the last axis and call the
// fused primitive normalizeLastAxis (prims/norm.ts); layerNormComposite and groupNormComposite
// are the same ops on the unfused composite, kept as the reference the fused kernel is tested
// against (test/norm.test.ts, test/webgpu/norm.test.ts) and benchmarked against (bench/norm.ts).

import { add, mul, rsqrt, square, sub } from '../prims/elementwise.js';
import { normalizeChannels, normalizeLastAxis } from '../prims/norm.js';
import { mean, sum } from '../prims/reduce.js';
import { reshape } from '../prims/shape.js';
import { fmt, normAxes, type Shape, shapesEqual, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';

/** Variance over `axes` with Bessel's correction `correction` (torch.var's default 1). */
export function variance(
  x: Tensor,
  axes?: number | readonly number[],
  opts: { keepdim?: boolean; correction?: number } = {},
): Tensor {
  const ax = normAxes('variance', axes, x.rank);
  const n = ax.reduce((a, i) => a * (x.shape[i] as number), 1);
  const c = opts.correction ?? 1;
  if (n - c <= 0) throw new Error(`variance: ${n} elements with correction ${c} leave no degrees of freedom`);
  const d = sub(x, mean(x, ax, true));
  return mul(sum(square(d), ax, opts.keepdim ?? false), 1 / (n - c));
}

/**
 * (x - mean) / sqrt(var + eps) over `axes` (biased variance, as the normalisation layers use),
 * from primitives: the reference for normalizeLastAxis.
 */
export function normalizeComposite(x: Tensor, axes: number | readonly number[], eps = 1e-5): Tensor {
  const ax = normAxes('normalizeComposite', axes, x.rank);
  const d = sub(x, mean(x, ax, true));
  const v = mean(square(d), ax, true);
  return mul(d, rsqrt(add(v, eps)));
}

/** Normalise x over its trailing axes from `from` on, seen as one axis. */
type Normalizer = (x: Tensor, from: number, eps: number) => Tensor;

const fused: Normalizer = (x, from, eps) =>
  reshape(normalizeLastAxis(reshape(x, [...x.shape.slice(0, from), sizeOf(x.shape.slice(from))]), eps), x.shape);

const composite: Normalizer = (x, from, eps) =>
  normalizeComposite(
    x,
    Array.from({ length: x.rank - from }, (_, i) => from + i),
    eps,
  );

function checkParam(op: string, name: string, p: Tensor | undefined, shape: Shape): void {
  if (p && !shapesEqual(p.shape, shape))
    throw new Error(`${op}: ${name} has shape ${fmt(p.shape)}, expected ${fmt(shape)}`);
}

/** Affine per channel (axis 1) for NC... tensors. */
function channelAffine(y: Tensor, weight: Tensor | undefined, bias: Tensor | undefined): Tensor {
  const c = y.shape[1] as number;
  const view = [c, ...y.shape.slice(2).map(() => 1)];
  let out = y;
  if (weight) out = mul(out, reshape(weight, view));
  if (bias) out = add(out, reshape(bias, view));
  return out;
}

function layerNormWith(
  norm: Normalizer,
  x: Tensor,
  normalizedShape: Shape,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  eps: number,
): Tensor {
  const k = normalizedShape.length;
  if (k === 0 || k > x.rank || !shapesEqual(x.shape.slice(x.rank - k), normalizedShape)) {
    throw new Error(
      `layerNorm: normalizedShape ${fmt(normalizedShape)} does not match the trailing axes of x ${fmt(x.shape)}`,
    );
  }
  checkParam('layerNorm', 'weight', weight, normalizedShape);
  checkParam('layerNorm', 'bias', bias, normalizedShape);
  let y = norm(x, x.rank - k, eps);
  if (weight) y = mul(y, weight);
  if (bias) y = add(y, bias);
  return y;
}

/** torch.nn.functional.layer_norm over the trailing `normalizedShape` axes. */
export const layerNorm = (x: Tensor, normalizedShape: Shape, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor =>
  layerNormWith(fused, x, normalizedShape, weight, bias, eps);

/** layerNorm on the unfused composite (the reference). */
export const layerNormComposite = (
  x: Tensor,
  normalizedShape: Shape,
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor => layerNormWith(composite, x, normalizedShape, weight, bias, eps);

function groupNormWith(
  norm: Normalizer,
  x: Tensor,
  numGroups: number,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  eps: number,
): Tensor {
  if (x.rank < 2) throw new Error(`groupNorm: x must be [N, C, ...], got ${fmt(x.shape)}`);
  const [n, c] = x.shape as [number, number];
  if (!Number.isInteger(numGroups) || numGroups < 1 || c % numGroups) {
    throw new Error(`groupNorm: ${c} channels of x ${fmt(x.shape)} cannot be split into ${numGroups} groups`);
  }
  checkParam('groupNorm', 'weight', weight, [c]);
  checkParam('groupNorm', 'bias', bias, [c]);
  // a group's channels and positions are contiguous in NC...: [N, G, C/G * spatial]
  const g = reshape(x, [n, numGroups, (c / numGroups) * sizeOf(x.shape.slice(2))]);
  const y = reshape(norm(g, 2, eps), x.shape);
  return channelAffine(y, weight, bias);
}

/** torch.nn.functional.group_norm: x [N, C, ...] in `numGroups` groups of channels. */
export const groupNorm = (x: Tensor, numGroups: number, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor =>
  groupNormWith(fused, x, numGroups, weight, bias, eps);

/** groupNorm on the unfused composite (the reference). */
export const groupNormComposite = (x: Tensor, numGroups: number, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor =>
  groupNormWith(composite, x, numGroups, weight, bias, eps);

/**
 * torch.nn.functional.batch_norm in training mode: each channel (axis 1) normalised by its own batch statistics
 * (biased variance) on the fused normalizeChannels, then weight and bias. The running buffers are the caller's
 * (BatchNorm2d updates them).
 */
export function batchNormTraining(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  if (x.rank < 2) throw new Error(`batchNormTraining: x must be [N, C, ...], got ${fmt(x.shape)}`);
  const c = x.shape[1] as number;
  checkParam('batchNormTraining', 'weight', weight, [c]);
  checkParam('batchNormTraining', 'bias', bias, [c]);
  return channelAffine(normalizeChannels(x, eps), weight, bias);
}

/** torch.nn.functional.batch_norm in inference mode: running statistics per channel (axis 1). */
export function batchNorm(
  x: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  if (x.rank < 2) throw new Error(`batchNorm: x must be [N, C, ...], got ${fmt(x.shape)}`);
  const c = x.shape[1] as number;
  for (const [name, p] of [
    ['runningMean', runningMean],
    ['runningVar', runningVar],
  ] as const)
    checkParam('batchNorm', name, p, [c]);
  checkParam('batchNorm', 'weight', weight, [c]);
  checkParam('batchNorm', 'bias', bias, [c]);
  const y = channelAffine(x, undefined, undefined);
  const centered = sub(y, reshape(runningMean, [c, ...x.shape.slice(2).map(() => 1)]));
  const scaled = mul(centered, reshape(rsqrt(add(runningVar, eps)), [c, ...x.shape.slice(2).map(() => 1)]));
  return channelAffine(scaled, weight, bias);
}
