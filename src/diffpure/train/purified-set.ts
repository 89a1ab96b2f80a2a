// A purified training set: training images passed through DiffPure's purification (a shipped score model, one t*), to
// fine-tune a classifier on what the purifier hands it. Why: a small score model changes textures and leaves grain
// that a classifier trained on clean images misreads (runs/README.md); adapting the classifier to its purifier's output
// is what Carlini et al. (2023, "(Certified!!) Adversarial Robustness for Free!") found helps diffusion defenses.
// The attacks still see the whole defense, so this changes the defended model, not how it is evaluated.
//
// The folder: run.json (the options and the score weights' sha256), then batch-<b>.npy per finished batch of images
// [b, 1, 28, 28] (written to a temporary name and renamed, so a killed run leaves only whole batches) and a line of
// log.jsonl ({batch, images, seconds since this process started, and shard 'i/n' when sharded}). Rerunning the
// same command continues after the last whole batch; which images and which noise each batch gets are functions of
// (seed, b), so a resumed set equals an uninterrupted one.

import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../../autograd/index.js';
import { readNpy, writeNpy } from '../../nn/io/npy.js';
import { fromArray, type Tensor, tidy } from '../../tensor/index.js';
import type { LabelledImages } from '../data/idx.js';
import { RandomState } from '../data/numpy-random.js';
import { type Shard, WHOLE } from '../eval/units.js';
import { purify } from '../purify.js';
import { differingKeys } from './run-folder.js';

export interface PurifiedSetOptions {
  /** The score weights (a shipped .safetensors) and their score_sde config, as recorded in run.json. */
  scoreWeights: string;
  scoreConfig: string;
  tStar: number;
  /** Euler step of the reverse solve. */
  dt: number;
  /** How many training images (the first `count` of a permutation drawn from `seed`). */
  count: number;
  batch: number;
  seed: number;
}

/** Seeds at or above this are kept for the purified set, away from the small seeds evaluations use (0.., 121..). */
const PURIFY_SEED_BASE = 2 ** 30;
export const MAX_PURIFIED_SEED = 2 ** 14;

/** Purification seed of batch b: disjoint across (seed, b) for seed < 2^14 and fewer than 2^16 batches. */
export function purifiedBatchSeed(seed: number, b: number): number {
  return PURIFY_SEED_BASE + seed * 2 ** 16 + b;
}

/** Which training images, in order: the first `count` of NumPy's RandomState(seed).permutation(n). */
export function purifiedSetIndices(n: number, count: number, seed: number): number[] {
  if (count > n) throw new Error(`--count ${count}: the training set has ${n} images`);
  return new RandomState(seed).permutation(n).slice(0, count);
}

const batchFile = (out: string, b: number) => join(out, `batch-${String(b).padStart(5, '0')}.npy`);

function identityOf(o: PurifiedSetOptions): Record<string, unknown> {
  const sha256 = createHash('sha256').update(readFileSync(o.scoreWeights)).digest('hex');
  return { kind: 'purified-set', ...o, scoreSha256: sha256 };
}

/**
 * Purifies the chosen training images batch by batch into `out`, continuing after the batches already there when
 * run.json matches (and refusing, naming the option, when it does not). With a shard i/n, only batches b ≡ i (mod n).
 * Returns the number of batches written now.
 */
export function buildPurifiedSet(
  out: string,
  o: PurifiedSetOptions,
  train: LabelledImages,
  score: (x: Tensor, labels: Tensor) => Tensor,
  onBatch: (r: { batch: number; batches: number; seconds: number }) => void = () => {},
  shard: Pick<Shard, 'index' | 'count'> = WHOLE,
): number {
  if (!(Number.isInteger(o.seed) && o.seed >= 0 && o.seed < MAX_PURIFIED_SEED))
    throw new Error(`--seed ${o.seed}: the purified set takes an integer seed in [0, ${MAX_PURIFIED_SEED})`);
  const batches = Math.ceil(o.count / o.batch);
  if (batches > 2 ** 16) throw new Error(`--count ${o.count} / --batch ${o.batch}: at most 65536 batches`);
  mkdirSync(out, { recursive: true });
  const identity = identityOf(o);
  const runPath = join(out, 'run.json');
  if (existsSync(runPath)) {
    const saved = JSON.parse(readFileSync(runPath, 'utf8')) as Record<string, unknown>;
    const differ = differingKeys(saved, identity);
    if (differ.length > 0)
      throw new Error(
        `${runPath} was made with other options (${differ.join(', ')}): continue it with the same options, or give another --out`,
      );
  } else {
    // atomically: shards started together on a new folder must not read each other's half-written run.json
    writeFileSync(`${runPath}.${process.pid}.tmp`, `${JSON.stringify(identity, null, 2)}\n`);
    renameSync(`${runPath}.${process.pid}.tmp`, runPath);
  }
  const idx = purifiedSetIndices(train.labels.length, o.count, o.seed);
  const [, c, h, w] = train.shape;
  const size = c * h * w;
  const t0 = performance.now();
  let written = 0;
  // A shard makes batches b = index, index + n, ...: batch contents depend only on b, so shards run side by side
  // (one per core or machine) give the same files as one process.
  for (let b = shard.index; b < batches; b += shard.count) {
    const path = batchFile(out, b);
    if (existsSync(path)) continue;
    const rows = idx.slice(b * o.batch, (b + 1) * o.batch);
    const x = new Float32Array(rows.length * size);
    rows.forEach((src, r) => {
      x.set(train.images.subarray(src * size, (src + 1) * size), r * size);
    });
    const y = noGrad(() =>
      tidy(() => {
        const p = purify(fromArray(x, [rows.length, c, h, w]), {
          model: score,
          scoreType: 'score_sde',
          tStar: o.tStar,
          dt: o.dt,
          seed: purifiedBatchSeed(o.seed, b),
        });
        return Float32Array.from(p.dataSync());
      }),
    );
    writeNpy(`${path}.tmp`, y, [rows.length, c, h, w]);
    renameSync(`${path}.tmp`, path);
    written++;
    // seconds per batch, for the manifest of a classifier trained on the set
    const seconds = (performance.now() - t0) / 1000;
    const line = {
      batch: b,
      images: rows.length,
      seconds,
      ...(shard.count > 1 ? { shard: `${shard.index}/${shard.count}` } : {}),
    };
    appendFileSync(join(out, 'log.jsonl'), `${JSON.stringify(line)}\n`);
    onBatch({ batch: b, batches, seconds: (performance.now() - t0) / 1000 });
  }
  return written;
}

/**
 * A finished purified set as labelled images (labels from the training set), with its run.json. Purification does
 * not clamp, so values may stray slightly outside [0, 1], as the classifier sees them inside the defense.
 */
export function loadPurifiedSet(
  out: string,
  train: LabelledImages,
): LabelledImages & { options: PurifiedSetOptions; indices: number[] } {
  const runPath = join(out, 'run.json');
  if (!existsSync(runPath))
    throw new Error(`${out}: no run.json here (make one with 'diffpure train purified --out ${out}')`);
  const o = JSON.parse(readFileSync(runPath, 'utf8')) as PurifiedSetOptions & { kind?: string };
  if (o.kind !== 'purified-set') throw new Error(`${runPath}: not a purified set ('diffpure train purified')`);
  const indices = purifiedSetIndices(train.labels.length, o.count, o.seed);
  const [, c, h, w] = train.shape;
  const size = c * h * w;
  const images = new Float32Array(o.count * size);
  const batches = Math.ceil(o.count / o.batch);
  const missing = [...Array(batches).keys()].filter((b) => !existsSync(batchFile(out, b)));
  if (missing.length > 0)
    throw new Error(
      `${out}: ${missing.length} of ${batches} batches are not purified yet (first: ${batchFile(out, missing[0] as number)}); ` +
        `finish it by rerunning 'diffpure train purified' with the options in run.json`,
    );
  for (let b = 0; b < batches; b++) {
    const a = readNpy(batchFile(out, b));
    const rows = Math.min(o.batch, o.count - b * o.batch);
    if (a.shape.join() !== [rows, c, h, w].join())
      throw new Error(`${batchFile(out, b)}: shape [${a.shape}], expected [${[rows, c, h, w]}]`);
    images.set(a.data, b * o.batch * size);
  }
  const labels = Uint8Array.from(indices, (i) => train.labels[i] as number);
  return { images, shape: [o.count, c, h, w], labels, options: o, indices };
}
