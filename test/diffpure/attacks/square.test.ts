// The Square attack: replayed against the official fra31/auto-attack 6482e4d run recorded in
// ../shared/fixtures/attacks/square_linf (with its recorded draws; tolerances are the fixture README's), and
// property tests (ball, box, eps = 0, seeds, batch independence, call order, input checks) on a tiny linear model.

import { describe, expect, test } from 'vitest';
import type { AttackModel, Images } from '../../../src/diffpure/attacks/model.js';
import { logitsOf, predictions, takeRows } from '../../../src/diffpure/attacks/model.js';
import {
  type AttackRandom,
  type DrawPurpose,
  KeyedRandom,
  ReplayRandom,
} from '../../../src/diffpure/attacks/random.js';
import { type SquareTrace, square, squareEta, squareP, squareSize } from '../../../src/diffpure/attacks/square.js';
import { add, fromArray, matmul, reshape, tidy } from '../../../src/tensor/index.js';
import { bools, f32, fixtureImages, fixtureLabels, fixtureModel, haveAttacks, npy, rowsOf } from './fixture.js';

type IterEvent = Extract<SquareTrace, { kind: 'iter' }>;
type RunEvent = Extract<SquareTrace, { kind: 'run' }>;
type DoneEvent = Extract<SquareTrace, { kind: 'done' }>;

function record() {
  const runs: RunEvent[] = [];
  const iters: IterEvent[] = [];
  const done: DoneEvent[] = [];
  const trace = (e: SquareTrace) => {
    if (e.kind === 'run') runs.push(e);
    else if (e.kind === 'iter') iters.push(e);
    else done.push(e);
  };
  return { runs, iters, done, trace };
}

test('p schedule (resc_schedule False) and window sides', () => {
  const at = [0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001, 4999];
  const div = [1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128];
  expect(at.map((i) => squareP(i, 0.8, 5000, false))).toEqual(div.map((v) => 0.8 / v));
  // rescaled: it -> int(it / n_queries * 10000)
  expect(squareP(2, 0.8, 1000, true)).toBe(0.8 / 2); // int(2 / 1000 * 10000) = 20
  expect(squareP(6, 0.8, 1000, true)).toBe(0.8 / 4); // 60
  // 32x32 (the fixture): s = 29, 20, 14, 10 from iterations 0, 11, 51, 201 (meta.json), then 7, 5, 4, 3
  expect(
    [0, 11, 51, 201, 501, 1001, 2001, 4001].map((i) => squareSize(squareP(i, 0.8, 5000, false), 3, 32, 32, 'Linf')),
  ).toEqual([29, 20, 14, 10, 7, 5, 4, 3]);
  // L2: at least 3 and odd
  expect(
    [0, 11, 51, 201, 501, 1001, 2001, 4001].map((i) => squareSize(squareP(i, 0.8, 5000, false), 3, 32, 32, 'L2')),
  ).toEqual([29, 21, 15, 11, 7, 5, 5, 3]);
  // Python's round(): half to even (sqrt(p * h * w) = 2.5 and 3.5)
  expect(squareSize(6.25 / 16, 1, 4, 4, 'Linf')).toBe(2);
  expect(squareSize(12.25 / 16, 1, 4, 4, 'Linf')).toBe(4);
});

test('eta(s): unit L2 norm, rectangles on top, negated below', () => {
  for (const s of [1, 3, 5, 6, 9, 29]) {
    const e = squareEta(s);
    const n = Math.sqrt(e.reduce((a, v) => a + v * v, 0));
    expect(Math.abs(n - 1)).toBeLessThan(1e-6);
    const half = Math.floor(s / 2);
    for (let j = 0; j < half * s; j++) expect(e[j]).toBeGreaterThan(0);
    for (let j = half * s; j < s * s; j++) expect(e[j]).toBeLessThan(0);
  }
  expect(Array.from(squareEta(1))).toEqual([-1]);
});

// The official run's images are independent given its draws (the window and signs are shared, but each image is
// updated from its own margin only, and robust images keep the loop running all 300 iterations), so a subset of the
// images replayed with its rows of the stripe draws reproduces exactly their part of the run. The default subset
// holds both images fooled during the run (1, 11), the closest miss (8), a robust one (14) and a clean-misclassified
// one (2); DIFFPURE_SLOW=1 replays all 16 (about 3x the time: ~20 ms of CPU per image forward).
const SLOW = process.env.DIFFPURE_SLOW === '1';
const SUBSETS: [string, number[]][] = [
  ['images 1, 2, 8, 11, 14', [1, 2, 8, 11, 14]],
  ...(SLOW ? [['all 16 images', Array.from({ length: 16 }, (_, i) => i)] as [string, number[]]] : []),
];

describe.skipIf(!haveAttacks)('Square against the official run (attacks fixture, cpu)', () => {
  test.each(SUBSETS)(
    'Linf eps 0.025, 300 queries, recorded draws: %s',
    async (_, subset) => {
      const xAll = fixtureImages();
      const yAll = fixtureLabels();
      const N = xAll.shape[0];
      const D = xAll.data.length / N;
      const x = takeRows(xAll, subset);
      const y = Int32Array.from(subset, (i) => yAll[i] as number);
      const { model } = fixtureModel();
      const attacked = bools('square_linf/attacked.npy');
      const attackedIdx = attacked.flatMap((v, i) => (v ? [i] : []));
      const initRows = rowsOf(f32('square_linf/init_draws.npy'), 3 * 32);
      const init = new Float32Array(subset.filter((i) => attacked[i]).length * 96);
      subset
        .filter((i) => attacked[i])
        .forEach((i, a) => {
          init.set(initRows[attackedIdx.indexOf(i)] as Float32Array, a * 96);
        });
      const calls: Float32Array[] = [init];
      for (const d of rowsOf(f32('square_linf/iter_draws.npy'), 5))
        calls.push(d.subarray(0, 1), d.subarray(1, 2), d.subarray(2, 5));
      const random = new ReplayRandom(calls);
      const rec = record();
      const t0 = performance.now();
      const res = await square(model, x, y, {
        norm: 'Linf',
        eps: 0.025,
        nQueries: 300,
        pInit: 0.8,
        random,
        trace: rec.trace,
      });
      const secs = (performance.now() - t0) / 1000;
      expect(random.remaining).toBe(0);

      // run structure, windows and query counts: exact
      const rows = subset.flatMap((i, p) => (attacked[i] ? [p] : [])); // positions in the subset
      expect(rec.runs.map((r) => r.rows)).toEqual([rows]);
      const win = npy('square_linf/window.npy').data;
      expect(rec.iters.length).toBe(win.length / 3);
      rec.iters.forEach((it, i) => {
        expect(it.window, `window of iteration ${i}`).toEqual([win[3 * i], win[3 * i + 1], win[3 * i + 2]]);
      });
      const nqRef = npy('square_linf/n_queries.npy').data;
      const done = rec.done[0] as DoneEvent;
      expect(Array.from(done.nQueries)).toEqual(rows.map((p) => nqRef[subset[p] as number]));

      // margins: 1e-4 relative
      const rel = (got: number, ref: number) => Math.abs(got - ref) / Math.max(Math.abs(ref), 1e-6);
      const marginInit = npy('square_linf/margin_init.npy').data;
      const run = rec.runs[0] as RunEvent;
      let initErr = 0;
      rows.forEach((p, a) => {
        initErr = Math.max(initErr, rel(run.marginInit[a] as number, marginInit[subset[p] as number] as number));
      });
      const marginMin = npy('square_linf/margin_min.npy').data;
      let minErr = 0;
      let absErr = 0;
      rec.iters.forEach((it, i) => {
        rows.forEach((p, a) => {
          const got = it.marginMin[a] as number;
          const ref = marginMin[i * N + (subset[p] as number)] as number;
          minErr = Math.max(minErr, rel(got, ref));
          absErr = Math.max(absErr, Math.abs(got - ref));
        });
      });

      // images: 1e-6; flags: exact
      const advRef = f32('square_linf/adv.npy');
      let advErr = 0;
      subset.forEach((i, p) => {
        for (let j = 0; j < D; j++) {
          advErr = Math.max(advErr, Math.abs((res.adv.data[p * D + j] as number) - (advRef[i * D + j] as number)));
        }
      });
      console.log(
        `square_linf (${subset.length} images): margin_init rel err ${initErr.toExponential(2)}; margin_min rel err ` +
          `${minErr.toExponential(2)} (abs ${absErr.toExponential(2)}); adv max abs err ${advErr.toExponential(2)}; ` +
          `${rec.iters.length} iterations in ${secs.toFixed(1)} s`,
      );
      expect(initErr).toBeLessThan(1e-4);
      expect(minErr).toBeLessThan(1e-4);
      expect(advErr).toBeLessThanOrEqual(1e-6);
      const robustRef = bools('square_linf/robust.npy');
      expect(res.robust).toEqual(subset.map((i) => robustRef[i]));
    },
    300_000,
  );
});

// A tiny deterministic classifier: logits = flatten(x) W + b, with W from a fixed LCG.
const C = 2;
const H = 10;
const W = 10;
const D = C * H * W;
const K = 4;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function linearModel(): AttackModel {
  const r = lcg(7);
  const wt = fromArray(
    Float32Array.from({ length: D * K }, () => (r() - 0.5) * 0.6),
    [D, K],
  );
  const b = fromArray(
    Float32Array.from({ length: K }, () => (r() - 0.5) * 0.2),
    [1, K],
  );
  return {
    classify: (x) => tidy(() => add(matmul(reshape(x, [x.shape[0] as number, D]), wt), b)),
  };
}

function images(nImages: number, seed = 3): Images {
  const r = lcg(seed);
  return { data: Float32Array.from({ length: nImages * D }, () => r()), shape: [nImages, C, H, W] };
}

async function predict(model: AttackModel, x: Images): Promise<Int32Array> {
  const z = await logitsOf(model, x, new Array<number>(x.shape[0]).fill(0));
  return predictions(z.logits, z.k);
}

describe('Square on a tiny linear classifier', () => {
  const model = linearModel();
  const x = images(8);

  /** Labels: the clean predictions, except image 5 which gets a wrong label (misclassified clean). */
  async function labels(): Promise<Int32Array> {
    const y = await predict(model, x);
    y[5] = ((y[5] as number) + 1) % K;
    return y;
  }

  for (const [norm, eps] of [
    ['Linf', 0.06],
    ['L2', 1.0],
  ] as const) {
    test(`${norm}: ball, box, flags consistent with the returned images`, async () => {
      const y = await labels();
      const res = await square(model, x, y, { norm, eps, nQueries: 150, seed: 1 });
      const advPred = await predict(model, res.adv);
      expect(res.robust[5]).toBe(false);
      for (let r = 0; r < 8; r++) {
        let linf = 0;
        let l2 = 0;
        for (let j = r * D; j < (r + 1) * D; j++) {
          const v = res.adv.data[j] as number;
          expect(v >= 0 && v <= 1).toBe(true);
          const dv = v - (x.data[j] as number);
          linf = Math.max(linf, Math.abs(dv));
          l2 += dv * dv;
        }
        if (norm === 'Linf') expect(linf).toBeLessThanOrEqual(Math.fround(eps) + 1e-7);
        else expect(Math.sqrt(l2)).toBeLessThanOrEqual(eps * (1 + 1e-5));
        if (res.robust[r])
          expect(linf).toBe(0); // not fooled: the clean image comes back
        else if (r !== 5) expect(advPred[r]).not.toBe(y[r]);
      }
      // the attack fools some but not all images at this budget (a meaningful check)
      const fooled = res.robust.filter((v) => !v).length;
      console.log(`${norm} eps ${eps}: ${fooled - 1} of 7 correct images fooled`);
      expect(fooled).toBeGreaterThan(1);
    }, 60_000);

    test(`${norm}: eps = 0 gives the clean correctness and the clean images`, async () => {
      const y = await labels();
      const res = await square(model, x, y, { norm, eps: 0, nQueries: 20 });
      const clean = await predict(model, x);
      expect(res.robust).toEqual(Array.from(clean, (p, r) => p === y[r]));
      expect(Array.from(res.adv.data)).toEqual(Array.from(x.data));
    });

    test(`${norm}: same seed same result, other seed other windows, batch composition irrelevant`, async () => {
      const y = await labels();
      const a = record();
      const b = record();
      const c = record();
      const r1 = await square(model, x, y, { norm, eps, nQueries: 40, seed: 5, trace: a.trace });
      const r2 = await square(model, x, y, { norm, eps, nQueries: 40, seed: 5, trace: b.trace });
      await square(model, x, y, { norm, eps, nQueries: 40, seed: 6, trace: c.trace });
      expect(r2.robust).toEqual(r1.robust);
      expect(Array.from(r2.adv.data)).toEqual(Array.from(r1.adv.data));
      expect(b.iters.map((e) => e.window)).toEqual(a.iters.map((e) => e.window));
      expect(c.iters.map((e) => e.window)).not.toEqual(a.iters.map((e) => e.window));
      // image 2 alone, with its sample id: the same x_best (keyed draws; shared ones depend on the iteration only)
      const one = record();
      const y2 = y.subarray(2, 3);
      await square(model, { data: x.data.slice(2 * D, 3 * D), shape: [1, C, H, W] }, y2, {
        norm,
        eps,
        nQueries: 40,
        seed: 5,
        sampleIds: [2],
        trace: one.trace,
      });
      const inBatch = (a.done[0] as DoneEvent).xBest.subarray(2 * D, 3 * D);
      expect(Array.from((one.done[0] as DoneEvent).xBest)).toEqual(Array.from(inBatch));
    }, 60_000);
  }

  test('random draws follow the official call order (Linf and L2)', async () => {
    const y = await labels();
    const log: string[] = [];
    const inner = new KeyedRandom(0);
    const spy: AttackRandom = {
      uniform: (p: DrawPurpose, rows: readonly number[], per: number) => {
        log.push(`uniform ${rows.length}x${per} ${p.slice(2).join('/')}`);
        return inner.uniform(p, rows, per);
      },
      normal: () => {
        throw new Error('square draws no normals');
      },
      shared: (p: DrawPurpose, k: number) => {
        log.push(`shared ${k} ${p.slice(2).join('/')}`);
        return inner.shared(p, k);
      },
      noiseKey: (p, r) => inner.noiseKey(p, r),
    };
    await square(model, x, y, { norm: 'Linf', eps: 0.01, nQueries: 2, random: spy });
    // 7 clean-correct images: stripes (n, c, 1, w), then per iteration vh, vw, c signs
    expect(log).toEqual([
      `uniform 7x${C * W} init`,
      'shared 1 0/vh',
      'shared 1 0/vw',
      `shared ${C} 0/signs`,
      'shared 1 1/vh',
      'shared 1 1/vw',
      `shared ${C} 1/signs`,
    ]);
    log.length = 0;
    await square(model, x, y, { norm: 'L2', eps: 0.01, nQueries: 1, random: spy });
    // init: s = h // 5 = 2, a 5 x 5 grid; per window eta's transposition then signs (n, c, 1, 1)
    const init = Array.from({ length: 25 }, (_, k) => [
      `shared 1 init/${k}/eta`,
      `uniform 7x${C} init/${k}/signs`,
    ]).flat();
    expect(log).toEqual([
      ...init,
      'shared 1 0/vh',
      'shared 1 0/vw',
      'shared 1 0/vh2',
      'shared 1 0/vw2',
      'shared 1 0/eta',
      `uniform 7x${C} 0/signs`,
    ]);
  });

  test('bad inputs name the argument', async () => {
    const y = await labels();
    const bad = { data: x.data.slice(), shape: x.shape };
    bad.data[3] = 1.5;
    await expect(square(model, bad, y, { eps: 0.1 })).rejects.toThrow(/x must lie in \[0, 1\]/);
    await expect(square(model, x, y, { eps: -0.1 })).rejects.toThrow(/eps must be/);
    await expect(square(model, x, y, { eps: Number.NaN })).rejects.toThrow(/eps must be/);
    await expect(square(model, x, y, { eps: 0.1, nQueries: -1 })).rejects.toThrow(/nQueries/);
    await expect(square(model, x, y, { eps: 0.1, pInit: 0 })).rejects.toThrow(/pInit/);
    await expect(square(model, x, y, { eps: 0.1, nRestarts: 0 })).rejects.toThrow(/nRestarts/);
    await expect(square(model, x, y.subarray(0, 3), { eps: 0.1 })).rejects.toThrow(/labels/);
    await expect(
      square(
        model,
        x,
        Int32Array.from(y, () => K),
        { eps: 0.1 },
      ),
    ).rejects.toThrow(/label 4/);
    await expect(square(model, x, y, { eps: 0.1, norm: 'L1' as 'L2' })).rejects.toThrow(/norm/);
    const tiny = { data: new Float32Array(2 * 4 * 4), shape: [2, 1, 4, 4] as [number, number, number, number] };
    await expect(square(model, tiny, [0, 0], { eps: 0.1, norm: 'L2' })).rejects.toThrow(/at least 5 pixels/);
  });
});
