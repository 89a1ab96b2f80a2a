// The attacks on webgpu (lavapipe in CI): APGD-CE on the attacks fixture's WideResNet follows the same trajectory
// as on cpu, and against a stochastic classifier the same seed gives the same adversarial images and another seed
// other ones. Every byte the attacks allocate comes back.

import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type ApgdTrace, apgd } from '../../src/diffpure/attacks/apgd.js';
import type { AttackModel, Images } from '../../src/diffpure/attacks/model.js';
import { loadNetwork } from '../../src/diffpure/models.js';
import { randomNormal } from '../../src/tensor/prims/creation.js';
import { add, mul } from '../../src/tensor/prims/elementwise.js';
import { concat } from '../../src/tensor/prims/shape.js';
import { ATTACKS, fixtureImages, fixtureLabels, haveAttacks } from '../diffpure/attacks/fixture.js';
import { expectNoLeak } from './helpers.js';
import { gpu } from './setup.js';

const WRN16 = { depth: 16, widen_factor: 2, num_classes: 10 };
const ROWS = [0, 1, 3, 4]; // four clean-correct images
const D = 3 * 32 * 32;

function subset(): { x: Images; y: number[] } {
  const all = fixtureImages();
  const labels = fixtureLabels();
  const data = new Float32Array(ROWS.length * D);
  ROWS.forEach((r, i) => {
    data.set(all.data.subarray(r * D, (r + 1) * D), i * D);
  });
  return { x: { data, shape: [ROWS.length, 3, 32, 32] }, y: ROWS.map((r) => labels[r] as number) };
}

async function traceOn(backend: string, noise: number, seed: number) {
  const net = await loadNetwork('wrn', WRN16, join(ATTACKS, 'model.pt'), backend);
  try {
    const model: AttackModel = {
      backend,
      classify: (v, keys) =>
        net.forward(
          noise > 0
            ? add(
                v,
                mul(
                  concat(
                    keys.map((k) => randomNormal([1, 3, 32, 32], { seed: k, backend })),
                    0,
                  ),
                  noise,
                ),
              )
            : v,
        ),
    };
    const { x, y } = subset();
    const losses: Float32Array[] = [];
    const res = await apgd(model, x, y, {
      eps: 0.025,
      nIter: 3,
      eotIter: noise > 0 ? 2 : 1,
      seed,
      trace: (e: ApgdTrace) => {
        if (e.kind === 'iter') losses.push(e.loss.slice());
      },
    });
    return { res, losses };
  } finally {
    net.module.dispose();
  }
}

describe.skipIf(!gpu || !haveAttacks)('attacks on webgpu', () => {
  test('APGD-CE: the cpu trajectory (losses within 1e-4 relative, same robust flags)', async () => {
    const cpu = await traceOn('cpu', 0, 3);
    const webgpu = await expectNoLeak('apgd', () => traceOn('webgpu', 0, 3));
    let err = 0;
    cpu.losses.forEach((l, i) => {
      l.forEach((v, r) => {
        err = Math.max(
          err,
          Math.abs(v - ((webgpu.losses[i] as Float32Array)[r] as number)) / Math.max(Math.abs(v), 1e-2),
        );
      });
    });
    let same = 0;
    for (let j = 0; j < cpu.res.adv.data.length; j++)
      if (Math.abs((cpu.res.adv.data[j] as number) - (webgpu.res.adv.data[j] as number)) <= 1e-5) same++;
    console.log(
      `webgpu vs cpu APGD-CE (3 iterations, 4 images): loss rel err ${err.toExponential(2)}, ${((100 * same) / cpu.res.adv.data.length).toFixed(3)}% of adv values within 1e-5`,
    );
    expect(err).toBeLessThan(1e-4);
    expect(webgpu.res.robust).toEqual(cpu.res.robust);
    expect(same / cpu.res.adv.data.length).toBeGreaterThanOrEqual(0.995);
  }, 600_000);

  test('a stochastic classifier (keyed input noise, EOT 2): same seed same images, another seed other ones', async () => {
    const a = await expectNoLeak('apgd-eot', () => traceOn('webgpu', 0.05, 7));
    const b = await traceOn('webgpu', 0.05, 7);
    const c = await traceOn('webgpu', 0.05, 8);
    expect(Array.from(a.res.adv.data)).toEqual(Array.from(b.res.adv.data));
    expect(a.losses.map((l) => Array.from(l))).toEqual(b.losses.map((l) => Array.from(l)));
    expect(a.losses.map((l) => Array.from(l))).not.toEqual(c.losses.map((l) => Array.from(l)));
  }, 600_000);
});
