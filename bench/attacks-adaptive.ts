// Adaptive attacks against DiffPure (issue 12): seconds per image of PGD-EOT (Lee & Kim's, in both gradient modes
// of the defended classifier), BPDA+EOT (DiffPure's bpda_eot) and StAdv (DiffPure's stadv_eot, EOT 20) against
// DiffPure's defended classifier (src/diffpure/defense.ts): the ddpmpp fixture's score model (nf 32, 2 residual
// blocks; DiffPure's checkpoint_8.pth is nf 128 with 4) in front of the attacks fixture's WideResNet-16-2
// (../shared/fixtures), dt 1e-3, as bench/attacks.ts's "one APGD iteration against DiffPure" case.
//
// At the paper's settings an attack takes hours per image here, so each one is measured at reduced steps, EOT and
// t*, and its cost per image is EXTRAPOLATED linearly, not run:
//   PGD-EOT   200 steps x EOT 20 at t* 0.1 (100 reverse steps): 4000 gradients per image;
//   BPDA+EOT  50 steps, 15 attack reps, 150 defense reps at t* 0.1: (50 + 2) x 15 = 780 purifications for an image
//             that stays robust (the clean evaluation and 51 step evaluations); each re-check that confirms a
//             break adds 150;
//   StAdv     100 iterations x EOT 20 at t* 0.125 (125 reverse steps): 2000 gradients per image.
//   secondsPerImage = units x reverse steps x seconds per unit per reverse step per image,
// the last measured at the largest t* run. A unit is one image's gradient through purifier and classifier
// (PGD-EOT, StAdv: timed from the start to the last step, the verdict left out) or one image's purification
// (BPDA+EOT: the whole attack over the rows the purifier was given, its classifier passes included). The
// classifier and the forward diffusion cost the same at every t* but are scaled with the reverse steps too, so the
// figure leans high; the JSON also gives the least-squares line a + b x reverse steps over the t* values run. The
// check rows time one PGD-EOT step with EOT 1 at t* 0.1 itself, beside its extrapolation. Not counted: the verdict
// after each attack (1 purification per image; 10 under Lee & Kim's majority vote).
// Run: node scripts/build.mjs && node dist/bench-attacks-adaptive.mjs   (JSON on stdout and in
// bench/out/attacks-adaptive.json; bench/out/attacks.json keeps bench/attacks.ts's rows)
//
// Environment: BENCH_CASES (default "pgd-eot,bpda-eot,stadv,check"; any subset), BENCH_GRADIENTS (the defended
// classifier's gradient modes for PGD-EOT, StAdv and the check, default "continuous,exact"), BENCH_STEPS (attack
// steps and StAdv iterations, default 2), BENCH_EOT (EOT samples, and BPDA's attack and defense reps, default 2),
// BENCH_TSTARS (default "0.005,0.01": 5 and 10 reverse steps), BENCH_BATCH (images, default 1), BENCH_BACKENDS
// (default "cpu"; webgpu needs XDG_RUNTIME_DIR set, e.g. /tmp/xdg-runtime), BENCH_THREADS (default 2).

// the entry registers every backend (webgpu included), which the imports of single modules below do not
import '../src/index.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { bpdaEot, type PurifiedClassifier } from '../src/diffpure/attacks/bpda-eot.js';
import type { AttackModel, Images } from '../src/diffpure/attacks/model.js';
import { pgdEot } from '../src/diffpure/attacks/pgd-eot.js';
import { stadv } from '../src/diffpure/attacks/stadv.js';
import { defendedClassifier, defendedPurifier, type GradientMode } from '../src/diffpure/defense.js';
import { loadNetwork, type Network } from '../src/diffpure/models.js';
import { solvePlan, vpReverseTimes } from '../src/sde/index.js';
import { configureGemm } from '../src/tensor/cpu/gemm.js';
import { cpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { initBackend, type Tensor } from '../src/tensor/index.js';
import { attackImages, envList, machineInfo } from './machine.js';

const FIX = join(process.cwd(), '..', 'shared', 'fixtures');
const DT = 1e-3;
const cases = envList('BENCH_CASES', 'pgd-eot,bpda-eot,stadv,check');
const gradients = envList('BENCH_GRADIENTS', 'continuous,exact') as GradientMode[];
const steps = Number(process.env.BENCH_STEPS ?? 2);
const eot = Number(process.env.BENCH_EOT ?? 2);
const tStars = envList('BENCH_TSTARS', '0.005,0.01').map(Number);
const batch = Number(process.env.BENCH_BATCH ?? 1);
const backends = envList('BENCH_BACKENDS', 'cpu');
const threads = Number(process.env.BENCH_THREADS ?? 2);
const r3 = (x: number) => Math.round(x * 1000) / 1000;
/** Four significant digits (per-unit seconds span orders of magnitude across machines). */
const s4 = (x: number) => Number(x.toPrecision(4));
const load = () => r3(os.loadavg()[0] as number);

/** Reverse-SDE steps of a purification at t* (dt 1e-3): 100 at 0.1, 125 at 0.125. */
const reverseSteps = (tStar: number) => solvePlan(vpReverseTimes(tStar), DT).times.length - 1;

type Attack = 'pgd-eot' | 'bpda-eot' | 'stadv';

/** The paper's settings and the units (gradients or purifications) they cost per image. */
const PAPER: Record<Attack, { settings: Record<string, number>; tStar: number; units: number; unit: string }> = {
  'pgd-eot': {
    settings: { steps: 200, eotIter: 20, eps: 8 / 255, stepSize: 0.007 },
    tStar: 0.1,
    units: 200 * 20,
    unit: 'gradient (steps x eotIter)',
  },
  'bpda-eot': {
    settings: { steps: 50, eotAttackReps: 15, eotDefenseReps: 150, eps: 8 / 255, stepSize: 2 / 255 },
    tStar: 0.1,
    units: (50 + 2) * 15,
    unit: 'purification ((steps + 2) x eotAttackReps for an image that stays robust; + 150 per confirming re-check)',
  },
  stadv: {
    settings: { nIter: 100, eotIter: 20, bound: 0.05 },
    tStar: 0.125,
    units: 100 * 20,
    unit: 'gradient (nIter x eotIter)',
  },
};

interface Nets {
  backend: string;
  score: Network;
  wrn: Network;
}

function defended(n: Nets, tStar: number, gradient: GradientMode): AttackModel {
  return {
    backend: n.backend,
    classify: defendedClassifier({
      model: (v, t) => n.score.forward(v, t),
      scoreType: 'score_sde',
      tStar,
      gradient,
      classifier: (v) => n.wrn.forward(v),
    }),
  };
}

interface Point {
  tStar: number;
  reverseSteps: number;
  /** The whole attack call. */
  seconds: number;
  /** The part the units are timed over. */
  timedSeconds: number;
  /** Units in timedSeconds, all images together. */
  units: number;
  secondsPerUnit: number;
  secondsPerUnitPerReverseStep: number;
  loadavg: [number, number];
  /** BPDA+EOT: step evaluations run (steps + 1 unless every image broke earlier). */
  evaluations?: number;
}

/** Runs an attack; `mark` is its trace callback, and timedSeconds ends at the last mark (the attack loop). */
async function traced(run: (mark: () => void) => Promise<unknown>): Promise<{ seconds: number; loopSeconds: number }> {
  const t0 = performance.now();
  let last = t0;
  await run(() => {
    last = performance.now();
  });
  return { seconds: (performance.now() - t0) / 1000, loopSeconds: (last - t0) / 1000 };
}

function point(tStar: number, seconds: number, timedSeconds: number, units: number, load0: number): Point {
  const n = reverseSteps(tStar);
  return {
    tStar,
    reverseSteps: n,
    seconds: r3(seconds),
    timedSeconds: r3(timedSeconds),
    units,
    secondsPerUnit: s4(timedSeconds / units),
    secondsPerUnitPerReverseStep: s4(timedSeconds / units / n),
    loadavg: [load0, load()],
  };
}

/** One measured point of `attack` at t*: a reduced run on `batch` images. */
async function measure(
  attack: Attack,
  n: Nets,
  x: Images,
  y: number[],
  tStar: number,
  gradient: GradientMode,
  o: { steps: number; eot: number },
): Promise<Point> {
  const load0 = load();
  const b = x.shape[0];
  if (attack === 'pgd-eot') {
    const model = defended(n, tStar, gradient);
    const r = await traced((mark) => pgdEot(model, x, y, { steps: o.steps, eotIter: o.eot, seed: 0, trace: mark }));
    return point(tStar, r.seconds, r.loopSeconds, b * o.steps * o.eot, load0);
  }
  if (attack === 'stadv') {
    const model = defended(n, tStar, gradient);
    const r = await traced((mark) => stadv(model, x, y, { nIter: o.steps, eotIter: o.eot, seed: 0, trace: mark }));
    return point(tStar, r.seconds, r.loopSeconds, b * o.steps * o.eot, load0);
  }
  // BPDA+EOT: the purifier runs without a graph; count the rows it is given (rechecks included)
  const purifier = defendedPurifier({ model: (v, t) => n.score.forward(v, t), scoreType: 'score_sde', tStar });
  let rows = 0;
  const defence: PurifiedClassifier = {
    backend: n.backend,
    purify: (v: Tensor, keys) => {
      rows += keys.length;
      return purifier(v, keys);
    },
    classify: (v) => n.wrn.forward(v),
  };
  const opts = { steps: o.steps, eotAttackReps: o.eot, eotDefenseReps: o.eot, seed: 0 };
  let evaluations = 0;
  const r = await traced(async () => {
    evaluations = (await bpdaEot(defence, x, y, opts)).evaluations;
  });
  // an image broken early ends the attack early: the evaluations run say how much of it was timed
  return { ...point(tStar, r.seconds, r.seconds, rows, load0), evaluations };
}

/** The point with the most reverse steps (the closest to the paper's). */
const largest = (points: Point[]) => points.reduce((p, q) => (q.reverseSteps > p.reverseSteps ? q : p));

/** Least-squares line secondsPerUnit = a + b reverseSteps (null with fewer than two step counts). */
function line(points: Point[]): { a: number; b: number } | null {
  const xs = points.map((p) => p.reverseSteps);
  const ys = points.map((p) => p.secondsPerUnit);
  const m = xs.length;
  const mx = xs.reduce((s, v) => s + v, 0) / m;
  const my = ys.reduce((s, v) => s + v, 0) / m;
  const sxx = xs.reduce((s, v) => s + (v - mx) ** 2, 0);
  if (sxx === 0) return null;
  const b = xs.reduce((s, v, i) => s + (v - mx) * ((ys[i] as number) - my), 0) / sxx;
  return { a: my - b * mx, b };
}

function row(backend: string, attack: Attack, gradient: GradientMode | null, points: Point[]): Record<string, unknown> {
  const paper = PAPER[attack];
  const nPaper = reverseSteps(paper.tStar);
  const top = largest(points);
  const perStep = top.timedSeconds / top.units / top.reverseSteps;
  const seconds = paper.units * nPaper * perStep;
  const fit = line(points);
  const extra: Record<string, unknown> = {};
  if (attack === 'bpda-eot') extra.secondsPerConfirmingRecheck = r3(150 * nPaper * perStep);
  return {
    backend,
    attack,
    gradient: gradient ?? 'bpda (the purifier runs without a graph)',
    batch,
    measured: {
      steps,
      eot,
      ...(attack === 'bpda-eot' ? { eotAttackReps: eot, eotDefenseReps: eot } : {}),
      unit: attack === 'bpda-eot' ? 'purification of one image' : 'gradient of one image',
      points,
    },
    extrapolated: {
      paper: { ...paper.settings, tStar: paper.tStar, dt: DT, reverseSteps: nPaper },
      unitsPerImage: paper.units,
      unit: paper.unit,
      secondsPerUnitPerReverseStep: s4(perStep),
      fromReverseSteps: top.reverseSteps,
      formula: `secondsPerImage = ${paper.units} units x ${nPaper} reverse steps x ${s4(perStep)} s per unit per reverse step`,
      secondsPerImage: Math.round(seconds),
      hoursPerImage: r3(seconds / 3600),
      ...extra,
      lineFit: fit && {
        a: s4(fit.a),
        b: s4(fit.b),
        formula: `secondsPerImage = ${paper.units} x (a + b x ${nPaper})`,
        secondsPerImage: Math.round(paper.units * (fit.a + fit.b * nPaper)),
      },
    },
  };
}

async function main(): Promise<void> {
  configureGemm({ threads });
  const results: Record<string, unknown>[] = [];
  const report = {
    bench: 'attacks-adaptive',
    date: new Date().toISOString(),
    machine: machineInfo(),
    cpuKernels: cpuKernelKind(),
    threads,
    defence:
      'DiffPure defended classifier: ddpmpp fixture score model (nf 32, num_res_blocks 2; DiffPure uses nf 128, 4) ' +
      'in front of the attacks fixture WRN-16-2, dt 1e-3, score_sde',
    note:
      'extrapolated, not run: each attack is measured at reduced steps / EOT / t* (measured.points) and its ' +
      'seconds per image at the paper settings are units x reverse steps x seconds per unit per reverse step ' +
      '(from the largest t* measured); lineFit is the least-squares line over the measured t*. Verdict passes ' +
      'after the attack are not counted.',
    results,
  };
  const save = () => {
    mkdirSync('bench/out', { recursive: true });
    writeFileSync('bench/out/attacks-adaptive.json', `${JSON.stringify(report, null, 2)}\n`);
  };
  const meta = JSON.parse(readFileSync(join(FIX, 'ddpmpp', 'meta.json'), 'utf8'));
  const { x, y } = attackImages(join(FIX, 'attacks'), batch);
  for (const backend of backends) {
    await initBackend(backend);
    const nets: Nets = {
      backend,
      score: await loadNetwork('ddpmpp', meta.config, join(FIX, 'ddpmpp', 'checkpoint.pth'), backend),
      wrn: await loadNetwork(
        'wrn',
        { depth: 16, widen_factor: 2, num_classes: 10 },
        join(FIX, 'attacks', 'model.pt'),
        backend,
      ),
    };
    // warm-up (kernels, pools), not recorded
    for (const g of gradients) await measure('pgd-eot', nets, x, y, Math.min(...tStars), g, { steps: 1, eot: 1 });
    const rowsOf = new Map<string, Point[]>();
    for (const attack of ['pgd-eot', 'stadv', 'bpda-eot'] as Attack[]) {
      if (!cases.includes(attack)) continue;
      for (const gradient of attack === 'bpda-eot' ? [null] : gradients) {
        const points: Point[] = [];
        for (const tStar of tStars) {
          const p = await measure(attack, nets, x, y, tStar, gradient ?? 'continuous', { steps, eot });
          points.push(p);
          process.stderr.write(
            `${backend} ${attack} ${gradient ?? ''} t* ${tStar}: ${p.seconds} s, ${p.secondsPerUnitPerReverseStep} s ` +
              `per unit per reverse step (load ${p.loadavg[1]})\n`,
          );
        }
        rowsOf.set(`${attack} ${gradient}`, points);
        results.push(row(backend, attack, gradient, points));
        save();
      }
    }
    if (cases.includes('check')) {
      // one PGD-EOT step with EOT 1 at the paper's t*, beside what the reduced runs predict for it
      const tStar = PAPER['pgd-eot'].tStar;
      for (const gradient of gradients) {
        const p = await measure('pgd-eot', nets, x, y, tStar, gradient, { steps: 1, eot: 1 });
        const from = rowsOf.get(`pgd-eot ${gradient}`);
        const predicted = from ? largest(from).secondsPerUnitPerReverseStep * p.reverseSteps : null;
        results.push({
          backend,
          attack: 'check: pgd-eot 1 step x EOT 1 at t* 0.1 (measured)',
          gradient,
          batch,
          measured: p,
          secondsPerGradientPredicted: predicted === null ? null : r3(predicted),
          measuredOverPredicted: predicted === null ? null : r3(p.secondsPerUnit / predicted),
        });
        process.stderr.write(`${backend} check ${gradient}: ${p.secondsPerUnit} s per gradient at t* ${tStar}\n`);
        save();
      }
    }
    nets.score.module.dispose();
    nets.wrn.module.dispose();
  }
  save();
  console.log(JSON.stringify(report, null, 2));
}

await main();
