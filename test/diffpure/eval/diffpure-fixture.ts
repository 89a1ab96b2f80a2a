// DiffPure's defended classifier from the fixtures as EvalModels: the ddpmpp fixture's score model (nf 32) in front
// of the attacks fixture's WideResNet-16-2, on any backend; and a protocol of every adaptive attack against it at
// a small t* (2 reverse steps of dt 1e-3) and eps 2/255, so that a run takes about a minute and leaves some
// images robust.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defendedPurifier } from '../../../src/diffpure/defense.js';
import type { Protocol } from '../../../src/diffpure/eval/protocol.js';
import type { EvalData, EvalModels } from '../../../src/diffpure/eval/runner.js';
import { loadNetwork } from '../../../src/diffpure/models.js';
import { readMeta } from '../../harness/fixtures.js';
import { DDPMPP } from '../../nn/fixture-helpers.js';
import { ATTACKS, fixtureImages, fixtureLabels, haveAttacks } from '../attacks/fixture.js';

export const haveDiffPureFixtures = haveAttacks && existsSync(join(DDPMPP, 'checkpoint.pth'));

export async function diffpureFixtureModels(backend: string): Promise<EvalModels & { dispose(): void }> {
  const score = await loadNetwork(
    'ddpmpp',
    readMeta<{ config: unknown }>(DDPMPP).config,
    join(DDPMPP, 'checkpoint.pth'),
    backend,
  );
  const wrn = await loadNetwork(
    'wrn',
    { depth: 16, widen_factor: 2, num_classes: 10 },
    join(ATTACKS, 'model.pt'),
    backend,
  );
  return {
    backend,
    classify: (x) => wrn.forward(x),
    purifier: ({ tStar, dt, gradient }) =>
      defendedPurifier({ model: (v, t) => score.forward(v, t), scoreType: 'score_sde', tStar, dt, gradient }),
    dispose() {
      score.module.dispose();
      wrn.module.dispose();
    },
  };
}

/** The first n fixture images, as a sample list. */
export function diffpureFixtureData(n: number): EvalData {
  const all = fixtureImages();
  const d = 3 * 32 * 32;
  return {
    images: { data: all.data.slice(0, n * d), shape: [n, 3, 32, 32] },
    labels: fixtureLabels().slice(0, n),
    indices: Array.from({ length: n }, (_, i) => i),
  };
}

const EPS = 2 / 255;
const T = 0.002;

/** PGD-EOT with exact and with continuous gradients, BPDA+EOT and StAdv, at a few steps each. */
export function adaptiveProtocol(): Protocol {
  return {
    name: 'adaptive-fixture',
    description: 'the fixtures: ddpmpp nf 32 + WRN-16-2, t* 0.005',
    data: { set: 'cifar10', sample: { rule: 'first', n: 4 } },
    classifier: { model: 'wrn', weights: 'fixture' },
    purifier: { model: 'ddpmpp', weights: 'fixture', dt: 1e-3 },
    seeds: [0],
    batch: 4,
    attacks: [
      {
        id: 'pgd-exact',
        attack: 'pgd-eot',
        norm: 'Linf',
        eps: EPS,
        steps: 2,
        stepSize: 0.004,
        eotIter: 2,
        tStar: T,
        gradient: 'exact',
      },
      {
        id: 'pgd-continuous',
        attack: 'pgd-eot',
        norm: 'Linf',
        eps: EPS,
        steps: 2,
        stepSize: 0.004,
        eotIter: 2,
        tStar: T,
        targets: ['diffpure'],
      },
      {
        id: 'bpda',
        attack: 'bpda-eot',
        norm: 'Linf',
        eps: EPS,
        steps: 2,
        stepSize: 0.004,
        eotAttackReps: 2,
        eotDefenseReps: 4,
        tStar: T,
      },
      { id: 'stadv', attack: 'stadv', bound: 0.05, nIter: 2, eotIter: 2, tStar: T, targets: ['diffpure'] },
    ],
  };
}
