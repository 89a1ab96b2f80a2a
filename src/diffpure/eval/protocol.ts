// An evaluation protocol: which images, which models, which seeds, which attacks, and how the numbers are
// reported. Presets live as JSON files beside this one (presets/*.json) so a user can print one
// (`diffpure eval --print fmnist-quick`), copy it, edit it and pass it back with --protocol mine.json.
// Every field is checked here, with errors that name the field and the fix.

import { readFileSync } from 'node:fs';
import { ATTACK_NAMES, type StageSettings, VERSIONS } from '../attacks/autoattack.js';
import { NORMS, type Norm } from '../attacks/projections.js';
import { parseVerdict } from '../attacks/verdicts.js';
import type { ModelKind } from '../models.js';
import diffpureBpda from './presets/diffpure-bpda.json' with { type: 'json' };
import diffpureCelebahq from './presets/diffpure-celebahq.json' with { type: 'json' };
import diffpureCifar10 from './presets/diffpure-cifar10.json' with { type: 'json' };
import diffpureImagenet from './presets/diffpure-imagenet.json' with { type: 'json' };
import fmnist from './presets/fmnist.json' with { type: 'json' };
import fmnistQuick from './presets/fmnist-quick.json' with { type: 'json' };
import leeKim from './presets/lee-kim.json' with { type: 'json' };
import robustbench from './presets/robustbench.json' with { type: 'json' };

export const DATA_SETS = ['fashion-mnist', 'cifar10', 'imagenet', 'npy'] as const;
export type DataSet = (typeof DATA_SETS)[number];

/** Which test images: DiffPure's subsets (np.random.RandomState(seed).choice per data seed) or the first n. */
export type SampleRule = { rule: 'diffpure'; perDataSeed: number; dataSeeds: number[] } | { rule: 'first'; n: number };

export interface DataSpec {
  set: DataSet;
  /** Folder of the data set (default: Debian's Fashion-MNIST folder; required for cifar10 and imagenet). */
  dir?: string;
  /** set 'npy' (your own images): images [N, C, H, W] float32 in [0, 1] and labels [N], as .npy files. */
  x?: string;
  y?: string;
  /** set 'npy': class names for the pictures (default the class numbers). */
  classes?: string[];
  sample: SampleRule;
}

export interface ModelSpec {
  model: ModelKind;
  /** The network's config (official field names), inline or as a path to a JSON file. */
  config?: unknown;
  /** Checkpoint: safetensors, or the official .pth/.pt. Relative paths are from the working directory. */
  weights: string;
}

export interface ClassifierSpec extends ModelSpec {
  /**
   * 'none', or 'imagenet': as DiffPure's eval_sde_adv.py, the 224 images go to the purifier resized to 256
   * (bilinear) and come back at 224, and the classifier normalises with ImageNet's mean/std.
   */
  transform?: 'none' | 'imagenet';
}

export interface PurifierSpec extends ModelSpec {
  /** Step of the reverse SDE solve (DiffPure: 1e-3). */
  dt: number;
}

export const TARGETS = ['diffpure', 'classifier'] as const;
/** 'diffpure': the defended classifier (purify then classify); 'classifier': the bare classifier. */
export type Target = (typeof TARGETS)[number];

interface AttackCommon {
  /** Name of the row in the tables and records. */
  id: string;
  /** Diffusion time of the purification this attack is run against (DiffPure's t* = t/1000). */
  tStar: number;
  /** How gradients pass the purifier: 'continuous' (the paper's adjoint) or 'exact' (Lee & Kim). */
  gradient?: 'continuous' | 'exact';
  /** Which models to attack (default both). */
  targets?: Target[];
  /** How the returned images are judged: 'single' (default), 'majority:N', 'any:N'. */
  verdict?: string;
}

export type AttackSpec = AttackCommon &
  (
    | {
        attack: 'autoattack';
        version: 'standard' | 'plus' | 'rand' | 'custom';
        attacks?: string[];
        norm: Norm;
        eps: number;
        settings?: Partial<StageSettings>;
      }
    | { attack: 'pgd-eot'; norm: Norm; eps: number; steps?: number; stepSize?: number; eotIter?: number }
    | {
        attack: 'bpda-eot';
        norm: Norm;
        eps: number;
        steps?: number;
        stepSize?: number;
        eotAttackReps?: number;
        eotDefenseReps?: number;
      }
    | { attack: 'stadv'; bound: number; nIter?: number; eotIter?: number; lr?: number }
  );

export const ATTACK_KINDS = ['autoattack', 'pgd-eot', 'bpda-eot', 'stadv'] as const;

/** Rows reported as the per-seed minimum of other rows' robust accuracy (DiffPure's min(rand, standard)). */
export interface MinRule {
  id: string;
  of: string[];
}

export interface Protocol {
  name: string;
  description: string;
  data: DataSpec;
  classifier: ClassifierSpec;
  purifier: PurifierSpec;
  /** Attack seeds: the error bars are mean ± std over them (DiffPure: 121, 122, 123). */
  seeds: number[];
  /** Images per attack call; records are written per batch, and a batch is the unit of sharding. */
  batch: number;
  attacks: AttackSpec[];
  report?: {
    min?: MinRule[];
    /**
     * Which predictions the accuracies count. 'attack' (default; DiffPure's eval_sde_adv.py reports AutoAttack's own
     * numbers): the attack's clean check and its verdict. 'recheck' (RobustBench's benchmark()): one more pass on
     * the clean images and one on the returned adversarial images, `clean_accuracy(model, x_adv)`; the same numbers
     * for a deterministic model, not for a stochastic one.
     */
    accuracy?: 'attack' | 'recheck';
  };
}

export const ACCURACY_RULES = ['attack', 'recheck'] as const;

export const PRESETS: Record<string, unknown> = {
  'fmnist-quick': fmnistQuick,
  fmnist,
  diffpure: diffpureCifar10,
  'diffpure-bpda': diffpureBpda,
  'diffpure-imagenet': diffpureImagenet,
  'diffpure-celebahq': diffpureCelebahq,
  robustbench,
  'lee-kim': leeKim,
};

export const DEFAULT_PRESET = 'fmnist-quick';

type Obj = Record<string, unknown>;

function fail(where: string, msg: string): never {
  throw new Error(`protocol ${where}: ${msg}`);
}

function obj(v: unknown, where: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, `expected a JSON object, got ${show(v)}`);
  return v as Obj;
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function str(o: Obj, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) fail(`${where}.${key}`, `expected a non-empty string, got ${show(v)}`);
  return v;
}

function num(o: Obj, key: string, where: string, test: (x: number) => boolean, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || !test(v))
    fail(`${where}.${key}`, `expected ${what}, got ${show(v)}`);
  return v;
}

function optNum(o: Obj, key: string, where: string, test: (x: number) => boolean, what: string): void {
  if (o[key] !== undefined) num(o, key, where, test, what);
}

const posInt = (x: number) => Number.isInteger(x) && x > 0;
const nonNegInt = (x: number) => Number.isInteger(x) && x >= 0;
const positive = (x: number) => x > 0;

function oneOf<T extends string>(o: Obj, key: string, where: string, options: readonly T[], dflt?: T): T {
  const v = o[key] ?? dflt;
  if (!options.includes(v as T)) fail(`${where}.${key}`, `expected one of ${options.join(', ')}, got ${show(v)}`);
  return v as T;
}

function intList(o: Obj, key: string, where: string, test: (x: number) => boolean, what: string): number[] {
  const v = o[key];
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'number' || !test(x)))
    fail(`${where}.${key}`, `expected a non-empty list of ${what}, got ${show(v)}`);
  if (new Set(v).size !== v.length) fail(`${where}.${key}`, `holds a value twice: ${show(v)}`);
  return v as number[];
}

function checkModel(v: unknown, where: string, kinds: readonly ModelKind[]): void {
  const o = obj(v, where);
  oneOf(o, 'model', where, kinds);
  str(o, 'weights', where);
  if (o.config !== undefined && typeof o.config !== 'string') obj(o.config, `${where}.config`);
}

const COMMON_KEYS = ['id', 'attack', 'tStar', 'gradient', 'targets', 'verdict'];
/** The fields each attack kind reads: anything else is a typo or a field of another attack, refused. */
const ATTACK_KEYS: Record<(typeof ATTACK_KINDS)[number], string[]> = {
  autoattack: ['version', 'attacks', 'norm', 'eps', 'settings'],
  'pgd-eot': ['norm', 'eps', 'steps', 'stepSize', 'eotIter'],
  'bpda-eot': ['norm', 'eps', 'steps', 'stepSize', 'eotAttackReps', 'eotDefenseReps'],
  stadv: ['bound', 'nIter', 'eotIter', 'lr'],
};
const STAGE_KEYS: (keyof StageSettings)[] = [
  'apgdIter',
  'fabIter',
  'apgdRestarts',
  'apgdEot',
  'apgdTargets',
  'apgdTargetedRestarts',
  'fabRestarts',
  'fabTargets',
  'squareQueries',
];

function onlyKeys(o: Obj, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`${where}.${k}`, `unknown field; the fields here are ${allowed.join(', ')}`);
  }
}

function checkAttack(v: unknown, where: string): void {
  const o = obj(v, where);
  const id = str(o, 'id', where);
  // ids name files (adv/<id>.*.npy) and rows
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id))
    fail(`${where}.id`, `'${id}' must be letters, digits, '.', '_' or '-' (it names files)`);
  const kind = oneOf(o, 'attack', where, ATTACK_KINDS);
  onlyKeys(o, [...COMMON_KEYS, ...ATTACK_KEYS[kind]], where);
  if (kind === 'bpda-eot' && o.verdict !== undefined)
    fail(`${where}.verdict`, 'BPDA+EOT has its own verdict (logits averaged over eotDefenseReps purifications)');
  num(o, 'tStar', where, (x) => x > 0 && x <= 1, 'a diffusion time in (0, 1]');
  oneOf(o, 'gradient', where, ['continuous', 'exact'] as const, 'continuous');
  if (o.targets !== undefined) {
    const t = o.targets;
    if (!Array.isArray(t) || t.length === 0 || t.some((x) => !TARGETS.includes(x as Target)))
      fail(`${where}.targets`, `expected a non-empty list of ${TARGETS.join(', ')}, got ${show(t)}`);
    if (new Set(t).size !== t.length) fail(`${where}.targets`, `names a target twice: ${show(t)}`);
    if (kind === 'bpda-eot' && t.includes('classifier'))
      fail(`${where}.targets`, "BPDA+EOT approximates the purifier's gradient; the bare classifier has none to attack");
  }
  if (o.verdict !== undefined) {
    try {
      parseVerdict(String(o.verdict));
    } catch (e) {
      fail(`${where}.verdict`, e instanceof Error ? e.message : String(e));
    }
  }
  if (kind === 'stadv') {
    num(o, 'bound', where, positive, 'a positive flow bound (DiffPure: 0.05)');
    optNum(o, 'nIter', where, posInt, 'a positive integer');
    optNum(o, 'eotIter', where, posInt, 'a positive integer');
    optNum(o, 'lr', where, positive, 'a positive learning rate');
    return;
  }
  oneOf(o, 'norm', where, NORMS);
  num(o, 'eps', where, (x) => x >= 0, 'a radius >= 0 in [0, 1] pixel units (e.g. 8/255 = 0.0313725)');
  if (kind === 'autoattack') {
    const version = oneOf(o, 'version', where, VERSIONS);
    if (o.attacks !== undefined) {
      const a = o.attacks;
      if (version !== 'custom') fail(`${where}.attacks`, `goes with version 'custom' (got '${version}')`);
      if (!Array.isArray(a) || a.length === 0 || a.some((x) => !ATTACK_NAMES.includes(x)))
        fail(`${where}.attacks`, `expected a non-empty list of ${ATTACK_NAMES.join(', ')}, got ${show(a)}`);
    } else if (version === 'custom') fail(`${where}.attacks`, "version 'custom' needs a list of attacks");
    if (o.settings !== undefined) {
      const s = obj(o.settings, `${where}.settings`);
      onlyKeys(s, STAGE_KEYS, `${where}.settings`);
      for (const [k, x] of Object.entries(s)) {
        if (typeof x !== 'number' || !Number.isInteger(x) || x < 1)
          fail(`${where}.settings.${k}`, `expected a positive integer, got ${show(x)}`);
      }
    }
  } else {
    optNum(o, 'steps', where, posInt, 'a positive integer');
    optNum(o, 'stepSize', where, positive, 'a positive step size');
    optNum(o, 'eotIter', where, posInt, 'a positive integer');
    optNum(o, 'eotAttackReps', where, posInt, 'a positive integer');
    optNum(o, 'eotDefenseReps', where, nonNegInt, 'an integer >= 0');
  }
}

/** Checks a protocol object field by field and returns it typed; every error names the field. */
export function checkProtocol(v: unknown): Protocol {
  const p = obj(v, '(top level)');
  str(p, 'name', 'protocol');
  const d = obj(p.data, 'data');
  oneOf(d, 'set', 'data', DATA_SETS);
  // a missing folder is reported when the data are read (the CLI's --data-dir fills it in)
  if (d.dir !== undefined) str(d, 'dir', 'data');
  if (d.set === 'npy') {
    str(d, 'x', 'data');
    str(d, 'y', 'data');
  }
  const s = obj(d.sample, 'data.sample');
  const rule = oneOf(s, 'rule', 'data.sample', ['diffpure', 'first'] as const);
  if (rule === 'diffpure') {
    num(s, 'perDataSeed', 'data.sample', posInt, 'a positive integer (DiffPure: 64 on CIFAR-10)');
    intList(s, 'dataSeeds', 'data.sample', nonNegInt, 'integers >= 0');
  } else num(s, 'n', 'data.sample', posInt, 'a positive integer');
  checkModel(p.classifier, 'classifier', ['wrn', 'resnet', 'vit', 'attribute']);
  const c = p.classifier as Obj;
  if (c.transform !== undefined) oneOf(c, 'transform', 'classifier', ['none', 'imagenet'] as const);
  checkModel(p.purifier, 'purifier', ['ddpmpp', 'adm', 'ddpm']);
  num(p.purifier as Obj, 'dt', 'purifier', (x) => x > 0 && x < 1, 'a solver step in (0, 1) (DiffPure: 0.001)');
  intList(p, 'seeds', 'protocol', (x) => nonNegInt(x) && x < 2 ** 32, 'integer seeds');
  num(p, 'batch', 'protocol', posInt, 'a positive integer');
  if (!Array.isArray(p.attacks) || p.attacks.length === 0) fail('attacks', 'expected a non-empty list of attacks');
  const ids = new Set<string>();
  p.attacks.forEach((a, i) => {
    checkAttack(a, `attacks[${i}]`);
    const id = (a as Obj).id as string;
    if (ids.has(id)) fail(`attacks[${i}].id`, `'${id}' names two attacks; ids must be unique`);
    ids.add(id);
  });
  if ((p.purifier as Obj).model === 'ddpm')
    // DiffPure's DDPM path (CelebA-HQ) is a chain of t = 1000 t* discrete steps: no SDE, so no continuous adjoint
    (p.attacks as Obj[]).forEach((a, i) => {
      if (a.gradient === 'continuous')
        fail(`attacks[${i}].gradient`, "the ddpm purifier is a discrete chain: its gradient is 'exact' (the default)");
      const t = (a.tStar as number) * 1000;
      if (typeof a.tStar === 'number' && Math.abs(t - Math.round(t)) > 1e-6)
        fail(`attacks[${i}].tStar`, `the ddpm purifier runs t = 1000 t* steps; ${a.tStar} is not a multiple of 0.001`);
    });
  if (p.report !== undefined) {
    const r = obj(p.report, 'report');
    onlyKeys(r, ['min', 'accuracy'], 'report');
    if (r.accuracy !== undefined && !ACCURACY_RULES.includes(r.accuracy as never))
      fail('report.accuracy', `expected one of ${ACCURACY_RULES.join(', ')}, got ${show(r.accuracy)}`);
    if (r.min !== undefined) {
      if (!Array.isArray(r.min)) fail('report.min', 'expected a list of { id, of: [attack ids] }');
      r.min.forEach((m, i) => {
        const o = obj(m, `report.min[${i}]`);
        const id = str(o, 'id', `report.min[${i}]`);
        if (ids.has(id)) fail(`report.min[${i}].id`, `'${id}' is also an attack id`);
        if (!Array.isArray(o.of) || o.of.length < 2 || o.of.some((x) => !ids.has(x as string)))
          fail(
            `report.min[${i}].of`,
            `expected two or more of the attack ids ${[...ids].join(', ')}, got ${show(o.of)}`,
          );
      });
    }
  }
  return { description: '', ...(p as object) } as Protocol;
}

/** A preset by name, or a protocol JSON file by path; checked. */
export function loadProtocol(nameOrPath: string): Protocol {
  const preset = PRESETS[nameOrPath];
  if (preset) return checkProtocol(structuredClone(preset));
  if (!nameOrPath.endsWith('.json')) {
    throw new Error(
      `--protocol '${nameOrPath}': no such preset (${Object.keys(PRESETS).join(', ')}); ` +
        'or give the path of a protocol .json (print a preset to start from: diffpure eval --print fmnist-quick)',
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(nameOrPath, 'utf8'));
  } catch (e) {
    throw new Error(`--protocol '${nameOrPath}': ${e instanceof Error ? e.message : e}`);
  }
  try {
    return checkProtocol(json);
  } catch (e) {
    throw new Error(`--protocol '${nameOrPath}': ${e instanceof Error ? e.message : e}`);
  }
}

/** The attack specs with their defaults filled in (targets, gradient, verdict), as the runner and records use. */
export function attackTargets(a: AttackSpec): Target[] {
  return a.targets ?? (a.attack === 'bpda-eot' ? ['diffpure'] : ['diffpure', 'classifier']);
}

/** Whether any attack targets DiffPure, i.e. whether the protocol loads (and so depends on) the score model. */
export function needsPurifier(p: Protocol): boolean {
  return p.attacks.some((a) => attackTargets(a).includes('diffpure'));
}
