// The adaptive attacks against DiffPure's defended classifier on webgpu (lavapipe in CI), through the eval runner:
// the fixtures' score model and WideResNet at t* 0.002 on one image, PGD-EOT with exact and with continuous
// gradients and BPDA+EOT at one step each (lavapipe is slow: the full protocol runs on cpu in
// test/diffpure/eval/adaptive.test.ts).
// Reproducible from the seed on this backend, BPDA >= PGD-EOT (exact) in robust accuracy, and every byte comes back.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { RecordsFile } from '../../src/diffpure/eval/records.js';
import { summarize } from '../../src/diffpure/eval/report.js';
import { runEval } from '../../src/diffpure/eval/runner.js';
import { WHOLE } from '../../src/diffpure/eval/units.js';
import {
  adaptiveProtocol,
  diffpureFixtureData,
  diffpureFixtureModels,
  haveDiffPureFixtures,
} from '../diffpure/eval/diffpure-fixture.js';
import { expectNoLeak } from './helpers.js';
import { gpu } from './setup.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-adaptive-webgpu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!gpu || !haveDiffPureFixtures)('adaptive attacks on DiffPure on webgpu (fixtures)', () => {
  test('PGD-EOT (exact, continuous) and BPDA+EOT: reproducible, BPDA >= PGD-EOT exact, no leak', async () => {
    const base = adaptiveProtocol();
    const p = {
      ...base,
      data: { ...base.data, sample: { rule: 'first' as const, n: 1 } },
      batch: 1,
      attacks: base.attacks
        .filter((a) => a.id === 'pgd-exact' || a.id === 'pgd-continuous' || a.id === 'bpda')
        .map((a) => ({
          ...a,
          targets: ['diffpure' as const],
          steps: 1,
          eotIter: 1,
          eotAttackReps: 1,
          eotDefenseReps: 2,
        })),
    };
    const models = await diffpureFixtureModels('webgpu');
    const data = diffpureFixtureData(1);
    const run = async (name: string) => {
      const out = join(dir, name);
      mkdirSync(out, { recursive: true });
      const records = RecordsFile.open(out, { protocol: p, images: 1, backend: 'webgpu' }, WHOLE);
      await runEval(p, models, data, { records, shard: WHOLE });
      return records.contents;
    };
    try {
      const a = await expectNoLeak('adaptive attacks', () => run('a'));
      const r = summarize(p, 1, a.samples, a.units);
      const row = (id: string) => r.rows.find((x) => x.attack === id);
      console.log(r.rows.map((x) => `${x.attack}: standard ${x.standard.mean}%, robust ${x.robust.mean}%`).join('\n'));
      expect(row('bpda')?.robust.mean).toBeGreaterThanOrEqual(row('pgd-exact')?.robust.mean as number);
      const b = await run('b');
      expect(JSON.stringify(b.samples)).toBe(JSON.stringify(a.samples));
      expect(a.samples.every((s) => s.linf <= 2 / 255 + 1e-6)).toBe(true);
    } finally {
      models.dispose();
    }
  }, 600_000);
});
