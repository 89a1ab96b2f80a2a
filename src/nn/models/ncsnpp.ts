// NCSN++ / DDPM++: the score network of Song et al. (score_sde_pytorch models/ncsnpp.py), which
// DiffPure uses for CIFAR-10 with the config vp/cifar10_ddpmpp_deep_continuous.
//
// As in the original, every layer sits in one ModuleList 'all_modules', appended in the order the
// forward pass uses them, so the state-dict keys ('all_modules.3.Conv_0.weight', ...) and the
// order of parameters (which the EMA list of a checkpoint follows) match official checkpoints.
// Unlike the original, construction also records the plan of the network (which module does
// what, at which level), so forward() walks named stages instead of a running index.

import * as T from '../../tensor/index.js';
import { forwardOnConcat, type GroupNorm, ModuleList } from '../layers/basic.js';
import {
  type Activation,
  AttnBlockpp,
  Combine,
  type CombineMethod,
  conv3x3,
  type DdpmConv,
  Dense,
  Downsample,
  GaussianFourierProjection,
  getAct,
  groupNorm32,
  ResnetBlockBigGANpp,
  ResnetBlockDDPMpp,
  timestepEmbedding,
  Upsample,
} from '../layers/layerspp.js';
import { Module, type Parameter } from '../module.js';

export type ResblockType = 'biggan' | 'ddpm';
export type Progressive = 'none' | 'output_skip' | 'residual';
export type ProgressiveInput = 'none' | 'input_skip' | 'residual';
export type EmbeddingType = 'positional' | 'fourier';

/** The fields of score_sde's config that shape NCSNpp, with their official names in camelCase. */
export interface NCSNppConfig {
  nf: number;
  chMult: readonly number[];
  numResBlocks: number;
  attnResolutions: readonly number[];
  resblockType: ResblockType;
  fir: boolean;
  firKernel: readonly number[];
  skipRescale: boolean;
  resampWithConv: boolean;
  progressive: Progressive;
  progressiveInput: ProgressiveInput;
  progressiveCombine: CombineMethod;
  embeddingType: EmbeddingType;
  fourierScale: number;
  conditional: boolean;
  /** Inputs already in [-1, 1]; otherwise x in [0, 1] is mapped by 2x - 1. */
  centered: boolean;
  scaleBySigma: boolean;
  initScale: number;
  dropout: number;
  nonlinearity: string;
  imageSize: number;
  numChannels: number;
  /** The noise levels of the 'sigmas' buffer, exp(linspace(log sigmaMax, log sigmaMin, numScales)). */
  sigmaMin: number;
  sigmaMax: number;
  numScales: number;
}

/** The JSON shape of a score_sde config (e.g. the `config` entry of the ddpmpp fixture's meta.json). */
export interface ScoreSdeConfigJson {
  model: Record<string, unknown>;
  data: Record<string, unknown>;
  training?: Record<string, unknown>;
  [section: string]: unknown;
}

/**
 * Values for fields a config may leave out: those of score_sde's configs/default_*_configs.py
 * (sigma range, num_scales, dropout, embedding_type 'fourier', centered false) and of the layer
 * constructors (fir_kernel, progressive*, init_scale, fourier_scale).
 */
const DEFAULTS: Partial<NCSNppConfig> = {
  sigmaMin: 0.01,
  sigmaMax: 50,
  numScales: 1000,
  dropout: 0.1,
  embeddingType: 'fourier',
  centered: false,
  fir: false,
  firKernel: [1, 3, 3, 1],
  progressive: 'none',
  progressiveInput: 'none',
  progressiveCombine: 'sum',
  initScale: 0,
  fourierScale: 16,
  scaleBySigma: false,
  nonlinearity: 'swish',
};

/** config.model / config.data field for each NCSNppConfig field. */
const FIELDS: Record<keyof NCSNppConfig, ['model' | 'data', string]> = {
  nf: ['model', 'nf'],
  chMult: ['model', 'ch_mult'],
  numResBlocks: ['model', 'num_res_blocks'],
  attnResolutions: ['model', 'attn_resolutions'],
  resblockType: ['model', 'resblock_type'],
  fir: ['model', 'fir'],
  firKernel: ['model', 'fir_kernel'],
  skipRescale: ['model', 'skip_rescale'],
  resampWithConv: ['model', 'resamp_with_conv'],
  progressive: ['model', 'progressive'],
  progressiveInput: ['model', 'progressive_input'],
  progressiveCombine: ['model', 'progressive_combine'],
  embeddingType: ['model', 'embedding_type'],
  fourierScale: ['model', 'fourier_scale'],
  conditional: ['model', 'conditional'],
  centered: ['data', 'centered'],
  scaleBySigma: ['model', 'scale_by_sigma'],
  initScale: ['model', 'init_scale'],
  dropout: ['model', 'dropout'],
  nonlinearity: ['model', 'nonlinearity'],
  imageSize: ['data', 'image_size'],
  numChannels: ['data', 'num_channels'],
  sigmaMin: ['model', 'sigma_min'],
  sigmaMax: ['model', 'sigma_max'],
  numScales: ['model', 'num_scales'],
};

const ENUMS: Partial<Record<keyof NCSNppConfig, readonly string[]>> = {
  resblockType: ['biggan', 'ddpm'],
  progressive: ['none', 'output_skip', 'residual'],
  progressiveInput: ['none', 'input_skip', 'residual'],
  progressiveCombine: ['sum', 'cat'],
  embeddingType: ['positional', 'fourier'],
};

/** Read the NCSNpp fields from a score_sde config ({model, data, ...}); names the fields it lacks. */
export function ncsnppConfigFromJson(json: ScoreSdeConfigJson): NCSNppConfig {
  if (typeof json !== 'object' || json === null || typeof json.model !== 'object' || typeof json.data !== 'object') {
    throw new Error('ncsnpp config: expected score_sde\'s config as JSON with "model" and "data" sections');
  }
  if (json.model.name !== undefined && json.model.name !== 'ncsnpp') {
    throw new Error(`ncsnpp config: model.name is '${String(json.model.name)}', not 'ncsnpp'`);
  }
  const out: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const [key, [section, name]] of Object.entries(FIELDS) as [keyof NCSNppConfig, [string, string]][]) {
    let v = (json[section] as Record<string, unknown>)[name];
    if (v === undefined) v = DEFAULTS[key];
    if (v === undefined) missing.push(`${section}.${name}`);
    if (typeof v === 'string' && ENUMS[key]) v = v.toLowerCase();
    out[key] = v;
  }
  if (missing.length) throw new Error(`ncsnpp config: missing ${missing.join(', ')}`);
  const cfg = out as unknown as NCSNppConfig;
  validate(cfg);
  return cfg;
}

function validate(c: NCSNppConfig): void {
  const bad = (what: string) => {
    throw new Error(`ncsnpp config: ${what}`);
  };
  for (const k of ['nf', 'numResBlocks', 'imageSize', 'numChannels', 'numScales'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < (k === 'numResBlocks' ? 0 : 1))
      bad(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (!Array.isArray(c.chMult) || c.chMult.length === 0 || c.chMult.some((m) => !Number.isInteger(m) || m < 1))
    bad(`ch_mult must be a non-empty list of positive integers, got ${JSON.stringify(c.chMult)}`);
  if (!Array.isArray(c.attnResolutions))
    bad(`attn_resolutions must be a list, got ${JSON.stringify(c.attnResolutions)}`);
  if (c.imageSize % 2 ** (c.chMult.length - 1))
    bad(`image_size ${c.imageSize} is not divisible by 2^${c.chMult.length - 1} for ${c.chMult.length} resolutions`);
  for (const [k, allowed] of Object.entries(ENUMS) as [keyof NCSNppConfig, string[]][]) {
    if (!allowed.includes(c[k] as string)) bad(`${k} is '${String(c[k])}', expected one of ${allowed.join(', ')}`);
  }
  getAct(c.nonlinearity);
}

/** DiffPure's CIFAR-10 score model: score_sde configs/vp/cifar10_ddpmpp_deep_continuous.py (106,632,579 parameters). */
export const DDPMPP_CIFAR10_DEEP_CONTINUOUS: ScoreSdeConfigJson = {
  training: { sde: 'vpsde', continuous: true },
  data: { dataset: 'CIFAR10', image_size: 32, centered: true, num_channels: 3 },
  model: {
    name: 'ncsnpp',
    sigma_min: 0.01,
    sigma_max: 50,
    num_scales: 1000,
    beta_min: 0.1,
    beta_max: 20,
    dropout: 0.1,
    embedding_type: 'positional',
    scale_by_sigma: false,
    ema_rate: 0.9999,
    normalization: 'GroupNorm',
    nonlinearity: 'swish',
    nf: 128,
    ch_mult: [1, 2, 2, 2],
    num_res_blocks: 8,
    attn_resolutions: [16],
    resamp_with_conv: true,
    conditional: true,
    fir: false,
    fir_kernel: [1, 3, 3, 1],
    skip_rescale: true,
    resblock_type: 'biggan',
    progressive: 'none',
    progressive_input: 'none',
    progressive_combine: 'sum',
    attention_type: 'ddpm',
    init_scale: 0,
    fourier_scale: 16,
    conv_size: 3,
  },
};

type ResBlock = ResnetBlockBigGANpp | ResnetBlockDDPMpp;

/** How one level of the encoder goes down to the next. */
interface DownStep {
  /** Downsample (ddpm) or a down-sampling residual block (biggan). */
  resample: Downsample | ResnetBlockBigGANpp;
  /** progressive_input: the pyramid's own downsampling, then (input_skip) its combiner. */
  pyramid: Downsample | null;
  combine: Combine | null;
}

interface UpLevel {
  blocks: ResBlock[];
  attn: AttnBlockpp | null;
  /** progressive: the output pyramid at this level. */
  pyramidUp: Upsample | null;
  pyramidNorm: GroupNorm | null;
  pyramidConv: DdpmConv | null;
  /** To the next finer level: Upsample (ddpm) or an up-sampling residual block (biggan). */
  resample: Upsample | ResnetBlockBigGANpp | null;
}

/** NCSNpp(config): forward(x [B, C, H, W], timeCond [B]) -> [B, C, H, W]. */
export class NCSNpp extends Module {
  readonly config: NCSNppConfig;
  readonly act: Activation;
  readonly sigmas: Parameter;
  readonly all_modules: ModuleList;
  private readonly fourier: GaussianFourierProjection | null = null;
  private readonly tembDense: [Dense, Dense] | null = null;
  private readonly convIn: DdpmConv;
  private readonly down: { blocks: { res: ResBlock; attn: AttnBlockpp | null }[]; step: DownStep | null }[] = [];
  private readonly mid: [ResBlock, AttnBlockpp, ResBlock];
  private readonly up: UpLevel[] = [];
  private readonly outNorm: GroupNorm | null = null;
  private readonly outConv: DdpmConv | null = null;

  constructor(config: NCSNppConfig | ScoreSdeConfigJson) {
    super();
    const c = 'model' in config ? ncsnppConfigFromJson(config as ScoreSdeConfigJson) : (config as NCSNppConfig);
    validate(c);
    this.config = c;
    const act = getAct(c.nonlinearity);
    this.act = act;
    // exp(linspace(log sigma_max, log sigma_min, num_scales)); only read when scale_by_sigma
    const n = c.numScales;
    const ls = Float64Array.from({ length: n }, (_, i) => {
      const a = Math.log(c.sigmaMax);
      const b = Math.log(c.sigmaMin);
      return Math.exp(n === 1 ? a : a + ((b - a) * i) / (n - 1));
    });
    this.sigmas = this.registerBuffer('sigmas', T.fromArray(ls, [n], { dtype: 'float32' }));
    const modules = this.registerModule('all_modules', new ModuleList());
    this.all_modules = modules;
    const add = <M extends Module>(m: M): M => {
      modules.push(m);
      return m;
    };

    const { nf, chMult, numResBlocks, attnResolutions, fir, firKernel, skipRescale, initScale } = c;
    const numRes = chMult.length;
    const resolutions = chMult.map((_, i) => c.imageSize / 2 ** i);
    const hasAttn = (level: number) => attnResolutions.includes(resolutions[level] as number);
    const tembDim = nf * 4;

    // time embedding
    let embedDim = nf;
    if (c.embeddingType === 'fourier') {
      this.fourier = add(new GaussianFourierProjection(nf, c.fourierScale));
      embedDim = 2 * nf;
    }
    if (c.conditional) this.tembDense = [add(new Dense(embedDim, tembDim)), add(new Dense(tembDim, tembDim))];

    const resnet = (inCh: number, o: { outCh?: number; up?: boolean; down?: boolean } = {}): ResBlock => {
      const common = { act, outCh: o.outCh, tembDim, dropout: c.dropout, skipRescale, initScale };
      return c.resblockType === 'ddpm'
        ? new ResnetBlockDDPMpp(inCh, common)
        : new ResnetBlockBigGANpp(inCh, { ...common, up: o.up, down: o.down, fir, firKernel });
    };
    const attnBlock = (ch: number) => new AttnBlockpp(ch, skipRescale, initScale);
    const resampling = { fir, firKernel };

    // encoder
    const channels = c.numChannels;
    let pyramidCh = channels;
    this.convIn = add(conv3x3(channels, nf));
    const hsC = [nf];
    let inCh = nf;
    for (let level = 0; level < numRes; level++) {
      const blocks: { res: ResBlock; attn: AttnBlockpp | null }[] = [];
      for (let b = 0; b < numResBlocks; b++) {
        const outCh = nf * (chMult[level] as number);
        const res = add(resnet(inCh, { outCh }));
        inCh = outCh;
        blocks.push({ res, attn: hasAttn(level) ? add(attnBlock(inCh)) : null });
        hsC.push(inCh);
      }
      let step: DownStep | null = null;
      if (level !== numRes - 1) {
        const resample =
          c.resblockType === 'ddpm'
            ? add(new Downsample(inCh, { withConv: c.resampWithConv, ...resampling }))
            : add(resnet(inCh, { down: true }) as ResnetBlockBigGANpp);
        step = { resample, pyramid: null, combine: null };
        if (c.progressiveInput === 'input_skip') {
          step.pyramid = add(new Downsample(pyramidCh, { withConv: false, ...resampling }));
          step.combine = add(new Combine(pyramidCh, inCh, c.progressiveCombine));
          if (c.progressiveCombine === 'cat') inCh *= 2;
        } else if (c.progressiveInput === 'residual') {
          step.pyramid = add(new Downsample(pyramidCh, { outCh: inCh, withConv: true, ...resampling }));
          pyramidCh = inCh;
        }
        hsC.push(inCh);
      }
      this.down.push({ blocks, step });
    }

    inCh = hsC[hsC.length - 1] as number;
    this.mid = [add(resnet(inCh)), add(attnBlock(inCh)), add(resnet(inCh))];

    // decoder
    let outPyramidCh = 0;
    for (let level = numRes - 1; level >= 0; level--) {
      const blocks: ResBlock[] = [];
      for (let b = 0; b < numResBlocks + 1; b++) {
        const outCh = nf * (chMult[level] as number);
        blocks.push(add(resnet(inCh + (hsC.pop() as number), { outCh })));
        inCh = outCh;
      }
      const lv: UpLevel = {
        blocks,
        attn: hasAttn(level) ? add(attnBlock(inCh)) : null,
        pyramidUp: null,
        pyramidNorm: null,
        pyramidConv: null,
        resample: null,
      };
      if (c.progressive !== 'none') {
        const outputSkip = c.progressive === 'output_skip';
        if (level !== numRes - 1) {
          lv.pyramidUp = add(
            outputSkip
              ? new Upsample(outPyramidCh, { withConv: false, ...resampling })
              : new Upsample(outPyramidCh, { outCh: inCh, withConv: true, ...resampling }),
          );
        }
        if (outputSkip) {
          lv.pyramidNorm = add(groupNorm32(inCh));
          lv.pyramidConv = add(conv3x3(inCh, channels, { initScale }));
          outPyramidCh = channels;
        } else if (level === numRes - 1) {
          lv.pyramidNorm = add(groupNorm32(inCh));
          lv.pyramidConv = add(conv3x3(inCh, inCh));
          outPyramidCh = inCh;
        } else {
          outPyramidCh = inCh;
        }
      }
      if (level !== 0) {
        lv.resample =
          c.resblockType === 'ddpm'
            ? add(new Upsample(inCh, { withConv: c.resampWithConv, ...resampling }))
            : add(resnet(inCh, { up: true }) as ResnetBlockBigGANpp);
      }
      this.up.push(lv);
    }
    if (hsC.length) throw new Error('NCSNpp: internal error, skip channels left over');

    if (c.progressive !== 'output_skip') {
      this.outNorm = add(groupNorm32(inCh));
      this.outConv = add(conv3x3(inCh, channels, { initScale }));
    }
  }

  /**
   * Names of the parameters an EMA list covers: all but the frozen Gaussian Fourier weights
   * (score_sde's ExponentialMovingAverage keeps only parameters with requires_grad).
   */
  emaParameterNames(): string[] {
    return this.namedParameters()
      .map(([k]) => k)
      .filter((k) => !(this.fourier && k === 'all_modules.0.W'));
  }

  /**
   * The network output for x [B, C, H, W] at timeCond [B]: for positional embeddings the
   * (continuous) timestep, 999 t for the VP-SDE, as score_sde's get_score_fn passes it; for Fourier
   * embeddings the noise level sigma.
   */
  forward(x: T.Tensor, timeCond: T.Tensor): T.Tensor {
    const c = this.config;
    const [b] = this.checkInputs(x, timeCond);
    const act = this.act;

    let temb: T.Tensor | null =
      c.embeddingType === 'fourier'
        ? (this.fourier as GaussianFourierProjection).forward(T.log(timeCond))
        : timestepEmbedding(timeCond, c.nf);
    if (this.tembDense) temb = this.tembDense[1].forward(act(this.tembDense[0].forward(temb)));
    else temb = null;

    const input = c.centered ? x : T.sub(T.mul(x, 2), 1);

    // encoder
    let inputPyramid: T.Tensor | null = c.progressiveInput !== 'none' ? input : null;
    const hs: T.Tensor[] = [this.convIn.forward(input)];
    for (const { blocks, step } of this.down) {
      for (const { res, attn } of blocks) {
        let h = res.forward(hs[hs.length - 1] as T.Tensor, temb);
        if (attn) h = attn.forward(h);
        hs.push(h);
      }
      if (!step) continue;
      const last = hs[hs.length - 1] as T.Tensor;
      let h = step.resample instanceof Downsample ? step.resample.forward(last) : step.resample.forward(last, temb);
      if (step.pyramid && step.combine) {
        inputPyramid = step.pyramid.forward(inputPyramid as T.Tensor);
        h = step.combine.forward(inputPyramid, h);
      } else if (step.pyramid) {
        inputPyramid = this.skipSum(step.pyramid.forward(inputPyramid as T.Tensor), h);
        h = inputPyramid;
      }
      hs.push(h);
    }

    let h = hs[hs.length - 1] as T.Tensor;
    h = this.mid[0].forward(h, temb);
    h = this.mid[1].forward(h);
    h = this.mid[2].forward(h, temb);

    // decoder
    let pyramid: T.Tensor | null = null;
    for (const lv of this.up) {
      for (const block of lv.blocks) h = forwardOnConcat(block, h, hs.pop() as T.Tensor, temb);
      if (lv.attn) h = lv.attn.forward(h);
      if (c.progressive === 'output_skip') {
        const ph = (lv.pyramidConv as DdpmConv).forward(act((lv.pyramidNorm as GroupNorm).forward(h)));
        pyramid = pyramid && lv.pyramidUp ? T.add(lv.pyramidUp.forward(pyramid), ph) : ph;
      } else if (c.progressive === 'residual') {
        if (lv.pyramidUp) {
          pyramid = this.skipSum(lv.pyramidUp.forward(pyramid as T.Tensor), h);
          h = pyramid;
        } else {
          pyramid = (lv.pyramidConv as DdpmConv).forward(act((lv.pyramidNorm as GroupNorm).forward(h)));
        }
      }
      if (lv.resample) h = lv.resample instanceof Upsample ? lv.resample.forward(h) : lv.resample.forward(h, temb);
    }

    if (c.progressive === 'output_skip') h = pyramid as T.Tensor;
    else h = (this.outConv as DdpmConv).forward(act((this.outNorm as GroupNorm).forward(h)));

    if (c.scaleBySigma) {
      // fourier: the condition is sigma itself; positional: sigmas[int(timeCond)]
      const used =
        c.embeddingType === 'fourier'
          ? timeCond
          : T.indexSelect(this.sigmas.value, 0, T.floor(T.astype(timeCond, this.sigmas.value.dtype)));
      h = T.div(h, T.reshape(T.astype(used, h.dtype), [b, 1, 1, 1]));
    }
    return h;
  }

  private skipSum(a: T.Tensor, b: T.Tensor): T.Tensor {
    const s = T.add(a, b);
    return this.config.skipRescale ? T.mul(s, Math.SQRT1_2) : s;
  }

  private checkInputs(x: T.Tensor, t: T.Tensor): [number] {
    const c = this.config;
    const want = [c.numChannels, c.imageSize, c.imageSize];
    if (x.rank !== 4 || x.shape.slice(1).some((d, i) => d !== want[i])) {
      throw new Error(`NCSNpp: x must be [B, ${want.join(', ')}], got [${x.shape.join(', ')}]`);
    }
    const b = x.shape[0] as number;
    if (t.rank !== 1 || t.shape[0] !== b) {
      throw new Error(`NCSNpp: timeCond must be [${b}] for a batch of ${b}, got [${t.shape.join(', ')}]`);
    }
    return [b];
  }
}
