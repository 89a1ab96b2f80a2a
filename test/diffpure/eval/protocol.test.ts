// Protocol presets and checks, work units and shards (including the Slurm and Kubernetes environments).

import { describe, expect, test } from 'vitest';
import { checkProtocol, loadProtocol, PRESETS } from '../../../src/diffpure/eval/protocol.js';
import {
  parseShard,
  sampleIndices,
  shardFromEnv,
  shardUnits,
  unitCost,
  unitKey,
  type WorkUnit,
  workUnits,
} from '../../../src/diffpure/eval/units.js';
import { standInProtocol } from './stand-in.js';

describe('protocols', () => {
  test('every preset passes the checks, and fmnist-quick is among them', () => {
    expect(Object.keys(PRESETS)).toEqual(
      expect.arrayContaining(['fmnist-quick', 'fmnist', 'diffpure', 'robustbench', 'lee-kim']),
    );
    for (const name of Object.keys(PRESETS)) expect(loadProtocol(name).name).toBe(name);
  });

  test("the diffpure preset is the paper's: 64 x data seeds 0..7, seeds 121..123, min(rand, standard)", () => {
    const p = loadProtocol('diffpure');
    expect(p.data.sample).toEqual({ rule: 'diffpure', perDataSeed: 64, dataSeeds: [0, 1, 2, 3, 4, 5, 6, 7] });
    expect(p.seeds).toEqual([121, 122, 123]);
    const linf = p.attacks.filter((a) => a.attack === 'autoattack' && a.norm === 'Linf');
    expect(linf.map((a) => a.tStar)).toEqual([0.1, 0.1]);
    expect(p.report?.min?.[0]?.of).toEqual(['aa-standard-linf', 'aa-rand-linf']);
  });

  test('bad protocols are refused with the field named', () => {
    expect(() => loadProtocol('fmnist-quik')).toThrow(/no such preset.*fmnist-quick.*--print/);
    const bad = (f: (p: Record<string, unknown>) => void) => {
      const p = structuredClone(standInProtocol()) as unknown as Record<string, unknown>;
      f(p);
      return () => checkProtocol(p);
    };
    expect(bad((p) => (((p.attacks as { eps: unknown }[])[0] as { eps: unknown }).eps = -1))).toThrow(
      /attacks\[0\]\.eps/,
    );
    expect(bad((p) => (p.seeds = []))).toThrow(/seeds/);
    expect(bad((p) => (p.seeds = [1, 1]))).toThrow(/seeds.*twice/);
    expect(bad((p) => (((p.attacks as { id: string }[])[1] as { id: string }).id = 'aa-standard'))).toThrow(
      /names two attacks/,
    );
    expect(bad((p) => (((p.report as { min: { of: string[] }[] }).min[0] as { of: string[] }).of = ['x']))).toThrow(
      /report\.min\[0\]\.of/,
    );
    expect(bad((p) => (((p.attacks as { verdict?: string }[])[0] as { verdict?: string }).verdict = 'most:3'))).toThrow(
      /attacks\[0\]\.verdict/,
    );
    expect(
      bad((p) => {
        (p.attacks as unknown[]).push({
          id: 'b',
          attack: 'bpda-eot',
          norm: 'Linf',
          eps: 0.1,
          tStar: 0.1,
          targets: ['classifier'],
        });
      }),
    ).toThrow(/BPDA/);
    expect(bad((p) => ((p.data as { set: string }).set = 'mnist'))).toThrow(/data\.set.*fashion-mnist/);
    expect(bad((p) => (((p.attacks as Record<string, unknown>[])[1] as Record<string, unknown>).eotIter = 40))).toThrow(
      /attacks\[1\]\.eotIter: unknown field/,
    );
    expect(
      bad(
        (p) =>
          ((
            ((p.attacks as Record<string, unknown>[])[0] as Record<string, unknown>).settings as Record<string, unknown>
          ).apgdEOT = 2),
      ),
    ).toThrow(/settings\.apgdEOT: unknown field/);
    expect(
      bad(
        (p) =>
          ((
            ((p.attacks as Record<string, unknown>[])[0] as Record<string, unknown>).settings as Record<string, unknown>
          ).apgdIter = 2.5),
      ),
    ).toThrow(/apgdIter: expected a positive integer/);
    expect(
      bad(
        (p) =>
          (((p.attacks as Record<string, unknown>[])[0] as Record<string, unknown>).targets = ['diffpure', 'diffpure']),
      ),
    ).toThrow(/names a target twice/);
    expect(bad((p) => (((p.attacks as Record<string, unknown>[])[0] as Record<string, unknown>).id = 'a/b'))).toThrow(
      /names files/,
    );
    expect(bad((p) => (p.report = { accuracy: 'twice' }))).toThrow(/report\.accuracy: expected one of attack, recheck/);
    expect(bad((p) => (p.report = { minimum: [] }))).toThrow(/report\.minimum: unknown field/);
    expect(loadProtocol('robustbench').report?.accuracy).toBe('recheck');
  });
});

describe('work units and shards', () => {
  test("DiffPure's sample list is the NumPy subsets in data-seed order", () => {
    const idx = sampleIndices({ rule: 'diffpure', perDataSeed: 4, dataSeeds: [0, 1] }, 10000);
    expect(idx).toHaveLength(8);
    expect(sampleIndices({ rule: 'first', n: 3 }, 10)).toEqual([0, 1, 2]);
    expect(() => sampleIndices({ rule: 'first', n: 11 }, 10)).toThrow(/holds 10/);
  });

  test('units cover every (attack, target, seed, image) once; shards partition them', () => {
    const p = standInProtocol();
    const units = workUnits(p, 12);
    // 3 seeds x (2 AA x 2 targets + pgd x 2 targets) x 3 batches of 5, 5, 2
    expect(units).toHaveLength(3 * 6 * 3);
    expect(units.slice(0, 3).map((u) => u.samples.length)).toEqual([5, 5, 2]);
    const cost = (u: WorkUnit) => unitCost(p, u);
    const shards = [0, 1, 2].map((i) => shardUnits(units, { index: i, count: 3, source: 'test' }, cost));
    const keys = shards.flat().map(unitKey);
    expect(new Set(keys).size).toBe(units.length);
    expect(keys.length).toBe(units.length);
    // each shard runs its units in run order
    for (const s of shards) {
      const pos = s.map((u) => units.indexOf(u));
      expect(pos).toEqual([...pos].sort((a, b) => a - b));
    }
  });

  test('shards balance the costly DiffPure units (round robin gave them all to 6 of 12 shards here)', () => {
    const p = standInProtocol();
    const units = workUnits(p, 12);
    const cost = (u: WorkUnit) => unitCost(p, u);
    const diffpure = units.filter((u) => u.target === 'diffpure');
    // a DiffPure unit outweighs the bare classifier's on the same batch by 1 + t*/dt (and its EOT)
    const [d0, c0] = [units.find((u) => u.target === 'diffpure'), units.find((u) => u.target === 'classifier')];
    expect(cost(d0 as WorkUnit) / cost(c0 as WorkUnit)).toBeGreaterThanOrEqual(1 + p.attacks[0]!.tStar / p.purifier.dt);
    const split = (count: number) =>
      Array.from({ length: count }, (_, i) => shardUnits(units, { index: i, count, source: 'test' }, cost));
    const roundRobin = (count: number) =>
      Array.from({ length: count }, (_, i) => units.filter((_, k) => k % count === i));
    const withDiffpure = (shards: WorkUnit[][]) => shards.filter((s) => s.some((u) => u.target === 'diffpure')).length;
    expect(withDiffpure(split(12))).toBe(12);
    expect(withDiffpure(roundRobin(12))).toBe(6);
    expect(
      split(12)
        .flat()
        .filter((u) => u.target === 'diffpure'),
    ).toHaveLength(diffpure.length);
    const loads = split(4).map((s) => s.reduce((a, u) => a + cost(u), 0));
    expect(Math.max(...loads) / Math.min(...loads)).toBeLessThan(1.25);
  });

  test('--shard and the Slurm / Kubernetes environment', () => {
    expect(parseShard('2/4')).toMatchObject({ index: 2, count: 4 });
    expect(() => parseShard('4/4')).toThrow(/out of range.*0 to 3/);
    expect(() => parseShard('1-4')).toThrow(/expected i\/n/);
    expect(shardFromEnv({})).toBeNull();
    expect(shardFromEnv({ SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4' })).toMatchObject({
      index: 3,
      count: 4,
      source: 'SLURM_ARRAY_TASK_ID',
    });
    // --array=1-4: ids start at SLURM_ARRAY_TASK_MIN
    expect(
      shardFromEnv({ SLURM_ARRAY_TASK_ID: '4', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1' }),
    ).toMatchObject({ index: 3, count: 4 });
    expect(() => shardFromEnv({ SLURM_ARRAY_TASK_ID: '1' })).toThrow(/SLURM_ARRAY_TASK_COUNT/);
    expect(shardFromEnv({ JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '2' })).toMatchObject({ index: 0, count: 2 });
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: '0' })).toThrow(/JOB_COMPLETIONS/);
    expect(() => shardFromEnv({ JOB_COMPLETION_INDEX: '2', JOB_COMPLETIONS: '2' })).toThrow(/outside/);
  });
});
