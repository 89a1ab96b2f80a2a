// sdeint and sdeintAdjoint on webgpu, with the runs the cpu tests use (test/sde/helpers.ts):
//   the sde_adjoint fixture (torchsde 0.2.6): forward states, the continuous adjoint (euler, with
//     its backward pass, and the default milstein), the exact adjoint and autograd through sdeint;
//   properties on random toy SDEs: 'exact' = autograd through sdeint (float32, same path); both
//     modes on webgpu (float32) = the same mode in float64 on cpu (test/sde/adjoint.test.ts checks
//     'exact' there against central finite differences; float64 does not exist on webgpu);
//     'continuous' approaches 'exact' as dt shrinks (1/8 -> 1/64; the cpu test goes to 1/512);
//   memory: peak pool bytes at 100 and 1000 steps for both adjoint modes (autograd: 100 and 300).
// Every tensor lives on webgpu (the current backend stays cpu, so anything created elsewhere
// fails); every test checks the bytes in use return to where they were.

import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import { sdeint } from '../../src/sde/index.js';
import {
  adjointGrads,
  continuousGaps,
  exactVsAutograd,
  fixtureDir,
  gradPeakBytes,
  relMaxErr,
  SdeAdjointFixture,
  traceCollector,
  worstRelErr,
} from '../sde/helpers.js';
import { expectNoLeak, settle, webgpuMeter } from './helpers.js';
import { gpu } from './setup.js';

const dir = fixtureDir('sde_adjoint');

describe.skipIf(!gpu || !dir)('fixture sde_adjoint (torchsde 0.2.6) on webgpu', () => {
  // The cpu test's tolerance, 1e-5 * max|ref| (the fixture's recommendation; its float32 vs
  // float64 spread is ~1e-7 * max|ref|): 8 steps of a 6x16 tanh MLP leave no room for more.
  const TOL = 1e-5;
  const fx = gpu && dir ? new SdeAdjointFixture(dir, 'webgpu') : null;
  const f = () => fx as SdeAdjointFixture;
  afterAll(() => fx?.dispose());
  const report: Record<string, number> = {};
  const check = (what: string, got: ArrayLike<number>, ref: ArrayLike<number>) => {
    const e = relMaxErr(got, ref);
    report[what] = e;
    expect(e, what).toBeLessThanOrEqual(TOL);
  };
  const ts = [0, 1];

  test('forward: sdeint euler reproduces x(T) and every step', async () => {
    const { states, xT } = await expectNoLeak('forward', () => f().forward());
    check('forward_states', states, f().ref('forward_states'));
    check('xT', xT, f().ref('xT_sdeint'));
  });

  test('continuous adjoint (euler): parameters and the backward pass; default (milstein): dL/dx0', async () => {
    const tr = traceCollector();
    const { value, grads, pass } = await expectNoLeak('continuous adjoint', async () => {
      const r = await f().lossGrads((sde, x) =>
        sdeintAdjoint(sde, x, ts, {
          dt: 0.125,
          bm: f().bm(),
          adjointMethod: 'euler',
          paramGrads: true,
          trace: tr.trace,
        }),
      );
      return { ...r, pass: await tr.read() };
    });
    expect(value).toBeCloseTo(-1.5400969982147217, 5);
    check('adjoint_pass_y', pass.y, f().ref('adjoint_pass_y'));
    check('adjoint_pass_a', pass.a, f().ref('adjoint_pass_a'));
    f().names.forEach((n, i) => {
      check(`grad_${n}_adjoint_euler`, grads[i] as Float64Array, f().ref(`grad_${n}_adjoint_euler`));
    });
    const dflt = await expectNoLeak('continuous adjoint (milstein)', () =>
      f().lossGrads((sde, x) => sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: f().bm() })),
    );
    check('grad_x0_adjoint_default', dflt.grads[0] as Float64Array, f().ref('grad_x0_adjoint_default_milstein'));
  });

  test('exact adjoint and autograd through sdeint = backprop through torchsde.sdeint, incl. parameters', async () => {
    const exact = await expectNoLeak('exact adjoint', () =>
      f().lossGrads((sde, x) =>
        sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: f().bm(), mode: 'exact', paramGrads: true }),
      ),
    );
    const auto = await expectNoLeak('autograd', () =>
      f().lossGrads((sde, x) => sdeint(sde, x, ts, { dt: 0.125, bm: f().bm() })),
    );
    f().names.forEach((n, i) => {
      check(`grad_${n}_exact`, exact.grads[i] as Float64Array, f().ref(`grad_${n}_autograd`));
      check(`grad_${n}_autograd`, auto.grads[i] as Float64Array, f().ref(`grad_${n}_autograd`));
    });
    console.log('webgpu sde_adjoint fixture, max|ours - ref| / max|ref|:', JSON.stringify(report));
  });
});

describe.skipIf(!gpu)('sdeintAdjoint properties on webgpu (random toy SDEs)', () => {
  test.each([
    ['diagonal', 'euler', 'ito'],
    ['diagonal', 'milstein', 'ito'],
    ['additive', 'sra1', 'ito'],
  ] as const)('exact = autograd through sdeint (%s noise, %s; float32, same path)', async (noise, method, sdeType) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), async (seed) => {
        const e = await expectNoLeak('exact vs autograd', () =>
          exactVsAutograd(noise, method, sdeType, seed, 'webgpu'),
        );
        expect(e).toBeLessThan(1e-5);
      }),
      { numRuns: 2, seed: 1 },
    );
  });

  test.each(['diagonal', 'additive'] as const)(
    'both modes on webgpu = the same in float64 on cpu (%s noise; the cpu tests check exact against finite differences)',
    async (noise) => {
      const errs: Record<string, number> = {};
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), async (seed) => {
          for (const mode of ['exact', 'continuous'] as const) {
            const got = await expectNoLeak(mode, () => adjointGrads(noise, seed, mode, 'float32', 'webgpu'));
            const e = worstRelErr(got, await adjointGrads(noise, seed, mode, 'float64', 'cpu'));
            errs[mode] = Math.max(errs[mode] ?? 0, e);
            expect(e, mode).toBeLessThan(1e-5);
          }
        }),
        { numRuns: 2, seed: 2 },
      );
      console.log(`webgpu float32 vs cpu float64, ${noise} noise, worst max|err|/max|ref|:`, JSON.stringify(errs));
    },
  );

  test.each(['diagonal', 'additive'] as const)(
    'continuous approaches exact as dt shrinks (%s noise)',
    async (noise) => {
      // dt 1/8 and 1/64 only (the cpu test goes on to 1/512: ~60 s more on lavapipe); the gap
      // shrinks ~9x over this range at order 1 (cpu, float64: 2.7e-1 -> 3.0e-2 for this seed)
      const seed = 7;
      const gaps = await expectNoLeak('continuous vs exact', () =>
        continuousGaps(noise, seed, 'float32', 'webgpu', [2 ** -3, 2 ** -6]),
      );
      console.log(
        `webgpu ${noise}, seed ${seed}: max rel gap continuous vs exact at dt 1/8, 1/64:`,
        gaps.map((e) => e.toExponential(2)).join(' '),
      );
      expect(gaps[1] as number).toBeLessThan((gaps[0] as number) / 6);
    },
  );
});

describe.skipIf(!gpu)('memory on webgpu (peak pool bytes)', () => {
  // The toy diagonal SDE (state-dependent noise, default Milstein adjoint) with state [4, 256]
  // float32 = 4 KiB, a size class of its own, so states dominate the constants (weights 2 x 8 KiB).
  // The peak is the pool's: bytes of buffers handed out, incl. those freed but not yet submitted
  // (they return to the pool at the next submit, every 64 dispatches).
  const size = { B: 4, D: 256, H: 8 };
  const state = size.B * size.D * 4;
  // Slack for 'continuous': where the submits fall relative to the steps decides how many freed
  // state-sized buffers still wait for a submit at the peak; both runs are longer than the 64-step
  // cycle of that phase, so they see the same worst case (measured: equal to the byte), but a
  // different number of dispatches per step or the Brownian nodes at the very start may shift it by
  // a buffer or two. 4 states (16 KiB, 3% of the peak) is far below a leak of even 1 state per 100
  // steps (36 KiB over the 900 extra steps), and 'exact' grows 225x more.
  const SLACK = 4 * state;

  test('100 vs 1000 steps: continuous flat, exact + one state per step; autograd grows faster; no leaks', async () => {
    const meter = webgpuMeter();
    // autograd at 100 and 300 steps: its growth per step shows as well, for a third of the time
    // and of the bind groups (see settle())
    const steps = { continuous: [100, 1000], exact: [100, 1000], autograd: [100, 300] } as const;
    const r: Record<string, { steps: readonly number[]; peak: number[]; perStep: number }> = {};
    for (const how of ['continuous', 'exact', 'autograd'] as const) {
      const peak: number[] = [];
      for (const n of steps[how]) {
        // each solve is one synchronous call (T.grad); settle() between them (see helpers.ts)
        await settle();
        const m = gradPeakBytes(meter, how, n, size);
        expect(m.leaked, `${how}, ${n} steps: leaked`).toBe(0);
        peak.push(m.peak);
      }
      const [n1, n2] = steps[how];
      r[how] = { steps: steps[how], peak, perStep: ((peak[1] as number) - (peak[0] as number)) / (n2 - n1) };
    }
    console.log('webgpu peak pool bytes (state = 4 KiB):', JSON.stringify(r));
    const c = r.continuous?.peak as number[];
    expect(Math.abs((c[1] as number) - (c[0] as number)), 'continuous: 1000 vs 100 steps').toBeLessThanOrEqual(SLACK);
    // exact keeps x_k for every step: 900 more states, and nothing else that grows
    expect(r.exact?.perStep).toBeGreaterThanOrEqual(state);
    expect(r.exact?.perStep).toBeLessThan(1.1 * state);
    // autograd keeps every intermediate of every step
    expect(r.autograd?.perStep).toBeGreaterThan(2 * state);
  });
});
