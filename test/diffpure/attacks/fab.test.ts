// FAB and FAB-T: the box-constrained hyperplane projections against brute-force solutions, the attack on small
// linear classifiers whose minimal adversarial perturbation is known, input checks, and FAB-T replayed against the
// official fra31/auto-attack 6482e4d run recorded in ../shared/fixtures/attacks (fab_t_linf; tolerances are the
// fixture README's).

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { type FabTrace, fab, fabTargeted, rankedClass } from '../../../src/diffpure/attacks/fab.js';
import { projectionL2, projectionLinf } from '../../../src/diffpure/attacks/fab-projections.js';
import type { Classifier, Images } from '../../../src/diffpure/attacks/model.js';
import type { AttackRandom, DrawPurpose } from '../../../src/diffpure/attacks/random.js';
import { KeyedRandom } from '../../../src/diffpure/attacks/random.js';
import { fromArray } from '../../../src/tensor/prims/creation.js';
import { add } from '../../../src/tensor/prims/elementwise.js';
import { matmul } from '../../../src/tensor/prims/matmul.js';
import { reshape } from '../../../src/tensor/prims/shape.js';
import { bools, f32, fixtureImages, fixtureLabels, fixtureModel, haveAttacks, npy } from './fixture.js';

// ---------------------------------------------------------------------------------------------------------------
// brute-force references (float64)

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += (a[j] as number) * (b[j] as number);
  return s;
};

/**
 * min over the box of <w, t + d> with ||d||_inf <= lambda, after orienting w so that <w, t> >= b: the value the
 * Linf projection drives down to b. Non-increasing in lambda.
 */
function linfReach(t: number[], w: number[], lambda: number): number {
  let s = 0;
  for (let j = 0; j < t.length; j++) {
    const wj = w[j] as number;
    const tj = t[j] as number;
    s += wj > 0 ? wj * (tj - Math.min(lambda, tj)) : wj * (tj + Math.min(lambda, 1 - tj));
  }
  return s;
}

/** Solve A x = r (n x n) by Gaussian elimination with partial pivoting; null if singular. */
function solve(a: number[][], r: number[]): number[] | null {
  const n = r.length;
  const m = a.map((row, i) => [...row, r[i] as number]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++)
      if (Math.abs((m[i] as number[])[c] as number) > Math.abs((m[p] as number[])[c] as number)) p = i;
    if (Math.abs((m[p] as number[])[c] as number) < 1e-12) return null;
    [m[c], m[p]] = [m[p] as number[], m[c] as number[]];
    const piv = m[c] as number[];
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const row = m[i] as number[];
      const q = (row[c] as number) / (piv[c] as number);
      for (let j = c; j <= n; j++) row[j] = (row[j] as number) - q * (piv[j] as number);
    }
  }
  return m.map((row, i) => (row[n] as number) / (row[i] as number));
}

/**
 * The Linf projection as a linear program, solved by enumerating vertices: minimise lambda over (d, lambda) with
 * <w, d> = b - <w, t>, |d_j| <= lambda, -t_j <= d_j <= 1 - t_j. A vertex has n + 1 active constraints: the
 * equality and n of the 4n inequalities. Returns the optimal lambda, or null if infeasible.
 */
function linfLp(t: number[], w: number[], b: number): number | null {
  const n = t.length;
  // inequality rows as (coefficients over d, coefficient of lambda, rhs): row . (d, lambda) <= rhs
  const ineq: { a: number[]; l: number; r: number }[] = [];
  for (let j = 0; j < n; j++) {
    const e = (s: number) => Array.from({ length: n }, (_, i) => (i === j ? s : 0));
    ineq.push({ a: e(1), l: -1, r: 0 }, { a: e(-1), l: -1, r: 0 }, { a: e(1), l: 0, r: 1 - (t[j] as number) });
    ineq.push({ a: e(-1), l: 0, r: t[j] as number });
  }
  const rhs0 = b - dot(w, t);
  let best: number | null = null;
  const pick = (start: number, chosen: number[]) => {
    if (chosen.length === n) {
      const a = [[...w, 0], ...chosen.map((i) => [...(ineq[i] as { a: number[] }).a, (ineq[i] as { l: number }).l])];
      const sol = solve(a, [rhs0, ...chosen.map((i) => (ineq[i] as { r: number }).r)]);
      if (!sol) return;
      const feasible = ineq.every((q) => dot(q.a, sol) + q.l * (sol[n] as number) <= q.r + 1e-9);
      if (feasible && (best === null || (sol[n] as number) < best)) best = sol[n] as number;
      return;
    }
    for (let i = start; i < ineq.length; i++) pick(i + 1, [...chosen, i]);
  };
  pick(0, []);
  return best;
}

/**
 * The L2 projection from its optimality conditions: d_j = clip(-mu w_j, -t_j, 1 - t_j) with the scalar mu >= 0
 * found by bisection (after orienting w so that <w, t> >= b). Null if infeasible.
 */
function l2Kkt(t: number[], w0: number[], b0: number): number[] | null {
  const sgn = dot(w0, t) - b0 >= 0 ? 1 : -1;
  const w = w0.map((v) => v * sgn);
  const b = b0 * sgn;
  const at = (mu: number) => t.map((tj, j) => Math.min(Math.max(-mu * (w[j] as number), -tj), 1 - tj));
  const value = (mu: number) => dot(w, at(mu)) + dot(w, t);
  let hi = 1;
  while (value(hi) > b && hi < 1e12) hi *= 2;
  if (value(hi) > b + 1e-12) return null;
  let lo = 0;
  for (let it = 0; it < 200; it++) {
    const mid = (lo + hi) / 2;
    if (value(mid) > b) lo = mid;
    else hi = mid;
  }
  return at(hi);
}

const linfNorm = (d: ArrayLike<number>) => Array.from(d).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const l2Norm = (d: ArrayLike<number>) => Math.sqrt(dot(d, d));

// a projection problem: t in [0, 1]^n (with some coordinates at the bounds), w with some zeros (the others of
// magnitude 0.05..2, so that the problem is well conditioned in float32), b anywhere
const weight = fc.oneof(
  fc.constant(0),
  fc.tuple(fc.double({ min: 0.05, max: 2, noNaN: true }), fc.boolean()).map(([m, neg]) => (neg ? -m : m)),
);
const problem = (n: number) =>
  fc.record({
    t: fc.array(fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })), {
      minLength: n,
      maxLength: n,
    }),
    w: fc.array(weight, { minLength: n, maxLength: n }),
    b: fc.double({ min: -3, max: 3, noNaN: true }),
  });

const f32s = (a: number[]) => Float32Array.from(a);

describe('FAB projections', () => {
  test.each([2, 3, 4])('Linf, n = %i: on the hyperplane, in the box, and as short as the LP optimum', (n) => {
    let feasibleSeen = 0;
    let infeasibleSeen = 0;
    fc.assert(
      fc.property(problem(n), ({ t, w, b }) => {
        const t32 = Array.from(f32s(t));
        const w32 = Array.from(f32s(w));
        const b32 = Math.fround(b);
        const d = Array.from(projectionLinf(f32s(t32), f32s(w32), [b32], n));
        const x = t32.map((v, j) => v + (d[j] as number));
        for (const v of x) expect(v).toBeGreaterThanOrEqual(-1e-6);
        for (const v of x) expect(v).toBeLessThanOrEqual(1 + 1e-6);
        w32.forEach((wj, j) => {
          if (wj === 0) expect(Math.abs(d[j] as number)).toBe(0); // coordinates the hyperplane ignores never move
        });
        const opt = linfLp(t32, w32, b32);
        const scale = 1 + w32.reduce((s, v) => s + Math.abs(v), 0);
        if (opt === null) {
          // unreachable: the far box corner (every coordinate at the bound that moves <w, .> towards b)
          infeasibleSeen++;
          const sgn = dot(w32, t32) - b32 >= 0 ? 1 : -1;
          w32.forEach((wj, j) => {
            if (wj * sgn > 0) expect(x[j]).toBeCloseTo(0, 6);
            if (wj * sgn < 0) expect(x[j]).toBeCloseTo(1, 6);
          });
          return;
        }
        feasibleSeen++;
        expect(Math.abs(dot(w32, x) - b32)).toBeLessThanOrEqual(1e-5 * scale);
        expect(Math.abs(linfNorm(d) - opt)).toBeLessThanOrEqual(1e-5);
      }),
      { numRuns: 300 },
    );
    expect(feasibleSeen).toBeGreaterThan(50);
    expect(infeasibleSeen).toBeGreaterThan(5);
  });

  test.each([2, 3, 4])('L2, n = %i: on the hyperplane, in the box, and the KKT solution', (n) => {
    let feasibleSeen = 0;
    fc.assert(
      fc.property(problem(n), ({ t, w, b }) => {
        const t32 = Array.from(f32s(t));
        const w32 = Array.from(f32s(w));
        const b32 = Math.fround(b);
        const d = Array.from(projectionL2(f32s(t32), f32s(w32), [b32], n));
        const x = t32.map((v, j) => v + (d[j] as number));
        for (const v of x) expect(v).toBeGreaterThanOrEqual(-1e-6);
        for (const v of x) expect(v).toBeLessThanOrEqual(1 + 1e-6);
        const ref = l2Kkt(t32, w32, b32);
        const scale = 1 + l2Norm(w32);
        const sgn = dot(w32, t32) - b32 >= 0 ? 1 : -1;
        const corner = t32.map((tj, j) => ((w32[j] as number) * sgn > 0 ? 0 : (w32[j] as number) * sgn < 0 ? 1 : tj));
        // the hyperplane through the far corner (up to float32 rounding): the official code may return d = 0 there
        // (see the next test)
        if (Math.abs(dot(w32, corner) - b32) <= 1e-6 * scale) return;
        if (ref === null) {
          // unreachable: the far box corner
          d.forEach((v, j) => {
            if ((w32[j] as number) !== 0)
              expect(Math.abs((t32[j] as number) + v - (corner[j] as number))).toBeLessThanOrEqual(1e-5);
          });
          return;
        }
        feasibleSeen++;
        expect(Math.abs(dot(w32, x) - b32)).toBeLessThanOrEqual(1e-5 * scale);
        // 1e-4: the official ws = ||w||^2 - cumsum(w_j^2) cancels in float32 when one |w_j| dominates
        d.forEach((v, j) => {
          expect(Math.abs(v - (ref[j] as number))).toBeLessThanOrEqual(1e-4);
        });
      }),
      { numRuns: 300 },
    );
    expect(feasibleSeen).toBeGreaterThan(50);
  });

  test('official quirk kept: L2 onto a hyperplane through the far corner exactly gives d = 0', () => {
    // the solution needs every moving coordinate at its bound: lb lands past the last breakpoint, where
    // ws[lb] = 0, and the official code sets alpha = 0 there (alpha[ws[c2, lb] == 0] = 0): nothing moves
    expect(Array.from(projectionL2(f32s([0, 1]), f32s([0, 0.0625]), [0], 2), Math.abs)).toEqual([0, 0]);
    // a hair inside the box the projection is the expected one
    const d = projectionL2(f32s([0, 1]), f32s([0, 0.0625]), [0.001], 2);
    expect(Math.abs(d[0] as number)).toBe(0);
    expect(d[1]).toBeCloseTo(0.016 - 1, 6);
    // Linf has no such case
    expect(Array.from(projectionLinf(f32s([0, 1]), f32s([0, 0.0625]), [0], 2))).toEqual([0, -1]);
  });

  test('n = 3072 (a fixture image): Linf reaches the hyperplane at the optimal radius, L2 at the KKT point', () => {
    const n = 3 * 32 * 32;
    const rnd = new KeyedRandom(5);
    for (let row = 0; row < 6; row++) {
      const u = rnd.uniform(['t'], [row], n);
      const t = Array.from(u, (v, j) => (j % 7 === 0 ? 0 : j % 11 === 0 ? 1 : v));
      const w = Array.from(rnd.normal(['w'], [row], n), (v, j) => (j % 13 === 0 ? 0 : v));
      // a hyperplane a fraction of the way to the box's far corner
      const wt = dot(w, t);
      const far = linfReach(t, w, 1);
      const b = Math.fround(wt + (far - wt) * [0.001, 0.05, 0.3, 0.9, 0.999, 1.2][row]!);
      const dl = projectionLinf(f32s(t), f32s(w), [b], n);
      const xl = t.map((v, j) => v + (dl[j] as number));
      for (const v of xl) expect(v >= -1e-6 && v <= 1 + 1e-6).toBe(true);
      if (row < 5) {
        expect(Math.abs(dot(w, xl) - b)).toBeLessThanOrEqual(1e-4 * Math.abs(wt - far));
        // the optimal radius: the smallest lambda whose reach gets to b, by bisection
        let lo = 0;
        let hi = 1;
        for (let it = 0; it < 80; it++) {
          const mid = (lo + hi) / 2;
          if (linfReach(t, w, mid) > b) lo = mid;
          else hi = mid;
        }
        expect(Math.abs(linfNorm(dl) - hi)).toBeLessThanOrEqual(1e-5 * hi + 1e-7);
      }
      const d2 = projectionL2(f32s(t), f32s(w), [b], n);
      const ref = l2Kkt(t, w, b);
      if (row < 5) {
        expect(ref).not.toBeNull();
        let err = 0;
        d2.forEach((v, j) => {
          err = Math.max(err, Math.abs(v - (ref as number[])[j]!));
        });
        expect(err).toBeLessThanOrEqual(1e-4 * Math.max(linfNorm(d2), 1e-3));
      } else expect(ref).toBeNull();
    }
  });

  test('rows are independent: a batch gives the rows projected one at a time', () => {
    const n = 50;
    const rnd = new KeyedRandom(9);
    const rows = [0, 1, 2, 3];
    const t = rnd.uniform(['t'], rows, n);
    const w = rnd.normal(['w'], rows, n);
    const b = Float32Array.from(rows, (r) => dot(w.subarray(r * n, (r + 1) * n), t.subarray(r * n, (r + 1) * n)) * 0.7);
    for (const proj of [projectionLinf, projectionL2]) {
      const all = proj(t, w, b, n);
      for (const r of rows) {
        const one = proj(t.slice(r * n, (r + 1) * n), w.slice(r * n, (r + 1) * n), [b[r] as number], n);
        expect(Array.from(all.subarray(r * n, (r + 1) * n))).toEqual(Array.from(one));
      }
    }
  });

  test('bad shapes are refused', () => {
    expect(() => projectionLinf(new Float32Array(6), new Float32Array(6), [0, 0], 4)).toThrow(/rows of 4/);
    expect(() => projectionL2(new Float32Array(6), new Float32Array(6), [0], 3)).toThrow(/1 offsets for 2 rows/);
    expect(() => projectionL2(new Float32Array(6), new Float32Array(4), [0], 3)).toThrow(/rows of 3/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// linear classifiers: z = W x + c, with the minimal adversarial perturbation known in closed form

const C = 1;
const H = 2;
const W = 3;
const DIM = C * H * W;

function linearModel(weights: number[][], bias: number[]): Classifier {
  const k = weights.length;
  const wt = fromArray(
    Float32Array.from({ length: DIM * k }, (_, i) => (weights[i % k] as number[])[Math.floor(i / k)] as number),
    [DIM, k],
  );
  const bt = fromArray(Float32Array.from(bias), [1, k]);
  return (x) => add(matmul(reshape(x, [x.shape[0] as number, DIM]), wt), bt);
}

function images(rows: number[][]): Images {
  return { data: Float32Array.from(rows.flat()), shape: [rows.length, C, H, W] };
}

const rowOf = (x: Images, r: number) => Array.from(x.data.subarray(r * DIM, (r + 1) * DIM));

describe('FAB on linear classifiers', () => {
  // two classes: z_1 - z_0 = <v, x> + c; from x of class 0 the nearest class-1 point in the box is the projection
  const v = [1, -2, 0.5, 0, 3, -1];
  const c = -1.2;
  const model2 = linearModel([[0, 0, 0, 0, 0, 0], v], [0, c]);
  const x = images([
    [0.1, 0.6, 0.2, 0.5, 0.3, 0.4],
    [0.0, 0.5, 1.0, 0.2, 0.1, 0.9],
    [0.9, 0.1, 0.3, 0.3, 0.4, 0.2], // <v, x> + c > 0: classified as 1
  ]);
  const y = [0, 0, 0]; // the third is classified as 1

  for (const norm of ['Linf', 'L2'] as const) {
    test(`${norm}: FAB-T and FAB find the boundary within FAB's overshoot, and eps decides success`, async () => {
      const minimal = [0, 1].map((r) => {
        const d = (norm === 'Linf' ? projectionLinf : projectionL2)(
          Float32Array.from(rowOf(x, r)),
          Float32Array.from(v),
          [-c],
          DIM,
        );
        return norm === 'Linf' ? linfNorm(d) : l2Norm(d);
      });
      const nrm = (a: number[], b: number[]) => {
        const d = a.map((ai, j) => ai - (b[j] as number));
        return norm === 'Linf' ? linfNorm(d) : l2Norm(d);
      };
      for (const attack of [fabTargeted, fab]) {
        const runs: FabTrace[] = [];
        const res = await attack(model2, x, y, {
          norm,
          eps: 10,
          nIter: 20,
          nTargetClasses: 1,
          trace: (e) => {
            if (e.kind !== 'iter') runs.push(e);
          },
        });
        expect(res.robust).toEqual([false, false, false]); // rows 0 and 1 fooled, row 2 misclassified from the start
        for (const r of [0, 1]) {
          const found = nrm(rowOf(res.adv, r), rowOf(x, r));
          expect(found).toBeGreaterThanOrEqual((minimal[r] as number) * (1 - 1e-5));
          expect(found).toBeLessThanOrEqual((minimal[r] as number) * 1.05 + 1e-6);
        }
        expect(rowOf(res.adv, 2)).toEqual(rowOf(x, 2));
        const run = runs.find((e) => e.kind === 'run') as Extract<FabTrace, { kind: 'run' }>;
        expect(run.rows).toEqual([0, 1]);
        expect(run.targets === null).toBe(attack === fab);
        if (run.targets) expect(Array.from(run.targets)).toEqual([1, 1]);

        // an eps just below what was found: not a success, the clean image comes back
        const found0 = nrm(rowOf(res.adv, 0), rowOf(x, 0));
        const tight = await attack(model2, x, y, { norm, eps: found0 * 0.999, nIter: 20, nTargetClasses: 1 });
        expect(tight.robust[0]).toBe(true);
        expect(rowOf(tight.adv, 0)).toEqual(rowOf(x, 0));
      }
    });
  }

  test('untargeted FAB, 3 classes: the nearest of the decision boundaries, within the overshoot', async () => {
    // away from the box's faces the distance to {z_k >= z_y} is |z_k - z_y| / ||w_k - w_y||_q (q dual to p);
    // misclassification is the union of these half-spaces, so the minimal adversarial norm is the smallest of them
    const wk = [
      [1, 0.5, -0.5, 0.2, 0, 0.3],
      [0.4, 1, 0.1, -0.3, 0.6, 0],
      [-0.2, 0.3, 1, 0.5, 0.1, -0.4],
    ];
    const bias = [0.3, 0.1, 0];
    const model3 = linearModel(wk, bias);
    const x3 = images([
      [0.5, 0.45, 0.4, 0.5, 0.5, 0.5],
      [0.45, 0.5, 0.5, 0.5, 0.55, 0.5],
    ]);
    const y3 = [0, 1];
    for (const norm of ['Linf', 'L2'] as const) {
      const opt = [0, 1].map((r) => {
        const xr = rowOf(x3, r);
        const zr = wk.map((w, k) => dot(w, xr) + (bias[k] as number));
        const yr = y3[r] as number;
        let m = Number.POSITIVE_INFINITY;
        for (let k = 0; k < 3; k++) {
          if (k === yr) continue;
          const g = (wk[k] as number[]).map((v, j) => v - ((wk[yr] as number[])[j] as number));
          const q = norm === 'Linf' ? g.reduce((s, v) => s + Math.abs(v), 0) : l2Norm(g);
          m = Math.min(m, Math.abs((zr[yr] as number) - (zr[k] as number)) / q);
        }
        return m;
      });
      expect(Math.max(...opt)).toBeLessThan(0.3); // the boxes' faces stay out of reach
      const res = await fab(model3, x3, y3, { norm, eps: 1, nIter: 30 });
      expect(res.robust).toEqual([false, false]);
      for (const r of [0, 1]) {
        const dr = rowOf(res.adv, r).map((v, j) => v - (rowOf(x3, r)[j] as number));
        const found = norm === 'Linf' ? linfNorm(dr) : l2Norm(dr);
        expect(found).toBeGreaterThanOrEqual((opt[r] as number) * (1 - 1e-5));
        expect(found).toBeLessThanOrEqual((opt[r] as number) * 1.05 + 1e-6);
      }
    }
  });

  test('eps = 0: robust is exactly clean-correct and the images come back unchanged', async () => {
    const model3 = linearModel(
      [
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
      ],
      [0, 0, 0],
    );
    const x3 = images([
      [0.9, 0.2, 0.1, 0, 0, 0],
      [0.2, 0.8, 0.7, 0, 0, 0],
      [0.1, 0.2, 0.6, 0, 0, 0],
      [0.1, 0.2, 0.6, 0, 0, 0],
    ]);
    const y3 = [0, 1, 2, 0]; // the last one is misclassified
    for (const attack of [fabTargeted, fab]) {
      const res = await attack(model3, x3, y3, { norm: 'Linf', eps: 0, nIter: 5, nTargetClasses: 2 });
      expect(res.robust).toEqual([true, true, true, false]);
      expect(Array.from(res.adv.data)).toEqual(Array.from(x3.data));
    }
  });

  test('restarts > 0 draw one random start per run, keyed by the sample ids; restart 0 draws nothing', async () => {
    const calls: { kind: string; purpose: DrawPurpose; rows: number[]; perRow: number }[] = [];
    const inner = new KeyedRandom(3);
    const recording: AttackRandom = {
      uniform: (purpose, rows, perRow) => {
        calls.push({ kind: 'uniform', purpose, rows: [...rows], perRow });
        return inner.uniform(purpose, rows, perRow);
      },
      normal: (purpose, rows, perRow) => {
        calls.push({ kind: 'normal', purpose, rows: [...rows], perRow });
        return inner.normal(purpose, rows, perRow);
      },
      shared: () => {
        throw new Error('FAB draws no shared numbers');
      },
      noiseKey: (purpose, row) => inner.noiseKey(purpose, row),
    };
    // a hard target (eps tiny) so every point stays robust through every run
    await fabTargeted(model2, x, y, {
      norm: 'Linf',
      eps: 1e-6,
      nIter: 2,
      nRestarts: 3,
      nTargetClasses: 1,
      random: recording,
      sampleIds: [7, 8, 9],
    });
    expect(calls).toEqual([
      { kind: 'uniform', purpose: ['fab-t', 2, 1], rows: [7, 8], perRow: DIM },
      { kind: 'uniform', purpose: ['fab-t', 2, 2], rows: [7, 8], perRow: DIM },
    ]);
    calls.length = 0;
    await fab(model2, x, y, { norm: 'L2', eps: 1e-6, nIter: 2, nRestarts: 2, random: recording });
    expect(calls).toEqual([{ kind: 'normal', purpose: ['fab', 1], rows: [0, 1], perRow: DIM }]);
  });

  test('a stochastic classifier gets a key per row for every forward, the same whatever the batch', async () => {
    const seen: number[][] = [];
    const noisy: Classifier = (xt, keys) => {
      seen.push([...keys]);
      return model2(xt, keys);
    };
    const full = await fabTargeted(noisy, x, y, {
      norm: 'Linf',
      eps: 10,
      nIter: 3,
      nTargetClasses: 1,
      sampleIds: [10, 11, 12],
    });
    const keysFull = seen.splice(0);
    const one = await fabTargeted(noisy, images([rowOf(x, 1)]), [0], {
      norm: 'Linf',
      eps: 10,
      nIter: 3,
      nTargetClasses: 1,
      sampleIds: [11],
    });
    const keysOne = seen.splice(0);
    expect(rowOf(one.adv, 0)).toEqual(rowOf(full.adv, 1));
    // every forward of the single-image run used the key image 11 had in the same forward of the batch run
    expect(keysOne.length).toBe(keysFull.length);
    keysOne.forEach((k, i) => {
      expect(keysFull[i]).toContain(k[0]);
    });
  });

  test('rankedClass: argsort(z)[:, -rank]', () => {
    const z = Float32Array.from([0.1, 3, -1, 2, 5, 0, 0, 1]);
    expect(Array.from(rankedClass(z, 4, 2))).toEqual([3, 3]);
    expect(Array.from(rankedClass(z, 4, 4))).toEqual([2, 1]); // ties: the later index ranks higher
  });

  test('bad inputs are refused before any work', async () => {
    const o = { norm: 'Linf' as const, eps: 0.1 };
    const bad = images([[0.1, 0.2, 1.5, 0, 0, 0]]);
    await expect(fabTargeted(model2, bad, [0], o)).rejects.toThrow(/\[0, 1\]/);
    await expect(fab(model2, x, [0, 1], o)).rejects.toThrow(/2 labels for 3 images/);
    await expect(fab(model2, x, y, { ...o, norm: 'L1' as never })).rejects.toThrow(/norm must be one of/);
    await expect(fab(model2, x, y, { ...o, eps: -1 })).rejects.toThrow(/eps must be/);
    await expect(fab(model2, x, y, { ...o, nIter: 0 })).rejects.toThrow(/nIter must be a positive integer/);
    await expect(fab(model2, x, y, { ...o, nRestarts: 1.5 })).rejects.toThrow(/nRestarts/);
    await expect(fab(model2, x, y, { ...o, beta: 0 })).rejects.toThrow(/beta/);
    await expect(fab(model2, x, y, { ...o, alphaMax: 2 })).rejects.toThrow(/alphaMax/);
    await expect(fabTargeted(model2, x, y, { ...o, nTargetClasses: 2 })).rejects.toThrow(
      /nTargetClasses must be in 1..1/,
    );
    await expect(fabTargeted(model2, x, y, { ...o, sampleIds: [1, 2] })).rejects.toThrow(/2 sample ids for 3 images/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// the official run

const N = 16;
const D = 3 * 32 * 32;
const NOT_FOUND = 1e10;

describe.skipIf(!haveAttacks)('FAB-T replays fra31/auto-attack 6482e4d (fab_t_linf)', () => {
  test('Linf eps 0.025, 9 target classes, 100 iterations', async () => {
    const x = fixtureImages();
    const y = fixtureLabels();
    const { model } = fixtureModel();
    const runs: Extract<FabTrace, { kind: 'run' }>[] = [];
    const results: Extract<FabTrace, { kind: 'result' }>[] = [];
    const iters = new Map<string, Float32Array>();
    const t0 = performance.now();
    const res = await fabTargeted(model, x, y, {
      norm: 'Linf',
      eps: 0.025,
      nIter: 100,
      nTargetClasses: 9,
      trace: (e) => {
        if (e.kind === 'run') runs.push(e);
        else if (e.kind === 'result') results.push(e);
        else iters.set(`${e.run}/${e.i}`, e.minNorm);
      },
    });
    const seconds = (performance.now() - t0) / 1000;

    const mask = npy('fab_t_linf/run_mask.npy').data;
    const target = npy('fab_t_linf/run_target.npy').data;
    const success = npy('fab_t_linf/run_success.npy').data;
    const minNorm = npy('fab_t_linf/run_min_norm.npy').data;
    const minNormIters = npy('fab_t_linf/run_min_norm_iters.npy').data;
    const R = 9;

    // run structure: exact
    expect(runs.map((e) => e.run)).toEqual(Array.from({ length: R }, (_, r) => r));
    let minErr = 0;
    let iterErr = 0;
    let firstDiff = '';
    for (let r = 0; r < R; r++) {
      const rows = Array.from({ length: N }, (_, n) => n).filter((n) => mask[r * N + n] !== 0);
      const run = runs[r] as (typeof runs)[number];
      const result = results[r] as (typeof results)[number];
      expect(run.targetClass).toBe(r + 2);
      expect(run.rows, `run ${r} rows`).toEqual(rows);
      expect(run.attacked, `run ${r} attacked`).toEqual(rows);
      expect(Array.from(run.targets as Int32Array), `run ${r} targets`).toEqual(rows.map((n) => target[r * N + n]));
      // success decisions: exact
      expect(result.success, `run ${r} success`).toEqual(rows.map((n) => success[r * N + n] !== 0));
      // res2 at the end and after every iteration: found at the same time, norms within 1e-3
      const cmp = (got: ArrayLike<number>, ref: ArrayLike<number>, at: (n: number) => number, what: string) => {
        let m = 0;
        rows.forEach((n, i) => {
          const g = got[i] as number;
          const want = ref[at(n)] as number;
          if (g >= NOT_FOUND !== want >= NOT_FOUND) {
            if (!firstDiff) firstDiff = `${what} image ${n}: ${g} vs ${want}`;
            m = Number.POSITIVE_INFINITY;
          } else if (want < NOT_FOUND) m = Math.max(m, Math.abs(g - want));
        });
        return m;
      };
      minErr = Math.max(
        minErr,
        cmp(result.minNorm, minNorm, (n) => r * N + n, `run ${r} end`),
      );
      for (let i = 0; i < 100; i++) {
        const got = iters.get(`${r}/${i}`) as Float32Array;
        iterErr = Math.max(
          iterErr,
          cmp(got, minNormIters, (n) => (r * 100 + i) * N + n, `run ${r} iteration ${i}`),
        );
      }
    }

    // the returned images: their norms within 1e-3, the clean image where nothing was found
    const normRef = f32('fab_t_linf/norm_found.npy');
    const advRef = f32('fab_t_linf/adv.npy');
    let normErr = 0;
    let advErr = 0;
    for (let n = 0; n < N; n++) {
      let m = 0;
      for (let j = n * D; j < (n + 1) * D; j++) {
        m = Math.max(m, Math.abs((res.adv.data[j] as number) - (x.data[j] as number)));
        advErr = Math.max(advErr, Math.abs((res.adv.data[j] as number) - (advRef[j] as number)));
      }
      normErr = Math.max(normErr, Math.abs(m - (normRef[n] as number)));
      if (normRef[n] === 0) expect(m, `image ${n} returned unchanged`).toBe(0);
    }
    console.log(
      `fab_t_linf: ${seconds.toFixed(1)} s; res2 at the end of each run max err ${minErr.toExponential(2)}, ` +
        `after every iteration ${iterErr.toExponential(2)}${firstDiff ? ` (first success mismatch: ${firstDiff})` : ''}; ` +
        `norm_found max err ${normErr.toExponential(2)}; returned images max err ${advErr.toExponential(2)} ` +
        '(official float32 vs float64: res2 5.2e-4, images 4.6e-2)',
    );
    expect(minErr).toBeLessThanOrEqual(1e-3);
    expect(normErr).toBeLessThanOrEqual(1e-3);
    // final flags: exact
    expect(res.robust).toEqual(bools('fab_t_linf/robust.npy'));
  }, 900_000);
});
