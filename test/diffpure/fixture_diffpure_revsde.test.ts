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

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadNetwork, type Network } from '../../src/diffpure/models.js';
import { type PurifyOptions, purify } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import { BrownianReplay, RevVPSDE, vpReverseTimes } from '../../src/sde/index.js';
import { fixtureDir, hostOf, npy, relMaxErr, tensorOf } from '../sde/helpers.js';

const base = fixtureDir('diffpure_revsde');
const ddpmpp = fixtureDir('ddpmpp');
const SLOW = process.env.DIFFPURE_SLOW === '1';
const TOL = 1e-4;
const SLOW_TIMEOUT = 900_000;

/**
 * Let the event loop turn before a long synchronous computation: vitest's worker RPC times out
 * (60 s) when a reply waits behind more than a minute of blocked loop, e.g. two 35 s tests in a row.
 * 300 ms covers the runner's 100 ms throttle on task updates and the reply.
 */
const yieldToLoop = () => new Promise((r) => setTimeout(r, 300));

for (const [sub, dt] of [
  ['', 0.01],
  ['dt_default_1e-3', 1e-3],
] as const) {
  const dir = base && ddpmpp && (sub ? fixtureDir(`diffpure_revsde/${sub}`) : base);
  const cheap = sub === '';
  describe.skipIf(!dir)(`fixture diffpure_revsde${sub ? `/${sub}` : ''}: purify() around DDPM++ (cpu)`, () => {
    const d = dir as string;
    const report: Record<string, number> = {};
    let net: Network;
    let opts: PurifyOptions;
    let evals = 0;
    let xIn: T.Tensor;
    let w: T.Tensor;

    const check = (what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol = TOL) => {
      const e = relMaxErr(got, ref);
      report[what] = e;
      expect(e, what).toBeLessThanOrEqual(tol);
    };

    beforeAll(async () => {
      // the product's loader: shape-only build, then the checkpoint's EMA weights (what DiffPure's
      // restore_checkpoint + ema.copy_to use), strictly
      const cfg = JSON.parse(readFileSync(join(ddpmpp as string, 'meta.json'), 'utf8')).config;
      net = await loadNetwork('ddpmpp', cfg, join(ddpmpp as string, 'checkpoint.pth'));
      const inc = npy(d, 'brownian_increments.npy');
      const [, B, D] = inc.shape as [number, number, number];
      const bm = new BrownianReplay({
        times: Array.from(npy(d, 'time_grid.npy').data),
        increments: inc.data,
        shape: [B, D],
      });
      xIn = T.keep(tensorOf(d, 'x_in.npy'));
      w = T.keep(tensorOf(d, 'loss_weight.npy'));
      opts = {
        model: (x, labels) => {
          evals++;
          return net.forward(x, labels);
        },
        scoreType: 'score_sde',
        tStar: 0.1,
        dt,
        noise: T.keep(tensorOf(d, 'forward_noise.npy')),
        bm,
      };
    });

    afterAll(() => {
      console.log(
        `diffpure_revsde${sub ? `/${sub}` : ''} via purify, max|ours - ref| / max|ref|:`,
        JSON.stringify(report),
      );
      net?.module.dispose();
      T.dispose(xIn, w, opts?.noise);
    });

    test('the first-step drift f(ts[0], x_t) of RevVPSDE(score_type="score_sde")', () => {
      const xt = tensorOf(d, 'x_t.npy');
      const B = xt.shape[0] as number;
      const sde = new RevVPSDE({ model: opts.model, scoreType: 'score_sde', imgShape: [3, 32, 32] });
      const f = T.tidy(() => hostOf(T.noGrad(() => sde.f(vpReverseTimes(0.1)[0], T.reshape(xt, [B, 3072])))));
      check('first_step_drift', f, npy(d, 'first_step_drift.npy').data);
      xt.dispose();
    });

    /** purify under vjp: the purified images in [-1, 1] and dL/dx_in, with the evaluations counted. */
    const run = (mode: 'exact' | 'continuous', more: Partial<PurifyOptions> = {}) => {
      evals = 0;
      const t0 = performance.now();
      const res = T.tidy(() => {
        const { out, vjpFn, release } = T.vjp((x: T.Tensor) => purify(x, { ...opts, mode, ...more }), xIn);
        const purified = hostOf(T.sub(T.mul(out, 2), 1)); // (the vjp releases out)
        const [g] = vjpFn(T.mul(w, 2));
        release();
        return { purified, grad: hostOf(g as T.Tensor) };
      });
      const seconds = (performance.now() - t0) / 1000;
      console.log(
        `diffpure_revsde${sub ? `/${sub}` : ''} ${mode}: ${seconds.toFixed(1)} s, ${evals} network evaluations`,
      );
      return res;
    };

    let firstPurified: Float64Array | null = null;
    const samePurified = (p: Float64Array) => {
      if (firstPurified) expect(Array.from(p), 'purified is the same in both modes').toEqual(Array.from(firstPurified));
      firstPurified = p;
    };

    test.runIf(cheap || SLOW)(
      "mode 'exact': purified and dL/dx_in vs autograd through torchsde.sdeint",
      async () => {
        await yieldToLoop();
        const { purified, grad } = run('exact');
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
        const { purified, grad } = run('continuous', {
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
