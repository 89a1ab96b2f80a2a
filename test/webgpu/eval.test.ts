// The evaluation runner on webgpu (lavapipe in CI) with the stand-in models of test/diffpure/eval: the same seed
// gives the same records on a rerun (the numbers are reproducible from the seed on this backend too), the
// verdicts agree with the cpu run's, and every byte the run allocates comes back.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { RecordsFile, type SampleRecord } from '../../src/diffpure/eval/records.js';
import { runEval } from '../../src/diffpure/eval/runner.js';
import { WHOLE } from '../../src/diffpure/eval/units.js';
import { initBackend } from '../../src/tensor/index.js';
import { standInData, standInModels, standInProtocol } from '../diffpure/eval/stand-in.js';
import { expectNoLeak } from './helpers.js';
import { gpu } from './setup.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-webgpu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const p = { ...standInProtocol(), seeds: [5] };

async function records(backend: string, name: string, models = standInModels(backend)): Promise<SampleRecord[]> {
  const data = standInData(standInModels('cpu'));
  const out = join(dir, name);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(out, { recursive: true });
  const r = RecordsFile.open(out, { protocol: p, images: 12, backend }, WHOLE);
  await runEval(p, models, data, { records: r, shard: WHOLE });
  return r.contents.samples;
}

const verdicts = (rs: SampleRecord[]) => rs.map((s) => `${s.attack}/${s.target}/${s.sample}:${s.correct}${s.robust}`);

describe.skipIf(!gpu)('diffpure eval on webgpu', () => {
  test('reproducible from the seed, the same verdicts as cpu, no leak', async () => {
    await initBackend('cpu');
    const cpu = await records('cpu', 'cpu');
    const models = standInModels('webgpu'); // its weight stays alive across the runs
    const a = await expectNoLeak('eval run', () => records('webgpu', 'a', models));
    const b = await records('webgpu', 'b', models);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    expect(verdicts(a)).toEqual(verdicts(cpu));
    for (let i = 0; i < a.length; i++) {
      expect(Math.abs((a[i] as SampleRecord).linf - (cpu[i] as SampleRecord).linf)).toBeLessThan(1e-5);
    }
  }, 300_000);
});
