// APGD-CE (Linf, L2), APGD-DLR and APGD-T replayed against the official fra31/auto-attack 6482e4d runs recorded
// in ../shared/fixtures/attacks, with the recorded random starts; tolerances are the fixture README's.

import { describe, expect, test } from 'vitest';
import {
  type ApgdTrace,
  apgd,
  apgdCheckpoints,
  apgdTargeted,
  StepSizeRule,
} from '../../../src/diffpure/attacks/apgd.js';
import { ReplayRandom } from '../../../src/diffpure/attacks/random.js';
import { bools, f32, fixtureImages, fixtureLabels, fixtureModel, haveAttacks, npy, rowsOf } from './fixture.js';

const N = 16;
const D = 3 * 32 * 32;
const N_ITER = 100;

/**
 * max |a - b| / max(|b|, 1e-2) over the rows given: relative, except for losses near zero (a targeted DLR loss
 * crosses 0 where the two logits cross; public apgd_t_linf has one at 0.0015), where the absolute error is used.
 */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>, rows: number[]): number {
  let m = 0;
  for (const r of rows)
    m = Math.max(m, Math.abs((a[r] as number) - (b[r] as number)) / Math.max(Math.abs(b[r] as number), 1e-2));
  return m;
}

/** Fraction of the values of the given rows within tol, and the rows with a value outside 5e-3. */
function closeFraction(got: Float32Array, ref: Float32Array, rows: number[], tol: number) {
  let ok = 0;
  let all = 0;
  let maxErr = 0;
  const rowsOver: number[] = [];
  const rowsFar: number[] = [];
  for (const r of rows) {
    let rowMax = 0;
    for (let j = r * D; j < (r + 1) * D; j++) {
      const e = Math.abs((got[j] as number) - (ref[j] as number));
      rowMax = Math.max(rowMax, e);
      if (e <= tol) ok++;
      all++;
    }
    maxErr = Math.max(maxErr, rowMax);
    if (rowMax > tol) rowsOver.push(r);
    if (rowMax > 5e-3) rowsFar.push(r);
  }
  return { fraction: ok / all, maxErr, rowsOver, rowsFar };
}

interface Recorded {
  runs: ApgdTrace[];
  iters: Map<string, Extract<ApgdTrace, { kind: 'iter' }>>;
  checks: Extract<ApgdTrace, { kind: 'checkpoint' }>[];
}

function recorder(): { rec: Recorded; trace: (e: ApgdTrace) => void } {
  const rec: Recorded = { runs: [], iters: new Map(), checks: [] };
  return {
    rec,
    trace: (e) => {
      if (e.kind === 'run') rec.runs.push(e);
      else if (e.kind === 'iter') rec.iters.set(`${e.run}/${e.i}`, { ...e, x: e.x.slice() });
      else rec.checks.push(e);
    },
  };
}

/** Per run: the official [R, N] masks, and our trace rows mapped to full-batch positions. */
function runRows(folder: string): number[][] {
  const mask = npy(`${folder}/run_mask.npy`);
  const r = mask.shape[0] as number;
  return Array.from({ length: r }, (_, i) => {
    const rows: number[] = [];
    for (let n = 0; n < N; n++) if (mask.data[i * N + n]) rows.push(n);
    return rows;
  });
}

/** Our per-iteration value of run r scattered to [N] (0 where not attacked), like the fixture's arrays. */
function scatter(values: Float32Array, rows: number[]): Float32Array {
  const out = new Float32Array(N);
  rows.forEach((n, i) => {
    out[n] = values[i] as number;
  });
  return out;
}

function scatterImages(x: Float32Array, rows: number[]): Float32Array {
  const out = new Float32Array(N * D);
  rows.forEach((n, i) => {
    out.set(x.subarray(i * D, (i + 1) * D), n * D);
  });
  return out;
}

test('APGD checkpoints for n_iter 100: intervals 22, 19, 16, 13, 10, 7, 6, 6', () => {
  expect(apgdCheckpoints(100)).toEqual([21, 40, 56, 69, 79, 86, 92, 98]);
  const cps = apgdCheckpoints(100);
  expect(cps.map((c, i) => c - (i === 0 ? -1 : (cps[i - 1] as number)))).toEqual([22, 19, 16, 13, 10, 7, 6, 6]);
});

describe.skipIf(!haveAttacks)('APGD against the official runs (attacks fixture, cpu)', () => {
  const x = fixtureImages();
  const y = fixtureLabels();

  /** Checks one APGD folder; returns the first iteration where a run's losses leave 1e-3 relative. */
  async function check(
    folder: string,
    run: (random: ReplayRandom, trace: (e: ApgdTrace) => void) => Promise<{ robust: boolean[] }>,
    eps: number,
    opts: { iterates?: boolean } = {},
  ) {
    const { rec, trace } = recorder();
    const rows = runRows(folder);
    const draws = rowsOf(f32(`${folder}/start_draws.npy`), D);
    // one recorded call per run: run r's rows, concatenated
    const calls: Float32Array[] = [];
    let at = 0;
    for (const r of rows) {
      const c = new Float32Array(r.length * D);
      r.forEach((_, i) => {
        c.set(draws[at + i] as Float32Array, i * D);
      });
      at += r.length;
      calls.push(c);
    }
    const random = new ReplayRandom(calls);
    const res = await run(random, trace);
    expect(random.remaining).toBe(0);

    // run structure: exact
    expect(rec.runs.map((e) => (e as { rows: number[] }).rows)).toEqual(rows);
    const lossInit = npy(`${folder}/loss_init.npy`).data;
    const lossSteps = npy(`${folder}/loss_steps.npy`).data;
    const halvedRef = npy(`${folder}/halved.npy`).data;
    // images whose iterate after iteration i (run 0) agrees with the official one within 1e-5 everywhere: a sign
    // flip of a near-zero gradient component (float32 rounding; official f32 vs f64 shows the same) moves one value
    // by a whole step, after which that image's loss may differ by more than the loss tolerance
    const agreeing = (i: number) => {
      if (!opts.iterates) return rows[0] as number[];
      const it = rec.iters.get(`0/${i}`) as Extract<ApgdTrace, { kind: 'iter' }>;
      const c = closeFraction(
        scatterImages(it.x, rows[0] as number[]),
        f32(`${folder}/x_iter${i}.npy`),
        rows[0] as number[],
        1e-5,
      );
      return (rows[0] as number[]).filter((n) => !c.rowsOver.includes(n));
    };
    const agree0 = agreeing(0);
    const agree1 = agreeing(1).filter((n) => agree0.includes(n));
    const divergedAt: number[] = [];
    let initErr = 0;
    let step0Err = 0;
    let step1Err = 0;
    rows.forEach((r, run) => {
      const runEvent = rec.runs[run] as Extract<ApgdTrace, { kind: 'run' }>;
      initErr = Math.max(initErr, relDiff(scatter(runEvent.lossInit, r), lossInit.subarray(run * N, (run + 1) * N), r));
      let diverged = N_ITER;
      for (let i = 0; i < N_ITER; i++) {
        const it = rec.iters.get(`${run}/${i}`) as Extract<ApgdTrace, { kind: 'iter' }>;
        const ref = lossSteps.subarray((run * N_ITER + i) * N, (run * N_ITER + i + 1) * N);
        const ours = scatter(it.loss, r);
        if (run === 0 && i === 0) step0Err = relDiff(ours, ref, agree0);
        if (run === 0 && i === 1) step1Err = relDiff(ours, ref, agree1);
        if (relDiff(ours, ref, r) > 1e-3 && diverged === N_ITER) diverged = i;
      }
      divergedAt.push(diverged);
      // the step-size rule fed the official losses gives the official halvings and step sizes, exactly
      const rule = new StepSizeRule(
        Float32Array.from(r, (n) => lossInit[run * N + n] as number),
        N_ITER,
        0.75,
      );
      const stepRef = npy(`${folder}/step_size.npy`).data;
      const eta = new Float32Array(r.length).fill(Math.fround(2 * eps));
      let c = 0;
      for (let i = 0; i < N_ITER; i++) {
        const at = (run * N_ITER + i) * N;
        expect(
          Array.from(r, (n) => stepRef[at + n]),
          `${folder} run ${run} step size at ${i}`,
        ).toEqual(Array.from(eta));
        const { halved } = rule.observe(
          i,
          Float32Array.from(r, (n) => lossSteps[at + n] as number),
        );
        if (!halved) continue;
        const ref = Array.from(r, (n) => halvedRef[(run * 8 + c) * N + n] !== 0);
        expect(halved, `${folder} run ${run} checkpoint ${i}`).toEqual(ref);
        halved.forEach((h, j) => {
          if (h) eta[j] = (eta[j] as number) / 2;
        });
        c++;
      }
      expect(c).toBe(8);
    });
    const r0 = (rows[0] as number[]).length;
    console.log(
      `${folder}: loss_init rel err ${initErr.toExponential(2)}; loss_steps[0] ${step0Err.toExponential(2)} ` +
        `(${agree0.length} of ${r0} images whose x_iter0 agrees), [1] ${step1Err.toExponential(2)} (${agree1.length}); ` +
        `losses first leave 1e-3 at iteration ${divergedAt.join(', ')} (per run)`,
    );
    expect(initErr).toBeLessThan(1e-4);
    expect(step0Err).toBeLessThan(1e-4);
    expect(step1Err).toBeLessThan(1e-3);
    expect(agree0.length).toBeGreaterThanOrEqual(Math.ceil(r0 / 2));

    // final flags: exact
    expect(res.robust).toEqual(bools(`${folder}/robust.npy`));
    return { rec, rows };
  }

  function checkIterates(folder: string, rec: Recorded, rows: number[], l2: boolean) {
    for (const i of [0, 1]) {
      const it = rec.iters.get(`0/${i}`) as Extract<ApgdTrace, { kind: 'iter' }>;
      const c = closeFraction(scatterImages(it.x, rows), f32(`${folder}/x_iter${i}.npy`), rows, 1e-5);
      console.log(
        `${folder}: x_iter${i} max err ${c.maxErr.toExponential(2)}, ${(100 * c.fraction).toFixed(3)}% of values within 1e-5, ` +
          `images over 1e-5: [${c.rowsOver.join(', ')}]`,
      );
      if (l2) {
        // The official iterates carry PyTorch's own float32 error: at x_iter0 its batch-14 input gradient (oneDNN)
        // is off by up to 2.9e-3 of its largest magnitude for images 6, 11 and 14 of the public set, while ours,
        // PyTorch's at batch 1 and float64 agree to 1e-6 (measured with Debian's PyTorch 1.13). So x_iter1 differs
        // by up to ~1e-3 on those images: the README's 5e-3 bound holds for every image, 1e-5 for most.
        expect(c.rowsFar).toEqual([]);
        expect(c.rowsOver.length).toBeLessThanOrEqual(Math.floor(rows.length / 2));
      } else expect(c.fraction).toBeGreaterThanOrEqual(0.995);
    }
  }

  test('APGD-CE Linf eps 0.025', async () => {
    const { model } = fixtureModel();
    const { rec, rows } = await check(
      'apgd_ce_linf',
      (random, trace) => apgd(model, x, y, { norm: 'Linf', eps: 0.025, loss: 'ce', random, trace }),
      0.025,
      { iterates: true },
    );
    checkIterates('apgd_ce_linf', rec, rows[0] as number[], false);
  }, 300_000);

  test('APGD-CE L2 eps 0.75', async () => {
    const { model } = fixtureModel();
    const { rec, rows } = await check(
      'apgd_ce_l2',
      (random, trace) => apgd(model, x, y, { norm: 'L2', eps: 0.75, loss: 'ce', random, trace }),
      0.75,
      { iterates: true },
    );
    checkIterates('apgd_ce_l2', rec, rows[0] as number[], true);
  }, 300_000);

  test('APGD-DLR Linf eps 0.025 (exact-zero gradients where the loss is exactly 1)', async () => {
    const { model } = fixtureModel();
    const zeroGradIters: number[] = [];
    await check(
      'apgd_dlr_linf',
      (random, trace) =>
        apgd(model, x, y, {
          norm: 'Linf',
          eps: 0.025,
          loss: 'dlr',
          random,
          trace: (e) => {
            trace(e);
            if (e.kind === 'iter') for (const l of e.loss) if (l === 1) zeroGradIters.push(e.i);
          },
        }),
      0.025,
    );
    console.log(`apgd_dlr_linf: ${zeroGradIters.length} (image, iteration) pairs at DLR exactly 1.0`);
  }, 300_000);

  test('APGD-T Linf eps 0.025, 9 target classes', async () => {
    const { model } = fixtureModel();
    const targets: Int32Array[] = [];
    const { rows } = await check(
      'apgd_t_linf',
      (random, trace) =>
        apgdTargeted(model, x, y, {
          norm: 'Linf',
          eps: 0.025,
          nTargetClasses: 9,
          random,
          trace: (e) => {
            trace(e);
            if (e.kind === 'run') targets.push(e.targets as Int32Array);
          },
        }),
      0.025,
    );
    const ref = npy('apgd_t_linf/run_target.npy').data;
    rows.forEach((r, run) => {
      expect(
        Array.from(scatter(Float32Array.from(targets[run] as Int32Array), r)).map((v, n) => (r.includes(n) ? v : -1)),
      ).toEqual(Array.from(ref.subarray(run * N, (run + 1) * N)));
    });
  }, 600_000);
});
