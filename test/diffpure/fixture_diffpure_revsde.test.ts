// ../shared/fixtures/diffpure_revsde end to end through purify(): DiffPure's own reverse VP-SDE
// purification around the tiny DDPM++ of the ddpmpp fixture (EMA weights), with the stored forward
// noise and the stored Brownian increments replayed piecewise linearly (BrownianReplay), t* 0.1.
// The input x_in is in [0, 1]; purify maps it to [-1, 1] and back, so the fixture's purified
// images are 2 out - 1 and its loss L = sum(w purified) has dL/dout = 2 w.
//
// Checked against each reference separately (they differ by 47% / 5.6% of max by the method):
//   mode 'exact'      vs grad_x_in_autograd (backprop through torchsde.sdeint),
//   mode 'continuous' vs grad_x_in_adjoint_default (DiffPure's call; milstein adjoint) and
//                        grad_x_in_adjoint_euler (the same values), plus the adjoint pass's
//                        reconstructed y and adjoint a at every backward step (where stored).
// Tolerances (issue 5): outputs, drifts and exact gradients 1e-4 max|ref|; the paper's adjoint
// 1e-2 max|ref|, which we tighten to 1e-4 because we reproduce PyTorch's float32 rounding of
// std(s) (the fixture says ~1e-4 is reachable then; we measure ~2e-6).
//
// Cost (cpu, 2 cores): one DDPM++ evaluation ~0.5 s per image, its VJP ~0.75 s more. dt 0.01
// (B 2, 10 steps): ~35 s per gradient mode. dt 1e-3 (B 1, 100 steps) needs ~50 s for the output
// and ~3 min per gradient mode, so by default only its first-step drift runs here;
// DIFFPURE_SLOW=1 runs it all.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { PurifyOptions } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import { RevVPSDE, vpReverseTimes } from '../../src/sde/index.js';
import { fixtureDir, hostOf, npy, tensorOf } from '../sde/helpers.js';
import {
  checker,
  loadRevsdeCase,
  purifyWithGrad,
  REVSDE_BASE,
  REVSDE_DDPMPP,
  type RevsdeCase,
  yieldToLoop,
} from './revsde-helpers.js';

const base = REVSDE_BASE;
const ddpmpp = REVSDE_DDPMPP;
const SLOW = process.env.DIFFPURE_SLOW === '1';
const SLOW_TIMEOUT = 900_000;

for (const [sub, dt] of [
  ['', 0.01],
  ['dt_default_1e-3', 1e-3],
] as const) {
  const dir = base && ddpmpp && (sub ? fixtureDir(`diffpure_revsde/${sub}`) : base);
  const cheap = sub === '';
  describe.skipIf(!dir)(`fixture diffpure_revsde${sub ? `/${sub}` : ''}: purify() around DDPM++ (cpu)`, () => {
    const d = dir as string;
    const label = `diffpure_revsde${sub ? `/${sub}` : ''}`;
    const report: Record<string, number> = {};
    const check = checker(report);
    let c: RevsdeCase;

    beforeAll(async () => {
      c = await loadRevsdeCase(d, dt);
    });

    afterAll(() => {
      console.log(`${label} via purify, max|ours - ref| / max|ref|:`, JSON.stringify(report));
      c?.dispose();
    });

    test('the first-step drift f(ts[0], x_t) of RevVPSDE(score_type="score_sde")', () => {
      const xt = tensorOf(d, 'x_t.npy');
      const B = xt.shape[0] as number;
      const sde = new RevVPSDE({ model: c.opts.model, scoreType: 'score_sde', imgShape: [3, 32, 32] });
      const f = T.tidy(() => hostOf(T.noGrad(() => sde.f(vpReverseTimes(0.1)[0], T.reshape(xt, [B, 3072])))));
      check('first_step_drift', f, npy(d, 'first_step_drift.npy').data);
      xt.dispose();
    });

    const run = (mode: 'exact' | 'continuous', more: Partial<PurifyOptions> = {}) =>
      purifyWithGrad(c, label, mode, more);

    let firstPurified: Float64Array | null = null;
    const samePurified = (p: Float64Array) => {
      if (firstPurified) expect(Array.from(p), 'purified is the same in both modes').toEqual(Array.from(firstPurified));
      firstPurified = p;
    };

    test.runIf(cheap || SLOW)(
      "mode 'exact': purified and dL/dx_in vs autograd through torchsde.sdeint",
      async () => {
        await yieldToLoop();
        const { purified, grad } = await run('exact');
        check('purified', purified, npy(d, 'purified.npy').data);
        check('grad_x_in_autograd', grad, npy(d, 'grad_x_in_autograd.npy').data);
        samePurified(purified);
      },
      SLOW_TIMEOUT,
    );

    test.runIf(cheap || SLOW)(
      "mode 'continuous' (DiffPure's sdeint_adjoint): purified, dL/dx_in and the adjoint pass",
      async () => {
        await yieldToLoop();
        const ys: number[] = [];
        const as: number[] = [];
        const stored = cheap; // adjoint_pass_y / _a exist for dt 0.01 only
        const { purified, grad } = await run('continuous', {
          trace: stored
            ? ({ y, a }) => {
                ys.push(...y.dataSync());
                as.push(...a.dataSync());
              }
            : undefined,
        });
        check('purified (continuous run)', purified, npy(d, 'purified.npy').data);
        check('grad_x_in_adjoint_euler', grad, npy(d, 'grad_x_in_adjoint_euler.npy').data);
        if (stored) {
          // DiffPure's own call (default adjoint method milstein): the same values as euler here
          check('grad_x_in_adjoint_default', grad, npy(d, 'grad_x_in_adjoint_default.npy').data);
          check('adjoint_pass_y', ys, npy(d, 'adjoint_pass_y.npy').data);
          check('adjoint_pass_a', as, npy(d, 'adjoint_pass_a.npy').data);
        }
        samePurified(purified);
      },
      SLOW_TIMEOUT,
    );
  });
}
