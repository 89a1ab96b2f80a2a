// What a protocol names on disk: your own images as .npy (checked: shape, [0, 1], labels), DiffPure's subset over
// them, and the errors for missing data and checkpoints.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { loadEvalData, loadEvalModels } from '../../../src/diffpure/eval/load.js';
import { loadProtocol, type Protocol } from '../../../src/diffpure/eval/protocol.js';
import { writeNpy } from '../../../src/nn/io/index.js';
import { dispose, fromArray, tidy } from '../../../src/tensor/index.js';
import { readMeta } from '../../harness/fixtures.js';
import { DDPMPP } from '../../nn/fixture-helpers.js';
import { ATTACKS, haveAttacks } from '../attacks/fixture.js';
import { standInProtocol } from './stand-in.js';

const dir = mkdtempSync(join(tmpdir(), 'eval-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function npyProtocol(x: string, y: string, sample: Protocol['data']['sample']): Protocol {
  return { ...standInProtocol(), data: { set: 'npy', x, y, sample } };
}

test('.npy images: the sample rule picks rows, labels follow, bad files are named', () => {
  const n = 6;
  const x = Float32Array.from({ length: n * 2 * 2 }, (_, i) => (i % 7) / 7);
  writeNpy(join(dir, 'x.npy'), x, [n, 1, 2, 2]);
  writeNpy(join(dir, 'y.npy'), Float32Array.from([0, 1, 2, 0, 1, 2]), [n]);
  const d = loadEvalData(npyProtocol(join(dir, 'x.npy'), join(dir, 'y.npy'), { rule: 'first', n: 3 }));
  expect(d.images.shape).toEqual([3, 1, 2, 2]);
  expect(Array.from(d.labels)).toEqual([0, 1, 2]);
  expect(d.classes).toEqual(['0', '1', '2']);
  const s = loadEvalData(
    npyProtocol(join(dir, 'x.npy'), join(dir, 'y.npy'), { rule: 'diffpure', perDataSeed: 2, dataSeeds: [0, 1] }),
  );
  expect(s.indices).toHaveLength(4);
  for (const [k, i] of s.indices.entries()) {
    expect(s.labels[k]).toBe(i % 3);
    expect(Array.from(s.images.data.subarray(k * 4, k * 4 + 4))).toEqual(Array.from(x.subarray(i * 4, i * 4 + 4)));
  }
  writeNpy(
    join(dir, 'big.npy'),
    Float32Array.from(x, (v) => v * 255),
    [n, 1, 2, 2],
  );
  expect(() => loadEvalData(npyProtocol(join(dir, 'big.npy'), join(dir, 'y.npy'), { rule: 'first', n: 3 }))).toThrow(
    /images must lie in \[0, 1\] \(divide 8-bit pixels by 255\)/,
  );
  writeNpy(join(dir, 'y5.npy'), Float32Array.from([0, 1, 2, 0, 1]), [5]);
  expect(() => loadEvalData(npyProtocol(join(dir, 'x.npy'), join(dir, 'y5.npy'), { rule: 'first', n: 3 }))).toThrow(
    /data\.y .* expected \[6\], one label per image/,
  );
  expect(() => loadEvalData(npyProtocol(join(dir, 'none.npy'), join(dir, 'y.npy'), { rule: 'first', n: 3 }))).toThrow(
    /data\.x '.*none\.npy' not found/,
  );
});

test('missing data sets and checkpoints name the option that fixes them', async () => {
  expect(() => loadEvalData(loadProtocol('diffpure'))).toThrow(/--data-dir/);
  const p = loadProtocol('diffpure');
  await expect(loadEvalModels(p, 'cpu')).rejects.toThrow(
    /classifier\.weights 'pretrained\/cifar10\/Linf\/Standard\.pt' not found.*--classifier-weights/,
  );
});

test.skipIf(!haveAttacks)('a protocol that attacks only the bare classifier loads no score model', async () => {
  const base = standInProtocol();
  const p: Protocol = {
    ...base,
    classifier: {
      model: 'wrn',
      config: { depth: 16, widen_factor: 2, num_classes: 10 },
      weights: join(ATTACKS, 'model.pt'),
    },
    purifier: { ...base.purifier, weights: join(dir, 'no-such-score.pth') },
    attacks: base.attacks.map((a) => ({ ...a, targets: ['classifier' as const] })),
  };
  const models = await loadEvalModels(p, 'cpu');
  try {
    expect(() => models.purifier({ tStar: 0.1, dt: 0.01, gradient: 'continuous' })).toThrow(
      /attacks the bare classifier only, so no score model was loaded/,
    );
  } finally {
    models.dispose();
  }
  // with DiffPure among the targets the same protocol needs the checkpoint, and says so
  await expect(loadEvalModels({ ...p, attacks: base.attacks }, 'cpu')).rejects.toThrow(
    /purifier\.weights .*no-such-score\.pth' not found.*--score-weights/,
  );
});

test.skipIf(!haveAttacks)('a ddpmpp purifier and a WRN from their files: the defended model runs', async () => {
  const base = standInProtocol();
  const p: Protocol = {
    ...base,
    classifier: {
      model: 'wrn',
      config: { depth: 16, widen_factor: 2, num_classes: 10 },
      weights: join(ATTACKS, 'model.pt'),
    },
    purifier: {
      model: 'ddpmpp',
      config: readMeta<{ config: unknown }>(DDPMPP).config,
      weights: join(DDPMPP, 'checkpoint.pth'),
      dt: 0.001,
    },
  };
  const models = await loadEvalModels(p, 'cpu');
  try {
    const purify = models.purifier({ tStar: 0.002, dt: 0.001, gradient: 'continuous' });
    const x = fromArray(new Float32Array(2 * 3 * 32 * 32).fill(0.5), [2, 3, 32, 32]);
    const logits = tidy(() => models.classify(purify(x, [1, 2])));
    expect(logits.shape).toEqual([2, 10]);
    expect(Array.from(logits.dataSync()).every(Number.isFinite)).toBe(true);
    dispose([x, logits]);
  } finally {
    models.dispose();
  }
});
