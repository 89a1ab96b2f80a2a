// AutoAttack's runner (fra31/auto-attack 6482e4d, autoattack.py run_standard_evaluation and set_version): the
// clean check, then each attack of the version in the official order on the points still robust, in batches of
// `bs`, each stage's adversarial images re-checked by the verdict rule (one pass by default, as AutoAttack and the
// DiffPure paper); the official log lines; the official checks as warnings.
//
// Robust accuracy counts clean-misclassified images as not robust (denominator: all images), as AutoAttack does.

import { type ApgdOptions, apgd, apgdTargeted } from './apgd.js';
import { fab, fabTargeted } from './fab.js';
import {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  logitsOf,
  predictions,
  takeRows,
} from './model.js';
import { checkAttackInputs, type Norm } from './projections.js';
import { type AttackRandom, KeyedRandom } from './random.js';
import { square } from './square.js';
import { correctUnder, describeVerdict, SINGLE_PASS, type Verdict } from './verdicts.js';

export const ATTACK_NAMES = ['apgd-ce', 'apgd-dlr', 'apgd-t', 'fab', 'fab-t', 'square'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];
export const VERSIONS = ['standard', 'plus', 'rand', 'custom'] as const;
export type Version = (typeof VERSIONS)[number];

/** Per-attack settings a version fixes (set_version); 'custom' takes DiffPure's (eval_sde_adv.py). */
export interface StageSettings {
  /** APGD / APGD-T iterations (100 in every version; lower it only for quick looks). */
  apgdIter: number;
  /** FAB iterations (100). */
  fabIter: number;
  apgdRestarts: number;
  apgdEot: number;
  apgdTargets: number;
  apgdTargetedRestarts: number;
  fabRestarts: number;
  fabTargets: number;
  squareQueries: number;
}

export function versionPlan(
  version: Version,
  attacks?: readonly AttackName[],
): { attacks: AttackName[]; settings: StageSettings } {
  const base: StageSettings = {
    apgdIter: 100,
    fabIter: 100,
    apgdRestarts: 1,
    apgdEot: 1,
    apgdTargets: 9,
    apgdTargetedRestarts: 1,
    fabRestarts: 1,
    fabTargets: 9,
    squareQueries: 5000,
  };
  switch (version) {
    case 'standard':
      return { attacks: ['apgd-ce', 'apgd-t', 'fab-t', 'square'], settings: base };
    case 'plus':
      return {
        attacks: ['apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t'],
        settings: { ...base, apgdRestarts: 5, fabRestarts: 5 }, // fab-t still runs 1 restart (set at run time)
      };
    case 'rand':
      return { attacks: ['apgd-ce', 'apgd-dlr'], settings: { ...base, apgdEot: 20 } };
    case 'custom': {
      if (!attacks || attacks.length === 0) {
        throw new Error(`autoattack: version 'custom' needs attacks, a list from ${ATTACK_NAMES.join(', ')}`);
      }
      // DiffPure's custom: restarts 1, 9 target classes, 5000 queries (eval_sde_adv.py)
      return { attacks: [...attacks], settings: base };
    }
    default:
      throw new Error(`autoattack: unknown version '${version}'; one of ${VERSIONS.join(', ')}`);
  }
}

export interface AutoAttackOptions {
  norm?: Norm;
  eps: number;
  /** 'standard' (default), 'plus', 'rand' or 'custom' (with `attacks`). */
  version?: Version;
  attacks?: readonly AttackName[];
  /** Overrides of the version's settings (e.g. { apgdEot: 20 } as DiffPure's --eot_iter). */
  settings?: Partial<StageSettings>;
  /** Seed of every random draw (default 0; AutoAttack's seed=None meant time.time(), never reproducible). */
  seed?: number;
  /** Images per attack call (default 250, AutoAttack's). */
  bs?: number;
  /** EOT samples per forward in APGD (default: as many as fit MAX_EOT_ROWS). */
  eotBatch?: number;
  /** The rule of the clean check and of each stage's re-check (default: one pass, AutoAttack's). */
  verdict?: Verdict;
  /** Index of each image in the whole data set (default 0..B-1): keys of its random numbers. */
  sampleIds?: readonly number[];
  /** The random source of one stage (default KeyedRandom(seed)); for replaying official draws. */
  randomFor?: (attack: AttackName | 'clean') => AttackRandom;
  /** Where log lines go (default console.log); the lines are also returned. */
  log?: (line: string) => void;
  /** Progress inside a stage: attack, batch, batches. */
  onStage?: (e: { attack: AttackName; batch: number; batches: number }) => void;
}

export interface AutoAttackResult {
  adv: Images;
  /** Robust after every stage (and the clean check). */
  robust: boolean[];
  /** Robust accuracy after each stage, 'clean' first (as AutoAttack's robust_accuracy_dict). */
  accuracy: Record<string, number>;
  /** The robust flags after each stage, in order. */
  stages: { name: string; robust: boolean[] }[];
  verdict: string;
  log: string[];
  warnings: string[];
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

function rowsWhere(flags: readonly boolean[]): number[] {
  const out: number[] = [];
  flags.forEach((v, i) => {
    if (v) out.push(i);
  });
  return out;
}

/** AutoAttack's run_standard_evaluation. */
export async function autoAttack(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  o: AutoAttackOptions,
): Promise<AutoAttackResult> {
  const model = asModel(modelOrFn);
  const norm = o.norm ?? 'Linf';
  const version = o.version ?? 'standard';
  const ids = checkAttackInputs('autoattack', x, labels, norm, o.eps, o.sampleIds);
  const plan = versionPlan(version, o.attacks);
  for (const a of plan.attacks) {
    if (!ATTACK_NAMES.includes(a))
      throw new Error(`autoattack: unknown attack '${a}'; one of ${ATTACK_NAMES.join(', ')}`);
  }
  const s: StageSettings = { ...plan.settings, ...o.settings };
  const bs = o.bs ?? 250;
  if (!Number.isInteger(bs) || bs < 1) throw new Error(`autoattack: bs must be a positive integer, got ${bs}`);
  const seed = o.seed ?? 0;
  const randomFor = o.randomFor ?? (() => new KeyedRandom(seed));
  const verdict = o.verdict ?? SINGLE_PASS;
  const y = Int32Array.from({ length: labels.length }, (_, i) => labels[i] as number);
  const n = x.shape[0];
  const d = x.data.length / n;
  const lines: string[] = [];
  const warnings: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    (o.log ?? console.log)(line);
  };
  const warn = (msg: string) => {
    warnings.push(msg);
    log(`Warning: ${msg}`);
  };

  log(`using ${version} version including ${plan.attacks.join(', ')}`);
  log(`verdict: ${describeVerdict(verdict)}`);

  // the official checks, on the first batch (check_dynamic has no counterpart: it traces Python calls)
  const first = takeRows(
    x,
    Array.from({ length: Math.min(bs, n) }, (_, i) => i),
  );
  const firstIds = ids.slice(0, first.shape[0]);
  const checkRandom = new KeyedRandom(seed);
  if (version !== 'rand') await checkRandomized(model, first, y, firstIds, checkRandom, warn);
  const k = await checkRangeOutput(model, first, firstIds, checkRandom, warn);
  checkNClasses(k, plan.attacks, s, warn);
  for (let i = 0; i < n; i++) {
    if ((y[i] as number) >= k)
      throw new Error(`autoattack: label ${y[i]} of image ${i} is not a class of this ${k}-class classifier`);
  }

  const start = performance.now();
  const robust: boolean[] = new Array<boolean>(n).fill(false);
  const cleanRandom = randomFor('clean');
  for (let b0 = 0; b0 < n; b0 += bs) {
    const rows = Array.from({ length: Math.min(bs, n - b0) }, (_, i) => b0 + i);
    const ok = await correctUnder(
      model,
      takeRows(x, rows),
      Int32Array.from(rows, (r) => y[r] as number),
      rows.map((r) => ids[r] as number),
      verdict,
      cleanRandom,
      ['autoattack', 'clean'],
    );
    ok.forEach((v, i) => {
      robust[rows[i] as number] = v;
    });
  }
  const accuracy: Record<string, number> = { clean: robust.filter(Boolean).length / n };
  const stages = [{ name: 'clean', robust: robust.slice() }];
  log(`initial accuracy: ${pct(accuracy.clean as number)}`);

  const adv = x.data.slice();
  for (const attack of plan.attacks) {
    const todo = rowsWhere(robust);
    if (todo.length === 0) break;
    const batches = Math.ceil(todo.length / bs);
    const random = randomFor(attack);
    for (let b = 0; b < batches; b++) {
      o.onStage?.({ attack, batch: b + 1, batches });
      const rows = todo.slice(b * bs, (b + 1) * bs);
      const xb = takeRows(x, rows);
      const yb = Int32Array.from(rows, (r) => y[r] as number);
      const idb = rows.map((r) => ids[r] as number);
      const res = await runStage(model, attack, xb, yb, idb, {
        norm,
        eps: o.eps,
        random,
        s,
        eotBatch: o.eotBatch,
        warn,
      });
      // AutoAttack's verdict: a fresh forward on the returned images (one pass by default)
      const ok = await correctUnder(model, res.adv, yb, idb, verdict, random, ['autoattack', attack, 'verdict']);
      let broken = 0;
      rows.forEach((r, i) => {
        if (ok[i]) return;
        broken++;
        robust[r] = false;
        adv.set(res.adv.data.subarray(i * d, (i + 1) * d), r * d);
      });
      log(`${attack} - ${b + 1}/${batches} - ${broken} out of ${rows.length} successfully perturbed`);
    }
    accuracy[attack] = robust.filter(Boolean).length / n;
    stages.push({ name: attack, robust: robust.slice() });
    log(
      `robust accuracy after ${attack.toUpperCase()}: ${pct(accuracy[attack] as number)} (total time ${((performance.now() - start) / 1000).toFixed(1)} s)`,
    );
  }

  // check_square_sr: Square (black-box) beating the white-box attacks hints at masked gradients
  if ('square' in accuracy && Object.keys(accuracy).length > 2) {
    const others = Math.min(
      ...Object.entries(accuracy)
        .filter(([a]) => a !== 'square')
        .map(([, v]) => v),
    );
    const sq = accuracy.square as number;
    if (sq < others - 0.002) {
      warn(
        `Square Attack has decreased the robust accuracy of ${pct(others - sq)}. This might indicate that the robustness ` +
          'evaluation using AutoAttack is unreliable. Consider running Square Attack with more iterations and restarts ' +
          'or an adaptive attack.',
      );
    }
  }

  // the final report: largest perturbation, NaNs, value range
  let maxNorm = 0;
  let nan = 0;
  let vmax = -Infinity;
  let vmin = Infinity;
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let j = i * d; j < (i + 1) * d; j++) {
      const v = adv[j] as number;
      if (Number.isNaN(v)) nan++;
      vmax = Math.max(vmax, v);
      vmin = Math.min(vmin, v);
      const e = v - (x.data[j] as number);
      m = norm === 'Linf' ? Math.max(m, Math.abs(e)) : m + e * e;
    }
    maxNorm = Math.max(maxNorm, norm === 'Linf' ? m : Math.sqrt(m));
  }
  log(
    `max ${norm} perturbation: ${maxNorm.toFixed(5)}, nan in tensor: ${nan}, max: ${vmax.toFixed(5)}, min: ${vmin.toFixed(5)}`,
  );
  const final = robust.filter(Boolean).length / n;
  log(`robust accuracy: ${pct(final)}`);
  return {
    adv: { data: adv, shape: x.shape },
    robust,
    accuracy,
    stages,
    verdict: describeVerdict(verdict),
    log: lines,
    warnings,
  };
}

interface StageContext {
  norm: Norm;
  eps: number;
  random: AttackRandom;
  s: StageSettings;
  eotBatch: number | undefined;
  warn: (msg: string) => void;
}

function runStage(
  model: AttackModel,
  attack: AttackName,
  x: Images,
  y: Int32Array,
  ids: number[],
  c: StageContext,
): Promise<AttackResult> {
  const common = { norm: c.norm, eps: c.eps, random: c.random, sampleIds: ids };
  const apgdCommon: ApgdOptions = {
    ...common,
    nIter: c.s.apgdIter,
    eotIter: c.s.apgdEot,
    eotBatch: c.eotBatch,
    onWarning: c.warn,
  };
  switch (attack) {
    case 'apgd-ce':
      return apgd(model, x, y, { ...apgdCommon, loss: 'ce', nRestarts: c.s.apgdRestarts });
    case 'apgd-dlr':
      return apgd(model, x, y, { ...apgdCommon, loss: 'dlr', nRestarts: c.s.apgdRestarts });
    case 'apgd-t':
      // APGDAttack_targeted is built with eot_iter 1 and keeps it in every version
      return apgdTargeted(model, x, y, {
        ...apgdCommon,
        eotIter: 1,
        nRestarts: c.s.apgdTargetedRestarts,
        nTargetClasses: c.s.apgdTargets,
      });
    case 'fab':
      return fab(model, x, y, {
        ...common,
        nIter: c.s.fabIter,
        nRestarts: c.s.fabRestarts,
        nTargetClasses: c.s.fabTargets,
      });
    case 'fab-t':
      return fabTargeted(model, x, y, { ...common, nIter: c.s.fabIter, nRestarts: 1, nTargetClasses: c.s.fabTargets });
    case 'square':
      return square(model, x, y, { ...common, nQueries: c.s.squareQueries });
  }
}

/** check_randomized: 5 passes on the first batch; a changed count of correct images or logits means randomness. */
async function checkRandomized(
  model: AttackModel,
  x: Images,
  y: Int32Array,
  ids: number[],
  random: AttackRandom,
  warn: (m: string) => void,
): Promise<void> {
  const counts: number[] = [];
  const outs: Float32Array[] = [];
  let k = 0;
  for (let p = 0; p < 5; p++) {
    const out = await logitsOf(
      model,
      x,
      ids.map((id) => random.noiseKey(['check-randomized', p], id)),
    );
    k = out.k;
    counts.push(predictions(out.logits, k).filter((c, i) => c === y[i]).length);
    const z = out.logits;
    const normed = new Float32Array(z.length);
    for (let r = 0; r < z.length / k; r++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += (z[r * k + j] as number) ** 2;
      const den = Math.sqrt(s) + 1e-10;
      for (let j = 0; j < k; j++) normed[r * k + j] = (z[r * k + j] as number) / den;
    }
    outs.push(normed);
  }
  let maxDiff = 0;
  for (let a = 0; a < 5; a++) {
    for (let b = a + 1; b < 5; b++) {
      const za = outs[a] as Float32Array;
      const zb = outs[b] as Float32Array;
      for (let r = 0; r < za.length / k; r++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += ((za[r * k + j] as number) - (zb[r * k + j] as number)) ** 2;
        maxDiff = Math.max(maxDiff, Math.sqrt(s));
      }
    }
  }
  if (counts.some((c) => c !== counts[4]) || maxDiff > 1e-4) {
    warn("it seems to be a randomized defense! Please use version 'rand' (AutoAttack's flags_doc.md).");
  }
}

/** check_range_output: outputs that look like probabilities instead of logits. Returns the number of classes. */
async function checkRangeOutput(
  model: AttackModel,
  x: Images,
  ids: number[],
  random: AttackRandom,
  warn: (m: string) => void,
): Promise<number> {
  const { logits, k } = await logitsOf(
    model,
    x,
    ids.map((id) => random.noiseKey(['check-range'], id)),
  );
  let max = -Infinity;
  let min = Infinity;
  let sumsToOne = true;
  for (let r = 0; r < logits.length / k; r++) {
    let s = 0;
    for (let j = 0; j < k; j++) {
      const v = logits[r * k + j] as number;
      max = Math.max(max, v);
      min = Math.min(min, v);
      s += v;
    }
    if (Math.abs(s - 1) >= 1e-5) sumsToOne = false;
  }
  if (max < 1 + 1e-5 && min > -1e-5 && sumsToOne) {
    warn('it seems that the output is a probability distribution, please be sure that the logits are used!');
  }
  return k;
}

function checkNClasses(k: number, attacks: readonly AttackName[], s: StageSettings, warn: (m: string) => void): void {
  if (attacks.includes('apgd-dlr') || attacks.includes('apgd-t')) {
    if (k <= 2)
      throw new Error(`autoattack: with only ${k} classes the DLR loss cannot be used; drop apgd-dlr and apgd-t`);
    if (k === 3 && attacks.includes('apgd-t')) {
      throw new Error('autoattack: with only 3 classes the targeted DLR loss cannot be used; drop apgd-t');
    }
    if (attacks.includes('apgd-t') && s.apgdTargets + 1 > k) {
      warn(`more target classes (${s.apgdTargets}) than possible (${k - 1}) are used in APGD-T; using ${k - 1}`);
      s.apgdTargets = k - 1;
    }
  }
  if ((attacks.includes('fab-t') || attacks.includes('fab')) && s.fabTargets + 1 > k) {
    warn(`more target classes (${s.fabTargets}) than possible (${k - 1}) are used in FAB-T; using ${k - 1}`);
    s.fabTargets = k - 1;
  }
}
