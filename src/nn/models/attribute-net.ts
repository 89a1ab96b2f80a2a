// gan-ensembling's attribute classifier `D` (chail/gan-ensembling at 47d2d70, copied into DiffPure
// as classifiers/attribute_net.py): a StyleGAN (progressive-GAN) discriminator trained to predict
// one CelebA-HQ attribute, with the module tree of the PyTorch code so its checkpoints load key for
// key: lod_in, fromrgb_lod0.conv.{conv.weight, wscale.b}, '<R>x<R>'.{conv0, conv1}.{conv.weight,
// wscale.b} for R = resolution .. 8, and '4x4'.{conv, dense0, dense1}.
//
// Built as DiffPure's loader builds it (attribute_net.from_state_dict(sd, fixed_size=True,
// use_mbstd=False)): only the full-resolution input branch fromrgb_lod0 and no minibatch-std
// layer. With fixed_size the progressive-growing blend never runs, so the float64 buffer lod_in is
// read from checkpoints and otherwise unused.
//
// Equalized learning rate: the stored weights are N(0, 1)-scale and every layer multiplies by
// gain / sqrt(fan_in) at run time (WScaleLayer). The official code scales the layer's output and
// then adds the bias; we scale the weight before the conv / matmul and pass the bias to it, the
// same function with one multiply per weight instead of one per activation.

import * as T from '../../tensor/index.js';
import { nextRandom } from '../init.js';
import { Conv2d, Linear } from '../layers/basic.js';
import { Module, type Parameter } from '../module.js';

/**
 * D's keyword arguments with the official names. Omitted ones take DIFFPURE_CELEBAHQ_CLASSIFIER's values (256 px,
 * fixed_size, no minibatch-std: how DiffPure builds it), not D's own defaults (128 px, fixed_size False, use_mbstd True).
 */
export interface AttributeNetOptions {
  /** Input colour channels (3). */
  num_channels?: number;
  /** Input resolution, a power of two >= 8 (DiffPure's CelebA-HQ classifiers: 256). */
  resolution?: number;
  /** Overall multiplier for the feature maps (8192). */
  fmap_base?: number;
  /** log2 feature-map reduction per doubling of the resolution (1.0). */
  fmap_decay?: number;
  /** Most feature maps in any layer (512). */
  fmap_max?: number;
  /**
   * Feature maps per stage, nf[stage] for stage 0 .. log2(resolution) - 1, instead of the
   * fmap_* formula: how a checkpoint's widths are taken from its tensor shapes
   * (attributeNetOptionsFromStateDict).
   */
  nf?: readonly number[];
  /** Only fromrgb_lod0 (true, as DiffPure loads it); the progressive branches are not built. */
  fixed_size?: boolean;
  /** The minibatch-std layer before the last conv (false for the attribute classifiers). */
  use_mbstd?: boolean;
}

/** DiffPure's construction: D(num_channels=3, resolution=256, fixed_size=True, use_mbstd=False), full widths. */
export const DIFFPURE_CELEBAHQ_CLASSIFIER: Readonly<AttributeNetOptions> = Object.freeze({
  num_channels: 3,
  resolution: 256,
  fmap_base: 8192,
  fmap_decay: 1.0,
  fmap_max: 512,
  fixed_size: true,
  use_mbstd: false,
});

/** The LeakyReLU slope of every activation in D. */
const SLOPE = 0.2;

/** LeakyReLU(0.2) as max(x, 0.2 x): for x != 0 exactly one branch wins, so the VJP has slope 1 or 0.2. */
export function leakyRelu(x: T.Tensor, slope = SLOPE): T.Tensor {
  return T.maximum(x, T.mul(x, slope));
}

/** Replace a layer's weight by N(0, 1) draws: gan-ensembling's init_weights(net, 'normal', gain=1). */
function standardNormalWeight(layer: { weight: Parameter }): void {
  const old = layer.weight.value;
  layer.weight.value = T.keep(
    T.randomNormal(old.shape, { ...nextRandom(), dtype: old.dtype, backend: old.backend.name }),
  );
  old.dispose();
}

/** WScaleLayer: holds the bias 'b' (torch.randn at construction) and the run-time weight scale. */
export class WScaleLayer extends Module {
  readonly b: Parameter;
  /** gain / sqrt(fan_in). */
  readonly scale: number;
  constructor(size: number, fanIn: number, gain = Math.SQRT2) {
    super();
    this.scale = gain / Math.sqrt(fanIn);
    this.b = this.registerParameter('b', T.randomNormal([size], nextRandom()));
  }
}

/** WScaleConv2d: keys conv.weight (OIHW, no bias) and wscale.b. */
export class WScaleConv2d extends Module {
  readonly conv: Conv2d;
  readonly wscale: WScaleLayer;
  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number,
    readonly padding: number,
    gain = Math.SQRT2,
  ) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(inChannels, outChannels, kernelSize, { padding, bias: false }));
    standardNormalWeight(this.conv);
    this.wscale = this.registerModule(
      'wscale',
      new WScaleLayer(outChannels, inChannels * kernelSize * kernelSize, gain),
    );
  }
  forward(x: T.Tensor): T.Tensor {
    const w = T.mul(this.conv.weight.value, this.wscale.scale);
    return T.conv2d(x, w, this.wscale.b.value, { padding: this.padding });
  }
}

/** WScaleLinear: keys linear.weight ([out, in], no bias) and wscale.b. */
export class WScaleLinear extends Module {
  readonly linear: Linear;
  readonly wscale: WScaleLayer;
  constructor(inFeatures: number, outFeatures: number, gain = Math.SQRT2) {
    super();
    this.linear = this.registerModule('linear', new Linear(inFeatures, outFeatures, { bias: false }));
    standardNormalWeight(this.linear);
    this.wscale = this.registerModule('wscale', new WScaleLayer(outFeatures, inFeatures, gain));
  }
  forward(x: T.Tensor): T.Tensor {
    const w = T.mul(this.linear.weight.value, this.wscale.scale);
    return T.add(T.matmul(x, T.transpose(w)), this.wscale.b.value);
  }
}

/** FromRGB: a 1x1 WScaleConv2d then LeakyReLU (key conv). */
export class FromRGB extends Module {
  readonly conv: WScaleConv2d;
  constructor(inChannels: number, outChannels: number) {
    super();
    this.conv = this.registerModule('conv', new WScaleConv2d(inChannels, outChannels, 1, 0));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => leakyRelu(this.conv.forward(x)));
  }
}

/**
 * DownscaleConvBlock: conv0 3x3 -> LeakyReLU -> conv1 3x3 (with its bias) -> 2x2 average pool ->
 * LeakyReLU. The pool comes before the activation, as the official code insists (it mirrors
 * StyleGAN's fused conv2d_downscale2d).
 */
export class DownscaleConvBlock extends Module {
  readonly conv0: WScaleConv2d;
  readonly conv1: WScaleConv2d;
  constructor(inChannels: number, conv0Channels: number, conv1Channels: number) {
    super();
    this.conv0 = this.registerModule('conv0', new WScaleConv2d(inChannels, conv0Channels, 3, 1));
    this.conv1 = this.registerModule('conv1', new WScaleConv2d(conv0Channels, conv1Channels, 3, 1));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const h = leakyRelu(this.conv0.forward(x));
      return leakyRelu(T.avgPool2d(this.conv1.forward(h), 2));
    });
  }
}

/**
 * PredictionBlock at 4x4: conv 3x3 -> LeakyReLU -> flatten (C, H, W order) -> dense0 -> LeakyReLU
 * -> dense1 (gain 1) -> one logit. No minibatch-std layer.
 */
export class PredictionBlock extends Module {
  readonly conv: WScaleConv2d;
  readonly dense0: WScaleLinear;
  readonly dense1: WScaleLinear;
  constructor(inChannels: number, dense0Feat: number, dense1Feat: number, outFeat: number, poolSize: number) {
    super();
    this.conv = this.registerModule('conv', new WScaleConv2d(inChannels, dense0Feat, 3, 1));
    this.dense0 = this.registerModule('dense0', new WScaleLinear(dense0Feat * poolSize * poolSize, dense1Feat));
    this.dense1 = this.registerModule('dense1', new WScaleLinear(dense1Feat, outFeat, 1));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const h = leakyRelu(this.conv.forward(x));
      const flat = T.reshape(h, [h.shape[0] as number, -1]);
      return this.dense1.forward(leakyRelu(this.dense0.forward(flat)));
    });
  }
}

/** Feature maps per stage from D's formula: nf(stage) = min(int(fmap_base / 2^(stage fmap_decay)), fmap_max). */
export function attributeNetWidths(resolutionLog2: number, fmapBase = 8192, fmapDecay = 1.0, fmapMax = 512): number[] {
  return Array.from({ length: resolutionLog2 }, (_, stage) =>
    Math.min(Math.trunc(fmapBase / 2.0 ** (stage * fmapDecay)), fmapMax),
  );
}

/**
 * gan-ensembling's `D` with fixed_size=True and use_mbstd=False. forward: images [B, C, R, R] in
 * [-1, 1] -> one logit per image [B, 1] (see attribute-classifier.ts for DiffPure's wrapper and
 * the meaning of its sign).
 */
export class AttributeNet extends Module {
  readonly lodIn: Parameter;
  readonly fromrgb: FromRGB;
  /** The DownscaleConvBlocks from resolution down to 8x8, in order. */
  readonly blocks: DownscaleConvBlock[] = [];
  readonly prediction: PredictionBlock;
  readonly numChannels: number;
  readonly resolution: number;
  /** Feature maps per stage (index = stage), as built. */
  readonly nf: readonly number[];

  constructor(options: AttributeNetOptions = {}) {
    super();
    const o = { ...DIFFPURE_CELEBAHQ_CLASSIFIER, ...options };
    if (o.fixed_size === false || o.use_mbstd === true) {
      throw new Error(
        'AttributeNet: only fixed_size=true and use_mbstd=false are built (how DiffPure loads the CelebA-HQ ' +
          'attribute classifiers); the progressive-growing branches and the minibatch-std layer are not implemented',
      );
    }
    const res = o.resolution as number;
    const log2 = Math.round(Math.log2(res));
    if (!(Number.isInteger(res) && res === 2 ** log2 && res >= 8)) {
      throw new Error(`AttributeNet: resolution must be a power of two >= 8, got ${res}`);
    }
    const nf = o.nf ? [...o.nf] : attributeNetWidths(log2, o.fmap_base, o.fmap_decay, o.fmap_max);
    if (nf.length !== log2 || !nf.every((n) => Number.isInteger(n) && n > 0)) {
      throw new Error(
        `AttributeNet: nf must give ${log2} positive integer widths (stages 0 .. ${log2 - 1}) at resolution ${res}, got [${nf.join(', ')}]`,
      );
    }
    const at = (stage: number) => nf[stage] as number;
    this.nf = nf;
    this.numChannels = o.num_channels as number;
    this.resolution = res;
    // torch.from_numpy(np.array(0.0)): a float64 scalar in the checkpoint. Held as float32 here so
    // the model lives on any backend (webgpu has no float64); loading casts it, and it is never read.
    this.lodIn = this.registerBuffer('lod_in', T.zeros([]));
    this.fromrgb = this.registerModule('fromrgb_lod0', new FromRGB(this.numChannels, at(log2 - 1)));
    for (let r = log2; r > 2; r--) {
      const block = new DownscaleConvBlock(at(r - 1), at(r - 1), at(r - 2));
      this.blocks.push(this.registerModule(`${2 ** r}x${2 ** r}`, block));
    }
    this.prediction = this.registerModule('4x4', new PredictionBlock(at(1), at(1), at(0), 1, 4));
  }

  /** img [B, C, R, R] in [-1, 1] -> logit [B, 1]. */
  forward(img: T.Tensor): T.Tensor {
    const want = [this.numChannels, this.resolution, this.resolution];
    if (img.rank !== 4 || img.shape.slice(1).some((s, i) => s !== want[i])) {
      throw new Error(`AttributeNet: input must be [B, ${want.join(', ')}], got [${img.shape.join(', ')}]`);
    }
    let x = this.fromrgb.forward(img);
    for (const block of this.blocks) {
      const next = block.forward(x);
      if (x !== img) x.dispose(); // autograd nodes keep what the backward pass needs
      x = next;
    }
    const out = this.prediction.forward(x);
    x.dispose();
    return out;
  }
}

/** The first key of a state dict that D of this resolution must have (used to find the resolution). */
const blockKey = (r: number) => `${r}x${r}.conv0.conv.weight`;

/**
 * D's options read from a checkpoint's tensor shapes: the resolution as the official
 * max_res_from_state_dict finds it (the largest 2^i, i = 3 .. 11, such that every '<2^j>x<2^j>'
 * block from 8 up is present), the input channels and every stage's width, so shrunk or
 * full-size classifiers build without a config. Throws when the keys are not D's.
 */
export function attributeNetOptionsFromStateDict(
  sd: ReadonlyMap<string, { readonly shape: readonly number[] }>,
): AttributeNetOptions {
  let log2 = 2;
  while (log2 < 11 && sd.has(blockKey(2 ** (log2 + 1)))) log2++;
  if (log2 < 3)
    throw new Error(`AttributeNet: the state dict has no '${blockKey(8)}', so it is not gan-ensembling's D`);
  const shape = (k: string): readonly number[] => {
    const t = sd.get(k);
    if (!t) throw new Error(`AttributeNet: the state dict has no '${k}'`);
    return t.shape;
  };
  const nf: number[] = new Array(log2).fill(0);
  const put = (stage: number, width: number | undefined, from: string) => {
    if (width === undefined) throw new Error(`AttributeNet: '${from}' has no output width`);
    if (nf[stage] && nf[stage] !== width) {
      throw new Error(`AttributeNet: '${from}' gives stage ${stage} width ${width}, another layer gives ${nf[stage]}`);
    }
    nf[stage] = width;
  };
  const rgb = shape('fromrgb_lod0.conv.conv.weight');
  put(log2 - 1, rgb[0], 'fromrgb_lod0.conv.conv.weight');
  for (let r = log2; r > 2; r--) {
    put(r - 1, shape(blockKey(2 ** r))[0], blockKey(2 ** r));
    put(r - 2, shape(`${2 ** r}x${2 ** r}.conv1.conv.weight`)[0], `${2 ** r}x${2 ** r}.conv1.conv.weight`);
  }
  put(1, shape('4x4.conv.conv.weight')[0], '4x4.conv.conv.weight');
  put(0, shape('4x4.dense0.linear.weight')[0], '4x4.dense0.linear.weight');
  return { ...DIFFPURE_CELEBAHQ_CLASSIFIER, num_channels: rgb[1], resolution: 2 ** log2, nf };
}
