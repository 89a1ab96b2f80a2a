// DiffPure's CelebA-HQ attribute classifier on webgpu: the fixture checkpoint
// (../shared/fixtures/ddpm_celebahq/classifier_net_best.pth) loaded straight onto the GPU, the
// fixture's 2 images uploaded there, and the same checks as test/nn/attribute-net.test.ts: the
// logits and the input gradient of sum(w * logits) within the fixture's 1e-4 * max|ref| (the
// gradient against its own max), every byte in use given back afterwards.

import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadAttributeClassifier } from '../../src/nn/models/attribute-classifier.js';
import { FIXTURES, fixtureArray, fixtureTensor, relErr } from '../harness/fixtures.js';
import { FIXTURE_TOL, outputAndGrad } from '../nn/fixture-helpers.js';
import { expectNoLeak } from './helpers.js';
import { gpu } from './setup.js';

const DIR = join(FIXTURES, 'ddpm_celebahq');

describe.skipIf(!gpu)('attribute classifier on webgpu (tolerance 1e-4 max|ref|)', () => {
  test('logits [l, -l] and the input gradient of sum(w * logits), 2 images of 256 px', async () => {
    const e = await expectNoLeak('attribute classifier', async () => {
      const clf = await loadAttributeClassifier(join(DIR, 'classifier_net_best.pth'), { backend: 'webgpu' });
      try {
        for (const [name, p] of clf.net.namedParameters()) expect(p.backend.name, name).toBe('webgpu');
        const r = await outputAndGrad(
          (x) => clf.forward(x),
          fixtureTensor(DIR, 'clf_x', { backend: 'webgpu' }),
          fixtureTensor(DIR, 'clf_vjp_weight', { backend: 'webgpu' }),
        );
        return {
          logits: relErr(r.out, fixtureArray(DIR, 'clf_logits').data),
          gradX: relErr(r.grad as Float64Array, fixtureArray(DIR, 'clf_grad_x_of_sum_w_logits').data),
        };
      } finally {
        clf.dispose();
      }
    });
    console.log(
      `webgpu attribute classifier: logits err ${e.logits.toExponential(2)}, grad_x err ${e.gradX.toExponential(2)} (of max|ref|)`,
    );
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
  });
});
