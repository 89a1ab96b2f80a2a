// DiffPure's defended classifier as an attack target (src/diffpure/defense.ts), with the ddpmpp fixture's score
// model (nf 32) in front of the attacks fixture's WideResNet, at a small t* so that a test takes seconds: a row's
// purification depends on its key only (not on its batch), APGD against it reproduces from its seed and changes
// with another seed, and BPDA's gradient is the classifier's gradient at the purified images.

import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type ApgdTrace, apgd } from '../../../src/diffpure/attacks/apgd.js';
import { crossEntropyLoss } from '../../../src/diffpure/attacks/losses.js';
import { type AttackModel, type Images, logitsAndGrad, logitsOf } from '../../../src/diffpure/attacks/model.js';
import { defendedClassifier, type GradientMode } from '../../../src/diffpure/defense.js';
import { loadNetwork } from '../../../src/diffpure/models.js';
import { fromArray } from '../../../src/tensor/prims/creation.js';
import { withGradMode } from '../../../src/tensor/runtime.js';
import { tidy } from '../../../src/tensor/tensor.js';
import { readMeta } from '../../harness/fixtures.js';
import { DDPMPP } from '../../nn/fixture-helpers.js';
import { ATTACKS, fixtureImages, fixtureLabels, haveAttacks } from './fixture.js';

const D = 3 * 32 * 32;
const T_STAR = 0.005; // 5 reverse steps of dt 1e-3

describe.skipIf(!haveAttacks)('DiffPure defended classifier under attack (ddpmpp + wrn fixtures, cpu)', async () => {
  const score = await loadNetwork(
    'ddpmpp',
    readMeta<{ config: unknown }>(DDPMPP).config,
    join(DDPMPP, 'checkpoint.pth'),
  );
  const wrn = await loadNetwork('wrn', { depth: 16, widen_factor: 2, num_classes: 10 }, join(ATTACKS, 'model.pt'));
  const defended = (gradient: GradientMode): AttackModel => ({
    classify: defendedClassifier({
      model: (v, t) => score.forward(v, t),
      scoreType: 'score_sde',
      tStar: T_STAR,
      gradient,
      classifier: (v) => wrn.forward(v),
    }),
  });
  const all = fixtureImages();
  const labels = fixtureLabels();
  const x: Images = { data: all.data.slice(0, 2 * D), shape: [2, 3, 32, 32] };
  const y = [labels[0] as number, labels[1] as number];

  test("a row's purification depends on its key, not on its batch", async () => {
    const m = defended('continuous');
    const both = await logitsOf(m, x, [11, 12]);
    const second = await logitsOf(m, { data: x.data.slice(D), shape: [1, 3, 32, 32] }, [12]);
    const other = await logitsOf(m, { data: x.data.slice(D), shape: [1, 3, 32, 32] }, [13]);
    for (let j = 0; j < 10; j++) expect(second.logits[j]).toBeCloseTo(both.logits[10 + j] as number, 5);
    expect(Array.from(other.logits)).not.toEqual(Array.from(second.logits));
  }, 120_000);

  test('APGD-CE (EOT 2) against it: the same seed gives the same adversarial images, another seed other ones', async () => {
    const run = async (seed: number, gradient: GradientMode) => {
      const losses: number[][] = [];
      const one: Images = { data: x.data.slice(0, D), shape: [1, 3, 32, 32] };
      const r = await apgd(defended(gradient), one, [y[0] as number], {
        eps: 0.025,
        nIter: 1,
        eotIter: 2,
        seed,
        trace: (e: ApgdTrace) => {
          if (e.kind === 'iter' || e.kind === 'run') losses.push(Array.from(e.kind === 'iter' ? e.loss : e.lossInit));
        },
      });
      return { adv: Array.from(r.adv.data), losses };
    };
    const a = await run(1, 'continuous');
    const b = await run(1, 'continuous');
    const c = await run(2, 'continuous');
    expect(b).toEqual(a);
    expect(c.losses).not.toEqual(a.losses);
    // the exact gradient of the solve: the same forward passes, so the same losses at the random start
    const e = await run(1, 'exact');
    expect(e.losses[0]).toEqual(a.losses[0]);
  }, 300_000);

  test("BPDA's gradient is the classifier's gradient at the purified images", async () => {
    const keys = [5, 6];
    const bpda = await logitsAndGrad(defended('bpda'), x, keys, (z, k) => crossEntropyLoss(z, k, y));
    // purify with the same per-row noise and path by calling the defended classifier's own purifier: rebuild the
    // purified images through a classifier that returns its input's logits after recording it
    let purified: Float32Array | null = null;
    const capture = defendedClassifier({
      model: (v, t) => score.forward(v, t),
      scoreType: 'score_sde',
      tStar: T_STAR,
      gradient: 'bpda',
      classifier: (v) => {
        purified = Float32Array.from(v.dataSync());
        return wrn.forward(v);
      },
    });
    withGradMode(false, () => tidy(() => capture(fromArray(x.data, x.shape), keys)));
    const direct = await logitsAndGrad(
      { classify: (v) => wrn.forward(v) },
      { data: purified as unknown as Float32Array, shape: x.shape },
      [],
      (z, k) => crossEntropyLoss(z, k, y),
    );
    let err = 0;
    let scale = 0;
    for (let j = 0; j < direct.grad.length; j++) {
      err = Math.max(err, Math.abs((bpda.grad[j] as number) - (direct.grad[j] as number)));
      scale = Math.max(scale, Math.abs(direct.grad[j] as number));
    }
    expect(err / scale).toBeLessThan(1e-6);
  }, 120_000);
});
