// Every adaptive attack against DiffPure's defended classifier (the fixtures' score model and WideResNet, t* 0.002),
// through the eval runner on cpu: PGD-EOT with exact and with continuous gradients, BPDA+EOT and StAdv all run and
// reproduce from the seed, and BPDA (identity backward) leaves at least as many images robust as PGD-EOT with the
// exact gradient on the same images: the expected ordering, printed with the numbers.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { RecordsFile } from '../../../src/diffpure/eval/records.js';
import { markdownTable, summarize } from '../../../src/diffpure/eval/report.js';
import { runEval } from '../../../src/diffpure/eval/runner.js';
import { WHOLE } from '../../../src/diffpure/eval/units.js';
import { initBackend } from '../../../src/tensor/index.js';
import {
  adaptiveProtocol,
  diffpureFixtureData,
  diffpureFixtureModels,
  haveDiffPureFixtures,
} from './diffpure-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-adaptive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!haveDiffPureFixtures)('adaptive attacks on DiffPure through diffpure eval (fixtures, cpu)', () => {
  test('all run, reproduce from the seed, and BPDA >= PGD-EOT (exact) in robust accuracy', async () => {
    await initBackend('cpu');
    const p = adaptiveProtocol();
    const models = await diffpureFixtureModels('cpu');
    const data = diffpureFixtureData(4);
    const run = async (name: string, q = p) => {
      const out = join(dir, name);
      mkdirSync(out, { recursive: true });
      const records = RecordsFile.open(out, { protocol: q, images: 4, backend: 'cpu' }, WHOLE);
      await runEval(q, models, data, { records, shard: WHOLE });
      return records.contents;
    };
    try {
      const a = await run('a');
      const r = summarize(p, 4, a.samples, a.units);
      console.log(markdownTable(r));
      const row = (id: string) => r.rows.find((x) => x.target === 'diffpure' && x.attack === id);
      for (const id of ['pgd-exact', 'pgd-continuous', 'bpda', 'stadv']) expect(row(id)?.done).toBe(1);
      expect(row('bpda')?.robust.mean).toBeGreaterThanOrEqual(row('pgd-exact')?.robust.mean as number);
      // every perturbation inside its ball
      for (const s of a.samples.filter((x) => x.attack !== 'stadv')) expect(s.linf).toBeLessThanOrEqual(2 / 255 + 1e-6);
      // the same seed again: the same records, bit for bit (PGD-EOT exact, the costliest path)
      const q = { ...p, attacks: p.attacks.filter((x) => x.id === 'pgd-exact') };
      const b = await run('b', q);
      const pick = (ss: typeof a.samples) => JSON.stringify(ss.filter((s) => s.attack === 'pgd-exact'));
      expect(pick(b.samples)).toBe(pick(a.samples));
    } finally {
      models.dispose();
    }
  }, 600_000);
});
