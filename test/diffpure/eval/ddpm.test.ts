// The CelebA-HQ path in `diffpure eval`: a protocol whose purifier is DiffPure's DDPM chain (the ddpm_celebahq
// fixture's shrunk UNet, 32 px) in front of the attacks fixture's WideResNet-16-2, loaded through loadEvalModels
// as a user's protocol would be, attacked by BPDA+EOT (DiffPure's attack on this path) and by PGD-EOT through the
// exact (checkpointed) gradient of the chain, which DiffPure's no_grad code cannot give. Plus the checker's rules
// for a ddpm purifier.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { loadEvalModels } from '../../../src/diffpure/eval/load.js';
import { checkProtocol, type Protocol } from '../../../src/diffpure/eval/protocol.js';
import { RecordsFile } from '../../../src/diffpure/eval/records.js';
import { markdownTable, summarize } from '../../../src/diffpure/eval/report.js';
import { runEval } from '../../../src/diffpure/eval/runner.js';
import { WHOLE } from '../../../src/diffpure/eval/units.js';
import { initBackend } from '../../../src/tensor/index.js';
import { FIXTURES, readMeta } from '../../harness/fixtures.js';
import { ATTACKS, haveAttacks } from '../attacks/fixture.js';
import { diffpureFixtureData } from './diffpure-fixture.js';

const D = join(FIXTURES, 'ddpm_celebahq');
const dir = mkdtempSync(join(tmpdir(), 'eval-ddpm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ddpmProtocol(): Protocol {
  const eps = 4 / 255;
  const tStar = 0.003; // DiffPure's --t 3: three ancestral steps
  return checkProtocol({
    name: 'ddpm-fixture',
    description: 'ddpm_celebahq UNet (32 px) + WRN-16-2',
    data: { set: 'cifar10', sample: { rule: 'first', n: 2 } },
    classifier: {
      model: 'wrn',
      config: { depth: 16, widen_factor: 2, num_classes: 10 },
      weights: join(ATTACKS, 'model.pt'),
    },
    purifier: {
      model: 'ddpm',
      config: readMeta<{ unet: { config_used: unknown } }>(D).unet.config_used,
      weights: join(D, 'unet.pth'),
      dt: 0.001,
    },
    seeds: [0],
    batch: 2,
    attacks: [
      {
        id: 'bpda',
        attack: 'bpda-eot',
        norm: 'Linf',
        eps,
        steps: 2,
        stepSize: 0.01,
        eotAttackReps: 2,
        eotDefenseReps: 2,
        tStar,
      },
      {
        id: 'pgd',
        attack: 'pgd-eot',
        norm: 'Linf',
        eps,
        steps: 2,
        stepSize: 0.01,
        eotIter: 2,
        tStar,
        gradient: 'exact',
      },
    ],
  });
}

describe.skipIf(!haveAttacks)('diffpure eval with the DDPM purifier (CelebA-HQ path)', () => {
  test('BPDA+EOT and PGD-EOT (exact gradient of the chain) run, and the table names the DDPM steps', async () => {
    await initBackend('cpu');
    const p = ddpmProtocol();
    const models = await loadEvalModels(p, 'cpu');
    try {
      const out = join(dir, 'run');
      mkdirSync(out, { recursive: true });
      const records = RecordsFile.open(out, { protocol: p, images: 2, backend: 'cpu' }, WHOLE);
      await runEval(p, models, diffpureFixtureData(2), { records, shard: WHOLE });
      const r = summarize(p, 2, records.contents.samples, records.contents.units);
      console.log(markdownTable(r));
      expect(r.complete).toBe(true);
      const row = (id: string) => r.rows.find((x) => x.target === 'diffpure' && x.attack === id);
      expect(row('pgd')?.setting).toMatch(/3 DDPM steps, exact gradient through the DDPM chain/);
      expect(row('bpda')?.setting).toMatch(/3 DDPM steps, identity backward/);
      for (const s of records.contents.samples) expect(s.linf).toBeLessThanOrEqual(4 / 255 + 1e-6);
      // the attack moved the images: PGD's gradient through the chain is not zero
      expect(
        records.contents.samples.filter((s) => s.attack === 'pgd' && s.target === 'diffpure' && s.linf > 0),
      ).not.toHaveLength(0);
    } finally {
      models.dispose();
    }
  }, 300_000);

  test('the checker: no continuous adjoint for the DDPM chain, and t* a multiple of 0.001', () => {
    const p = ddpmProtocol() as unknown as { attacks: Record<string, unknown>[] };
    const bad = (f: (a: Record<string, unknown>) => void) => {
      const q = structuredClone(p);
      f(q.attacks[1] as Record<string, unknown>);
      return () => checkProtocol(q);
    };
    expect(bad((a) => (a.gradient = 'continuous'))).toThrow(
      /attacks\[1\]\.gradient: the ddpm purifier is a discrete chain/,
    );
    expect(bad((a) => (a.tStar = 0.0025))).toThrow(/attacks\[1\]\.tStar: .*not a multiple of 0\.001/);
  });
});
