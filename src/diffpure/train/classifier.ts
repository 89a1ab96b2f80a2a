// Training a classifier (RobustBench's WideResNet layout) on Fashion-MNIST with SGD + Nesterov and a cosine schedule,
// resumable bit for bit: the batches, augmentations and updates are pure functions of (seed, step), and a checkpoint
// holds everything else (weights and BatchNorm statistics, momentum buffers, the step).
//
// The run folder is described in run-folder.ts; the checkpoint holds model.<key> (the state dict, PyTorch keys) and
// momentum.<i>, the log step, loss, lr and seconds; metrics.json the test accuracy (train-command.ts).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { backward, noGrad } from '../../autograd/index.js';
import { manualSeed, seedTrainingStep } from '../../nn/init.js';
import { type HostTensor, readSafetensors } from '../../nn/io/index.js';
import { encodeTorchCheckpoint } from '../../nn/io/torch-write.js';
import { WideResNet, type WideResNetOptions } from '../../nn/models/wrn.js';
import { lrAt, SGD } from '../../nn/optim/index.js';
import { argmax, dispose, fromArray, keep, onesLike, type Tensor, tidy } from '../../tensor/index.js';
import { normalAt, uniformAt } from '../../tensor/philox.js';
import { FASHION_MNIST_DIR, type LabelledImages, loadMnistLike } from '../data/idx.js';
import { crossEntropy } from './losses.js';
import { loadPurifiedSet } from './purified-set.js';
import { appendLog, batchIndices, openRun, saveCheckpoint, withPrefix } from './run-folder.js';

export interface TrainClassifierOptions {
  out: string;
  steps: number;
  batch: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  warmup: number;
  seed: number;
  /** Random crop (zero padding 2) and horizontal flip. */
  augment: boolean;
  /**
   * Gaussian noise augmentation: each training image gets sigma n added, sigma ~ U(0, noiseStd) per image, n standard
   * normal per pixel, nothing clamped (omitted or 0: none). Why: DiffPure's small Fashion-MNIST score model leaves
   * residual noise and texture changes that a clean-trained WRN is brittle to (runs/README.md).
   */
  noiseStd?: number;
  /** A classifier run folder whose checkpoint (weights and BatchNorm statistics) starts this run (a fine-tune). */
  init?: string;
  /**
   * A purified training set ('diffpure train purified', purified-set.ts): each batch slot is, with probability
   * `purifiedFraction`, an image drawn from it instead of the clean one (then augmented the same way).
   */
  purified?: string;
  purifiedFraction?: number;
  /** Keep the first `limit` training images (a quick run). */
  limit?: number;
  dataDir: string;
  checkpointEvery: number;
  model: WideResNetOptions;
}

/** Share of each batch's slots drawn from the purified set when `--purified` is given without a fraction. */
export const DEFAULT_PURIFIED_FRACTION = 0.5;

export const CLASSIFIER_DEFAULTS: Omit<TrainClassifierOptions, 'out' | 'steps'> = {
  batch: 64,
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 5e-4,
  warmup: 0,
  seed: 0,
  augment: true,
  dataDir: FASHION_MNIST_DIR,
  checkpointEvery: 100,
  // WRN-16-2: a WRN-16-4 step at batch 64 takes 3 s on a 2-core CPU (bench/train-step.ts), 16-2 about half
  model: { depth: 16, widen_factor: 2, num_classes: 10, in_channels: 1 },
};

export interface StepReport {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  seconds: number;
}

/** Philox stream base of the noise augmentation's draws (stream NOISE_STREAM + step; crops use 1 + step). */
const NOISE_STREAM = 2 ** 40;
/** Philox stream base of the purified-set draws (which slots, which purified image). */
const MIX_STREAM = 2 ** 41;

/**
 * The batch's sources: the clean epoch order, with each slot swapped, with probability `fraction`, for purified image
 * j (index n + j of the joined images) drawn uniformly; draws keyed by (seed, step, slot).
 */
export function mixedIndices(idx: number[], n: number, count: number, fraction: number, seed: number, step: number) {
  return idx.map((src, b) =>
    uniformAt(seed, MIX_STREAM + step, b) < fraction
      ? n + Math.min(count - 1, Math.floor(uniformAt(seed, MIX_STREAM + step, idx.length + b) * count))
      : src,
  );
}

/**
 * Gathers a batch, with a random 2-pixel-padded crop and a horizontal flip per image when augmenting, then Gaussian
 * noise of a per-image std drawn in [0, noiseStd) when noiseStd > 0.
 */
function makeBatch(d: LabelledImages, idx: number[], seed: number, step: number, augment: boolean, noiseStd = 0) {
  const [, c, h, w] = d.shape;
  const size = c * h * w;
  const x = new Float32Array(idx.length * size);
  const labels = idx.map((i) => d.labels[i] as number);
  idx.forEach((src, b) => {
    // three Philox draws per image, a stream per step: dy, dx in -2..2 and the flip
    const u = (j: number) => uniformAt(seed, 1 + step, 3 * b + j);
    const dy = augment ? Math.floor(u(0) * 5) - 2 : 0;
    const dx = augment ? Math.floor(u(1) * 5) - 2 : 0;
    const flip = augment && u(2) < 0.5;
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        const sy = y + dy;
        if (sy < 0 || sy >= h) continue;
        for (let xo = 0; xo < w; xo++) {
          const sx = (flip ? w - 1 - xo : xo) + dx;
          if (sx < 0 || sx >= w) continue;
          x[b * size + (ch * h + y) * w + xo] = d.images[src * size + (ch * h + sy) * w + sx] as number;
        }
      }
    }
  });
  if (noiseStd > 0) {
    for (let b = 0; b < idx.length; b++) {
      const sigma = noiseStd * uniformAt(seed, NOISE_STREAM + step, b);
      for (let i = 0; i < size; i++)
        x[b * size + i] += sigma * normalAt(seed, NOISE_STREAM + step, idx.length + b * size + i);
    }
  }
  return { x: fromArray(x, [idx.length, c, h, w]), labels };
}

function joinImages(a: LabelledImages, b: LabelledImages): LabelledImages {
  const images = new Float32Array(a.images.length + b.images.length);
  images.set(a.images);
  images.set(b.images, a.images.length);
  const labels = new Uint8Array(a.labels.length + b.labels.length);
  labels.set(a.labels);
  labels.set(b.labels, a.labels.length);
  return { images, labels, shape: [a.shape[0] + b.shape[0], a.shape[1], a.shape[2], a.shape[3]] };
}

function checkpointTensors(net: WideResNet, opt: SGD): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [k, t] of net.stateDict()) m.set(`model.${k}`, t);
  opt.buffers().forEach((b, i) => {
    if (b) m.set(`momentum.${i}`, b);
  });
  return m;
}

/** Trains (or resumes) and returns the network; `report` sees every step. */
export function trainClassifier(
  o: TrainClassifierOptions,
  resume: boolean,
  report: (r: StepReport) => void = () => {},
): WideResNet {
  const clean = loadMnistLike('train', o.dataDir, o.limit);
  // with a purified set, its images follow the clean ones in one array (index n + j)
  const extra = o.purified ? loadPurifiedSet(o.purified, o.limit ? loadMnistLike('train', o.dataDir) : clean) : null;
  const data = extra ? joinImages(clean, extra) : clean;
  const n = clean.labels.length;
  const { steps: _s, out: _o, ...identity } = o; // what must match to resume (the step target and folder may change)
  manualSeed(o.seed);
  const net = new WideResNet(o.model);
  net.train();
  const params = net.parameterSlots();
  const opt = new SGD(params, { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay, nesterov: o.momentum > 0 });
  const ckpt = openRun(o.out, identity, resume);
  const start = ckpt?.step ?? 0;
  if (!ckpt && o.init) {
    // a fine-tune starts from another run's weights and BatchNorm statistics, with fresh momentum
    const from = loadClassifierRun(o.init);
    if (JSON.stringify(from.options.model) !== JSON.stringify(o.model))
      throw new Error(
        `--init ${o.init}: that run trained ${JSON.stringify(from.options.model)}, this one is ${JSON.stringify(o.model)} (give the same --config)`,
      );
    const host = new Map<string, HostTensor>();
    for (const [k, t] of from.net.stateDict())
      host.set(k, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()) });
    net.loadStateDict(host);
    from.net.dispose();
    // which checkpoint it was (the folder may train on): its step and the sha256 of its file
    const file = readFileSync(join(o.init, 'checkpoint.safetensors'));
    const sha256 = createHash('sha256').update(file).digest('hex');
    writeFileSync(join(o.out, 'init.json'), `${JSON.stringify({ from: o.init, step: from.step, sha256 }, null, 2)}\n`);
    net.train();
  }
  if (ckpt) {
    // the cosine schedule spans --steps: a resume with another --steps would silently bend the lr curve
    const last = readFileSync(join(o.out, 'log.jsonl'), 'utf8').trim().split('\n').pop();
    const planned = last ? (JSON.parse(last) as { steps?: number }).steps : undefined;
    if (planned !== undefined && planned !== o.steps) {
      throw new Error(
        `--resume: ${o.out} follows a cosine schedule over ${planned} steps; resume with --steps ${planned} ` +
          `(--steps ${o.steps} would change the learning rate of every remaining step)`,
      );
    }
    net.loadStateDict(withPrefix(ckpt.tensors, 'model'));
    const mom = withPrefix(ckpt.tensors, 'momentum');
    opt.loadBuffers(
      params.map((_, i) => {
        const t = mom.get(String(i));
        return t ? fromArray(t.data as Float32Array, t.shape) : null;
      }),
      start,
    );
  }
  const t0 = performance.now();
  for (let step = start; step < o.steps; step++) {
    opt.lr = lrAt(o.lr, step, { kind: 'cosine', total: o.steps - o.warmup, warmup: o.warmup });
    seedTrainingStep(o.seed, step); // dropout masks: a function of (seed, step)
    const order = batchIndices(n, o.batch, o.seed, step);
    const idx = extra
      ? mixedIndices(order, n, extra.labels.length, o.purifiedFraction ?? DEFAULT_PURIFIED_FRACTION, o.seed, step)
      : order;
    const loss = tidy(() => {
      const { x, labels } = makeBatch(data, idx, o.seed, step, o.augment, o.noiseStd);
      for (const p of params) p.value.requiresGrad = true;
      const l = crossEntropy(net.forward(x), labels);
      const grads = backward(
        [l],
        [onesLike(l)],
        params.map((p) => p.value),
      );
      opt.update(grads);
      return keep(l);
    });
    const r = {
      step: step + 1,
      steps: o.steps,
      loss: loss.dataSync()[0] as number,
      lr: opt.lr,
      seconds: (performance.now() - t0) / 1000,
    };
    dispose(loss);
    appendLog(o.out, r);
    report(r);
    if ((step + 1) % o.checkpointEvery === 0 || step + 1 === o.steps) {
      saveCheckpoint(o.out, checkpointTensors(net, opt), step + 1, 'diffpure-ts train classifier');
    }
  }
  opt.dispose();
  return net;
}

/** Top-1 accuracy of `net` (eval mode: BatchNorm running statistics) on labelled images, in batches. */
export function accuracy(net: WideResNet, d: LabelledImages, batch = 256): number {
  const [n, c, h, w] = d.shape;
  const size = c * h * w;
  net.eval();
  let correct = 0;
  noGrad(() => {
    for (let s = 0; s < n; s += batch) {
      const e = Math.min(n, s + batch);
      const pred = tidy(() =>
        argmax(net.forward(fromArray(d.images.subarray(s * size, e * size), [e - s, c, h, w])), 1),
      );
      const p = pred.dataSync();
      for (let i = 0; i < e - s; i++) if (p[i] === d.labels[s + i]) correct++;
      pred.dispose();
    }
  });
  return correct / n;
}

/** Loads a run folder's network from its checkpoint (weights and BatchNorm statistics), in eval mode. */
export function loadClassifierRun(out: string): { net: WideResNet; step: number; options: Record<string, unknown> } {
  const runPath = join(out, 'run.json');
  const ckptPath = join(out, 'checkpoint.safetensors');
  if (!existsSync(runPath) || !existsSync(ckptPath)) {
    throw new Error(
      `${out}: no run.json and checkpoint.safetensors here (is it a 'diffpure train classifier' folder?)`,
    );
  }
  const options = JSON.parse(readFileSync(runPath, 'utf8')) as { model: WideResNetOptions } & Record<string, unknown>;
  const f = readSafetensors(ckptPath);
  const net = new WideResNet(options.model);
  net.loadStateDict(withPrefix(f.tensors, 'model'));
  net.eval(); // the running statistics, not the batch's (a caller that trains switches back)
  return { net, step: Number(f.metadata.step), options };
}

/**
 * Writes a run's network as RobustBench's checkpoint layout, {'state_dict': OrderedDict(PyTorch keys)}, in torch.save's
 * zip format (src/nn/io/torch-write.ts): torch.load(path, weights_only=True) reads it, and RobustBench's WideResNet
 * with in_channels 1 (and global pooling, see wrn.ts) loads it strictly.
 */
export function exportClassifierRun(out: string, path: string): { tensors: number; step: number } {
  const { net, step } = loadClassifierRun(out);
  const sd = new Map<string, HostTensor>();
  for (const [k, t] of net.stateDict()) {
    const data = t.dataSync();
    // PyTorch's BatchNorm counter is an int64 buffer
    sd.set(
      k,
      k.endsWith('num_batches_tracked')
        ? { dtype: 'int64', shape: [...t.shape], data: Float64Array.from(data, Math.round) }
        : { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(data) },
    );
  }
  const stem = basename(path).replace(/\.[^.]*$/, '') || 'archive';
  writeFileSync(path, encodeTorchCheckpoint({ state_dict: sd }, stem));
  return { tensors: sd.size, step };
}
