// Parity with torchsde 0.2.6 on ../shared/fixtures/sde_adjoint (a 6-dimensional tanh-MLP SDE,
// 3 samples, 8 Euler steps on a stored Brownian path; see its README and meta.json):
//   forward: sdeint euler                                  vs xT_sdeint, forward_states
//   continuous adjoint (euler / default milstein)         vs sdeint_adjoint's dL/dx0, dL/dtheta,
//                                                             and its backward pass (y, a per step)
//   exact adjoint, and autograd through sdeint             vs backprop through torchsde.sdeint.
// Tolerance: 1e-5 * max|ref| throughout (the fixture's recommendation; its float32 vs float64
// spread is ~1e-7 * max|ref|). The measured errors are printed.

import { describe, expect, test } from 'vitest';
import { sdeintAdjoint } from '../../src/adjoint/index.js';
import * as T from '../../src/index.js';
import { adjointSteps, BrownianReplay, sdeint, solvePlan } from '../../src/sde/index.js';
import { fixtureDir, fixtureSde, hostOf, type MlpParams, npy, relMaxErr, tensorOf } from './helpers.js';

const dir = fixtureDir('sde_adjoint');
const TOL = 1e-5;

describe.skipIf(!dir)('fixture sde_adjoint (torchsde 0.2.6)', () => {
  const d = dir as string;
  const grid = Array.from(npy(d, 'time_grid.npy').data);
  const inc = npy(d, 'brownian_increments.npy');
  const B = 3;
  const D = 6;
  const bm = () => new BrownianReplay({ times: grid, increments: inc.data, shape: [B, D] });
  const x0 = tensorOf(d, 'x0.npy');
  const w = tensorOf(d, 'w.npy');
  const P: MlpParams = {
    W1: tensorOf(d, 'W1.npy'),
    u1: tensorOf(d, 'u1.npy'),
    b1: tensorOf(d, 'b1.npy'),
    W2: tensorOf(d, 'W2.npy'),
    b2: tensorOf(d, 'b2.npy'),
  };
  const names = ['x0', 'W1', 'u1', 'b1', 'W2', 'b2'] as const;
  const ts = [0, 1];
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

  test('forward: sdeint euler reproduces x(T) and every step', () => {
    const ys = sdeint(fixtureSde(P), x0, grid, { method: 'euler', dt: 0.125, bm: bm() });
    check('forward_states', hostOf(ys), npy(d, 'forward_states.npy').data);
    const yT = sdeint(fixtureSde(P), x0, ts, { method: 'euler', dt: 0.125, bm: bm() });
    check('xT', hostOf(T.narrow(yT, 0, 1, 1)), npy(d, 'xT_sdeint.npy').data);
  });

  const lossGrads = (run: (sde: ReturnType<typeof fixtureSde>, x: T.Tensor) => T.Tensor) =>
    T.valueAndGrad(
      (x, W1, u1, b1, W2, b2) => {
        const ys = run(fixtureSde({ W1, u1, b1, W2, b2 } as MlpParams), x);
        return T.sum(T.mul(T.reshape(T.narrow(ys, 0, 1, 1), [B, D]), w));
      },
      { argnums: [0, 1, 2, 3, 4, 5] },
    )(x0, P.W1, P.u1, P.b1, P.W2, P.b2);

  test('continuous adjoint (euler) = sdeint_adjoint(adjoint_method="euler"), incl. parameters and the backward pass', () => {
    const ys: number[][] = [];
    const as: number[][] = [];
    const { value, grad } = lossGrads((sde, x) =>
      sdeintAdjoint(sde, x, ts, {
        dt: 0.125,
        bm: bm(),
        adjointMethod: 'euler',
        paramGrads: true,
        trace: ({ y, a }) => {
          ys.push(Array.from(y.dataSync()));
          as.push(Array.from(a.dataSync()));
        },
      }),
    );
    expect(value.dataSync()[0]).toBeCloseTo(-1.5400969982147217, 5);
    check('adjoint_pass_y', ys.flat(), npy(d, 'adjoint_pass_y.npy').data);
    check('adjoint_pass_a', as.flat(), npy(d, 'adjoint_pass_a.npy').data);
    names.forEach((n, i) => {
      check(`grad_${n}_adjoint_euler`, hostOf(grad[i] as T.Tensor), npy(d, `grad_${n}_adjoint_euler.npy`).data);
    });
  });

  test('continuous adjoint with the default method (milstein) = DiffPure’s call', () => {
    const { grad } = lossGrads((sde, x) => sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: bm() }));
    check('grad_x0_adjoint_default', hostOf(grad[0] as T.Tensor), npy(d, 'grad_x0_adjoint_default_milstein.npy').data);
    // parameters were not asked for: their gradient is zero
    expect(Math.max(...hostOf(grad[1] as T.Tensor).map(Math.abs))).toBe(0);
  });

  test('exact adjoint = backprop through torchsde.sdeint, incl. parameters', () => {
    const { grad } = lossGrads((sde, x) =>
      sdeintAdjoint(sde, x, ts, { dt: 0.125, bm: bm(), mode: 'exact', paramGrads: true }),
    );
    names.forEach((n, i) => {
      check(`grad_${n}_exact`, hostOf(grad[i] as T.Tensor), npy(d, `grad_${n}_autograd.npy`).data);
    });
  });

  test('autograd through sdeint = backprop through torchsde.sdeint', () => {
    const { grad } = lossGrads((sde, x) => sdeint(sde, x, ts, { dt: 0.125, bm: bm() }));
    names.forEach((n, i) => {
      check(`grad_${n}_autograd`, hostOf(grad[i] as T.Tensor), npy(d, `grad_${n}_autograd.npy`).data);
    });
    console.log('sde_adjoint fixture, max|ours - ref| / max|ref|:', JSON.stringify(report, null, 1));
  });
});
