// The ADM UNet of openai/guided-diffusion (guided_diffusion/unet.py UNetModel), built from the
// keyword arguments of its script_util.create_model_and_diffusion, as DiffPure does for ImageNet.
//
// The module tree mirrors the PyTorch one so the official checkpoints (plain state dicts such as
// 256x256_diffusion_uncond.pt) load key for key:
//   time_embed.{0,2}      Linear, SiLU, Linear
//   input_blocks.i.j      TimestepEmbedSequential of conv / ResBlock / AttentionBlock / Downsample
//   middle_block.{0,1,2}  ResBlock, AttentionBlock, ResBlock
//   output_blocks.i.j     ResBlock, [AttentionBlock], [ResBlock(up) | Upsample]
//   out.{0,2}             GroupNorm32, SiLU, conv
//   label_emb             Embedding(1000, 4 * num_channels), only when class_cond
// (Upsample, Downsample and timestep_embedding are AdmUpsample, AdmDownsample and
// admTimestepEmbedding here, apart from score_sde's layers of the same names.)
// ResBlock: in_layers.{0,2} (norm, SiLU, conv), emb_layers.1 (SiLU, Linear), out_layers.{0,3}
// (norm, SiLU, Dropout, conv), skip_connection (1x1 conv when the channel count changes).
// AttentionBlock: norm, qkv (Conv1d C -> 3C, k=1), proj_out (Conv1d C -> C, k=1).
//
// Numerics as in guided-diffusion: GroupNorm32 is GroupNorm(32 groups, eps 1e-5) in float32; the
// timestep embedding is [cos(t f), sin(t f)] with f_k = exp(-ln(10000) k / half); attention scales
// q and k each by C^-1/4 and takes the softmax in float32. use_fp16 is accepted and ignored: this
// port computes in the weights' dtype (float32), which is guided-diffusion's fp32 reference path.

import * as T from '../../tensor/index.js';
import { SiLU } from '../layers/activation.js';
import { Conv2d, Dropout, forwardOnConcat, GroupNorm, Linear, ModuleList, Sequential } from '../layers/basic.js';
import { Conv1d } from '../layers/conv1d.js';
import { Embedding } from '../layers/embedding.js';
import { Module } from '../module.js';

// ---- configuration --------------------------------------------------------------------------

/**
 * guided-diffusion's model flags (the model half of create_model_and_diffusion's keyword
 * arguments, with their names). Diffusion flags may be present and are ignored.
 */
export interface AdmFlags {
  image_size: number;
  num_channels: number;
  num_res_blocks: number;
  /** Comma-separated integers, or '' for the default of image_size (64, 128, 256, 512). */
  channel_mult: string;
  /** Comma-separated image resolutions at which attention is used, e.g. '32,16,8'. */
  attention_resolutions: string;
  num_heads: number;
  /** Channels per head; -1 to use num_heads instead. */
  num_head_channels: number;
  /** Heads in the decoder; -1 for num_heads. */
  num_heads_upsample: number;
  dropout: number;
  class_cond: boolean;
  learn_sigma: boolean;
  use_scale_shift_norm: boolean;
  resblock_updown: boolean;
  use_new_attention_order: boolean;
  /** Accepted for compatibility; computation stays in the weights' dtype. */
  use_fp16: boolean;
  /** Gradient checkpointing in PyTorch; no effect here (same values). */
  use_checkpoint: boolean;
}

/** The model part of guided_diffusion.script_util.model_and_diffusion_defaults(). */
export const ADM_DEFAULT_FLAGS: Readonly<AdmFlags> = Object.freeze({
  image_size: 64,
  num_channels: 128,
  num_res_blocks: 2,
  num_heads: 4,
  num_heads_upsample: -1,
  num_head_channels: -1,
  attention_resolutions: '16,8',
  channel_mult: '',
  dropout: 0.0,
  class_cond: false,
  use_checkpoint: false,
  use_scale_shift_norm: true,
  resblock_updown: false,
  use_fp16: false,
  use_new_attention_order: false,
  learn_sigma: false,
});

/**
 * DiffPure's ImageNet model (configs/imagenet.yml over model_and_diffusion_defaults()): the
 * 256x256 unconditional guided-diffusion checkpoint 256x256_diffusion_uncond.pt. DiffPure sets
 * use_fp16 True; the weights are float32 either way.
 */
export const DIFFPURE_IMAGENET_FLAGS: Readonly<AdmFlags> = Object.freeze({
  ...ADM_DEFAULT_FLAGS,
  image_size: 256,
  num_channels: 256,
  num_res_blocks: 2,
  num_head_channels: 64,
  attention_resolutions: '32,16,8',
  channel_mult: '',
  resblock_updown: true,
  use_scale_shift_norm: true,
  learn_sigma: true,
  class_cond: false,
  use_fp16: true,
  dropout: 0.0,
});

/** UNetModel's constructor arguments (guided-diffusion's names in camelCase). */
export interface UNetOptions {
  imageSize: number;
  inChannels: number;
  modelChannels: number;
  outChannels: number;
  numResBlocks: number;
  /** Downsample rates (1, 2, 4, ...) at which attention is used. */
  attentionResolutions: readonly number[];
  dropout: number;
  channelMult: readonly number[];
  /** Learned convolutions in Upsample/Downsample when resblockUpdown is off. */
  convResample: boolean;
  numClasses: number | null;
  numHeads: number;
  numHeadChannels: number;
  numHeadsUpsample: number;
  useScaleShiftNorm: boolean;
  resblockUpdown: boolean;
  useNewAttentionOrder: boolean;
}

const NUM_CLASSES = 1000;

function defaultChannelMult(imageSize: number): number[] {
  switch (imageSize) {
    case 512:
      return [0.5, 1, 1, 2, 2, 4, 4];
    case 256:
      return [1, 1, 2, 2, 4, 4];
    case 128:
      return [1, 1, 2, 3, 4];
    case 64:
      return [1, 2, 3, 4];
    default:
      throw new Error(`ADM: unsupported image size: ${imageSize} (give channel_mult explicitly)`);
  }
}

function parseIntList(what: string, v: string | number | readonly number[]): number[] {
  const parts = typeof v === 'number' ? [v] : typeof v === 'string' ? v.split(',').map((s) => s.trim()) : [...v];
  return parts.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`ADM: ${what} must be positive integers, got '${String(v)}'`);
    return n;
  });
}

/**
 * create_model's translation of flags to UNetModel arguments: the default channel_mult per image
 * size, attention resolutions turned into downsample rates (image_size // res), 3 or 6 output
 * channels (learn_sigma), 1000 classes when class_cond. Missing flags take the defaults.
 */
export function admOptionsFromFlags(flags: Partial<AdmFlags>): UNetOptions {
  const f = { ...ADM_DEFAULT_FLAGS, ...flags } as AdmFlags;
  for (const k of ['image_size', 'num_channels', 'num_res_blocks'] as const) {
    if (!Number.isInteger(f[k]) || f[k] <= 0) throw new Error(`ADM: ${k} must be a positive integer, got ${f[k]}`);
  }
  const channelMult =
    f.channel_mult === '' || f.channel_mult === undefined
      ? defaultChannelMult(f.image_size)
      : parseIntList('channel_mult', f.channel_mult);
  const attentionResolutions = parseIntList('attention_resolutions', f.attention_resolutions).map((r) =>
    Math.floor(f.image_size / r),
  );
  return {
    imageSize: f.image_size,
    inChannels: 3,
    modelChannels: f.num_channels,
    outChannels: f.learn_sigma ? 6 : 3,
    numResBlocks: f.num_res_blocks,
    attentionResolutions,
    dropout: f.dropout,
    channelMult,
    convResample: true,
    numClasses: f.class_cond ? NUM_CLASSES : null,
    numHeads: f.num_heads,
    numHeadChannels: f.num_head_channels,
    numHeadsUpsample: f.num_heads_upsample,
    useScaleShiftNorm: f.use_scale_shift_norm,
    resblockUpdown: f.resblock_updown,
    useNewAttentionOrder: f.use_new_attention_order,
  };
}

/** guided_diffusion.script_util.create_model from its flags (e.g. a fixture's create_model_and_diffusion_kwargs). */
export function createAdmModel(flags: Partial<AdmFlags>): UNetModel {
  return new UNetModel(admOptionsFromFlags(flags));
}

// ---- building blocks ------------------------------------------------------------------------

/** guided-diffusion's normalization(): GroupNorm32, i.e. 32 groups, eps 1e-5. */
function normalization(channels: number): GroupNorm {
  return new GroupNorm(32, channels, 1e-5);
}

/** zero_module: the official initialisation zeroes the last layer of each residual branch. */
function zeroModule<M extends Module>(m: M): M {
  for (const [, p] of m.namedSlots()) {
    const old = p.value;
    p.value = T.keep(T.zeros(old.shape, { dtype: old.dtype, backend: old.backend.name }));
    old.dispose();
  }
  return m;
}

/**
 * Sinusoidal timestep embedding [N, dim] = [cos(t f), sin(t f)] (cos first), f_k =
 * exp(-ln(max_period) k / half) for k < half = dim // 2, zero-padded when dim is odd. The
 * frequencies are rounded as PyTorch's float32 arithmetic rounds them, so large t (up to 999)
 * gives the same arguments to the last bit.
 */
export function admTimestepEmbedding(timesteps: T.Tensor, dim: number, maxPeriod = 10000): T.Tensor {
  if (timesteps.rank !== 1)
    throw new Error(`admTimestepEmbedding: timesteps must be 1-D [N], got [${timesteps.shape}]`);
  const half = Math.floor(dim / 2);
  const f32 = Math.fround;
  const scale = f32(-Math.log(maxPeriod));
  const freqs = Array.from({ length: half }, (_, k) => f32(Math.exp(f32(f32(scale * k) / half))));
  const like = { dtype: timesteps.dtype, backend: timesteps.backend.name };
  const args = T.mul(T.reshape(timesteps, [timesteps.size, 1]), T.fromArray(freqs, [1, half], like));
  const parts = [T.cos(args), T.sin(args)];
  if (dim % 2) parts.push(T.zeros([timesteps.size, 1], like));
  return T.concat(parts, 1);
}

/** Nearest 2x upsampling, with a 3x3 conv (key 'conv') when useConv. */
export class AdmUpsample extends Module {
  readonly conv: Conv2d | null;
  constructor(
    readonly channels: number,
    useConv: boolean,
    outChannels?: number,
  ) {
    super();
    this.conv = useConv
      ? this.registerModule('conv', new Conv2d(channels, outChannels ?? channels, 3, { padding: 1 }))
      : null;
  }
  forward(x: T.Tensor): T.Tensor {
    const h = T.upsampleNearest2d(x, { scaleFactor: 2 });
    return this.conv ? this.conv.forward(h) : h;
  }
}

/** 2x downsampling: a stride-2 3x3 conv (key 'op') when useConv, else 2x2 average pooling. */
export class AdmDownsample extends Module {
  readonly op: Conv2d | null;
  constructor(
    readonly channels: number,
    useConv: boolean,
    outChannels?: number,
  ) {
    super();
    if (!useConv && outChannels !== undefined && outChannels !== channels)
      throw new Error(`AdmDownsample: average pooling cannot change ${channels} channels to ${outChannels}`);
    this.op = useConv
      ? this.registerModule('op', new Conv2d(channels, outChannels ?? channels, 3, { stride: 2, padding: 1 }))
      : null;
  }
  forward(x: T.Tensor): T.Tensor {
    return this.op ? this.op.forward(x) : T.avgPool2d(x, 2, 2);
  }
}

export interface ResBlockOptions {
  outChannels?: number;
  useScaleShiftNorm?: boolean;
  up?: boolean;
  down?: boolean;
}

/** Residual block conditioned on the timestep embedding; optionally up- or down-samples. */
export class ResBlock extends Module {
  readonly outChannels: number;
  readonly inLayers: Sequential;
  readonly embLayers: Sequential;
  readonly outLayers: Sequential;
  readonly skipConnection: Conv2d | null;
  readonly useScaleShiftNorm: boolean;
  private readonly resample: ((x: T.Tensor) => T.Tensor) | null;

  constructor(
    readonly channels: number,
    embChannels: number,
    dropout: number,
    opts: ResBlockOptions = {},
  ) {
    super();
    const out = opts.outChannels ?? channels;
    this.outChannels = out;
    this.useScaleShiftNorm = opts.useScaleShiftNorm ?? false;
    this.inLayers = this.registerModule(
      'in_layers',
      new Sequential([normalization(channels), new SiLU(), new Conv2d(channels, out, 3, { padding: 1 })]),
    );
    // h_upd and x_upd are the parameter-free Upsample/Downsample(use_conv=False) of the original
    if (opts.up) this.resample = (x) => T.upsampleNearest2d(x, { scaleFactor: 2 });
    else if (opts.down) this.resample = (x) => T.avgPool2d(x, 2, 2);
    else this.resample = null;
    this.embLayers = this.registerModule(
      'emb_layers',
      new Sequential([new SiLU(), new Linear(embChannels, this.useScaleShiftNorm ? 2 * out : out)]),
    );
    this.outLayers = this.registerModule(
      'out_layers',
      new Sequential([
        normalization(out),
        new SiLU(),
        new Dropout(dropout),
        zeroModule(new Conv2d(out, out, 3, { padding: 1 })),
      ]),
    );
    // use_conv is never set by UNetModel, so a channel change uses a 1x1 conv
    this.skipConnection =
      out === channels ? null : this.registerModule('skip_connection', new Conv2d(channels, out, 1));
  }

  forward(x: T.Tensor, emb: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let h: T.Tensor;
      const inLayers = this.inLayers.items;
      if (this.resample) {
        h = (inLayers[1] as SiLU).forward((inLayers[0] as GroupNorm).forward(x));
        h = this.resample(h);
        x = this.resample(x);
        h = (inLayers[2] as Conv2d).forward(h);
      } else {
        h = this.inLayers.forward(x);
      }
      const e = this.embLayers.forward(emb);
      const embOut = T.reshape(e, [e.shape[0] as number, e.shape[1] as number, 1, 1]);
      const outLayers = this.outLayers.items;
      if (this.useScaleShiftNorm) {
        const c = this.outChannels;
        const scale = T.narrow(embOut, 1, 0, c);
        const shift = T.narrow(embOut, 1, c, c);
        h = T.add(T.mul((outLayers[0] as GroupNorm).forward(h), T.add(scale, 1)), shift);
        for (const m of outLayers.slice(1)) h = m.forward(h);
      } else {
        h = this.outLayers.forward(T.add(h, embOut));
      }
      return T.add(this.skipConnection ? this.skipConnection.forward(x) : x, h);
    });
  }
}

/**
 * QKV attention over qkv [N, 3*H*C, T] -> [N, H*C, T]. Legacy order (QKVAttentionLegacy): heads
 * outermost, i.e. qkv is read as [N*H, 3*C, T] and split into q, k, v. New order (QKVAttention):
 * q, k, v outermost, each [N, H*C, T] read as [N*H, C, T].
 */
export function qkvAttention(qkv: T.Tensor, numHeads: number, newOrder: boolean): T.Tensor {
  const [bs, width, length] = qkv.shape as [number, number, number];
  if (width % (3 * numHeads)) throw new Error(`qkvAttention: width ${width} is not divisible by 3 * ${numHeads} heads`);
  const ch = width / (3 * numHeads);
  let q: T.Tensor;
  let k: T.Tensor;
  let v: T.Tensor;
  if (newOrder) {
    const heads = (t: T.Tensor) => T.reshape(t, [bs * numHeads, ch, length]);
    q = heads(T.narrow(qkv, 1, 0, numHeads * ch));
    k = heads(T.narrow(qkv, 1, numHeads * ch, numHeads * ch));
    v = heads(T.narrow(qkv, 1, 2 * numHeads * ch, numHeads * ch));
  } else {
    const r = T.reshape(qkv, [bs * numHeads, 3 * ch, length]);
    q = T.narrow(r, 1, 0, ch);
    k = T.narrow(r, 1, ch, ch);
    v = T.narrow(r, 1, 2 * ch, ch);
  }
  const scale = 1 / Math.sqrt(Math.sqrt(ch));
  // weight[b, t, s] = sum_c q[b, c, t] k[b, c, s]
  const weight = T.softmax(T.matmul(T.transpose(T.mul(q, scale)), T.mul(k, scale)), -1);
  // a[b, c, t] = sum_s weight[b, t, s] v[b, c, s]
  const a = T.matmul(v, T.transpose(weight));
  return T.reshape(a, [bs, numHeads * ch, length]);
}

/** Self-attention over the spatial positions, with a residual connection. */
export class AttentionBlock extends Module {
  readonly numHeads: number;
  readonly norm: GroupNorm;
  readonly qkv: Conv1d;
  readonly projOut: Conv1d;
  private readonly newOrder: boolean;

  constructor(
    readonly channels: number,
    opts: { numHeads?: number; numHeadChannels?: number; useNewAttentionOrder?: boolean } = {},
  ) {
    super();
    const nhc = opts.numHeadChannels ?? -1;
    if (nhc === -1) {
      this.numHeads = opts.numHeads ?? 1;
    } else {
      if (channels % nhc)
        throw new Error(`AttentionBlock: q,k,v channels ${channels} is not divisible by num_head_channels ${nhc}`);
      this.numHeads = channels / nhc;
    }
    this.newOrder = opts.useNewAttentionOrder ?? false;
    this.norm = this.registerModule('norm', normalization(channels));
    this.qkv = this.registerModule('qkv', new Conv1d(channels, 3 * channels, 1));
    this.projOut = this.registerModule('proj_out', zeroModule(new Conv1d(channels, channels, 1)));
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const [b, c] = x.shape as [number, number];
      const flat = T.reshape(x, [b, c, -1]);
      const h = this.projOut.forward(
        qkvAttention(this.qkv.forward(this.norm.forward(flat)), this.numHeads, this.newOrder),
      );
      return T.reshape(T.add(flat, h), x.shape);
    });
  }
}

type Layer = Module & { forward(x: T.Tensor): T.Tensor };

/** Children '0', '1', ...; ResBlocks also receive the timestep embedding. */
export class TimestepEmbedSequential extends ModuleList<Layer | ResBlock> {
  forward(x: T.Tensor, emb: T.Tensor): T.Tensor {
    for (const m of this.items) x = m instanceof ResBlock ? m.forward(x, emb) : (m as Layer).forward(x);
    return x;
  }
}

// ---- the UNet -------------------------------------------------------------------------------

export class UNetModel extends Module {
  readonly timeEmbed: Sequential;
  readonly labelEmb: Embedding | null;
  readonly inputBlocks: ModuleList<TimestepEmbedSequential>;
  readonly middleBlock: TimestepEmbedSequential;
  readonly outputBlocks: ModuleList<TimestepEmbedSequential>;
  readonly out: Sequential;

  constructor(readonly options: UNetOptions) {
    super();
    const o = options;
    const numHeadsUpsample = o.numHeadsUpsample === -1 ? o.numHeads : o.numHeadsUpsample;
    const ted = o.modelChannels * 4;
    const res = (ch: number, out: number, extra: ResBlockOptions = {}) =>
      new ResBlock(ch, ted, o.dropout, { outChannels: out, useScaleShiftNorm: o.useScaleShiftNorm, ...extra });
    const attn = (ch: number, heads: number) =>
      new AttentionBlock(ch, {
        numHeads: heads,
        numHeadChannels: o.numHeadChannels,
        useNewAttentionOrder: o.useNewAttentionOrder,
      });

    this.timeEmbed = this.registerModule(
      'time_embed',
      new Sequential([new Linear(o.modelChannels, ted), new SiLU(), new Linear(ted, ted)]),
    );
    this.labelEmb = o.numClasses === null ? null : this.registerModule('label_emb', new Embedding(o.numClasses, ted));

    let ch = Math.trunc((o.channelMult[0] as number) * o.modelChannels);
    const inputCh = ch;
    this.inputBlocks = this.registerModule(
      'input_blocks',
      new ModuleList([new TimestepEmbedSequential([new Conv2d(o.inChannels, ch, 3, { padding: 1 })])]),
    );
    const skipChans = [ch];
    let ds = 1;
    o.channelMult.forEach((mult, level) => {
      for (let i = 0; i < o.numResBlocks; i++) {
        const out = Math.trunc(mult * o.modelChannels);
        const layers: (Layer | ResBlock)[] = [res(ch, out)];
        ch = out;
        if (o.attentionResolutions.includes(ds)) layers.push(attn(ch, o.numHeads));
        this.inputBlocks.push(new TimestepEmbedSequential(layers));
        skipChans.push(ch);
      }
      if (level !== o.channelMult.length - 1) {
        this.inputBlocks.push(
          new TimestepEmbedSequential([
            o.resblockUpdown ? res(ch, ch, { down: true }) : new AdmDownsample(ch, o.convResample, ch),
          ]),
        );
        skipChans.push(ch);
        ds *= 2;
      }
    });

    this.middleBlock = this.registerModule(
      'middle_block',
      new TimestepEmbedSequential([res(ch, ch), attn(ch, o.numHeads), res(ch, ch)]),
    );

    this.outputBlocks = this.registerModule('output_blocks', new ModuleList<TimestepEmbedSequential>());
    [...o.channelMult.entries()].reverse().forEach(([level, mult]) => {
      for (let i = 0; i <= o.numResBlocks; i++) {
        const ich = skipChans.pop() as number;
        const out = Math.trunc(o.modelChannels * mult);
        const layers: (Layer | ResBlock)[] = [res(ch + ich, out)];
        ch = out;
        if (o.attentionResolutions.includes(ds)) layers.push(attn(ch, numHeadsUpsample));
        if (level && i === o.numResBlocks) {
          layers.push(o.resblockUpdown ? res(ch, ch, { up: true }) : new AdmUpsample(ch, o.convResample, ch));
          ds /= 2;
        }
        this.outputBlocks.push(new TimestepEmbedSequential(layers));
      }
    });

    this.out = this.registerModule(
      'out',
      new Sequential([
        normalization(ch),
        new SiLU(),
        zeroModule(new Conv2d(inputCh, o.outChannels, 3, { padding: 1 })),
      ]),
    );
  }

  /**
   * x [N, C, H, W] and timesteps [N] as the PyTorch module receives them (integer steps for
   * DiffPure's ImageNet model, stored as float values); y [N] class labels iff class-conditional.
   * Returns [N, outChannels, H, W]: with learn_sigma, channels 0-2 are the noise prediction and
   * 3-5 the variance interpolation values.
   */
  forward(x: T.Tensor, timesteps: T.Tensor, y?: T.Tensor | readonly number[]): T.Tensor {
    if ((y !== undefined) !== (this.labelEmb !== null))
      throw new Error('UNetModel: must specify y if and only if the model is class-conditional');
    if (x.rank !== 4 || x.shape[1] !== this.options.inChannels)
      throw new Error(`UNetModel: x must be [N, ${this.options.inChannels}, H, W], got [${x.shape.join(', ')}]`);
    if (timesteps.rank !== 1 || timesteps.size !== x.shape[0])
      throw new Error(`UNetModel: timesteps must be [${x.shape[0]}], got [${timesteps.shape.join(', ')}]`);
    const levels = this.options.channelMult.length - 1;
    const [, , hgt, wid] = x.shape as [number, number, number, number];
    if (hgt % 2 ** levels || wid % 2 ** levels)
      throw new Error(`UNetModel: H and W (${hgt}, ${wid}) must be divisible by 2^${levels}`);

    let emb = this.timeEmbed.forward(admTimestepEmbedding(timesteps, this.options.modelChannels));
    if (this.labelEmb && y !== undefined) emb = T.add(emb, this.labelEmb.forward(y));
    const hs: T.Tensor[] = [];
    let h = x;
    for (const m of this.inputBlocks.items) {
      h = m.forward(h, emb);
      hs.push(h);
    }
    h = this.middleBlock.forward(h, emb);
    for (const m of this.outputBlocks.items) h = forwardOnConcat(m, h, hs.pop() as T.Tensor, emb);
    return this.out.forward(h);
  }
}
