// FIR resampling as score_sde uses it (ported there from StyleGAN2): upfirdn2d and the up- and
// down-sampling built on it, plus the naive (nearest / box) variants used when fir is false.
//
// upfirdn2d is written with tensor ops only (a strided embed that inserts zeros and pads, a crop
// for negative padding, and a depthwise conv2d with the flipped kernel), so it runs on every
// backend and its gradient comes from the VJPs of those ops. Reference: score_sde_pytorch
// op/upfirdn2d.py, upfirdn2d_native (the CUDA kernel computes the same thing).

import * as T from '../../tensor/index.js';

/** A FIR filter: 1-D (separable, its outer product is taken) or 2-D (square). */
export type FirKernel = readonly number[] | readonly (readonly number[])[];

/** A square 2-D filter held on the host in row-major order. */
export interface Kernel2d {
  readonly size: number;
  readonly data: Float64Array;
}

/** score_sde's _setup_kernel: outer product of a 1-D filter, normalised to sum 1, times `gain`. */
export function setupKernel(k: FirKernel, gain = 1): Kernel2d {
  const rows: number[][] =
    typeof k[0] === 'number'
      ? (k as number[]).map((a) => (k as number[]).map((b) => a * b))
      : (k as number[][]).map((r) => [...r]);
  const size = rows.length;
  if (size === 0 || rows.some((r) => r.length !== size))
    throw new Error(`setupKernel: the FIR filter must be 1-D or square 2-D, got ${JSON.stringify(k)}`);
  const data = Float64Array.from(rows.flat());
  const total = data.reduce((a, b) => a + b, 0);
  if (!(Math.abs(total) > 0)) throw new Error(`setupKernel: the FIR filter ${JSON.stringify(k)} sums to ${total}`);
  for (let i = 0; i < data.length; i++) data[i] = ((data[i] as number) / total) * gain;
  return { size, data };
}

function check4d(op: string, x: T.Tensor): [number, number, number, number] {
  if (x.rank !== 4) throw new Error(`${op}: x must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  return x.shape as [number, number, number, number];
}

export interface UpFirDnOptions {
  up?: number;
  down?: number;
  /** Padding [before, after] applied to both spatial axes after upsampling; negative crops. */
  pad?: readonly [number, number];
}

/**
 * upfirdn2d(x, k, up, down, pad): insert up-1 zeros after every pixel, pad (or crop) by `pad`,
 * convolve every channel with k (a true convolution, i.e. correlation with the flipped kernel),
 * keep every down-th sample. x: [N, C, H, W].
 */
export function upfirdn2d(x: T.Tensor, k: Kernel2d, opts: UpFirDnOptions = {}): T.Tensor {
  const [n, c, h, w] = check4d('upfirdn2d', x);
  const up = opts.up ?? 1;
  const down = opts.down ?? 1;
  const [p0, p1] = opts.pad ?? [0, 0];
  for (const [name, v] of [
    ['up', up],
    ['down', down],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`upfirdn2d: ${name} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(p0) || !Number.isInteger(p1)) throw new Error(`upfirdn2d: pad [${p0}, ${p1}] must be integers`);
  const ks = k.size;
  const size = (d: number) => d * up + p0 + p1;
  if (size(h) < ks || size(w) < ks) {
    throw new Error(`upfirdn2d: x [${x.shape.join(', ')}] upsampled and padded is smaller than the ${ks}x${ks} filter`);
  }
  // one channel per image row of the batch: a depthwise filter is then a plain 1-channel conv
  let y = T.reshape(x, [n * c, 1, h, w]);
  const a0 = Math.max(p0, 0);
  const a1 = Math.max(p1, 0);
  if (up > 1 || a0 > 0 || a1 > 0) {
    // zero insertion and non-negative padding in one strided embed
    y = T.embed(y, [n * c, 1, h * up + a0 + a1, w * up + a0 + a1], { begin: [0, 0, a0, a0], step: [1, 1, up, up] });
  }
  if (p0 < 0 || p1 < 0) {
    const c0 = Math.max(-p0, 0);
    const c1 = Math.max(-p1, 0);
    const hh = y.shape[2] as number;
    const ww = y.shape[3] as number;
    y = T.slice(y, [null, null, [c0, hh - c1], [c0, ww - c1]]);
  }
  const flipped = new Float64Array(ks * ks);
  for (let i = 0; i < ks * ks; i++) flipped[i] = k.data[ks * ks - 1 - i] as number;
  const kt = T.fromArray(flipped, [1, 1, ks, ks], { dtype: x.dtype, backend: x.backend.name });
  y = T.conv2d(y, kt, undefined, { stride: down });
  return T.reshape(y, [n, c, y.shape[2] as number, y.shape[3] as number]);
}

/** score_sde upsample_2d: FIR upsampling by `factor` (output [N, C, H*factor, W*factor]). */
export function upsample2d(x: T.Tensor, k: FirKernel = [1, 1], factor = 2, gain = 1): T.Tensor {
  const kk = setupKernel(k, gain * factor * factor);
  const p = kk.size - factor;
  return upfirdn2d(x, kk, { up: factor, pad: [Math.floor((p + 1) / 2) + factor - 1, Math.floor(p / 2)] });
}

/** score_sde downsample_2d: FIR downsampling by `factor` (output [N, C, H/factor, W/factor]). */
export function downsample2d(x: T.Tensor, k: FirKernel = [1, 1], factor = 2, gain = 1): T.Tensor {
  const kk = setupKernel(k, gain);
  const p = kk.size - factor;
  return upfirdn2d(x, kk, { down: factor, pad: [Math.floor((p + 1) / 2), Math.floor(p / 2)] });
}

/**
 * score_sde upsample_conv_2d: a stride-`factor` transposed convolution with w [O, I, K, K] followed
 * by FIR filtering, padded once. The official PyTorch code flips w with a negative-step slice,
 * which torch rejects; this is the computation it transcribes from StyleGAN2's TensorFlow code.
 */
export function upsampleConv2d(x: T.Tensor, w: T.Tensor, k: FirKernel = [1, 1], factor = 2, gain = 1): T.Tensor {
  const [, cin] = check4d('upsampleConv2d', x);
  if (w.rank !== 4 || w.shape[2] !== w.shape[3] || w.shape[1] !== cin) {
    throw new Error(`upsampleConv2d: weight [${w.shape.join(', ')}] must be [O, ${cin}, K, K]`);
  }
  const convK = w.shape[3] as number;
  const kk = setupKernel(k, gain * factor * factor);
  const p = kk.size - factor - (convK - 1);
  // conv_transpose2d wants [I, O, K, K]; the spatial flip turns the transposed conv into
  // the adjoint of a correlation with w, as tf.nn.conv2d_transpose computes
  const wt = T.flip(T.transpose(w, 0, 1), [2, 3]);
  const y = T.convTranspose2d(x, wt, undefined, { stride: factor });
  return upfirdn2d(y, kk, { pad: [Math.floor((p + 1) / 2) + factor - 1, Math.floor(p / 2) + 1] });
}

/** score_sde conv_downsample_2d: FIR filtering then a stride-`factor` convolution with w. */
export function convDownsample2d(x: T.Tensor, w: T.Tensor, k: FirKernel = [1, 1], factor = 2, gain = 1): T.Tensor {
  if (w.rank !== 4 || w.shape[2] !== w.shape[3]) {
    throw new Error(`convDownsample2d: weight [${w.shape.join(', ')}] must be [O, I, K, K]`);
  }
  const convK = w.shape[3] as number;
  const kk = setupKernel(k, gain);
  const p = kk.size - factor + (convK - 1);
  const y = upfirdn2d(x, kk, { pad: [Math.floor((p + 1) / 2), Math.floor(p / 2)] });
  return T.conv2d(y, w, undefined, { stride: factor });
}

/** Nearest-neighbour upsampling by an integer factor (score_sde naive_upsample_2d). */
export function naiveUpsample2d(x: T.Tensor, factor = 2): T.Tensor {
  const [n, c, h, w] = check4d('naiveUpsample2d', x);
  const y = T.expand(T.reshape(x, [n, c, h, 1, w, 1]), [n, c, h, factor, w, factor]);
  return T.reshape(y, [n, c, h * factor, w * factor]);
}

/** Box downsampling by an integer factor, the mean of each factor x factor cell (naive_downsample_2d). */
export function naiveDownsample2d(x: T.Tensor, factor = 2): T.Tensor {
  const [n, c, h, w] = check4d('naiveDownsample2d', x);
  if (h % factor || w % factor)
    throw new Error(`naiveDownsample2d: ${h}x${w} is not divisible by the factor ${factor}`);
  return T.mean(T.reshape(x, [n, c, h / factor, factor, w / factor, factor]), [3, 5]);
}
