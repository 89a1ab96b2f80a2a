// The protocol runner on stand-in models: records per image, the table (mean ± std over seeds, the min rule),
// verdict rules, resume after a torn write, 3 shards merged = 1 run, and a changed protocol refused.

import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AttackModel, Images } from '../../../src/diffpure/attacks/model.js';
import { KeyedRandom } from '../../../src/diffpure/attacks/random.js';
import { correctUnder } from '../../../src/diffpure/attacks/verdicts.js';
import { RecordsFile, readRecords } from '../../../src/diffpure/eval/records.js';
import { markdownTable, type Results, summarize } from '../../../src/diffpure/eval/report.js';
import { advPath, runEval } from '../../../src/diffpure/eval/runner.js';
import { WHOLE } from '../../../src/diffpure/eval/units.js';
import { mergeRecords } from '../../../src/diffpure/eval-command.js';
import { readNpy } from '../../../src/nn/io/index.js';
import { floor, getBackend, initBackend, mul, setBackend } from '../../../src/tensor/index.js';
import { countingBackend } from '../../sde/helpers.js';
import { standInData, standInModels, standInProtocol } from './stand-in.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-runner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend('cpu');
});

const p = standInProtocol();
const identity = { protocol: p, images: 12, backend: 'cpu' };
/** The table's numbers without the timing (which differs run to run). */
const numbers = (r: Results) => JSON.stringify({ ...r, seconds: 0 });

async function wholeRun(out: string): Promise<{ results: Results; records: RecordsFile }> {
  const models = standInModels();
  const data = standInData(models);
  const records = RecordsFile.open(out, identity, WHOLE);
  await runEval(p, models, data, { records, shard: WHOLE, advDir: join(out, 'adv') });
  return { results: summarize(p, 12, records.contents.samples, records.contents.units), records };
}

let one: { results: Results; records: RecordsFile };
beforeAll(async () => {
  const a = join(dir, 'one');
  rmSync(a, { recursive: true, force: true });
  const { mkdirSync } = await import('node:fs');
  mkdirSync(a, { recursive: true });
  one = await wholeRun(a);
}, 120_000);

describe('eval runner', () => {
  test("AutoAttack's log beside each AutoAttack unit's images, its accuracies those of the unit's records", () => {
    const adv = join(dir, 'one', 'adv');
    const u = { attack: 'aa-standard', target: 'diffpure', seed: 5, chunk: 0 };
    const log = readFileSync(advPath(adv, u).replace(/\.npy$/, '.log'), 'utf8').split('\n');
    expect(log[0]).toMatch(/^using /);
    const rows = one.records.contents.samples.filter(
      (s) => s.attack === u.attack && s.target === u.target && s.seed === u.seed && s.chunk === u.chunk,
    );
    const pct = (k: number) => `${((100 * k) / rows.length).toFixed(2)}%`;
    expect(log).toContain(`initial accuracy: ${pct(rows.filter((s) => s.correct).length)}`);
    expect(log).toContain(`robust accuracy: ${pct(rows.filter((s) => s.robust).length)}`);
    // PGD-EOT has no log of its own: no file
    expect(() => readFileSync(advPath(adv, { ...u, attack: 'pgd' }).replace(/\.npy$/, '.log'))).toThrow(/ENOENT/);
  });

  test('one record per image x seed x attack x model, and the table from them', () => {
    const r = one.results;
    expect(r.complete).toBe(true);
    expect(one.records.contents.samples).toHaveLength(12 * 3 * 3 * 2);
    const s = one.records.contents.samples[0];
    expect(s).toMatchObject({
      type: 'sample',
      attack: 'aa-standard',
      target: 'diffpure',
      seed: 5,
      sample: 0,
      index: 100,
    });
    expect(s?.linf).toBeLessThanOrEqual(0.15 + 1e-6);
    // 2 targets x (3 attacks + 1 min row)
    expect(r.rows.map((x) => `${x.target}/${x.attack}`)).toEqual([
      'diffpure/aa-standard',
      'diffpure/aa-rand',
      'diffpure/pgd',
      'diffpure/aa (min)',
      'classifier/aa-standard',
      'classifier/aa-rand',
      'classifier/pgd',
      'classifier/aa (min)',
    ]);
    for (const row of r.rows) {
      expect(row.perSeed).toHaveLength(3);
      const rob = row.perSeed.map((x) => x.robust);
      const mean = rob.reduce((a, b) => a + b, 0) / 3;
      expect(row.robust.mean).toBeCloseTo(mean, 10);
      expect(row.robust.std).toBeCloseTo(Math.sqrt(rob.reduce((a, b) => a + (b - mean) ** 2, 0) / 3), 10);
      // AutoAttack counts robust only among the clean-correct (PGD-EOT does not: its rows are not bounded)
      if (row.attack.startsWith('aa')) for (const x of row.perSeed) expect(x.robust).toBeLessThanOrEqual(x.standard);
    }
    // the min rule takes the lower robust accuracy of the two AutoAttack runs, seed by seed
    const row = (t: string, a: string) => r.rows.find((x) => x.target === t && x.attack === a);
    for (const seed of [0, 1, 2]) {
      const m = row('diffpure', 'aa (min)')?.perSeed[seed]?.robust;
      expect(m).toBe(
        Math.min(
          row('diffpure', 'aa-standard')?.perSeed[seed]?.robust as number,
          row('diffpure', 'aa-rand')?.perSeed[seed]?.robust as number,
        ),
      );
    }
    // the bare classifier is deterministic: its clean accuracy is the same for every seed and attack (10 of 12)
    for (const x of r.rows.filter((y) => y.target === 'classifier')) expect(x.standard.mean).toBeCloseTo(1000 / 12, 10);
    // eps 0.15 on a linear model breaks it
    expect(row('classifier', 'aa-standard')?.robust.mean).toBeLessThan(
      row('classifier', 'aa-standard')?.standard.mean as number,
    );
    const md = markdownTable(r);
    expect(md).toMatch(/\| DiffPure \| aa \(min\) \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| 18\/18 \|/);
    expect(md).toMatch(
      /pgd: PGD-EOT, L2 eps 0.5 \(steps 3, eotIter 2\); t\* 0.1, dt 0.01, continuous gradient; majority vote over 3 passes/,
    );
  });

  test('the unit lines record the settings the bare classifier ran with (one EOT sample, one pass)', () => {
    const units = [...one.records.contents.units.values()];
    const rand = units.find((u) => u.attack === 'aa-rand' && u.target === 'classifier');
    expect(rand?.settings).toMatchObject({ apgdEot: 1 });
    const pgd = units.find((u) => u.attack === 'pgd' && u.target === 'diffpure');
    expect(pgd?.settings).toMatchObject({ eotIter: 2, verdict: { rule: 'majority', n: 3 } });
  });

  test('a torn last write is dropped and its unit rerun: the same records as an uninterrupted run', async () => {
    const b = join(dir, 'torn');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(b, { recursive: true });
    const path = join(b, 'records.jsonl');
    // the first 10 units as the whole run wrote them, then 3 sample lines of unit 11 and half a line
    const lines = readFileSync(join(dir, 'one', 'records.jsonl'), 'utf8')
      .trim()
      .split('\n');
    let units = 0;
    let cut = 0;
    for (let i = 1; i < lines.length && units < 10; i++) {
      if (JSON.parse(lines[i] as string).type === 'unit') units++;
      cut = i;
    }
    writeFileSync(path, `${lines.slice(0, cut + 4).join('\n')}\n${(lines[cut + 4] as string).slice(0, 20)}`);
    const c = readRecords(path);
    expect(c.units.size).toBe(10);
    expect(c.dropped).toBe(4);
    const r = await wholeRun(b);
    expect(numbers(r.results)).toBe(numbers(one.results));
    const sorted = (f: string) =>
      readFileSync(f, 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l.includes('"sample"'))
        .sort();
    expect(sorted(path)).toEqual(sorted(join(dir, 'one', 'records.jsonl')));
  }, 120_000);

  test('3 shards merged give the table of one run, bit for bit', async () => {
    const c = join(dir, 'shards');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(c, { recursive: true });
    const models = standInModels();
    const data = standInData(models);
    for (const index of [2, 0, 1]) {
      const shard = { index, count: 3, source: 'test' };
      const records = RecordsFile.open(c, identity, shard);
      await runEval(p, models, data, { records, shard });
    }
    const m = mergeRecords([c]);
    expect(m.files).toHaveLength(3);
    expect(numbers(m.results)).toBe(numbers(one.results));
    // a shard file of the earlier round-robin assignment (no rule in its header) is not resumed under this one
    const f = join(c, 'records-0-of-3.jsonl');
    const [head, ...rest] = readFileSync(f, 'utf8').split('\n');
    const h = JSON.parse(head as string);
    delete h.shard.rule;
    const old = join(dir, 'old-split');
    mkdirSync(old, { recursive: true });
    writeFileSync(join(old, 'records-0-of-3.jsonl'), [JSON.stringify(h), ...rest].join('\n'));
    expect(() => RecordsFile.open(old, identity, { index: 0, count: 3, source: 'test' })).toThrow(
      /shard assignment 'round-robin'.*'cost\/1'.*--fresh/,
    );
    // a missing shard gives an incomplete table that says so
    rmSync(join(c, 'records-1-of-3.jsonl'));
    const part = mergeRecords([c]).results;
    expect(part.complete).toBe(false);
    expect(markdownTable(part)).toMatch(/incomplete/);
  }, 120_000);

  test('records of another protocol are refused, naming what differs', () => {
    const q = structuredClone(p);
    (q.attacks[0] as { eps: number }).eps = 0.2;
    expect(() => RecordsFile.open(join(dir, 'one'), { ...identity, protocol: q }, WHOLE)).toThrow(
      /another run \(differing: protocol\.attacks\[0\]\.eps\).*--fresh/,
    );
    expect(() => RecordsFile.open(join(dir, 'one'), { ...identity, backend: 'webgpu' }, WHOLE)).toThrow(/backend/);
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"type":"header","format":"x"}\n');
    expect(() => readRecords(bad)).toThrow(/not a diffpure eval records file/);
    // damage in the middle of a file (not a torn last line) is an error, not a silent drop
    const mid = join(dir, 'mid.jsonl');
    const lines = readFileSync(join(dir, 'one', 'records.jsonl'), 'utf8')
      .trim()
      .split('\n');
    writeFileSync(mid, `${lines.slice(0, 3).join('\n')}\ngarbage\n${lines.slice(3, 6).join('\n')}\n`);
    expect(() => readRecords(mid)).toThrow(/mid\.jsonl:4: not a JSON line; this records file is damaged/);
    appendFileSync(bad, '');
  });

  test("the attack layer's sanity flags reach the table: Square beating a gradient-masked classifier", async () => {
    const d = join(dir, 'masked');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(d, { recursive: true });
    const base = standInModels();
    // floor(8x)/8 before the linear layer: the same predictions up to quantisation, zero input gradient
    const masked = {
      ...base,
      classify: (x: Parameters<typeof base.classify>[0]) => base.classify(mul(floor(mul(x, 8)), 1 / 8)),
    };
    const q = structuredClone(p);
    q.seeds = [1];
    q.attacks = [
      {
        id: 'masked',
        attack: 'autoattack',
        version: 'custom',
        attacks: ['apgd-ce', 'square'],
        norm: 'Linf',
        eps: 0.3,
        tStar: 0.1,
        targets: ['classifier'],
        settings: { apgdIter: 5, squareQueries: 300 },
      },
    ];
    q.report = {};
    const records = RecordsFile.open(d, { protocol: q, images: 12, backend: 'cpu' }, WHOLE);
    await runEval(q, masked, standInData(masked), { records, shard: WHOLE });
    const r = summarize(q, 12, records.contents.samples, records.contents.units);
    expect(r.rows[0]?.robust.mean).toBeLessThan(r.rows[0]?.standard.mean as number);
    expect(r.warnings.join('\n')).toMatch(/masked on the classifier: Square Attack has decreased the robust accuracy/);
    expect(markdownTable(r)).toMatch(/Sanity flags from the attacks:[\s\S]*Square Attack has decreased/);
  }, 120_000);

  test("report.accuracy 'recheck' counts RobustBench's extra pass (pred), not the attack's verdicts", () => {
    const q: typeof p = { ...p, report: { ...p.report, accuracy: 'recheck' } };
    const samples = one.records.contents.samples;
    const r = summarize(q, 12, samples, one.records.contents.units);
    let differs = 0;
    for (const row of r.rows.filter((x) => q.attacks.some((a) => a.id === x.attack))) {
      expect(row.setting).toMatch(/RobustBench's re-check/);
      for (const ps of row.perSeed) {
        const rs = samples.filter((x) => x.attack === row.attack && x.target === row.target && x.seed === ps.seed);
        const pct = (f: (x: (typeof rs)[number]) => boolean) => (100 * rs.filter(f).length) / rs.length;
        expect(ps.standard).toBe(pct((x) => x.pred.clean === x.label));
        expect(ps.robust).toBe(pct((x) => x.pred.adv === x.label));
        if (ps.robust !== pct((x) => x.robust) || ps.standard !== pct((x) => x.correct)) differs++;
      }
    }
    // the stand-in DiffPure is stochastic: one more pass does not always agree with the attack's own count
    expect(differs).toBeGreaterThan(0);
  });

  test('a run holds no tensor after it returns (counting backend)', async () => {
    const be = countingBackend();
    const prev = getBackend().name;
    await setBackend('cpu-counting');
    try {
      const d = join(dir, 'counting');
      const { mkdirSync } = await import('node:fs');
      mkdirSync(d, { recursive: true });
      const models = standInModels('cpu-counting');
      const data = standInData(models);
      const base = be.live;
      const q = { ...p, seeds: [9] };
      const records = RecordsFile.open(d, { protocol: q, images: 12, backend: 'cpu-counting' }, WHOLE);
      await runEval(q, models, data, { records, shard: WHOLE });
      expect(be.live).toBe(base);
    } finally {
      await setBackend(prev);
    }
  }, 120_000);

  test("StAdv judged by the protocol's verdict rule (majority of 3), not its own single pass", async () => {
    const d = join(dir, 'stadv');
    mkdirSync(d, { recursive: true });
    const models = standInModels('cpu', 0.3);
    const data = standInData(models);
    const q = structuredClone(p);
    q.seeds = [2];
    q.report = {};
    q.attacks = [
      {
        id: 'st',
        attack: 'stadv',
        bound: 0.2,
        nIter: 2,
        eotIter: 2,
        tStar: 0.1,
        verdict: 'majority:3',
        targets: ['diffpure'],
      },
    ];
    const records = RecordsFile.open(d, { protocol: q, images: 12, backend: 'cpu' }, WHOLE);
    await runEval(q, models, data, { records, shard: WHOLE, advDir: join(d, 'adv') });
    expect([...records.contents.units.values()][0]?.settings).toMatchObject({ verdict: { rule: 'majority', n: 3 } });
    // recompute both verdicts: a majority over 3 keyed passes of the clean and of the returned images
    const purify = models.purifier({ tStar: 0.1, dt: 0.01, gradient: 'continuous' });
    const model: AttackModel = { backend: 'cpu', classify: (v, k) => models.classify(purify(v, k)) };
    const rule = { rule: 'majority' as const, n: 3 };
    const rs = [...records.contents.samples].sort((a, b) => a.sample - b.sample);
    const ids = rs.map((r) => r.sample);
    const judged = async (which: string) => {
      const rows: number[] = [];
      const imgs: Float32Array[] = [];
      for (const chunk of [0, 1, 2]) {
        const a = readNpy(advPath(join(d, 'adv'), { attack: 'st', target: 'diffpure', seed: 2, chunk }));
        imgs.push(Float32Array.from(a.data));
        rows.push(a.shape[0] as number);
      }
      const adv: Images = { data: Float32Array.from(imgs.flatMap((x) => Array.from(x))), shape: [12, 1, 4, 4] };
      return correctUnder(model, which === 'clean' ? data.images : adv, data.labels, ids, rule, new KeyedRandom(2), [
        which === 'clean' ? 'eval-clean' : 'eval-verdict',
        'st',
      ]);
    };
    expect(rs.map((r) => r.correct)).toEqual(await judged('clean'));
    expect(rs.map((r) => r.robust)).toEqual(await judged('adv'));
  }, 120_000);
});
