// `diffpure purify`: DiffPure's purification of images in [0, 1] from the command line, with the
// input gradient of sum(w * purified) in either adjoint mode, progress on stderr, and every random
// input either seeded (the seed is printed) or read from a file (to replay a PyTorch run).

import { noGrad, vjp } from '../autograd/index.js';
import { readNpy, writeNpy } from '../nn/io/index.js';
import { CELEBA_HQ_DDPM_CONFIG, type DdpmConfigJson } from '../nn/models/ddpm-unet.js';
import { BrownianReplay, randomSeed } from '../sde/brownian.js';
import type { StepEvent } from '../sde/index.js';
import { solvePlan } from '../sde/time.js';
import { noiseLevel, vpReverseTimes } from '../sde/vpsde.js';
import { fromArray, initBackend, mul, onesLike, type Tensor, tidy } from '../tensor/index.js';
import { type DdpmPurifyOptions, ddpmPurify, ddpmSchedule } from './ddpm-purify.js';
import { loadNetwork, type ModelKind } from './models.js';
import { type PurifyOptions, purify } from './purify.js';

export interface PurifyArgs {
  kind: ModelKind;
  config: unknown;
  weights: string;
  x: string;
  out: string;
  tStar: number;
  dt: number;
  seed?: number;
  noise?: string;
  /** ddpm: the reverse steps' draws [t, B, C, H, W] to replay (row k: timestep t - 1 - k), with --noise. */
  stepNoise?: string;
  bmIncrements?: string;
  bmTimes?: string;
  /** Write d sum(w * purified) / dx here. */
  grad?: string;
  w?: string;
  /** VP-SDE: 'continuous' (default) or 'exact'; ddpm: 'exact' (default, checkpointed) or 'autograd'. */
  mode?: 'continuous' | 'exact' | 'autograd';
  backend: string;
  json: boolean;
}

/** An .npy file as a float32 tensor, refusing NaN/Inf and (when given) the wrong shape, naming the option. */
function npyTensor(option: string, path: string, backend: string, shape?: readonly number[]): Tensor {
  const a = npyHost(option, path);
  if (shape && (a.shape.length !== shape.length || a.shape.some((d, i) => d !== shape[i])))
    throw new Error(`${option} '${path}' has shape [${a.shape.join(', ')}], expected [${shape.join(', ')}]`);
  return fromArray(Float32Array.from(a.data), a.shape, { backend });
}

/** A progress reporter: one stderr line per phase at most every 2 s, and at each phase's end. */
function progress(): (e: StepEvent) => void {
  const t0 = performance.now();
  let last = 0;
  return (e) => {
    const now = performance.now();
    if (e.step !== e.steps && now - last < 2000) return;
    last = now;
    const s = ((now - t0) / 1000).toFixed(1);
    process.stderr.write(`purify: ${e.phase} step ${e.step}/${e.steps} (${s} s)\n`);
  };
}

/**
 * The stored Brownian path of --bm-increments ([steps, B, D]) on --bm-times. Every step of the
 * reverse solve must be a node of it: a query inside a stored cell would be read off the straight
 * line between nodes (the fixtures' rule), a path with too little variance.
 */
function replayedPath(a: PurifyArgs, B: number, D: number): BrownianReplay {
  const times = npyHost('--bm-times', a.bmTimes as string);
  const inc = npyHost('--bm-increments', a.bmIncrements as string);
  if (inc.shape.length !== 3 || inc.shape[1] !== B || inc.shape[2] !== D)
    throw new Error(
      `--bm-increments '${a.bmIncrements}' has shape [${inc.shape.join(', ')}], expected [steps, ${B}, ${D}] for --x`,
    );
  const nodes = new Set(Array.from(times.data, Math.fround));
  const missing = solvePlan(vpReverseTimes(a.tStar), a.dt).times.find((t) => !nodes.has(Math.fround(t)));
  if (missing !== undefined)
    throw new Error(
      `--bm-times '${a.bmTimes}' has no node at the solver time ${missing} (--tstar ${a.tStar}, --dt ${a.dt}); ` +
        'replay a path stored on the same grid, with the same --dt',
    );
  return new BrownianReplay({ times: Array.from(times.data), increments: inc.data, shape: [B, D], backend: a.backend });
}

/** An .npy file's values, refusing NaN/Inf with the option's name. */
function npyHost(option: string, path: string) {
  const a = readNpy(path);
  const bad = a.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new Error(`${option} '${path}' holds ${a.data[bad]} at flat index ${bad}; every value must be finite`);
  return a;
}

/** f(x), and with `grad` the input gradient of sum(w * f(x)) (w defaults to ones); the graph is freed. */
function purifiedAndGrad(
  f: (x: Tensor) => Tensor,
  x: Tensor,
  w: Tensor | null,
  grad: boolean,
): [Tensor, Tensor | null] {
  if (!grad) return [noGrad(() => f(x)), null];
  return tidy(() => {
    const { out, vjpFn, release } = vjp(f, x);
    const copy = noGrad(() => mul(out, 1)); // release() frees out
    const [gx] = vjpFn(w ?? onesLike(out));
    release();
    return [copy, gx as Tensor];
  });
}

export async function runPurify(a: PurifyArgs): Promise<void> {
  if (a.kind === 'ddpm') return runDdpmPurify(a);
  if (a.kind !== 'ddpmpp' && a.kind !== 'adm')
    throw new Error(
      `--model must be ddpmpp (score_sde, CIFAR-10), adm (guided-diffusion, ImageNet) or ddpm (SDEdit's UNet, CelebA-HQ), got '${a.kind}'`,
    );
  if (a.stepNoise !== undefined)
    throw new Error('--step-noise is for --model ddpm; the VP-SDE replays --bm-increments');
  const mode = a.mode ?? 'continuous';
  if (mode === 'autograd') throw new Error('--mode autograd is for --model ddpm; the VP-SDE takes continuous or exact');
  if ((a.bmIncrements === undefined) !== (a.bmTimes === undefined))
    throw new Error('--bm-increments and --bm-times go together (the stored Brownian path and its time grid)');
  if (a.w !== undefined && a.grad === undefined) throw new Error('--w is the cotangent of --grad; give --grad too');
  await initBackend(a.backend);
  // every input is read and checked before the (slow) checkpoint load
  const x = npyTensor('--x', a.x, a.backend);
  if (x.shape.length !== 4)
    throw new Error(`--x '${a.x}' has shape [${x.shape.join(', ')}]; expected images [B, C, H, W]`);
  const host = await x.data();
  const outside = host.findIndex((v) => v < 0 || v > 1);
  if (outside >= 0)
    process.stderr.write(
      `purify: warning: --x holds ${host[outside]} at flat index ${outside}; DiffPure expects images in [0, 1] (used as given)\n`,
    );
  noiseLevel(a.tStar); // --tstar: a multiple of 1e-3 in (0, 1]
  const [B, ...img] = x.shape as [number, ...number[]];
  const D = img.reduce((p, q) => p * q, 1);
  const noise = a.noise ? npyTensor('--noise', a.noise, a.backend, x.shape) : undefined;
  const w = a.w ? npyTensor('--w', a.w, a.backend, x.shape) : null;
  const bm = a.bmIncrements && a.bmTimes ? replayedPath(a, B, D) : undefined;
  const net = await loadNetwork(a.kind, a.config, a.weights, a.backend);
  const seed = a.seed ?? randomSeed();
  let evals = 0;
  const opts: PurifyOptions = {
    model: (xx, labels) => {
      evals++;
      return net.forward(xx, labels);
    },
    scoreType: a.kind === 'ddpmpp' ? 'score_sde' : 'guided_diffusion',
    tStar: a.tStar,
    dt: a.dt,
    seed,
    mode,
    noise,
    bm,
    onStep: progress(),
  };
  const t0 = performance.now();
  const [y, g] = purifiedAndGrad((xx) => purify(xx, opts), x, w, !!a.grad);
  writeNpy(a.out, Float32Array.from(await y.data()), y.shape);
  if (a.grad && g) writeNpy(a.grad, Float32Array.from(await g.data()), g.shape);
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    model: a.kind,
    backend: a.backend,
    images: x.shape,
    tStar: a.tStar,
    dt: a.dt,
    seed,
    noise: a.noise ?? 'seeded',
    brownian: a.bmIncrements ?? 'seeded',
    gradient: a.grad ? { mode, out: a.grad, cotangent: a.w ?? 'ones' } : null,
    networkEvaluations: evals,
    seconds,
    out: a.out,
  };
  if (a.json) console.log(JSON.stringify(summary));
  else
    console.log(
      `purified ${B} image(s) [${img.join(', ')}] at t* ${a.tStar}, dt ${a.dt} on ${a.backend} in ${seconds.toFixed(1)} s ` +
        `(${evals} network evaluations; ${noise && bm ? 'noise and Brownian path replayed' : `seed ${seed}, pass --seed ${seed} to repeat`}) -> ${a.out}` +
        (a.grad ? `; ${mode} input gradient -> ${a.grad}` : ''),
    );
  for (const t of [x, y, g, noise, w]) t?.dispose();
  net.module.dispose();
}

/**
 * --model ddpm: DiffPure's CelebA-HQ purification (runners/diffpure_ddpm.py): --tstar t* means t = 1000 t* DDPM
 * steps (DiffPure's --t; the paper uses 500), ancestral steps with the fixed-small variance, nothing clipped. --dt
 * does not apply. Replays stored draws with --noise (forward) and --step-noise ([t, B, C, H, W]).
 */
async function runDdpmPurify(a: PurifyArgs): Promise<void> {
  if (a.bmIncrements !== undefined || a.bmTimes !== undefined)
    throw new Error('--bm-increments / --bm-times are for the VP-SDE; --model ddpm replays --noise and --step-noise');
  if ((a.noise === undefined) !== (a.stepNoise === undefined))
    throw new Error('--model ddpm replays its draws with --noise (forward) and --step-noise (reverse steps) together');
  const mode = a.mode ?? 'exact';
  if (mode !== 'exact' && mode !== 'autograd')
    throw new Error(
      `--mode ${mode}: the DDPM chain is discrete, so its gradient is exact (checkpointed, default) or autograd`,
    );
  if (a.w !== undefined && a.grad === undefined) throw new Error('--w is the cotangent of --grad; give --grad too');
  await initBackend(a.backend);
  const x = npyTensor('--x', a.x, a.backend);
  if (x.shape.length !== 4)
    throw new Error(`--x '${a.x}' has shape [${x.shape.join(', ')}]; expected images [B, C, H, W]`);
  const host = await x.data();
  const outside = host.findIndex((v) => !(v >= 0 && v <= 1));
  if (outside >= 0)
    throw new Error(
      `--x '${a.x}' holds ${host[outside]} at flat index ${outside}; DiffPure's DDPM purifier takes images in [0, 1] (map [-1, 1] images by (x + 1) / 2)`,
    );
  const t = Math.round(a.tStar * 1000);
  if (Math.abs(t - a.tStar * 1000) > 1e-6)
    throw new Error(`--tstar ${a.tStar}: --model ddpm takes t* = t / 1000 for an integer step count t`);
  const [B, ...img] = x.shape as [number, ...number[]];
  const noise =
    a.noise && a.stepNoise
      ? {
          forward: npyTensor('--noise', a.noise, a.backend, x.shape),
          steps: npyTensor('--step-noise', a.stepNoise, a.backend, [t, ...x.shape]),
        }
      : undefined;
  const w = a.w ? npyTensor('--w', a.w, a.backend, x.shape) : null;
  const net = await loadNetwork('ddpm', a.config, a.weights, a.backend);
  const cfg = (a.config ?? CELEBA_HQ_DDPM_CONFIG) as DdpmConfigJson;
  const schedule = ddpmSchedule(
    cfg.diffusion as Parameters<typeof ddpmSchedule>[0],
    (cfg.model as { var_type?: 'fixedsmall' | 'fixedlarge' }).var_type,
  );
  const seed = a.seed ?? randomSeed();
  let evals = 0;
  const t0 = performance.now();
  let last = 0;
  const opts: DdpmPurifyOptions = {
    model: (xx, tt) => {
      evals++;
      return net.forward(xx, tt);
    },
    t,
    schedule,
    gradient: mode,
    seed,
    noise,
    onStep: (e) => {
      const now = performance.now();
      if (e.step !== e.steps && now - last < 2000) return;
      last = now;
      process.stderr.write(`purify: ${e.phase} step ${e.step}/${e.steps} (${((now - t0) / 1000).toFixed(1)} s)\n`);
    },
  };
  const [y, g] = purifiedAndGrad((xx) => ddpmPurify(xx, opts), x, w, !!a.grad);
  writeNpy(a.out, Float32Array.from(await y.data()), y.shape);
  if (a.grad && g) writeNpy(a.grad, Float32Array.from(await g.data()), g.shape);
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    model: 'ddpm',
    backend: a.backend,
    images: x.shape,
    t,
    seed,
    noise: a.noise ? { forward: a.noise, steps: a.stepNoise } : 'seeded',
    gradient: a.grad ? { mode, out: a.grad, cotangent: a.w ?? 'ones' } : null,
    networkEvaluations: evals,
    seconds,
    out: a.out,
  };
  if (a.json) console.log(JSON.stringify(summary));
  else
    console.log(
      `purified ${B} image(s) [${img.join(', ')}] with ${t} DDPM steps on ${a.backend} in ${seconds.toFixed(1)} s ` +
        `(${evals} network evaluations; ${noise ? 'noise replayed' : `seed ${seed}, pass --seed ${seed} to repeat`}) -> ${a.out}` +
        (a.grad ? `; ${mode} input gradient -> ${a.grad}` : ''),
    );
  for (const v of [x, y, g, noise?.forward, noise?.steps, w]) v?.dispose();
  net.module.dispose();
}
