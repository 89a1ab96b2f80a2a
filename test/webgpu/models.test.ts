// The model fixtures on webgpu: NCSN++/DDPM++ (ddpmpp, nf32 and nf8), the ADM UNet (adm) and
// RobustBench's WideResNet (wrn), loaded from the real checkpoint files straight onto the GPU
// with loadNetwork(kind, config, weights, 'webgpu'), inputs uploaded to 'webgpu' (the current
// backend stays cpu, so a kernel or constant that lands on another backend fails loudly). The
// same runs as the cpu tests (test/nn/fixture-helpers.ts); the same tolerance, the fixtures'
// 1e-4 * max|ref| per array. Each test checks the bytes in use return to where they were.
//
// Batch: every sample of the ddpmpp and wrn fixtures. ADM, the slowest network on lavapipe
// (attention over 1024 positions, ~300 MB of pool at one sample), runs as the cpu test splits it:
// samples 0 and 1 (t = 0, 50) forward only, sample 2 (t = 999) with its input gradient.

import { describe, expect, test } from 'vitest';
import { loadNetwork, type ModelKind, type Network } from '../../src/diffpure/models.js';
import { readMeta } from '../harness/fixtures.js';
import {
  ADM,
  admErrors,
  DDPMPP,
  DDPMPP_NF8,
  ddpmppErrors,
  FIXTURE_TOL,
  WRN,
  wrnErrors,
} from '../nn/fixture-helpers.js';
import { expectNoLeak } from './helpers.js';
import { gpu } from './setup.js';

const fmt = (e: Record<string, number | null>) =>
  Object.entries(e)
    .map(([k, v]) => `${k} ${v?.toExponential(2)}`)
    .join(', ');

/** Load a network onto webgpu, run body, free it; every byte must come back. */
function withNetwork<R>(
  kind: ModelKind,
  config: unknown,
  weights: string,
  body: (net: Network) => Promise<R>,
): Promise<R> {
  return expectNoLeak(kind, async () => {
    const net = await loadNetwork(kind, config, weights, 'webgpu');
    try {
      for (const [name, p] of net.module.namedParameters()) expect(p.backend.name, name).toBe('webgpu');
      return await body(net);
    } finally {
      net.module.dispose();
    }
  });
}

describe.skipIf(!gpu)('model fixtures on webgpu (tolerance 1e-4 max|ref|)', () => {
  for (const [dir, label] of [
    [DDPMPP, 'nf32, 2 res blocks, 3 samples'],
    [DDPMPP_NF8, 'nf8, 1 res block, 2 samples'],
  ] as const) {
    test(`ddpmpp (${label}): raw output, score and input gradient with the EMA weights`, async () => {
      const config = readMeta<{ config: unknown }>(dir).config;
      const e = await withNetwork('ddpmpp', config, `${dir}/checkpoint.pth`, (net) =>
        ddpmppErrors(dir, (x, labels) => net.forward(x, labels), { backend: 'webgpu' }),
      );
      console.log(`webgpu ddpmpp ${label}: max|err|/max|ref| ${fmt({ ...e })}`);
      expect(e.raw).toBeLessThan(FIXTURE_TOL);
      expect(e.score).toBeLessThan(FIXTURE_TOL);
      expect(e.gradX).toBeLessThan(FIXTURE_TOL);
      // the EMA weights, not the checkpoint's 'model' entry
      expect(e.vsModelWeights).toBeGreaterThan(0.05);
    });
  }

  test('adm: output at t = 0, 50 (samples 0, 1) and output and input gradient at t = 999 (sample 2)', async () => {
    const config = readMeta<{ create_model_and_diffusion_kwargs: unknown }>(ADM).create_model_and_diffusion_kwargs;
    const [first, last] = await withNetwork('adm', config, `${ADM}/model.pt`, async (net) => {
      return [
        await admErrors(net.forward, { backend: 'webgpu', rows: { start: 0, count: 2 }, withGrad: false }),
        await admErrors(net.forward, { backend: 'webgpu', rows: { start: 2, count: 1 }, withGrad: true }),
      ];
    });
    console.log(
      `webgpu adm: max|err|/max|ref| output (t = 0, 50) ${first?.output.toExponential(2)}, t = 999 ${fmt({ ...last })}`,
    );
    expect(first?.output).toBeLessThan(FIXTURE_TOL);
    expect(last?.output).toBeLessThan(FIXTURE_TOL);
    expect(last?.gradX).toBeLessThan(FIXTURE_TOL);
  });

  test('wrn (WRN-16-2, 3 samples, eval mode): logits and input gradient', async () => {
    const config = { depth: 16, widen_factor: 2, num_classes: 10 };
    const e = await withNetwork('wrn', config, `${WRN}/model.pt`, (net) =>
      wrnErrors((x) => net.forward(x), { backend: 'webgpu' }),
    );
    console.log(`webgpu wrn-16-2: max|err|/max|ref| ${fmt(e)}`);
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
  });
});
