// What a protocol names on disk, loaded: the sample list of its data set, and its classifier and purifier as
// functions on tensors (EvalModels). Relative paths are tried from the working directory, then from the package
// (so the presets' weights/... paths work from anywhere).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNpy } from '../../nn/io/index.js';
import { CELEBA_HQ_DDPM_CONFIG, type DdpmConfigJson } from '../../nn/models/ddpm-unet.js';
import { div, fromArray, sub, upsampleBilinear2d } from '../../tensor/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type Images, takeRows } from '../attacks/model.js';
import { loadCifar10 } from '../data/cifar10.js';
import { FASHION_MNIST_DIR, type LabelledImages, loadMnistLike } from '../data/idx.js';
import { listImageFolder, readImageFolder } from '../data/image-folder.js';
import { type DdpmVarType, ddpmPurifier, ddpmSchedule } from '../ddpm-purify.js';
import { defendedPurifier } from '../defense.js';
import { checkConfig, loadNetwork, type ModelKind, type Network } from '../models.js';
import { needsPurifier, type Protocol, type SampleRule } from './protocol.js';
import type { EvalData, EvalModels } from './runner.js';
import { sampleIndices } from './units.js';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

/** The folder holding package.json of diffpure-ts (for the presets' weights/ paths). */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'diffpure-ts') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    dir = dirname(dir);
  }
  return null;
}

/** A protocol path: as given when it exists (or is absolute), else from the package root; null when neither. */
export function resolvePath(p: string): string | null {
  if (existsSync(p)) return p;
  if (isAbsolute(p)) return null;
  const root = packageRoot();
  const q = root ? join(root, p) : null;
  return q && existsSync(q) ? q : null;
}

function requirePath(p: string, field: string, fix: string): string {
  const r = resolvePath(p);
  if (!r) throw new Error(`${field} '${p}' not found (looked in ${process.cwd()} and the package folder). ${fix}`);
  return r;
}

function modelConfig(kind: ModelKind, config: unknown, field: string): unknown {
  if (typeof config !== 'string') return checkConfig(kind, config);
  const path = requirePath(config, field, 'Give the JSON config of the checkpoint, or put it inline in the protocol.');
  try {
    return checkConfig(kind, JSON.parse(readFileSync(path, 'utf8')));
  } catch (e) {
    throw new Error(`${field} '${path}': ${e instanceof Error ? e.message : e}`);
  }
}

/** Your own images: x.npy [N, C, H, W] in [0, 1] (float32 or float64) and y.npy [N] integer labels. */
function npyData(x: string, y: string, rule: SampleRule, classes?: string[]): EvalData & { classes: string[] } {
  const xp = requirePath(
    x,
    'data.x',
    `Give images [N, C, H, W] in [0, 1] as .npy: put their path in data.x (and the labels' in data.y) of a copy of the protocol (diffpure eval --print NAME > mine.json), then --protocol mine.json.`,
  );
  const yp = requirePath(y, 'data.y', 'Give their labels [N] as .npy.');
  const a = readNpy(xp);
  if (a.shape.length !== 4 || (a.shape[1] !== 1 && a.shape[1] !== 3))
    throw new Error(`data.x '${xp}' has shape [${a.shape.join(', ')}]; expected images [N, C, H, W] with C 1 or 3`);
  const bad = a.data.findIndex((v) => !(v >= 0 && v <= 1));
  if (bad >= 0)
    throw new Error(
      `data.x '${xp}' holds ${a.data[bad]} at flat index ${bad}; images must lie in [0, 1] (divide 8-bit pixels by 255)`,
    );
  const l = readNpy(yp);
  if (l.shape.length !== 1 || l.shape[0] !== a.shape[0])
    throw new Error(`data.y '${yp}' has shape [${l.shape.join(', ')}]; expected [${a.shape[0]}], one label per image`);
  const wrong = l.data.findIndex((v) => !Number.isInteger(v) || v < 0);
  if (wrong >= 0) throw new Error(`data.y '${yp}' holds ${l.data[wrong]} at index ${wrong}; labels are integers >= 0`);
  const all: Images = { data: Float32Array.from(a.data), shape: a.shape as unknown as Images['shape'] };
  const idx = sampleIndices(rule, a.shape[0] as number);
  const k = Math.max(...l.data) + 1;
  return {
    images: takeRows(all, idx),
    labels: Int32Array.from(idx, (i) => l.data[i] as number),
    indices: idx,
    classes: classes ?? Array.from({ length: k }, (_, i) => String(i)),
  };
}

/** The sample list of a whole test split in memory. */
function subsetOf(all: LabelledImages, rule: SampleRule, classes: string[]): EvalData & { classes: string[] } {
  const idx = sampleIndices(rule, all.shape[0]);
  return {
    images: takeRows({ data: all.images, shape: all.shape }, idx),
    labels: Int32Array.from(idx, (i) => all.labels[i] as number),
    indices: idx,
    classes,
  };
}

/** The sample list of a protocol (see units.ts), read from its data set. */
export function loadEvalData(p: Protocol): EvalData & { classes: string[] } {
  const d = p.data;
  if (d.set === 'fashion-mnist')
    return subsetOf(loadMnistLike('test', d.dir ?? FASHION_MNIST_DIR), d.sample, FASHION_MNIST_CLASSES);
  if (d.set === 'npy') return npyData(d.x as string, d.y as string, d.sample, d.classes);
  if (!d.dir)
    throw new Error(`data.dir: ${d.set} has no default folder here; give its folder with --data-dir /path/to/${d.set}`);
  if (d.set === 'cifar10') return subsetOf(loadCifar10('test', d.dir), d.sample, CIFAR10_CLASSES);
  // ImageNet val in folder layout: DiffPure's subset over the sorted listing, Resize(256) + CenterCrop(224)
  const total = listImageFolder(d.dir).files.length;
  const idx = sampleIndices(d.sample, total);
  const r = readImageFolder(d.dir, { indices: idx });
  return { images: { data: r.images, shape: r.shape }, labels: r.labels, indices: idx, classes: r.classes };
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

export interface LoadedModels extends EvalModels {
  dispose(): void;
}

/** The protocol's classifier and purifier, loaded onto `backend`. */
export async function loadEvalModels(p: Protocol, backend: string): Promise<LoadedModels> {
  const c = p.classifier;
  const cw = requirePath(
    c.weights,
    'classifier.weights',
    c.weights.startsWith('weights/')
      ? 'The embedded classifier is not in this checkout; train and ship it (diffpure train classifier ... --ship) or give --classifier-weights.'
      : 'Give the checkpoint with --classifier-weights PATH.',
  );
  // a protocol that attacks the bare classifier only needs no score model (nor its checkpoint on disk); the
  // purifier's file and config are checked before anything loads, so a missing one fails fast and leaks nothing
  const purifierFiles = needsPurifier(p)
    ? {
        path: requirePath(
          p.purifier.weights,
          'purifier.weights',
          p.purifier.weights.startsWith('weights/')
            ? 'The embedded score model is not in this checkout; train and ship it (diffpure train score ... --ship) or give --score-weights.'
            : 'Give the checkpoint with --score-weights PATH.',
        ),
        config: modelConfig(p.purifier.model, p.purifier.config, 'purifier.config'),
      }
    : null;
  const net: Network = await loadNetwork(c.model, modelConfig(c.model, c.config, 'classifier.config'), cw, backend);
  let score: Network | null = null;
  try {
    if (purifierFiles) score = await loadNetwork(p.purifier.model, purifierFiles.config, purifierFiles.path, backend);
  } catch (e) {
    net.module.dispose();
    throw e;
  }
  const imagenet = c.transform === 'imagenet';
  const norm = imagenet
    ? {
        mean: fromArray(Float32Array.from(IMAGENET_MEAN), [1, 3, 1, 1], { backend }),
        std: fromArray(Float32Array.from(IMAGENET_STD), [1, 3, 1, 1], { backend }),
      }
    : null;
  const classify = (x: Tensor) => net.forward(norm ? div(sub(x, norm.mean), norm.std) : x);
  const scoreType = p.purifier.model === 'adm' ? 'guided_diffusion' : 'score_sde';
  // the DDPM chain's schedule comes from the config's diffusion section (only a ddpm purifier has one)
  const ddpmCfg =
    score && p.purifier.model === 'ddpm'
      ? (((purifierFiles?.config as DdpmConfigJson | undefined) ?? CELEBA_HQ_DDPM_CONFIG) as DdpmConfigJson)
      : CELEBA_HQ_DDPM_CONFIG;
  return {
    backend,
    classify,
    purifier: ({ tStar, dt, gradient }) => {
      if (!score)
        throw new Error(
          `protocol '${p.name}' attacks the bare classifier only, so no score model was loaded; add 'diffpure' to an attack's targets to purify`,
        );
      const purify =
        p.purifier.model === 'ddpm'
          ? // DiffPure's CelebA-HQ path: t = 1000 t* ancestral steps; its gradient is exact (checkpointed) or BPDA's
            ddpmPurifier({
              model: (v, t) => score.forward(v, t),
              t: Math.round(tStar * 1000),
              gradient: gradient === 'bpda' ? 'bpda' : 'exact',
              schedule: ddpmSchedule(
                ddpmCfg.diffusion as Parameters<typeof ddpmSchedule>[0],
                (ddpmCfg.model as { var_type?: DdpmVarType }).var_type,
              ),
            })
          : defendedPurifier({ model: (v, t) => score.forward(v, t), scoreType, tStar, dt, gradient });
      if (!imagenet) return purify;
      // DiffPure's SDE_Adv_Model on ImageNet: 224 -> 256 (bilinear) before purifying, back to 224 after
      return (x, keys) =>
        upsampleBilinear2d(purify(upsampleBilinear2d(x, { size: [256, 256] }), keys), { size: [224, 224] });
    },
    dispose() {
      net.module.dispose();
      score?.module.dispose();
      norm?.mean.dispose();
      norm?.std.dispose();
    },
  };
}
