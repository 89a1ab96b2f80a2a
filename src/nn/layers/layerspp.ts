// The building blocks of NCSN++ / DDPM++ (score_sde_pytorch models/layers.py, layerspp.py and
// up_or_down_sampling.py), with the attribute names of the originals so that state-dict keys
// ('GroupNorm_0', 'Conv_0', 'Dense_0', 'NIN_0', 'Conv2d_0', ...) line up with official checkpoints.
//
// Differences in conventions from the guided-diffusion (ADM) blocks: GroupNorm uses
// min(C/4, 32) groups and eps 1e-6, the timestep embedding is [sin, cos], and residual sums are
// divided by sqrt(2) when skip_rescale is set.

import * as T from '../../tensor/index.js';
import { nextRandom } from '../init.js';
import { Module, type Parameter } from '../module.js';
import { Dropout, GroupNorm } from './basic.js';
import {
  convDownsample2d,
  downsample2d,
  type FirKernel,
  naiveDownsample2d,
  naiveUpsample2d,
  upsample2d,
  upsampleConv2d,
} from './upfirdn.js';

export type Activation = (x: T.Tensor) => T.Tensor;

/** score_sde get_act: the config's `nonlinearity` ('swish' is x * sigmoid(x)). */
export function getAct(name: string): Activation {
  switch (name.toLowerCase()) {
    case 'swish':
      return T.silu;
    case 'relu':
      return T.relu;
    case 'elu':
      return (x) => T.where(T.gt(x, 0), x, T.sub(T.exp(T.minimum(x, 0)), 1));
    case 'lrelu':
      return (x) => T.maximum(x, T.mul(x, 0.2));
    default:
      throw new Error(`getAct: unknown nonlinearity '${name}' (swish, relu, elu, lrelu)`);
  }
}

/**
 * DDPM's initialiser (score_sde default_init): variance scaling with fan_avg and a uniform
 * distribution, U(-sqrt(3 s / fan_avg), +sqrt(3 s / fan_avg)); scale 0 means 1e-10. Fans read
 * axis 1 as "in" and axis 0 as "out", the rest as the receptive field, as the original does.
 */
export function defaultInit(shape: readonly number[], scale = 1): T.Tensor {
  const s = scale === 0 ? 1e-10 : scale;
  const [d0 = 1, d1 = 1] = shape;
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  const fanAvg = ((d0 + d1) * receptive) / 2;
  const bound = Math.sqrt((3 * s) / fanAvg);
  // tidy: the uniform draw is freed at once, not when the whole model's construction ends
  return T.tidy(() => T.mul(T.sub(T.randomUniform(shape, nextRandom()), 0.5), 2 * bound));
}

/** GroupNorm as every NCSN++ block builds it: min(C/4, 32) groups, eps 1e-6. */
export function groupNorm32(channels: number): GroupNorm {
  return new GroupNorm(Math.min(Math.floor(channels / 4), 32), channels, 1e-6);
}

export interface ConvOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  bias?: boolean;
  initScale?: number;
}

/** nn.Conv2d with DDPM initialisation (score_sde ddpm_conv3x3 / ddpm_conv1x1); keys 'weight', 'bias'. */
export class DdpmConv extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  private readonly conv: T.Conv2dOptions;
  constructor(inCh: number, outCh: number, kernel: 1 | 3, opts: ConvOptions = {}) {
    super();
    this.weight = this.registerParameter('weight', defaultInit([outCh, inCh, kernel, kernel], opts.initScale ?? 1));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', T.zeros([outCh]));
    this.conv = {
      stride: opts.stride ?? 1,
      padding: opts.padding ?? (kernel === 3 ? 1 : 0),
      dilation: opts.dilation ?? 1,
    };
  }
  forward(x: T.Tensor): T.Tensor {
    return T.conv2d(x, this.weight.value, this.bias?.value, this.conv);
  }
}

export const conv3x3 = (inCh: number, outCh: number, opts: ConvOptions = {}) => new DdpmConv(inCh, outCh, 3, opts);
export const conv1x1 = (inCh: number, outCh: number, opts: ConvOptions = {}) => new DdpmConv(inCh, outCh, 1, opts);

/** nn.Linear with default_init weights and zero bias, as score_sde builds its dense layers. */
export class Dense extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  constructor(inFeatures: number, outFeatures: number) {
    super();
    this.weight = this.registerParameter('weight', defaultInit([outFeatures, inFeatures]));
    this.bias = this.registerParameter('bias', T.zeros([outFeatures]));
  }
  /** x [B, in] -> [B, out]. */
  forward(x: T.Tensor): T.Tensor {
    return T.add(T.matmul(x, T.transpose(this.weight.value)), this.bias.value);
  }
}

/** Network-in-network: a 1x1 convolution stored as W [in, out] and b [out] (layers.NIN). */
export class NIN extends Module {
  readonly W: Parameter;
  readonly b: Parameter;
  constructor(inDim: number, numUnits: number, initScale = 0.1) {
    super();
    this.W = this.registerParameter('W', defaultInit([inDim, numUnits], initScale));
    this.b = this.registerParameter('b', T.zeros([numUnits]));
  }
  /** y[b, o, h, w] = sum_c x[b, c, h, w] W[c, o] + b[o]. */
  forward(x: T.Tensor): T.Tensor {
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const o = this.W.value.shape[1] as number;
    const y = T.matmul(T.transpose(this.W.value), T.reshape(x, [n, c, h * w]));
    return T.add(T.reshape(y, [n, o, h, w]), T.reshape(this.b.value, [o, 1, 1]));
  }
}

/**
 * score_sde get_timestep_embedding: [sin(t f_k), cos(t f_k)] with f_k = 10000^(-k/(half-1)),
 * zero-padded to an odd `dim`. The frequencies are computed in float64 on the host and rounded
 * to t's dtype (PyTorch evaluates them in float32; the two differ by at most an ulp).
 */
export function timestepEmbedding(t: T.Tensor, dim: number, maxPositions = 10000): T.Tensor {
  if (t.rank !== 1) throw new Error(`timestepEmbedding: timesteps must be 1-D, got [${t.shape.join(', ')}]`);
  const half = Math.floor(dim / 2);
  if (half < 2) throw new Error(`timestepEmbedding: dim ${dim} is too small (needs at least 4)`);
  const c = Math.log(maxPositions) / (half - 1);
  const freqs = Float64Array.from({ length: half }, (_, k) => Math.exp(-c * k));
  const f = T.fromArray(freqs, [1, half], { dtype: t.dtype, backend: t.backend.name });
  const arg = T.mul(T.reshape(t, [t.size, 1]), f);
  const emb = T.concat([T.sin(arg), T.cos(arg)], 1);
  return dim % 2 ? T.pad(emb, [[0, 1]]) : emb;
}

/** Gaussian Fourier features of log-sigma (frozen weights 'W'): [sin(2 pi x W), cos(2 pi x W)]. */
export class GaussianFourierProjection extends Module {
  readonly W: Parameter;
  constructor(embeddingSize = 256, scale = 1) {
    super();
    this.W = this.registerParameter(
      'W',
      T.tidy(() => T.mul(T.randomNormal([embeddingSize], nextRandom()), scale)),
    );
  }
  forward(x: T.Tensor): T.Tensor {
    const n = this.W.value.size;
    const proj = T.mul(T.mul(T.reshape(x, [x.size, 1]), T.reshape(this.W.value, [1, n])), 2 * Math.PI);
    return T.concat([T.sin(proj), T.cos(proj)], 1);
  }
}

export type CombineMethod = 'cat' | 'sum';

/** Combine a pyramid input x with features y: conv1x1(x) ('Conv_0'), then concatenate or add. */
export class Combine extends Module {
  readonly Conv_0: DdpmConv;
  constructor(
    dim1: number,
    dim2: number,
    readonly method: CombineMethod = 'cat',
  ) {
    super();
    this.Conv_0 = this.registerModule('Conv_0', conv1x1(dim1, dim2));
  }
  forward(x: T.Tensor, y: T.Tensor): T.Tensor {
    const h = this.Conv_0.forward(x);
    return this.method === 'cat' ? T.concat([h, y], 1) : T.add(h, y);
  }
}

/** (x + h) / sqrt(2) when rescaling skips, else x + h. */
function skipSum(x: T.Tensor, h: T.Tensor, rescale: boolean): T.Tensor {
  const s = T.add(x, h);
  return rescale ? T.mul(s, Math.SQRT1_2) : s;
}

/** Single-head self-attention over all pixels, DDPM style (AttnBlockpp). */
export class AttnBlockpp extends Module {
  readonly GroupNorm_0: GroupNorm;
  readonly NIN_0: NIN;
  readonly NIN_1: NIN;
  readonly NIN_2: NIN;
  readonly NIN_3: NIN;
  constructor(
    channels: number,
    readonly skipRescale = false,
    initScale = 0,
  ) {
    super();
    this.GroupNorm_0 = this.registerModule('GroupNorm_0', groupNorm32(channels));
    this.NIN_0 = this.registerModule('NIN_0', new NIN(channels, channels));
    this.NIN_1 = this.registerModule('NIN_1', new NIN(channels, channels));
    this.NIN_2 = this.registerModule('NIN_2', new NIN(channels, channels));
    this.NIN_3 = this.registerModule('NIN_3', new NIN(channels, channels, initScale));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const [b, c, hh, ww] = x.shape as [number, number, number, number];
      const p = hh * ww;
      const h = this.GroupNorm_0.forward(x);
      const q = T.reshape(this.NIN_0.forward(h), [b, c, p]);
      const k = T.reshape(this.NIN_1.forward(h), [b, c, p]);
      const v = T.reshape(this.NIN_2.forward(h), [b, c, p]);
      // w[b, i, j] = <q[:, i], k[:, j]> / sqrt(C), softmax over the keys j
      const w = T.softmax(T.mul(T.matmul(T.transpose(q), k), c ** -0.5), -1);
      // out[b, c, i] = sum_j w[b, i, j] v[b, c, j]
      const a = T.reshape(T.matmul(v, T.transpose(w)), [b, c, hh, ww]);
      return skipSum(x, this.NIN_3.forward(a), this.skipRescale);
    });
  }
}

/** up_or_down_sampling.Conv2d: a KxK conv fused with FIR up- or down-sampling ('weight', 'bias'). */
export class FirConv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(
    inCh: number,
    outCh: number,
    readonly kernel: number,
    readonly opts: { up?: boolean; down?: boolean; resampleKernel?: FirKernel; useBias?: boolean } = {},
  ) {
    super();
    if (opts.up && opts.down) throw new Error('FirConv2d: up and down are exclusive');
    if (!(kernel >= 1 && kernel % 2 === 1)) throw new Error(`FirConv2d: kernel ${kernel} must be odd`);
    this.weight = this.registerParameter('weight', defaultInit([outCh, inCh, kernel, kernel]));
    this.bias = opts.useBias === false ? null : this.registerParameter('bias', T.zeros([outCh]));
  }
  forward(x: T.Tensor): T.Tensor {
    const k = this.opts.resampleKernel ?? [1, 3, 3, 1];
    const w = this.weight.value;
    let y: T.Tensor;
    if (this.opts.up) y = upsampleConv2d(x, w, k);
    else if (this.opts.down) y = convDownsample2d(x, w, k);
    else y = T.conv2d(x, w, undefined, { padding: Math.floor(this.kernel / 2) });
    return this.bias ? T.add(y, T.reshape(this.bias.value, [this.bias.value.size, 1, 1])) : y;
  }
}

export interface ResampleOptions {
  outCh?: number;
  withConv?: boolean;
  fir?: boolean;
  firKernel?: FirKernel;
}

/** 2x upsampling: nearest (+ conv3x3 'Conv_0') or FIR (+ fused conv 'Conv2d_0'). */
export class Upsample extends Module {
  readonly Conv_0: DdpmConv | null = null;
  readonly Conv2d_0: FirConv2d | null = null;
  readonly outCh: number;
  constructor(
    inCh: number,
    readonly opts: ResampleOptions = {},
  ) {
    super();
    this.outCh = opts.outCh || inCh;
    if (opts.withConv && !opts.fir) this.Conv_0 = this.registerModule('Conv_0', conv3x3(inCh, this.outCh));
    if (opts.withConv && opts.fir) {
      this.Conv2d_0 = this.registerModule(
        'Conv2d_0',
        new FirConv2d(inCh, this.outCh, 3, { up: true, resampleKernel: opts.firKernel ?? [1, 3, 3, 1] }),
      );
    }
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      if (this.opts.fir) {
        return this.Conv2d_0 ? this.Conv2d_0.forward(x) : upsample2d(x, this.opts.firKernel ?? [1, 3, 3, 1], 2);
      }
      const h = naiveUpsample2d(x, 2);
      return this.Conv_0 ? this.Conv_0.forward(h) : h;
    });
  }
}

/** 2x downsampling: 'SAME'-padded stride-2 conv3x3 ('Conv_0') or 2x2 average; or FIR ('Conv2d_0'). */
export class Downsample extends Module {
  readonly Conv_0: DdpmConv | null = null;
  readonly Conv2d_0: FirConv2d | null = null;
  readonly outCh: number;
  constructor(
    inCh: number,
    readonly opts: ResampleOptions = {},
  ) {
    super();
    this.outCh = opts.outCh || inCh;
    if (opts.withConv && !opts.fir) {
      this.Conv_0 = this.registerModule('Conv_0', conv3x3(inCh, this.outCh, { stride: 2, padding: 0 }));
    }
    if (opts.withConv && opts.fir) {
      this.Conv2d_0 = this.registerModule(
        'Conv2d_0',
        new FirConv2d(inCh, this.outCh, 3, { down: true, resampleKernel: opts.firKernel ?? [1, 3, 3, 1] }),
      );
    }
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      if (this.opts.fir) {
        return this.Conv2d_0 ? this.Conv2d_0.forward(x) : downsample2d(x, this.opts.firKernel ?? [1, 3, 3, 1], 2);
      }
      if (!this.Conv_0) return T.avgPool2d(x, 2, 2);
      // F.pad(x, (0, 1, 0, 1)) emulates TensorFlow's 'SAME' padding for the stride-2 conv
      return this.Conv_0.forward(
        T.pad(x, [
          [0, 1],
          [0, 1],
        ]),
      );
    });
  }
}

export interface ResnetOptions {
  act: Activation;
  outCh?: number;
  tembDim?: number;
  dropout?: number;
  skipRescale?: boolean;
  initScale?: number;
}

/** Add the projected time embedding as a per-channel bias: h + Dense(act(temb))[:, :, None, None]. */
function addTemb(h: T.Tensor, dense: Dense | null, act: Activation, temb: T.Tensor | null): T.Tensor {
  if (!temb || !dense) return h;
  const e = dense.forward(act(temb));
  return T.add(h, T.reshape(e, [e.shape[0] as number, e.shape[1] as number, 1, 1]));
}

/** DDPM's residual block with NCSN++ options (ResnetBlockDDPMpp). */
export class ResnetBlockDDPMpp extends Module {
  readonly GroupNorm_0: GroupNorm;
  readonly Conv_0: DdpmConv;
  readonly Dense_0: Dense | null = null;
  readonly GroupNorm_1: GroupNorm;
  readonly Dropout_0: Dropout;
  readonly Conv_1: DdpmConv;
  readonly Conv_2: DdpmConv | null = null;
  readonly NIN_0: NIN | null = null;
  readonly outCh: number;
  constructor(
    readonly inCh: number,
    readonly opts: ResnetOptions & { convShortcut?: boolean },
  ) {
    super();
    const out = opts.outCh || inCh;
    this.outCh = out;
    this.GroupNorm_0 = this.registerModule('GroupNorm_0', groupNorm32(inCh));
    this.Conv_0 = this.registerModule('Conv_0', conv3x3(inCh, out));
    if (opts.tembDim !== undefined) this.Dense_0 = this.registerModule('Dense_0', new Dense(opts.tembDim, out));
    this.GroupNorm_1 = this.registerModule('GroupNorm_1', groupNorm32(out));
    this.Dropout_0 = this.registerModule('Dropout_0', new Dropout(opts.dropout ?? 0.1));
    this.Conv_1 = this.registerModule('Conv_1', conv3x3(out, out, { initScale: opts.initScale ?? 0 }));
    if (inCh !== out) {
      if (opts.convShortcut) this.Conv_2 = this.registerModule('Conv_2', conv3x3(inCh, out));
      else this.NIN_0 = this.registerModule('NIN_0', new NIN(inCh, out));
    }
  }
  forward(x: T.Tensor, temb: T.Tensor | null = null): T.Tensor {
    return T.tidy(() => {
      const act = this.opts.act;
      let h = this.Conv_0.forward(act(this.GroupNorm_0.forward(x)));
      h = addTemb(h, this.Dense_0, act, temb);
      h = this.Dropout_0.forward(act(this.GroupNorm_1.forward(h)));
      h = this.Conv_1.forward(h);
      let skip = x;
      if (this.Conv_2) skip = this.Conv_2.forward(x);
      else if (this.NIN_0) skip = this.NIN_0.forward(x);
      return skipSum(skip, h, this.opts.skipRescale ?? false);
    });
  }
}

/** BigGAN-style residual block that can resample both paths (ResnetBlockBigGANpp). */
export class ResnetBlockBigGANpp extends Module {
  readonly GroupNorm_0: GroupNorm;
  readonly Conv_0: DdpmConv;
  readonly Dense_0: Dense | null = null;
  readonly GroupNorm_1: GroupNorm;
  readonly Dropout_0: Dropout;
  readonly Conv_1: DdpmConv;
  readonly Conv_2: DdpmConv | null = null;
  readonly outCh: number;
  constructor(
    readonly inCh: number,
    readonly opts: ResnetOptions & { up?: boolean; down?: boolean; fir?: boolean; firKernel?: FirKernel },
  ) {
    super();
    const out = opts.outCh || inCh;
    this.outCh = out;
    this.GroupNorm_0 = this.registerModule('GroupNorm_0', groupNorm32(inCh));
    this.Conv_0 = this.registerModule('Conv_0', conv3x3(inCh, out));
    if (opts.tembDim !== undefined) this.Dense_0 = this.registerModule('Dense_0', new Dense(opts.tembDim, out));
    this.GroupNorm_1 = this.registerModule('GroupNorm_1', groupNorm32(out));
    this.Dropout_0 = this.registerModule('Dropout_0', new Dropout(opts.dropout ?? 0.1));
    this.Conv_1 = this.registerModule('Conv_1', conv3x3(out, out, { initScale: opts.initScale ?? 0 }));
    if (inCh !== out || opts.up || opts.down) this.Conv_2 = this.registerModule('Conv_2', conv1x1(inCh, out));
  }
  private resample(x: T.Tensor): T.Tensor {
    const { up, down, fir } = this.opts;
    const k = this.opts.firKernel ?? [1, 3, 3, 1];
    if (up) return fir ? upsample2d(x, k, 2) : naiveUpsample2d(x, 2);
    if (down) return fir ? downsample2d(x, k, 2) : naiveDownsample2d(x, 2);
    return x;
  }
  forward(x: T.Tensor, temb: T.Tensor | null = null): T.Tensor {
    return T.tidy(() => {
      const act = this.opts.act;
      let h = this.resample(act(this.GroupNorm_0.forward(x)));
      let skip = this.resample(x);
      h = addTemb(this.Conv_0.forward(h), this.Dense_0, act, temb);
      h = this.Dropout_0.forward(act(this.GroupNorm_1.forward(h)));
      h = this.Conv_1.forward(h);
      if (this.Conv_2) skip = this.Conv_2.forward(skip);
      return skipSum(skip, h, this.opts.skipRescale ?? true);
    });
  }
}
