// Training a score model (score_sde's NCSN++ / DDPM++) on Fashion-MNIST with score_sde's recipe: the continuous VP-SDE
// DSM loss (losses.ts), Adam with a linear warm-up and gradient clipping by global norm (optimization_manager), an EMA
// of the weights (ema.py, use_num_updates), data scaled to [-1, 1] when the config says `data.centered`, random
// horizontal flips. Resumable bit for bit (run-folder.ts): the checkpoint holds model.<key>, ema.<i>, adam_m.<i>,
// adam_v.<i>; every draw (batch order, flips, times, noise) is a pure function of (seed, step). denoise.png shows
// test images purified at t* = 0.1, 0.3, 0.5 with the EMA weights.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { backward, noGrad } from '../../autograd/index.js';
import { manualSeed, seedTrainingStep } from '../../nn/init.js';
import { readSafetensors } from '../../nn/io/index.js';
import {
  DDPMPP_CIFAR10_DEEP_CONTINUOUS,
  NCSNpp,
  ncsnppConfigFromJson,
  type ScoreSdeConfigJson,
} from '../../nn/models/ncsnpp.js';
import type { Parameter } from '../../nn/module.js';
import { Adam, clipGradNorm, Ema, lrAt } from '../../nn/optim/index.js';
import { affine, dispose, fromArray, keep, onesLike, randomNormal, type Tensor, tidy } from '../../tensor/index.js';
import { uniformAt } from '../../tensor/philox.js';
import { FASHION_MNIST_DIR, type LabelledImages, loadMnistLike } from '../data/idx.js';
import { imageGrid, writePng } from '../png.js';
import { purify } from '../purify.js';
import { dsmLoss, sampleTimes, type TimeSampling } from './losses.js';
import { appendLog, batchIndices, openRun, saveCheckpoint, withPrefix } from './run-folder.js';

/**
 * A small DDPM++ for 28x28x1 in score_sde's config format: DiffPure's CIFAR-10 DDPM++ with nf 32, ch_mult (1, 2, 2)
 * (28 -> 14 -> 7), 2 blocks, attention at 14, and score_sde's DDPM++ training flags.
 */
export const FMNIST_DDPMPP: ScoreSdeConfigJson = {
  training: { sde: 'vpsde', continuous: true, reduce_mean: true, likelihood_weighting: false },
  data: { dataset: 'FashionMNIST', image_size: 28, centered: true, num_channels: 1, random_flip: true },
  model: {
    ...DDPMPP_CIFAR10_DEEP_CONTINUOUS.model,
    nf: 32,
    ch_mult: [1, 2, 2],
    num_res_blocks: 2,
    attn_resolutions: [14],
  },
};

export interface TrainScoreOptions {
  out: string;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  gradClip: number;
  seed: number;
  limit?: number;
  dataDir: string;
  checkpointEvery: number;
  /** Steps between denoising grids (at a checkpoint; and always at the end). */
  gridEvery: number;
  timeSampling: TimeSampling;
  config: ScoreSdeConfigJson;
}

export const SCORE_DEFAULTS: Omit<TrainScoreOptions, 'out' | 'steps'> = {
  batch: 64,
  lr: 2e-4,
  warmup: 5000,
  gradClip: 1,
  seed: 0,
  dataDir: FASHION_MNIST_DIR,
  checkpointEvery: 100,
  gridEvery: 1000,
  timeSampling: { kind: 'uniform' },
  config: FMNIST_DDPMPP,
};

// streams of the counter-based RNG, apart from each other for every step
const FLIP_STREAM = 1 << 24;
const TIME_STREAM = 2 << 24;
const NOISE_STREAM = 3 << 24;

function scoreBatch(d: LabelledImages, idx: number[], seed: number, step: number, flip: boolean, centered: boolean) {
  const [, c, h, w] = d.shape;
  const size = c * h * w;
  const x = new Float32Array(idx.length * size);
  idx.forEach((src, b) => {
    const f = flip && uniformAt(seed, FLIP_STREAM + step, b) < 0.5;
    for (let r = 0; r < c * h; r++) {
      for (let xo = 0; xo < w; xo++) {
        const v = d.images[src * size + r * w + (f ? w - 1 - xo : xo)] as number;
        x[b * size + r * w + xo] = centered ? 2 * v - 1 : v; // score_sde's data scaler
      }
    }
  });
  return fromArray(x, [idx.length, c, h, w]);
}

/** t* of the rows of the denoising grid (DiffPure's CIFAR-10 setting is 0.1; Fashion-MNIST's eps 0.1 needs ~0.3). */
export const GRID_TSTARS = [0.1, 0.3, 0.5] as const;

/**
 * The parameters score_sde trains, in order: all but the Gaussian Fourier projection's W, which it creates with
 * requires_grad=False (no gradient, no Adam state, no EMA entry; fourier configs only).
 */
function trainableSlots(net: NCSNpp) {
  const names = new Set(net.emaParameterNames());
  return net
    .namedSlots()
    .filter(([k, p]) => !p.isBuffer && names.has(k))
    .map(([, p]) => p);
}

/**
 * denoise.png: 8 test images (top row), then each purified by DiffPure at t* = 0.1, 0.3, 0.5 (one row each) with
 * the EMA weights, reverse Euler steps of `dt` (coarser than DiffPure's 1e-3, for a picture at every checkpoint).
 */
export function writeDenoisingGrid(
  out: string,
  net: NCSNpp,
  params: readonly Parameter[],
  shadow: readonly Tensor[],
  test: LabelledImages,
  seed: number,
  dt = 0.01,
): void {
  const [, c, h, w] = test.shape;
  const n = Math.min(8, test.labels.length);
  const size = c * h * w;
  const saved = params.map((p) => p.value);
  params.forEach((p, i) => {
    p.value = shadow[i] as Tensor;
  });
  net.eval();
  try {
    const x = fromArray(test.images.subarray(0, n * size), [n, c, h, w]);
    const rows = [x.dataSync().slice()];
    for (const tStar of GRID_TSTARS) {
      const y = noGrad(() =>
        purify(x, { model: (a, l) => net.forward(a, l), scoreType: 'score_sde', tStar, dt, seed }),
      );
      rows.push(y.dataSync().slice());
      y.dispose();
    }
    x.dispose();
    const all = new Float32Array(rows.length * n * size);
    rows.forEach((r, i) => {
      all.set(r, i * n * size);
    });
    const g = imageGrid(all, [rows.length * n, c, h, w], n, 3);
    writePng(join(out, 'denoise.png'), g.rgba, g.w, g.h);
  } finally {
    params.forEach((p, i) => {
      p.value = saved[i] as Tensor;
    });
    net.train();
  }
}

export interface ScoreStepReport {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  seconds: number;
}

export function trainScore(
  o: TrainScoreOptions,
  resume: boolean,
  report: (r: ScoreStepReport) => void = () => {},
): NCSNpp {
  const data = loadMnistLike('train', o.dataDir, o.limit);
  const test = loadMnistLike('test', o.dataDir, 8);
  const { steps: _s, out: _o, gridEvery: _g, ...identity } = o;
  manualSeed(o.seed);
  const cfg = ncsnppConfigFromJson(o.config);
  if (cfg.imageSize !== data.shape[2] || cfg.numChannels !== data.shape[1]) {
    throw new Error(
      `config: image_size ${cfg.imageSize} x num_channels ${cfg.numChannels} does not fit the data [${data.shape.slice(1)}]`,
    );
  }
  const net = new NCSNpp(cfg);
  net.train();
  const params = trainableSlots(net);
  const opt = new Adam(params, { lr: o.lr });
  const ema = new Ema(params, Number(o.config.model.ema_rate ?? 0.9999));
  const ckpt = openRun(o.out, identity, resume);
  const start = ckpt?.step ?? 0;
  if (ckpt) {
    net.loadStateDict(withPrefix(ckpt.tensors, 'model'));
    const load = (prefix: string) =>
      params.map((_, i) => {
        const t = withPrefix(ckpt.tensors, prefix).get(String(i));
        if (!t) throw new Error(`${o.out}: the checkpoint lacks ${prefix}.${i}`);
        return fromArray(t.data as Float32Array, t.shape);
      });
    opt.loadMoments(load('adam_m'), load('adam_v'), start);
    load('ema').forEach((t, i) => {
      (ema.shadow[i] as Tensor).dispose();
      ema.shadow[i] = keep(t);
    });
    ema.numUpdates = start;
  }
  const training = o.config.training as { reduce_mean?: boolean; likelihood_weighting?: boolean };
  const centered = !!(o.config.data as { centered?: boolean }).centered;
  const flip = (o.config.data as { random_flip?: boolean }).random_flip !== false;
  const t0 = performance.now();
  for (let step = start; step < o.steps; step++) {
    opt.lr = lrAt(o.lr, step, { kind: 'constant', warmup: o.warmup });
    seedTrainingStep(o.seed, step); // dropout masks: a function of (seed, step)
    const idx = batchIndices(data.labels.length, o.batch, o.seed, step);
    let gradNorm = 0;
    const loss = tidy(() => {
      const x0 = scoreBatch(data, idx, o.seed, step, flip, centered);
      const t = sampleTimes(idx.length, o.seed, TIME_STREAM + step, 1e-5, o.timeSampling);
      const z = randomNormal(x0.shape, { seed: o.seed, stream: NOISE_STREAM + step });
      for (const p of params) p.value.requiresGrad = true;
      const l = dsmLoss((x, labels) => net.forward(x, labels), x0, t, z, {
        reduceMean: training.reduce_mean ?? true,
        likelihoodWeighting: training.likelihood_weighting ?? true,
      });
      const grads = backward(
        [l],
        [onesLike(l)],
        params.map((p) => p.value),
      );
      const clipped = o.gradClip >= 0 ? clipGradNorm(grads, o.gradClip) : { grads, totalNorm: Number.NaN };
      gradNorm = clipped.totalNorm;
      opt.update(clipped.grads);
      ema.update();
      return keep(affine(l, 1, 0));
    });
    const r = {
      step: step + 1,
      steps: o.steps,
      loss: loss.dataSync()[0] as number,
      lr: opt.lr,
      gradNorm,
      seconds: (performance.now() - t0) / 1000,
    };
    dispose(loss);
    appendLog(o.out, r);
    report(r);
    if ((step + 1) % o.checkpointEvery === 0 || step + 1 === o.steps) {
      const m = new Map<string, Tensor>();
      for (const [k, t] of net.stateDict()) m.set(`model.${k}`, t);
      const { m: am, v: av } = opt.moments();
      params.forEach((_, i) => {
        m.set(`ema.${i}`, ema.shadow[i] as Tensor);
        m.set(`adam_m.${i}`, am[i] as Tensor);
        m.set(`adam_v.${i}`, av[i] as Tensor);
      });
      saveCheckpoint(o.out, m, step + 1, 'diffpure-ts train score');
      if ((step + 1) % o.gridEvery === 0 || step + 1 === o.steps) {
        writeDenoisingGrid(o.out, net, params, ema.shadow, test, o.seed);
      }
    }
  }
  opt.dispose();
  ema.dispose();
  return net;
}

/**
 * A score run's network with its EMA weights (what score_sde saves as 'ema' and DiffPure purifies with), from the
 * run folder's run.json and checkpoint.
 */
export function loadScoreRun(out: string, which: 'ema' | 'model' = 'ema'): { net: NCSNpp; step: number } {
  const runPath = join(out, 'run.json');
  const ckptPath = join(out, 'checkpoint.safetensors');
  if (!existsSync(runPath) || !existsSync(ckptPath)) {
    throw new Error(`${out}: no run.json and checkpoint.safetensors here (is it a 'diffpure train score' folder?)`);
  }
  const options = JSON.parse(readFileSync(runPath, 'utf8')) as { config: ScoreSdeConfigJson };
  const f = readSafetensors(ckptPath);
  const net = new NCSNpp(ncsnppConfigFromJson(options.config));
  net.loadStateDict(withPrefix(f.tensors, 'model'));
  if (which === 'ema') {
    const ema = withPrefix(f.tensors, 'ema');
    trainableSlots(net).forEach((p, i) => {
      const t = ema.get(String(i));
      if (!t) throw new Error(`${ckptPath}: no ema.${i} (the checkpoint has fewer EMA tensors than parameters)`);
      const old = p.value;
      p.value = keep(fromArray(t.data as Float32Array, t.shape));
      old.dispose();
    });
  }
  net.eval();
  return { net, step: Number(f.metadata.step) };
}
