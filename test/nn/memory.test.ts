// Memory of a no-grad forward: residual and attention blocks free their intermediates as they
// return (T.tidy in each block; Sequential and the UNet decoders release what the next layer
// consumed), so purification and evaluation without gradients hold about one block's activations,
// the UNet skips and a few block outputs per level, not the whole graph. Measured with the counting cpu backend (test/sde/helpers.ts) on this test's
// configs (2026-11-25): without the release the no-grad peak was 0.91 (DDPM++), 0.81 (ADM), 0.92
// (WRN-16-4) of the gradient peak; with it 0.13, 0.21, 0.27. The bound 0.35 sits between.
// Gradients are unchanged (autograd nodes keep their inputs alive): the fixture parity tests of
// each model (test/nn/*.test.ts, test/webgpu/models.test.ts) check them against PyTorch.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { buildNetwork, type ModelKind } from '../../src/diffpure/models.js';
import * as T from '../../src/index.js';
import { manualSeed } from '../../src/nn/init.js';
import { countingBackend, onCountingBackend } from '../sde/helpers.js';
import { ADM, DDPMPP } from './fixture-helpers.js';

const configOf = (dir: string, key: string) => JSON.parse(readFileSync(`${dir}/meta.json`, 'utf8'))[key];

const CASES: { kind: ModelKind; config: () => unknown; t?: number }[] = [
  { kind: 'ddpmpp', config: () => configOf(DDPMPP, 'config'), t: 99.9 },
  { kind: 'adm', config: () => configOf(ADM, 'create_model_and_diffusion_kwargs'), t: 100 },
  { kind: 'wrn', config: () => ({ depth: 16, widen_factor: 4, num_classes: 10 }) },
];

describe('no-grad forward memory (counting cpu backend)', () => {
  onCountingBackend();

  for (const c of CASES) {
    test(`${c.kind}: no-grad peak well below the gradient peak, nothing left over`, async () => {
      const be = countingBackend();
      manualSeed(1);
      const net = T.tidy(() => buildNetwork(c.kind, c.config()));
      net.module.eval();
      const x = T.randomUniform([1, 3, 32, 32], { seed: 2 });
      const t = net.needsTime ? T.full([1], c.t ?? 0) : undefined;
      const base = be.live;

      be.resetPeak();
      const y = T.noGrad(() => T.tidy(() => net.forward(x, t)));
      await y.data();
      const noGradPeak = be.peak - base;
      y.dispose();

      be.resetPeak();
      const g = T.tidy(() => T.grad((xx) => T.sum(net.forward(xx, t)))(x));
      await g.data();
      const gradPeak = be.peak - base;
      g.dispose();

      expect(be.live).toBe(base); // nothing leaked by either pass
      expect(noGradPeak / gradPeak).toBeLessThan(0.35);
      x.dispose();
      t?.dispose();
      net.module.dispose();
    });
  }
});
