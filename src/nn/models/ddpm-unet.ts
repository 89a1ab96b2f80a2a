// The DDPM UNet of Ho et al. as DiffPure runs it for CelebA-HQ: NVlabs/DiffPure ddpm/unet_ddpm.py
// `Model` (a byte-identical copy of ermongroup/SDEdit models/diffusion.py), configured by
// configs/celeba.yml. The checkpoint (SDEdit's celeba_hq.ckpt) is a plain state dict loaded
// strictly, so modules are registered under the original attribute names and in the original
// order: temb.dense.{0,1}, conv_in, down.<level>.{block,attn,downsample}, mid.{block_1,attn_1,
// block_2}, up.<level>.{block,attn,upsample}, norm_out, conv_out.
//
// Conventions of this model (they differ from DDPM++ and ADM in small ways that matter):
// GroupNorm always has 32 groups with eps 1e-6; the timestep embedding is [sin, cos] with
// frequencies 10000^(-k/(half-1)); residual sums are not rescaled; the stride-2 downsampling conv
// pads right and bottom only; attention is single-head with scale C^-0.5.

import * as T from '../../tensor/index.js';
import { Conv2d, Dropout, forwardOnConcat, GroupNorm, Linear, ModuleList } from '../layers/basic.js';
import { Module } from '../module.js';

/** The JSON shape of an SDEdit / DiffPure yml config ({data, model, diffusion, ...}, official field names). */
export interface DdpmConfigJson {
  data: Record<string, unknown>;
  model: Record<string, unknown>;
  diffusion?: Record<string, unknown>;
  [section: string]: unknown;
}

/** The fields that shape `Model`, read from a DdpmConfigJson. */
export interface DdpmUNetConfig {
  /** model.ch: base channels (128 for CelebA-HQ). */
  ch: number;
  /** model.out_ch. */
  outCh: number;
  /** model.ch_mult: channel multiplier per level. */
  chMult: readonly number[];
  /** model.num_res_blocks. */
  numResBlocks: number;
  /** model.attn_resolutions: resolutions (pixels) whose levels carry attention. */
  attnResolutions: readonly number[];
  /** model.dropout (only active in training mode). */
  dropout: number;
  /** model.in_channels. */
  inChannels: number;
  /** data.image_size: the model asserts square inputs of exactly this side. */
  resolution: number;
  /** model.resamp_with_conv. */
  resampWithConv: boolean;
  /** diffusion.num_diffusion_timesteps: timesteps must be integers in [0, numTimesteps - 1]. */
  numTimesteps: number;
}

/**
 * DiffPure's CelebA-HQ diffusion model, configs/celeba.yml (SDEdit's celeba_hq.ckpt):
 * 256 px, ch 128, ch_mult [1, 1, 2, 2, 4, 4], 2 residual blocks, attention at 16 px; 113,673,219
 * parameters. Copied from the ddpm_celebahq fixture's meta.json (unet.full_config_configs_celeba_yml).
 */
export const CELEBA_HQ_DDPM_CONFIG: DdpmConfigJson = {
  data: {
    dataset: 'CelebA_HQ',
    category: 'celeba',
    image_size: 256,
    channels: 3,
    logit_transform: false,
    uniform_dequantization: false,
    gaussian_dequantization: false,
    random_flip: true,
    rescaled: true,
    num_workers: 32,
  },
  model: {
    type: 'simple',
    in_channels: 3,
    out_ch: 3,
    ch: 128,
    ch_mult: [1, 1, 2, 2, 4, 4],
    num_res_blocks: 2,
    attn_resolutions: [16],
    dropout: 0.0,
    var_type: 'fixedsmall',
    ema_rate: 0.999,
    ema: true,
    resamp_with_conv: true,
  },
  diffusion: {
    beta_schedule: 'linear',
    beta_start: 0.0001,
    beta_end: 0.02,
    num_diffusion_timesteps: 1000,
  },
  sampling: { batch_size: 8, last_only: true },
};

const FIELDS: Record<keyof DdpmUNetConfig, ['model' | 'data' | 'diffusion', string]> = {
  ch: ['model', 'ch'],
  outCh: ['model', 'out_ch'],
  chMult: ['model', 'ch_mult'],
  numResBlocks: ['model', 'num_res_blocks'],
  attnResolutions: ['model', 'attn_resolutions'],
  dropout: ['model', 'dropout'],
  inChannels: ['model', 'in_channels'],
  resolution: ['data', 'image_size'],
  resampWithConv: ['model', 'resamp_with_conv'],
  numTimesteps: ['diffusion', 'num_diffusion_timesteps'],
};

/** Read the Model fields from a yml-shaped config; errors name the missing or bad field. */
export function ddpmConfigFromJson(json: DdpmConfigJson): DdpmUNetConfig {
  if (typeof json !== 'object' || json === null || typeof json.model !== 'object' || typeof json.data !== 'object')
    throw new Error('ddpm config: expected celeba.yml\'s fields as JSON with "data" and "model" sections');
  const out: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const [key, [section, name]] of Object.entries(FIELDS) as [keyof DdpmUNetConfig, [string, string]][]) {
    let v = (json[section] as Record<string, unknown> | undefined)?.[name];
    // the official Model never reads the diffusion section; DiffPure's schedule has 1000 steps
    if (v === undefined && key === 'numTimesteps') v = 1000;
    if (v === undefined) missing.push(`${section}.${name}`);
    out[key] = v;
  }
  if (missing.length) throw new Error(`ddpm config: missing ${missing.join(', ')}`);
  const channels = json.data.channels;
  if (channels !== undefined && channels !== out.inChannels)
    throw new Error(`ddpm config: data.channels ${String(channels)} differs from model.in_channels ${out.inChannels}`);
  const c = out as unknown as DdpmUNetConfig;
  validate(c);
  return c;
}

function validate(c: DdpmUNetConfig): void {
  const bad = (what: string): never => {
    throw new Error(`ddpm config: ${what}`);
  };
  for (const k of ['ch', 'outCh', 'numResBlocks', 'inChannels', 'resolution', 'numTimesteps'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < (k === 'numResBlocks' ? 0 : 1))
      bad(
        `${FIELDS[k].join('.')} must be ${k === 'numResBlocks' ? 'an integer >= 0' : 'a positive integer'}, got ${String(c[k])}`,
      );
  }
  if (!Array.isArray(c.chMult) || c.chMult.length === 0 || c.chMult.some((m) => !Number.isInteger(m) || m < 1))
    bad(`model.ch_mult must be a non-empty list of positive integers, got ${JSON.stringify(c.chMult)}`);
  if (!Array.isArray(c.attnResolutions) || c.attnResolutions.some((r) => !Number.isInteger(r) || r < 1))
    bad(
      `model.attn_resolutions must be a list of resolutions (positive integers), got ${JSON.stringify(c.attnResolutions)}`,
    );
  if (typeof c.resampWithConv !== 'boolean') bad(`model.resamp_with_conv must be a boolean`);
  if (!(c.dropout >= 0 && c.dropout < 1)) bad(`model.dropout must be in [0, 1), got ${String(c.dropout)}`);
  // Normalize is GroupNorm(32, C): every channel count must split into 32 groups
  const widths = [c.ch, ...c.chMult.map((m) => m * c.ch)];
  if (widths.some((w) => w % 32)) bad(`every level's channels (${widths.join(', ')}) must be a multiple of 32`);
  if (c.resolution % 2 ** (c.chMult.length - 1))
    bad(`data.image_size ${c.resolution} is not divisible by 2^${c.chMult.length - 1}`);
}

/** GroupNorm(32, C, eps 1e-6, affine): the official Normalize. */
const normalize = (channels: number) => new GroupNorm(32, channels, 1e-6);

/**
 * get_timestep_embedding(t, dim): [sin(t f_k), cos(t f_k)], f_k = exp(-k ln(10000) / (half - 1)),
 * zero-padded to an odd dim. The frequencies are rounded as PyTorch's float32 ops round them
 * (arange * float32(-c), then exp), so t up to 999 meets the same arguments.
 */
export function ddpmTimestepEmbedding(t: T.Tensor, dim: number): T.Tensor {
  if (t.rank !== 1) throw new Error(`ddpmTimestepEmbedding: timesteps must be 1-D, got [${t.shape.join(', ')}]`);
  const half = Math.floor(dim / 2);
  if (half < 2) throw new Error(`ddpmTimestepEmbedding: dim ${dim} is too small (needs at least 4)`);
  const f32 = Math.fround;
  const negC = f32(-Math.log(10000) / (half - 1));
  const freqs = Array.from({ length: half }, (_, k) => f32(Math.exp(f32(k * negC))));
  const like = { dtype: t.dtype, backend: t.backend.name };
  const arg = T.mul(T.reshape(t, [t.size, 1]), T.fromArray(freqs, [1, half], like));
  const emb = T.concat([T.sin(arg), T.cos(arg)], 1);
  return dim % 2 ? T.pad(emb, [[0, 1]]) : emb;
}

/** A plain container (PyTorch's bare nn.Module() with attributes set on it). */
class Container extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.registerModule(name, m);
  }
}

/** Nearest 2x upsampling, then a 3x3 conv when with_conv ('conv'). */
export class DdpmUpsample extends Module {
  readonly conv: Conv2d | null;
  constructor(channels: number, withConv: boolean) {
    super();
    this.conv = withConv ? this.registerModule('conv', new Conv2d(channels, channels, 3, { padding: 1 })) : null;
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const h = T.upsampleNearest2d(x, { scaleFactor: 2 });
      return this.conv ? this.conv.forward(h) : h;
    });
  }
}

/** 2x downsampling: zero-pad right and bottom by one, then a stride-2 3x3 conv ('conv'); or 2x2 average. */
export class DdpmDownsample extends Module {
  readonly conv: Conv2d | null;
  constructor(channels: number, withConv: boolean) {
    super();
    this.conv = withConv
      ? this.registerModule('conv', new Conv2d(channels, channels, 3, { stride: 2, padding: 0 }))
      : null;
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      if (!this.conv) return T.avgPool2d(x, 2, 2);
      // F.pad(x, (0, 1, 0, 1)): "no asymmetric padding in torch conv, must do it ourselves"
      return this.conv.forward(
        T.pad(x, [
          [0, 1],
          [0, 1],
        ]),
      );
    });
  }
}

/** ResnetBlock: norm1, conv1, temb_proj, norm2, dropout, conv2 and (channel change) nin_shortcut. */
export class DdpmResnetBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly temb_proj: Linear;
  readonly norm2: GroupNorm;
  readonly dropout: Dropout;
  readonly conv2: Conv2d;
  // conv_shortcut is never built: Model constructs every block with conv_shortcut=False
  readonly nin_shortcut: Conv2d | null;
  constructor(inCh: number, outCh: number, tembCh: number, dropout: number) {
    super();
    this.norm1 = this.registerModule('norm1', normalize(inCh));
    this.conv1 = this.registerModule('conv1', new Conv2d(inCh, outCh, 3, { padding: 1 }));
    this.temb_proj = this.registerModule('temb_proj', new Linear(tembCh, outCh));
    this.norm2 = this.registerModule('norm2', normalize(outCh));
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
    this.conv2 = this.registerModule('conv2', new Conv2d(outCh, outCh, 3, { padding: 1 }));
    this.nin_shortcut = inCh === outCh ? null : this.registerModule('nin_shortcut', new Conv2d(inCh, outCh, 1));
  }
  forward(x: T.Tensor, temb: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let h = this.conv1.forward(T.silu(this.norm1.forward(x)));
      const e = this.temb_proj.forward(T.silu(temb));
      h = T.add(h, T.reshape(e, [e.shape[0] as number, e.shape[1] as number, 1, 1]));
      h = this.conv2.forward(this.dropout.forward(T.silu(this.norm2.forward(h))));
      return T.add(this.nin_shortcut ? this.nin_shortcut.forward(x) : x, h);
    });
  }
}

/** AttnBlock: single-head self-attention over the pixels (norm, q, k, v, proj_out as 1x1 convs). */
export class DdpmAttnBlock extends Module {
  readonly norm: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly proj_out: Conv2d;
  constructor(channels: number) {
    super();
    this.norm = this.registerModule('norm', normalize(channels));
    this.q = this.registerModule('q', new Conv2d(channels, channels, 1));
    this.k = this.registerModule('k', new Conv2d(channels, channels, 1));
    this.v = this.registerModule('v', new Conv2d(channels, channels, 1));
    this.proj_out = this.registerModule('proj_out', new Conv2d(channels, channels, 1));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const [b, c, hh, ww] = x.shape as [number, number, number, number];
      const h = this.norm.forward(x);
      const flat = (t: T.Tensor) => T.reshape(t, [b, c, hh * ww]);
      const q = flat(this.q.forward(h));
      const k = flat(this.k.forward(h));
      const v = flat(this.v.forward(h));
      // w[b, i, j] = sum_c q[b, c, i] k[b, c, j] * C^-0.5, softmax over the keys j
      const w = T.softmax(T.mul(T.matmul(T.transpose(q), k), c ** -0.5), -1);
      // out[b, c, i] = sum_j v[b, c, j] w[b, i, j]
      const a = T.reshape(T.matmul(v, T.transpose(w)), [b, c, hh, ww]);
      return T.add(x, this.proj_out.forward(a));
    });
  }
}

interface Level {
  block: ModuleList<DdpmResnetBlock>;
  attn: ModuleList<DdpmAttnBlock>;
  resample: DdpmDownsample | DdpmUpsample | null;
}

/** `Model(config)`: forward(x [B, in_channels, S, S], t [B] integer timesteps) -> eps [B, out_ch, S, S]. */
export class DdpmUNet extends Module {
  readonly config: DdpmUNetConfig;
  readonly temb: Container;
  readonly conv_in: Conv2d;
  readonly down: ModuleList<Container>;
  readonly mid: Container;
  readonly up: ModuleList<Container>;
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  private readonly tembDense: [Linear, Linear];
  private readonly downLevels: Level[] = [];
  private readonly midBlocks: [DdpmResnetBlock, DdpmAttnBlock, DdpmResnetBlock];
  /** Up levels indexed by level (0 = full resolution), as the official `self.up` list. */
  private readonly upLevels: Level[] = [];

  constructor(config: DdpmConfigJson | DdpmUNetConfig) {
    super();
    const c = 'model' in config ? ddpmConfigFromJson(config as DdpmConfigJson) : (config as DdpmUNetConfig);
    validate(c);
    this.config = c;
    const { ch, chMult, numResBlocks, attnResolutions, dropout } = c;
    const tembCh = 4 * ch;
    const levels = chMult.length;
    const block = (inCh: number, outCh: number) => new DdpmResnetBlock(inCh, outCh, tembCh, dropout);

    this.temb = this.registerModule('temb', new Container());
    const dense = this.temb.add('dense', new ModuleList([new Linear(ch, tembCh), new Linear(tembCh, tembCh)]));
    this.tembDense = dense.items as [Linear, Linear];
    this.conv_in = this.registerModule('conv_in', new Conv2d(c.inChannels, ch, 3, { padding: 1 }));

    // encoder; in_ch_mult = (1,) + ch_mult
    const inChMult = [1, ...chMult];
    let res = c.resolution;
    let blockIn = ch;
    this.down = this.registerModule('down', new ModuleList<Container>());
    for (let level = 0; level < levels; level++) {
      const lv = new Container();
      const blocks = lv.add('block', new ModuleList<DdpmResnetBlock>());
      const attn = lv.add('attn', new ModuleList<DdpmAttnBlock>());
      blockIn = ch * (inChMult[level] as number);
      const blockOut = ch * (chMult[level] as number);
      for (let b = 0; b < numResBlocks; b++) {
        blocks.push(block(blockIn, blockOut));
        blockIn = blockOut;
        if (attnResolutions.includes(res)) attn.push(new DdpmAttnBlock(blockIn));
      }
      let resample: DdpmDownsample | null = null;
      if (level !== levels - 1) {
        resample = lv.add('downsample', new DdpmDownsample(blockIn, c.resampWithConv));
        res /= 2;
      }
      this.down.push(lv);
      this.downLevels.push({ block: blocks, attn, resample });
    }

    this.mid = this.registerModule('mid', new Container());
    this.midBlocks = [
      this.mid.add('block_1', block(blockIn, blockIn)),
      this.mid.add('attn_1', new DdpmAttnBlock(blockIn)),
      this.mid.add('block_2', block(blockIn, blockIn)),
    ];

    // decoder: built from the coarsest level up, but stored by level (the official up.insert(0, ...))
    const built: Container[] = [];
    for (let level = levels - 1; level >= 0; level--) {
      const lv = new Container();
      const blocks = lv.add('block', new ModuleList<DdpmResnetBlock>());
      const attn = lv.add('attn', new ModuleList<DdpmAttnBlock>());
      const blockOut = ch * (chMult[level] as number);
      for (let b = 0; b <= numResBlocks; b++) {
        // the last block of a level takes the skip saved before the level's first block
        const skipIn = ch * ((b === numResBlocks ? inChMult[level] : chMult[level]) as number);
        blocks.push(block(blockIn + skipIn, blockOut));
        blockIn = blockOut;
        if (attnResolutions.includes(res)) attn.push(new DdpmAttnBlock(blockIn));
      }
      let resample: DdpmUpsample | null = null;
      if (level !== 0) {
        resample = lv.add('upsample', new DdpmUpsample(blockIn, c.resampWithConv));
        res *= 2;
      }
      built.unshift(lv);
      this.upLevels.unshift({ block: blocks, attn, resample });
    }
    this.up = this.registerModule('up', new ModuleList(built));

    this.norm_out = this.registerModule('norm_out', normalize(blockIn));
    this.conv_out = this.registerModule('conv_out', new Conv2d(blockIn, c.outCh, 3, { padding: 1 }));
  }

  /**
   * Timesteps as a float tensor [B] (on x's backend) after checking they are integers in
   * [0, numTimesteps - 1]. A tensor is checked where its data is on the host (cpu); on a GPU
   * backend reading it back would stall the queue, so there the caller vouches for it.
   */
  private timesteps(t: T.Tensor | readonly number[], x: T.Tensor): T.Tensor {
    const b = x.shape[0] as number;
    const n = this.config.numTimesteps;
    const check = (values: ArrayLike<number>) => {
      for (let i = 0; i < values.length; i++) {
        const v = values[i] as number;
        if (!Number.isInteger(v) || v < 0 || v > n - 1)
          throw new Error(`DdpmUNet: timestep t[${i}] = ${v} must be an integer in [0, ${n - 1}]`);
      }
    };
    if (t instanceof T.Tensor) {
      if (t.rank !== 1 || t.size !== b)
        throw new Error(`DdpmUNet: timesteps must be [${b}], got [${t.shape.join(', ')}]`);
      const h = t.storage.handle;
      if (h instanceof Float32Array || h instanceof Float64Array) check(h.subarray(0, t.size));
      return t.dtype === x.dtype ? t : T.astype(t, x.dtype);
    }
    if (t.length !== b) throw new Error(`DdpmUNet: ${t.length} timesteps for a batch of ${b}`);
    check(t);
    return T.fromArray(t, [b], { dtype: x.dtype, backend: x.backend.name });
  }

  /**
   * x [B, in_channels, S, S] with S = data.image_size (DiffPure feeds images in [-1, 1]) and
   * integer timesteps t [B] (a tensor of float values, or numbers) -> the noise prediction
   * [B, out_ch, S, S].
   */
  forward(x: T.Tensor, t: T.Tensor | readonly number[]): T.Tensor {
    const c = this.config;
    if (x.rank !== 4 || x.shape[1] !== c.inChannels)
      throw new Error(`DdpmUNet: x must be [B, ${c.inChannels}, H, W], got [${x.shape.join(', ')}]`);
    if (x.shape[2] !== c.resolution || x.shape[3] !== c.resolution)
      throw new Error(
        `DdpmUNet: images must be ${c.resolution}x${c.resolution} (data.image_size), got ${x.shape[2]}x${x.shape[3]}`,
      );
    return T.tidy(() => {
      const steps = this.timesteps(t, x);
      const [d0, d1] = this.tembDense;
      const temb = d1.forward(T.silu(d0.forward(ddpmTimestepEmbedding(steps, c.ch))));

      const hs: T.Tensor[] = [this.conv_in.forward(x)];
      for (const lv of this.downLevels) {
        for (let b = 0; b < c.numResBlocks; b++) {
          let h = (lv.block.items[b] as DdpmResnetBlock).forward(hs[hs.length - 1] as T.Tensor, temb);
          const attn = lv.attn.items[b];
          if (attn) h = attn.forward(h);
          hs.push(h);
        }
        if (lv.resample) hs.push(lv.resample.forward(hs[hs.length - 1] as T.Tensor));
      }

      const [b1, a1, b2] = this.midBlocks;
      let h = b2.forward(a1.forward(b1.forward(hs[hs.length - 1] as T.Tensor, temb)), temb);

      for (let level = this.upLevels.length - 1; level >= 0; level--) {
        const lv = this.upLevels[level] as Level;
        for (let b = 0; b <= c.numResBlocks; b++) {
          // cat([h, hs.pop()], dim=1); the concatenation and the consumed skip go at once
          const next = forwardOnConcat(lv.block.items[b] as DdpmResnetBlock, h, hs.pop() as T.Tensor, temb);
          h.dispose();
          h = next;
          const attn = lv.attn.items[b];
          if (attn) {
            const a = attn.forward(h);
            h.dispose();
            h = a;
          }
        }
        if (lv.resample) {
          const u = lv.resample.forward(h);
          h.dispose();
          h = u;
        }
      }
      return this.conv_out.forward(T.silu(this.norm_out.forward(h)));
    });
  }
}
