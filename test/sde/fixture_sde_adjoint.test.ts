// Parity with torchsde 0.2.6 on ../shared/fixtures/sde_adjoint (a 6-dimensional tanh-MLP SDE,
// 3 samples, 8 Euler steps on a stored Brownian path; see its README and meta.json):
//   forward: sdeint euler                                  vs xT_sdeint, forward_states
//   continuous adjoint (euler / default milstein)         vs sdeint_adjoint's dL/dx0, dL/dtheta,
//                                                             and its backward pass (y, a per step)
//   exact adjoint, and autograd through sdeint             vs backprop through torchsde.sdeint.
// Tolerance: 1e-5 * max|ref| throughout (the fixture's recommendation; its float32 vs float64
// spread is ~1e-7 * max|ref|). The measured errors are printed.

import { afterAll, describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import { adjointSteps, sdeint, solvePlan } from '../../src/sde/index.js';
import { fixtureDir, npy, relMaxErr, SdeAdjointFixture, traceCollector } from './helpers.js';

const dir = fixtureDir('sde_adjoint');
const TOL = 1e-5;

describe.skipIf(!dir)('fixture sde_adjoint (torchsde 0.2.6)', () => {
  const d = dir as string;
  // the fixture's inputs on cpu; the solves and error measures are shared with test/webgpu/sde.test.ts
  const fx = new SdeAdjointFixture(d, 'cpu');
  afterAll(() => fx.dispose());
  const { grid, ts, names } = fx;
  const report: Record<string, number> = {};
  const check = (what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol = TOL) => {
    const e = relMaxErr(got, ref);
    report[what] = e;
    expect(e, what).toBeLessThanOrEqual(tol);
  };

  test('the solver grid and the adjoint grid are torchsde’s', () => {
    expect(solvePlan(ts, 0.125).times).toEqual(grid);
    const steps = npy(d, 'adjoint_pass_step_times.npy').data;
    const ours = adjointSteps(0, 1, 0.125);
    expect(ours.length).toBe(steps.length / 2);
    ours.forEach(([hi, lo], j) => {
      // (+ 0 folds -0 into 0)
      expect(-hi + 0).toBe((steps[2 * j] as number) + 0);
      expect(-lo + 0).toBe((steps[2 * j + 1] as number) + 0);
    });
  });

  test('forward: sdeint euler reproduces x(T) and every step', async () => {
    const { states, xT } = await fx.forward();
    check('forward_states', states, fx.ref('forward_states'));
    check('xT', xT, fx.ref('xT_sdeint'));
  });

  test('continuous adjoint (euler) = sdeint_adjoint(adjoint_method="euler"), incl. parameters and the backward pass', async () => {
    const tr = traceCollector();
    const { value, grads } = await fx.lossGrads((sde, x) =>
      sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: fx.bm(), adjointMethod: 'euler', paramGrads: true, trace: tr.trace }),
    );
    expect(value).toBeCloseTo(-1.5400969982147217, 5);
    const pass = await tr.read();
    check('adjoint_pass_y', pass.y, fx.ref('adjoint_pass_y'));
    check('adjoint_pass_a', pass.a, fx.ref('adjoint_pass_a'));
    names.forEach((n, i) => {
      check(`grad_${n}_adjoint_euler`, grads[i] as Float64Array, fx.ref(`grad_${n}_adjoint_euler`));
    });
  });

  test('continuous adjoint with the default method (milstein) = DiffPure’s call', async () => {
    const { grads } = await fx.lossGrads((sde, x) => sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: fx.bm() }));
    check('grad_x0_adjoint_default', grads[0] as Float64Array, fx.ref('grad_x0_adjoint_default_milstein'));
    // parameters were not asked for: their gradient is zero
    expect(Math.max(...(grads[1] as Float64Array).map(Math.abs))).toBe(0);
  });

  test('exact adjoint = backprop through torchsde.sdeint, incl. parameters', async () => {
    const { grads } = await fx.lossGrads((sde, x) =>
      sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: fx.bm(), mode: 'exact', paramGrads: true }),
    );
    names.forEach((n, i) => {
      check(`grad_${n}_exact`, grads[i] as Float64Array, fx.ref(`grad_${n}_autograd`));
    });
  });

  test('autograd through sdeint = backprop through torchsde.sdeint', async () => {
    const { grads } = await fx.lossGrads((sde, x) => sdeint(sde, x, ts, { dt: 0.125, bm: fx.bm() }));
    names.forEach((n, i) => {
      check(`grad_${n}_autograd`, grads[i] as Float64Array, fx.ref(`grad_${n}_autograd`));
    });
    console.log('sde_adjoint fixture, max|ours - ref| / max|ref|:', JSON.stringify(report, null, 1));
  });
});
