// Runs the units of a protocol that this shard owns and has not finished: attack, judge, record. The models come
// in as functions (the CLI loads checkpoints; tests pass small stand-ins), so the runner knows nothing of files
// but its records and the adversarial images it keeps beside them.

import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNpy } from '../../nn/io/index.js';
import type { Tensor } from '../../tensor/tensor.js';
import { tidy } from '../../tensor/tensor.js';
import { type AttackName, autoAttack, type StageSettings, versionPlan } from '../attacks/autoattack.js';
import { bpdaEot, type Purifier } from '../attacks/bpda-eot.js';
import { type AttackModel, type Images, logitsOf, predictions, takeRows } from '../attacks/model.js';
import { pgdEot } from '../attacks/pgd-eot.js';
import { KeyedRandom } from '../attacks/random.js';
import { stadv } from '../attacks/stadv.js';
import { correctUnder, parseVerdict, SINGLE_PASS, type Verdict } from '../attacks/verdicts.js';
import type { GradientMode } from '../defense.js';
import type { AttackSpec, Protocol, Target } from './protocol.js';
import type { RecordsFile, SampleRecord, UnitRecord } from './records.js';
import { type Shard, shardUnits, unitCost, unitKey, type WorkUnit, workUnits } from './units.js';

/** The models of an evaluation, as functions on tensors. */
export interface EvalModels {
  backend: string;
  /** The bare classifier: x [B, C, H, W] in [0, 1] (purified images are not clipped) -> logits [B, K]. */
  classify: (x: Tensor) => Tensor;
  /** DiffPure's purifier at these settings; row r of a call draws from keys[r] (see defense.ts). */
  purifier: (o: { tStar: number; dt: number; gradient: GradientMode }) => Purifier;
}

/** The sample list: its images in order, their labels, and their indices in the data set. */
export interface EvalData {
  images: Images;
  labels: Int32Array;
  indices: number[];
}

export interface ProgressEvent {
  unitsDone: number;
  unitsTotal: number;
  imagesDone: number;
  imagesTotal: number;
  /** The unit under way and where it is (e.g. 'apgd-ce batch 1/1', 'step 12/200'). */
  unit?: WorkUnit;
  phase?: string;
  /** Robust accuracy so far (%) of the finished units of this run, and seconds per image of them. */
  robust?: number;
  secondsPerImage?: number;
}

export interface RunOptions {
  records: RecordsFile;
  shard: Shard;
  /** Where adversarial images are kept (adv/<attack>.<target>.seed<S>.batch<K>.npy); none when absent. */
  advDir?: string;
  progress?: (e: ProgressEvent) => void;
}

/** Adversarial images of a unit, as the runner writes them. */
export function advPath(dir: string, u: { attack: string; target: string; seed: number; chunk: number }): string {
  return join(dir, `${u.attack}.${u.target}.seed${u.seed}.batch${u.chunk}.npy`);
}

function norms(x: Images, adv: Images): { linf: number[]; l2: number[] } {
  const d = x.shape[1] * x.shape[2] * x.shape[3];
  const linf: number[] = [];
  const l2: number[] = [];
  for (let r = 0; r < x.shape[0]; r++) {
    let mx = 0;
    let ss = 0;
    for (let j = r * d; j < (r + 1) * d; j++) {
      const v = (adv.data[j] as number) - (x.data[j] as number);
      mx = Math.max(mx, Math.abs(v));
      ss += v * v;
    }
    linf.push(mx);
    l2.push(Math.sqrt(ss));
  }
  return { linf, l2 };
}

interface Outcome {
  adv: Images;
  /** AutoAttack's own log lines (its output, as the official code prints it); empty for the other attacks. */
  log: string[];
  correct: boolean[];
  robust: boolean[];
  settings: Record<string, unknown>;
  warnings: string[];
}

/**
 * One attack on one batch. The bare classifier is deterministic, so there EOT runs one sample (the mean of identical
 * gradients is the gradient) and verdicts one pass; the settings recorded say so.
 */
async function attackUnit(
  spec: AttackSpec,
  target: Target,
  seed: number,
  models: EvalModels,
  parts: TargetParts,
  x: Images,
  y: Int32Array,
  ids: number[],
  phase: (s: string) => void,
): Promise<Outcome> {
  const bare = target === 'classifier';
  const { purify, model } = parts;
  const verdict: Verdict = bare ? SINGLE_PASS : parseVerdict(spec.verdict ?? 'single');
  const random = new KeyedRandom(seed);
  const cleanCheck = () => correctUnder(model, x, y, ids, verdict, random, ['eval-clean', spec.id]);
  switch (spec.attack) {
    case 'autoattack': {
      const settings: Partial<StageSettings> = { ...(spec.settings ?? {}), ...(bare ? { apgdEot: 1 } : {}) };
      const res = await autoAttack(model, x, y, {
        norm: spec.norm,
        eps: spec.eps,
        version: spec.version,
        attacks: spec.attacks as AttackName[] | undefined,
        settings,
        seed,
        bs: x.shape[0],
        verdict,
        sampleIds: ids,
        log: () => {}, // kept in res.log and written beside the adversarial images
        onStage: (e) => phase(`${e.attack}`),
      });
      return {
        adv: res.adv,
        log: res.log,
        correct: (res.stages[0] as { robust: boolean[] }).robust,
        robust: res.robust,
        settings: {
          attacks: versionPlan(spec.version, spec.attacks as AttackName[] | undefined).attacks,
          ...versionPlan(spec.version, spec.attacks as AttackName[] | undefined).settings,
          ...settings,
          verdict: res.verdict,
        },
        warnings: res.warnings,
      };
    }
    case 'pgd-eot': {
      const eotIter = bare ? 1 : (spec.eotIter ?? 20);
      const o = { norm: spec.norm, eps: spec.eps, steps: spec.steps ?? 200, stepSize: spec.stepSize ?? 0.007, eotIter };
      const res = await pgdEot(model, x, y, {
        ...o,
        verdict,
        seed,
        sampleIds: ids,
        name: spec.id,
        trace: (e) => phase(`step ${e.step + 1}/${o.steps}`),
      });
      return {
        adv: res.adv,
        log: [],
        correct: await cleanCheck(),
        robust: res.robust,
        settings: { ...o, verdict },
        warnings: [],
      };
    }
    case 'bpda-eot': {
      if (!purify) throw new Error(`${spec.id}: BPDA+EOT needs the purifier (target 'diffpure')`);
      const o = {
        norm: spec.norm,
        eps: spec.eps,
        steps: spec.steps ?? 50,
        stepSize: spec.stepSize ?? 2 / 255,
        eotAttackReps: spec.eotAttackReps ?? 15,
        eotDefenseReps: spec.eotDefenseReps ?? 150,
      };
      const res = await bpdaEot({ purify, classify: models.classify, backend: models.backend }, x, y, {
        ...o,
        seed,
        sampleIds: ids,
        name: spec.id,
        trace: () => phase('step'),
      });
      return {
        adv: res.adv,
        log: [],
        correct: res.classPath[0] as boolean[],
        robust: res.robust,
        settings: { ...o, verdict: 'BPDA+EOT defended after the last evaluation' },
        warnings: [],
      };
    }
    case 'stadv': {
      const o = {
        bound: spec.bound,
        nIter: spec.nIter ?? 100,
        eotIter: bare ? 1 : (spec.eotIter ?? 1),
        lr: spec.lr ?? 0.01,
      };
      const res = await stadv(model, x, y, {
        ...o,
        seed,
        sampleIds: ids,
        name: spec.id,
        trace: (e) => phase(`iteration ${e.i + 1}/${o.nIter}`),
      });
      // StAdv's own verdict is one pass (the official attack); the protocol's rule judges the returned images
      const robust =
        verdict.rule === 'single'
          ? res.robust
          : await correctUnder(model, res.adv, y, ids, verdict, random, ['eval-verdict', spec.id]);
      return { adv: res.adv, log: [], correct: await cleanCheck(), robust, settings: { ...o, verdict }, warnings: [] };
    }
  }
}

/** One pass of the attacked model on clean and adversarial images (key purpose 'report'), for records and pictures. */
async function reportPredictions(
  model: AttackModel,
  x: Images,
  adv: Images,
  ids: number[],
  random: KeyedRandom,
  attack: string,
): Promise<{ clean: Int32Array; adv: Int32Array }> {
  const pass = async (v: Images, which: string) => {
    const out = await logitsOf(
      model,
      v,
      ids.map((id) => random.noiseKey(['report', attack, which], id)),
    );
    return predictions(out.logits, out.k);
  };
  return { clean: await pass(x, 'clean'), adv: await pass(adv, 'adv') };
}

interface TargetParts {
  /** DiffPure's purifier at the attack's t* and gradient mode; null for the bare classifier. */
  purify: Purifier | null;
  /** What the attack sees: purify then classify, or the classifier alone. */
  model: AttackModel;
}

function targetParts(models: EvalModels, target: Target, spec: AttackSpec, dt: number): TargetParts {
  const backend = models.backend;
  if (target === 'classifier') return { purify: null, model: { backend, classify: (v) => models.classify(v) } };
  const purify = models.purifier({ tStar: spec.tStar, dt, gradient: spec.gradient ?? 'continuous' });
  return { purify, model: { backend, classify: (v, keys) => tidy(() => models.classify(purify(v, keys))) } };
}

/** The model a target stands for (for the pictures). */
export function targetModel(models: EvalModels, target: Target, spec: AttackSpec, dt: number): AttackModel {
  return targetParts(models, target, spec, dt).model;
}

/** Runs this shard's unfinished units in order, appending each finished one to the records. */
export async function runEval(p: Protocol, models: EvalModels, data: EvalData, o: RunOptions): Promise<void> {
  const n = data.labels.length;
  const mine = shardUnits(workUnits(p, n), o.shard, (u) => unitCost(p, u));
  const todo = mine.filter((u) => !o.records.has(unitKey(u)));
  const imagesTotal = mine.reduce((s, u) => s + u.samples.length, 0);
  let imagesDone = imagesTotal - todo.reduce((s, u) => s + u.samples.length, 0);
  let unitsDone = mine.length - todo.length;
  let robustHits = 0;
  let robustSeen = 0;
  let seconds = 0;
  let ranImages = 0;
  if (o.advDir && !existsSync(o.advDir)) mkdirSync(o.advDir, { recursive: true });
  const emit = (unit?: WorkUnit, phase?: string) =>
    o.progress?.({
      unitsDone,
      unitsTotal: mine.length,
      imagesDone,
      imagesTotal,
      unit,
      phase,
      robust: robustSeen ? (100 * robustHits) / robustSeen : undefined,
      secondsPerImage: ranImages ? seconds / ranImages : undefined,
    });
  emit();
  for (const u of todo) {
    const spec = p.attacks.find((a) => a.id === u.attack) as AttackSpec;
    const t0 = performance.now();
    const x = takeRows(data.images, u.samples);
    const y = Int32Array.from(u.samples, (s) => data.labels[s] as number);
    emit(u, 'starting');
    const parts = targetParts(models, u.target, spec, p.purifier.dt);
    const out = await attackUnit(spec, u.target, u.seed, models, parts, x, y, u.samples, (ph) => emit(u, ph));
    emit(u, 'report pass');
    const pred = await reportPredictions(parts.model, x, out.adv, u.samples, new KeyedRandom(u.seed), spec.id);
    const secs = (performance.now() - t0) / 1000;
    const { linf, l2 } = norms(x, out.adv);
    const samples: SampleRecord[] = u.samples.map((s, r) => ({
      type: 'sample',
      attack: u.attack,
      target: u.target,
      seed: u.seed,
      chunk: u.chunk,
      sample: s,
      index: data.indices[s] as number,
      label: y[r] as number,
      correct: out.correct[r] as boolean,
      robust: out.robust[r] as boolean,
      pred: { clean: pred.clean[r] as number, adv: pred.adv[r] as number },
      linf: linf[r] as number,
      l2: l2[r] as number,
    }));
    const unit: UnitRecord = {
      type: 'unit',
      attack: u.attack,
      target: u.target,
      seed: u.seed,
      chunk: u.chunk,
      images: u.samples.length,
      seconds: secs,
      settings: out.settings,
      warnings: out.warnings,
    };
    if (o.advDir) {
      // written first and renamed into place, so a finished unit always has its images
      const path = advPath(o.advDir, u);
      writeNpy(`${path}.tmp`, out.adv.data, out.adv.shape);
      renameSync(`${path}.tmp`, path);
      // AutoAttack's log for this unit (timings vary, so it stays out of the records, which merge bit for bit)
      if (out.log.length) writeFileSync(path.replace(/\.npy$/, '.log'), `${out.log.join('\n')}\n`);
    }
    o.records.append(samples, unit);
    unitsDone++;
    imagesDone += u.samples.length;
    ranImages += u.samples.length;
    seconds += secs;
    robustHits += out.robust.filter(Boolean).length;
    robustSeen += out.robust.length;
    emit();
  }
}
