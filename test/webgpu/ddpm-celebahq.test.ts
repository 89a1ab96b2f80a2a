// DiffPure's CelebA-HQ diffusion path on webgpu (../shared/fixtures/ddpm_celebahq): the DDPM UNet
// loaded from unet.pth straight onto the GPU (shape-only build, then materialize), and the same
// checks as the cpu tests (test/nn/ddpm-unet.test.ts, test/diffpure/ddpm-purify.test.ts), kept
// small for lavapipe: the UNet's output and input gradient on samples 0 and 1 (t = 0 and 999, the
// ends of the embedding's range), and the t = 20 purification with the stored noise replayed,
// forward only. Inputs live on 'webgpu' while the current backend stays cpu, so anything created
// on another backend fails loudly. Tolerance: the fixture's 1e-4 * max|ref|. Each test checks
// that the bytes in use return to where they were.

import { describe, expect, test } from 'vitest';
import { ddpmPurify } from '../../src/diffpure/ddpm-purify.js';
import * as T from '../../src/index.js';
import { extractStateDict, loadTorchCheckpoint } from '../../src/nn/io/index.js';
import { buildShapeOnly, materialize } from '../../src/nn/meta.js';
import { type DdpmConfigJson, DdpmUNet } from '../../src/nn/models/ddpm-unet.js';
import { FIXTURES, fixtureArray, fixtureTensor, readAndDispose, readMeta, relErr } from '../harness/fixtures.js';
import { FIXTURE_TOL, outputAndGrad } from '../nn/fixture-helpers.js';
import { expectNoLeak, settle } from './helpers.js';
import { gpu } from './setup.js';

const DIR = `${FIXTURES}/ddpm_celebahq`;
const meta = readMeta<{ unet: { config_used: DdpmConfigJson }; purification: { diffpure_args: { t: number } } }>(DIR);

async function withUNet<R>(what: string, body: (m: DdpmUNet) => Promise<R>): Promise<R> {
  return expectNoLeak(what, async () => {
    const shell = await buildShapeOnly(() => new DdpmUNet(meta.unet.config_used));
    const m = materialize(shell, extractStateDict(loadTorchCheckpoint(`${DIR}/unet.pth`)), {
      backend: 'webgpu',
    }).eval();
    try {
      for (const [name, p] of m.namedParameters()) expect(p.backend.name, name).toBe('webgpu');
      return await body(m);
    } finally {
      m.dispose();
      await settle();
    }
  });
}

describe.skipIf(!gpu)('ddpm_celebahq on webgpu (tolerance 1e-4 max|ref|)', () => {
  test('DDPM UNet: output and input gradient at t = 0, 999 (samples 0, 1)', async () => {
    const rows = { start: 0, count: 2 };
    const e = await withUNet('ddpm unet', async (m) => {
      const t = fixtureTensor(DIR, 'unet_t', { backend: 'webgpu', rows });
      try {
        const r = await outputAndGrad(
          (x) => m.forward(x, t),
          fixtureTensor(DIR, 'unet_x', { backend: 'webgpu', rows }),
          fixtureTensor(DIR, 'unet_vjp_weight', { backend: 'webgpu', rows }),
        );
        return {
          output: relErr(r.out, fixtureArray(DIR, 'unet_output', rows).data),
          gradX: relErr(r.grad as Float64Array, fixtureArray(DIR, 'unet_grad_x_of_sum_w_output', rows).data),
        };
      } finally {
        t.dispose();
      }
    });
    console.log(
      `webgpu ddpm unet (t = 0, 999): max|err|/max|ref| output ${e.output.toExponential(2)}, grad_x ${e.gradX.toExponential(2)}`,
    );
    expect(e.output).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
  });

  test('DDPM purification, t = 20, stored noise replayed: the output (forward only)', async () => {
    const t = meta.purification.diffpure_args.t;
    const err = await withUNet('ddpm purify', async (m) => {
      const on = { backend: 'webgpu' };
      const xIn = fixtureTensor(DIR, 'purify_x_in', on);
      const forward = fixtureTensor(DIR, 'purify_forward_noise', on);
      const steps = fixtureTensor(DIR, 'purify_step_noise', on);
      try {
        const out = T.tidy(() =>
          T.noGrad(() =>
            // [-1, 1] scale, as purify_output is stored
            T.sub(T.mul(ddpmPurify(xIn, { model: (x, ts) => m.forward(x, ts), t, noise: { forward, steps } }), 2), 1),
          ),
        );
        expect(out.backend.name).toBe('webgpu');
        const [host] = await readAndDispose(out);
        return relErr(host as Float64Array, fixtureArray(DIR, 'purify_output').data);
      } finally {
        T.dispose(xIn, forward, steps);
      }
    });
    console.log(`webgpu ddpm purify t=20: max|err|/max|ref| output ${err.toExponential(2)}`);
    expect(err).toBeLessThan(FIXTURE_TOL);
  });
});
