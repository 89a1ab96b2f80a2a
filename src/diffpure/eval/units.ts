// The work of an evaluation, cut into units: one unit = (attack, target, seed, batch of samples). A unit is what
// one attack call computes, what one write of the records holds, and what a shard takes or leaves. Cutting by
// whole batches (fixed by the protocol, not by the worker) keeps results exact however the work is split or
// resumed, even for attacks whose draws are shared across a batch (Square's window and sign).

import { type AttackName, versionPlan } from '../attacks/autoattack.js';
import { diffpureSubset } from '../data/numpy-random.js';
import { type AttackSpec, attackTargets, type Protocol, type SampleRule, type Target } from './protocol.js';

/** Indices into the data set of the sample list, in order (duplicates across DiffPure's data seeds kept, as there). */
export function sampleIndices(rule: SampleRule, total: number): number[] {
  if (rule.rule === 'first') {
    if (rule.n > total) throw new Error(`data.sample.n = ${rule.n} but the data set holds ${total} images`);
    return Array.from({ length: rule.n }, (_, i) => i);
  }
  if (rule.perDataSeed > total)
    throw new Error(`data.sample.perDataSeed = ${rule.perDataSeed} but the data set holds ${total} images`);
  return rule.dataSeeds.flatMap((s) => diffpureSubset(s, total, rule.perDataSeed));
}

export interface WorkUnit {
  attack: string;
  target: Target;
  seed: number;
  /** Batch number within (attack, target, seed). */
  chunk: number;
  /** Positions in the sample list (0..n-1): the images of this unit. */
  samples: number[];
}

export function unitKey(u: { attack: string; target: string; seed: number; chunk: number }): string {
  return `${u.attack}|${u.target}|${u.seed}|${u.chunk}`;
}

/** Every unit of the protocol over n samples, in run order: seed, attack, target, batch. */
export function workUnits(p: Protocol, n: number): WorkUnit[] {
  const units: WorkUnit[] = [];
  for (const seed of p.seeds) {
    for (const a of p.attacks) {
      for (const target of attackTargets(a)) {
        for (let chunk = 0; chunk * p.batch < n; chunk++) {
          const lo = chunk * p.batch;
          const samples = Array.from({ length: Math.min(p.batch, n - lo) }, (_, i) => lo + i);
          units.push({ attack: a.id, target, seed, chunk, samples });
        }
      }
    }
  }
  return units;
}

export interface Shard {
  /** 0-based. */
  index: number;
  count: number;
  /** Where it came from, for messages: '--shard', 'SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX' or 'none'. */
  source: string;
}

export const WHOLE: Shard = { index: 0, count: 1, source: 'none' };

/** '--shard i/n' (i from 0 to n-1). */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--shard '${s}': expected i/n, e.g. --shard 0/4 for the first of four shards`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new Error(`--shard '${s}': the shard count must be at least 1`);
  if (index >= count)
    throw new Error(`--shard '${s}': shard index ${index} is out of range; shards are numbered 0 to ${count - 1}`);
  return { index, count, source: '--shard' };
}

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`environment ${name}='${v}' is not a non-negative integer`);
  return Number(v);
}

/**
 * The shard a scheduler gave this process: a Slurm job array (SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT;
 * task ids counted from SLURM_ARRAY_TASK_MIN, so --array=1-8 works as well as 0-7) or a Kubernetes Indexed Job
 * (JOB_COMPLETION_INDEX; Kubernetes does not pass the completions count, so the manifest sets JOB_COMPLETIONS to
 * the same value as spec.completions). Null when neither is set.
 */
export function shardFromEnv(env: NodeJS.ProcessEnv = process.env): Shard | null {
  const slurmId = envInt(env, 'SLURM_ARRAY_TASK_ID');
  if (slurmId !== undefined) {
    const count = envInt(env, 'SLURM_ARRAY_TASK_COUNT');
    if (count === undefined)
      throw new Error('SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard i/n instead');
    const index = slurmId - (envInt(env, 'SLURM_ARRAY_TASK_MIN') ?? 0);
    if (index < 0 || index >= count)
      throw new Error(
        `SLURM_ARRAY_TASK_ID=${slurmId} is outside the array's ${count} tasks; submit with --array=0-${count - 1}`,
      );
    return { index, count, source: 'SLURM_ARRAY_TASK_ID' };
  }
  const k8s = envInt(env, 'JOB_COMPLETION_INDEX');
  if (k8s !== undefined) {
    const count = envInt(env, 'JOB_COMPLETIONS');
    if (count === undefined)
      throw new Error(
        'JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: set env JOB_COMPLETIONS to spec.completions ' +
          '(see docs/kubernetes/eval-job.yaml), or pass --shard i/n',
      );
    if (k8s >= count) throw new Error(`JOB_COMPLETION_INDEX=${k8s} is outside JOB_COMPLETIONS=${count}`);
    return { index: k8s, count, source: 'JOB_COMPLETION_INDEX' };
  }
  return null;
}

/** Network gradients (or forwards / 3) per image that one AutoAttack stage spends at most. */
function stageCost(a: AttackName, s: ReturnType<typeof versionPlan>['settings'], eot: number): number {
  switch (a) {
    case 'apgd-ce':
    case 'apgd-dlr':
      return s.apgdIter * s.apgdRestarts * eot;
    case 'apgd-t':
      return s.apgdIter * s.apgdTargets * s.apgdTargetedRestarts * eot;
    case 'fab':
      return s.fabIter * s.fabRestarts;
    case 'fab-t':
      return s.fabIter * s.fabTargets;
    case 'square':
      return s.squareQueries / 3; // forwards only
  }
}

/**
 * A rough weight of one unit, only to balance shards (not a prediction of seconds): network gradients per image the
 * attack spends at most, times the network calls of one pass through the target (the bare classifier 1; DiffPure
 * 1 + t/dt, counting a score network call like a classifier call). Attacks stop early on broken images, so the
 * real cost is lower; what matters is that a DiffPure unit outweighs a bare-classifier unit by orders of magnitude.
 */
export function unitCost(p: Protocol, u: WorkUnit): number {
  const spec = p.attacks.find((a) => a.id === u.attack) as AttackSpec;
  const bare = u.target === 'classifier';
  let gradients: number;
  switch (spec.attack) {
    case 'autoattack': {
      const plan = versionPlan(spec.version, spec.attacks as AttackName[] | undefined);
      const s = { ...plan.settings, ...(spec.settings ?? {}) };
      gradients = plan.attacks.reduce((sum, a) => sum + stageCost(a, s, bare ? 1 : s.apgdEot), 0);
      break;
    }
    case 'pgd-eot':
      gradients = (spec.steps ?? 200) * (bare ? 1 : (spec.eotIter ?? 20));
      break;
    case 'bpda-eot':
      gradients = (spec.steps ?? 50) * (spec.eotAttackReps ?? 15) + (spec.eotDefenseReps ?? 150) / 3;
      break;
    case 'stadv':
      gradients = (spec.nIter ?? 100) * (bare ? 1 : (spec.eotIter ?? 1));
      break;
  }
  const passes = bare ? 1 : 1 + spec.tStar / p.purifier.dt;
  return u.samples.length * gradients * passes;
}

/** The name of shardUnits' assignment, kept in the records' header: resuming under another one is refused. */
export const SHARD_RULE = 'cost/1';

/**
 * The units of one shard. Every shard computes the same assignment: units in decreasing cost (run order among
 * equals) each go to the shard with the least cost so far (lowest index among equals), then each shard runs its
 * units in run order. Plain round robin left shards idle: with 16 shards and 8 batches per (attack, target), shards
 * 0-7 took every DiffPure unit and shards 8-15 only the bare classifier's, which costs ~1/(1 + t/dt) as much.
 */
export function shardUnits(units: readonly WorkUnit[], shard: Shard, cost: (u: WorkUnit) => number): WorkUnit[] {
  if (shard.count === 1) return [...units];
  const load = new Float64Array(shard.count);
  const owner = new Int32Array(units.length);
  const order = units.map((u, k) => ({ k, c: cost(u) })).sort((a, b) => b.c - a.c || a.k - b.k);
  for (const { k, c } of order) {
    let best = 0;
    for (let i = 1; i < shard.count; i++) if ((load[i] as number) < (load[best] as number)) best = i;
    owner[k] = best;
    load[best] = (load[best] as number) + c;
  }
  return units.filter((_, k) => owner[k] === shard.index);
}
