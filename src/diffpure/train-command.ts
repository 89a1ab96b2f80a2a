// `diffpure train classifier`: options, progress on stderr (a bar with loss and ETA on a TTY, a line every 10 steps
// otherwise), and the run folder described in train/classifier.ts.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../tensor/index.js';
import { loadMnistLike } from './data/idx.js';
import { parseShard, WHOLE } from './eval/units.js';
import { loadNetwork } from './models.js';
import {
  accuracy,
  CLASSIFIER_DEFAULTS,
  DEFAULT_PURIFIED_FRACTION,
  exportClassifierRun,
  loadClassifierRun,
  type TrainClassifierOptions,
  trainClassifier,
} from './train/classifier.js';
import { writeShipped } from './train/manifest.js';
import { purifiedAccuracies } from './train/purified-accuracy.js';
import { buildPurifiedSet, MAX_PURIFIED_SEED, type PurifiedSetOptions } from './train/purified-set.js';
import { loadScoreRun, SCORE_DEFAULTS, type TrainScoreOptions, trainScore } from './train/score.js';
import { exportScoreRun } from './train/score-export.js';

type Values = Record<string, string | boolean | undefined>;

function num(v: Values, name: string, dflt: number, check: (x: number) => boolean, what: string): number {
  const raw = v[name];
  if (raw === undefined) return dflt;
  const x = Number(raw);
  if (!Number.isFinite(x) || !check(x)) throw new Error(`--${name} must be ${what}, got '${raw}'`);
  return x;
}

const int = (x: number) => Number.isInteger(x);

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`--config '${path}': ${e instanceof Error ? e.message : e}`);
  }
}

/** The options both targets share: data, run folder, steps, batch, seed, image limit, checkpoints. */
function commonOptions(
  v: Values,
  d: { batch: number; seed: number; dataDir: string; checkpointEvery: number },
  out: string,
) {
  if (v.data !== undefined && v.data !== 'fmnist')
    throw new Error(`--data: only 'fmnist' is supported, got '${v.data}'`);
  return {
    out: typeof v.out === 'string' ? v.out : out,
    steps: num(v, 'steps', 1000, (x) => int(x) && x > 0, 'a positive integer'),
    batch: num(v, 'batch', d.batch, (x) => int(x) && x > 0, 'a positive integer'),
    seed: num(v, 'seed', d.seed, (x) => int(x) && x >= 0 && x < 2 ** 31, 'an integer in [0, 2^31)'),
    limit: v.limit === undefined ? undefined : num(v, 'limit', 0, (x) => int(x) && x > 0, 'a positive integer'),
    dataDir: typeof v['data-dir'] === 'string' ? v['data-dir'] : d.dataDir,
    checkpointEvery: num(v, 'checkpoint-every', d.checkpointEvery, (x) => int(x) && x > 0, 'a positive integer'),
  };
}

export function classifierOptions(v: Values): TrainClassifierOptions {
  const d = CLASSIFIER_DEFAULTS;
  const common = commonOptions(v, d, 'runs/classifier');
  let model = d.model;
  if (typeof v.config === 'string') {
    const json = readJson(v.config) as Record<string, unknown>;
    const known = ['depth', 'widen_factor', 'num_classes', 'dropRate'];
    const bad = Object.keys(json).filter((k) => !known.includes(k));
    if (bad.length)
      throw new Error(`--config: unknown key(s) ${bad.join(', ')} (RobustBench WideResNet takes ${known.join(', ')})`);
    model = { ...d.model, ...json, in_channels: 1 };
  }
  return {
    ...common,
    lr: num(v, 'lr', d.lr, (x) => x > 0, 'a positive number'),
    momentum: num(v, 'momentum', d.momentum, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    weightDecay: num(v, 'weight-decay', d.weightDecay, (x) => x >= 0, '>= 0'),
    warmup: num(v, 'warmup', d.warmup, (x) => int(x) && x >= 0, 'a non-negative integer'),
    augment: v['no-augment'] !== true,
    // only when given: the run identity of a run started before these options existed stays the same
    ...(v['noise-std'] === undefined
      ? {}
      : { noiseStd: num(v, 'noise-std', 0, (x) => x >= 0 && x <= 1, 'in [0, 1] (a std in [0, 1] pixel units)') }),
    ...(typeof v.init === 'string' ? { init: v.init } : {}),
    ...purifiedOptions(v),
    model,
  };
}

function purifiedOptions(v: Values): { purified?: string; purifiedFraction?: number } {
  if (v.purified === undefined) {
    if (v['purified-fraction'] !== undefined)
      throw new Error(
        '--purified-fraction needs --purified DIR (a purified training set from diffpure train purified)',
      );
    return {};
  }
  const dir = String(v.purified);
  if (!existsSync(join(dir, 'run.json')))
    throw new Error(
      `--purified '${dir}': no run.json there; make the set first with 'diffpure train purified --out ${dir}'`,
    );
  return {
    purified: dir,
    purifiedFraction: num(v, 'purified-fraction', DEFAULT_PURIFIED_FRACTION, (x) => x >= 0 && x <= 1, 'in [0, 1]'),
  };
}

export function scoreOptions(v: Values): TrainScoreOptions {
  const d = SCORE_DEFAULTS;
  const common = commonOptions(v, d, 'runs/score');
  let config = d.config;
  if (typeof v.config === 'string') {
    config = readJson(v.config) as typeof config;
    if (!config.model || !config.data)
      throw new Error(`--config '${v.config}': a score_sde config needs 'model' and 'data' sections`);
    config.training ??= {};
  }
  const power = v['t-power'] === undefined ? 1 : num(v, 't-power', 1, (x) => x >= 1, 'a number >= 1');
  return {
    ...common,
    lr: num(v, 'lr', d.lr, (x) => x > 0, 'a positive number'),
    warmup: num(v, 'warmup', d.warmup, (x) => int(x) && x >= 0, 'a non-negative integer'),
    gradClip: num(v, 'grad-clip', d.gradClip, (x) => x >= 0 || x === -1, '>= 0 (or -1 for none)'),
    gridEvery: num(v, 'grid-every', d.gridEvery, (x) => int(x) && x > 0, 'a positive integer'),
    timeSampling: power === 1 ? { kind: 'uniform' } : { kind: 'power', power },
    config,
  };
}

export async function runTrain(v: Values, what: string): Promise<void> {
  if (what === 'score') return runScore(v);
  if (what === 'purified') return runPurified(v);
  if (what !== 'classifier') throw new Error(`unknown target '${what}': train 'classifier', 'score' or 'purified'`);
  const o = classifierOptions(v);
  if (v.evaluate) {
    evaluate(o.out, v, o.dataDir);
    return;
  }
  if (typeof v.ship === 'string') {
    const { net, step } = loadClassifierRun(o.out);
    const r = writeShipped(o.out, net, v.ship, step, {
      kind: 'classifier',
      data: 'Fashion-MNIST (Debian dataset-fashion-mnist)',
    });
    process.stderr.write(
      `${o.out} (step ${step}) -> ${v.ship} (sha256 ${r.sha256.slice(0, 12)}...), ${r.manifestPath} and ${r.configPath}\n`,
    );
    return;
  }
  if (typeof v.export === 'string') {
    const r = exportClassifierRun(o.out, v.export);
    process.stderr.write(
      `${o.out} (step ${r.step}) -> ${v.export}: {'state_dict': ${r.tensors} tensors}, torch.save format\n`,
    );
    return;
  }
  const tty = process.stderr.isTTY;
  process.stderr.write(
    `training WRN-${o.model.depth}-${o.model.widen_factor} on Fashion-MNIST${o.limit ? ` (first ${o.limit} images)` : ''}, ` +
      `${o.steps} steps of ${o.batch}, seed ${o.seed} -> ${o.out}${v.resume ? ' (resuming)' : ''}\n`,
  );
  let first = -1; // the step this process started from, for the ETA
  trainClassifier(o, v.resume === true, (r) => {
    if (first < 0) first = r.step - 1;
    const eta = (r.seconds / (r.step - first)) * (r.steps - r.step);
    const line = `step ${r.step}/${r.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${r.seconds.toFixed(0)} s, ETA ${eta.toFixed(0)} s`;
    if (v.json) console.log(JSON.stringify(r));
    if (tty) {
      const width = 30;
      const done = Math.round((width * r.step) / r.steps);
      process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${line}   `);
      if (r.step === r.steps) process.stderr.write('\n');
    } else if (r.step % 10 === 0 || r.step === r.steps) {
      process.stderr.write(`${line}\n`);
    }
  });
  if (v['no-eval'] !== true) evaluate(o.out, v, o.dataDir);
}

/** Test accuracy of a run folder's checkpoint on the first --eval-limit test images (all 10,000 by default). */
function evaluate(out: string, v: Values, dataDir: string): void {
  const limit =
    v['eval-limit'] === undefined ? undefined : num(v, 'eval-limit', 0, (x) => int(x) && x > 0, 'a positive integer');
  const { net, step } = loadClassifierRun(out);
  const test = loadMnistLike('test', dataDir, limit);
  const t0 = performance.now();
  const acc = accuracy(net, test);
  const metrics = { step, testAccuracy: acc, testImages: test.labels.length, seconds: (performance.now() - t0) / 1000 };
  writeFileSync(join(out, 'metrics.json'), `${JSON.stringify(metrics, null, 2)}\n`);
  if (v.json) console.log(JSON.stringify(metrics));
  process.stderr.write(
    `test accuracy ${(100 * acc).toFixed(2)}% on ${test.labels.length} images at step ${step} -> ${join(out, 'metrics.json')}\n`,
  );
}

/** The first --eval-limit test images (1000 by default) purified at each --t-star, classified: into metrics.json. */
async function evaluateScore(out: string, v: Values, dataDir: string): Promise<void> {
  const limit = num(v, 'eval-limit', 1000, (x) => int(x) && x > 0, 'a positive integer');
  const batch = num(v, 'eval-batch', 100, (x) => int(x) && x > 0, 'a positive integer');
  const dt = num(v, 'dt', 0.005, (x) => x > 0 && x <= 0.1, 'in (0, 0.1]'); // the fmnist presets' dt
  const seed = num(v, 'seed', 0, (x) => int(x) && x >= 0 && x < 2 ** 31, 'an integer in [0, 2^31)');
  const tStars = String(v['t-star'] ?? '0.1,0.2,0.3,0.5')
    .split(',')
    .map((s) => {
      const t = Number(s);
      if (!(t > 0 && t <= 1) || Math.abs(t * 1000 - Math.round(t * 1000)) > 1e-9)
        throw new Error(`--t-star: each t* must be a multiple of 0.001 in (0, 1], got '${s}'`);
      return t;
    });
  // several classifiers (comma-separated) are read on one purification of the images: the costly part
  const clsPaths = String(v['classifier-weights'] ?? 'weights/fmnist-classifier.safetensors')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (clsPaths.length === 0)
    throw new Error(
      '--classifier-weights: give at least one classifier (a shipped .safetensors or a run folder; several separated by commas)',
    );
  // every path is checked before any network is loaded, so a bad one leaks nothing
  for (const p of clsPaths)
    if (!existsSync(p))
      throw new Error(
        `--classifier-weights '${p}' does not exist: give a shipped classifier (.safetensors beside its .config.json) or a 'diffpure train classifier' run folder`,
      );
  const shipped = clsPaths.filter((p) => !statSync(p).isDirectory());
  if (typeof v['classifier-config'] === 'string' && shipped.length > 1)
    throw new Error(
      `--classifier-config applies to one shipped classifier, but ${shipped.length} were given (${shipped.join(', ')}): leave it out, so each .safetensors uses the .config.json beside it`,
    );
  const configOf = new Map<string, string>();
  for (const p of shipped) {
    const cfgPath =
      typeof v['classifier-config'] === 'string' ? v['classifier-config'] : p.replace(/\.safetensors$/, '.config.json');
    if (!existsSync(cfgPath))
      throw new Error(
        `--classifier-config '${cfgPath}' does not exist: give the WideResNet config JSON the weights were shipped with`,
      );
    configOf.set(p, cfgPath);
  }
  const classifiers: { path: string; file: string; step: number | null; classify: (x: Tensor) => Tensor }[] = [];
  const disposers: (() => void)[] = [];
  for (const clsPath of clsPaths) {
    const cfgPath = configOf.get(clsPath);
    if (cfgPath === undefined) {
      const r = loadClassifierRun(clsPath);
      disposers.push(() => r.net.dispose());
      classifiers.push({
        path: clsPath,
        file: join(clsPath, 'checkpoint.safetensors'),
        step: r.step,
        classify: (x) => r.net.forward(x),
      });
    } else {
      const net = await loadNetwork('wrn', JSON.parse(readFileSync(cfgPath, 'utf8')), clsPath);
      disposers.push(() => net.module.dispose());
      classifiers.push({ path: clsPath, file: clsPath, step: null, classify: (x) => net.forward(x) });
    }
  }
  const dispose = () => {
    for (const d of disposers) d();
  };
  const { net, step } = loadScoreRun(out, 'ema');
  const test = loadMnistLike('test', dataDir, limit);
  process.stderr.write(
    `purifying the first ${test.labels.length} test images at t* ${tStars.join(', ')} (dt ${dt}, EMA weights of step ${step}), batches of ${batch}\n`,
  );
  try {
    const results = purifiedAccuracies({
      score: (x, l) => net.forward(x, l),
      classify: (classifiers[0] as (typeof classifiers)[0]).classify,
      alsoClassify: classifiers.slice(1).map((c) => c.classify),
      data: test,
      tStars,
      dt,
      seed,
      batch,
      onBatch: (d) => process.stderr.write(`  t* ${d.tStar}: ${d.images}/${d.of} images, ${d.seconds.toFixed(0)} s\n`),
    });
    // one entry per (classifier, images, dt, seed) for this checkpoint: a rerun replaces its own, others stay
    const path = join(out, 'metrics.json');
    const old = existsSync(path)
      ? (JSON.parse(readFileSync(path, 'utf8')) as { step?: number; evaluations?: unknown[] })
      : {};
    type Evaluation = {
      classifierSha256: string;
      testImages: number;
      dt: number;
      seed: number;
      purifiedAccuracy: Record<string, number>;
    };
    const key = (e: Partial<Evaluation>) =>
      JSON.stringify([e.classifierSha256, e.testImages, e.dt, e.seed, Object.keys(e.purifiedAccuracy ?? {})]);
    let evaluations = old.step === step && Array.isArray(old.evaluations) ? old.evaluations : [];
    results.forEach((r, i) => {
      const c = classifiers[i] as (typeof classifiers)[0];
      const evaluation = {
        classifier: c.path,
        ...(c.step === null ? {} : { classifierStep: c.step }),
        classifierSha256: createHash('sha256').update(readFileSync(c.file)).digest('hex'),
        testImages: r.images,
        dt,
        seed,
        classifierAccuracy: r.bare,
        purifiedAccuracy: r.purified,
        // the whole evaluation's seconds, shared by the classifiers read on the same purified images
        seconds: r.seconds,
      };
      evaluations = [...evaluations.filter((e) => key(e as Evaluation) !== key(evaluation)), evaluation];
      if (v.json) console.log(JSON.stringify({ step, ...evaluation }));
      process.stderr.write(
        `${c.path}: ${(100 * r.bare).toFixed(2)}% on the clean images; purified: ${Object.entries(r.purified)
          .map(([t, a]) => `t* ${t} ${(100 * a).toFixed(2)}%`)
          .join(', ')}\n`,
      );
    });
    writeFileSync(path, `${JSON.stringify({ step, parameterSet: 'EMA', evaluations }, null, 2)}\n`);
    process.stderr.write(`-> ${path}\n`);
  } finally {
    net.dispose();
    dispose();
  }
}

async function runScore(v: Values): Promise<void> {
  const o = scoreOptions(v);
  if (v.evaluate) return evaluateScore(o.out, v, o.dataDir);
  if (typeof v.ship === 'string') {
    const { net, step } = loadScoreRun(o.out, 'ema');
    const r = writeShipped(o.out, net, v.ship, step, {
      kind: 'score',
      parameterSet: 'EMA (score_sde ema)',
      data: 'Fashion-MNIST (Debian dataset-fashion-mnist)',
    });
    process.stderr.write(
      `${o.out} (step ${step}, EMA) -> ${v.ship} (sha256 ${r.sha256.slice(0, 12)}...), ${r.manifestPath} and ${r.configPath}\n`,
    );
    return;
  }
  if (typeof v.export === 'string') {
    const r = exportScoreRun(o.out, v.export);
    process.stderr.write(
      `${o.out} (step ${r.step}) -> ${v.export}: score_sde checkpoint {'optimizer', 'model': ${r.modelTensors} tensors, ` +
        `'ema': ${r.emaTensors} shadow params, 'step'}, torch.save format\n`,
    );
    for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
    return;
  }
  const m = o.config.model as { nf?: number; ch_mult?: number[] };
  process.stderr.write(
    `training NCSN++ (nf ${m.nf}, ch_mult [${m.ch_mult}]) on Fashion-MNIST${o.limit ? ` (first ${o.limit} images)` : ''}, ` +
      `${o.steps} steps of ${o.batch}, seed ${o.seed} -> ${o.out}${v.resume ? ' (resuming)' : ''}\n`,
  );
  let first = -1;
  trainScore(o, v.resume === true, (r) => {
    if (first < 0) first = r.step - 1;
    const eta = (r.seconds / (r.step - first)) * (r.steps - r.step);
    if (v.json) console.log(JSON.stringify(r));
    const line = `step ${r.step}/${r.steps}  loss ${r.loss.toFixed(4)}  |g| ${r.gradNorm.toFixed(3)}  lr ${r.lr.toExponential(2)}  ${r.seconds.toFixed(0)} s, ETA ${eta.toFixed(0)} s`;
    if (process.stderr.isTTY) process.stderr.write(`\r${line}   ${r.step === r.steps ? '\n' : ''}`);
    else if (r.step % 10 === 0 || r.step === r.steps) process.stderr.write(`${line}\n`);
  });
}

/** `diffpure train purified`: training images purified by a shipped score model, batch by batch, continuable. */
async function runPurified(v: Values): Promise<void> {
  const out = typeof v.out === 'string' ? v.out : 'runs/purified';
  const dataDir = typeof v['data-dir'] === 'string' ? v['data-dir'] : CLASSIFIER_DEFAULTS.dataDir;
  const scoreWeights = typeof v['score-weights'] === 'string' ? v['score-weights'] : 'weights/fmnist-score.safetensors';
  const scoreConfig =
    typeof v['score-config'] === 'string' ? v['score-config'] : scoreWeights.replace(/\.safetensors$/, '.config.json');
  for (const [flag, p] of [
    ['--score-weights', scoreWeights],
    ['--score-config', scoreConfig],
  ] as const)
    if (!existsSync(p))
      throw new Error(
        `${flag} '${p}' does not exist: give a shipped score model (.safetensors beside its .config.json)`,
      );
  const tStar = num(v, 't-star', 0.1, (x) => x > 0 && x <= 1, 'in (0, 1]');
  const o: PurifiedSetOptions = {
    scoreWeights,
    scoreConfig,
    tStar,
    dt: num(v, 'dt', 0.005, (x) => x > 0 && x <= tStar, `in (0, t* = ${tStar}]`),
    count: num(v, 'count', 4000, (x) => int(x) && x > 0, 'a positive integer'),
    batch: num(v, 'batch', 100, (x) => int(x) && x > 0, 'a positive integer'),
    seed: num(
      v,
      'seed',
      0,
      (x) => int(x) && x >= 0 && x < MAX_PURIFIED_SEED,
      `an integer in [0, ${MAX_PURIFIED_SEED})`,
    ),
  };
  const shard = typeof v.shard === 'string' ? parseShard(v.shard) : WHOLE;
  const train = loadMnistLike('train', dataDir);
  const net = await loadNetwork('ddpmpp', readJson(scoreConfig), scoreWeights);
  process.stderr.write(
    `purifying ${o.count} training images (NumPy permutation, seed ${o.seed}) at t* ${o.tStar}, dt ${o.dt}, ` +
      `batches of ${o.batch} -> ${out}\n`,
  );
  try {
    const written = buildPurifiedSet(
      out,
      o,
      train,
      (x, t) => net.forward(x, t),
      (r) => process.stderr.write(`  batch ${r.batch + 1} of ${r.batches} purified, ${r.seconds.toFixed(0)} s\n`),
      shard,
    );
    process.stderr.write(
      shard.count === 1
        ? `${written} batches purified now; ${out} is complete\n`
        : `${written} batches purified now; shard ${shard.index}/${shard.count} of ${out} is complete (the set is whole when every shard is)\n`,
    );
  } finally {
    net.module.dispose();
  }
}
