// `diffpure purify`: DiffPure's purification of images in [0, 1] from the command line, with the
// input gradient of sum(w * purified) in either adjoint mode, progress on stderr, and every random
// input either seeded (the seed is printed) or read from a file (to replay a PyTorch run).

import { noGrad, vjp } from '../autograd/index.js';
import { readNpy, writeNpy } from '../nn/io/index.js';
import { BrownianReplay, randomSeed } from '../sde/brownian.js';
import type { StepEvent } from '../sde/index.js';
import { fromArray, initBackend, mul, onesLike, type Tensor, tidy } from '../tensor/index.js';
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
  bmIncrements?: string;
  bmTimes?: string;
  /** Write d sum(w * purified) / dx here. */
  grad?: string;
  w?: string;
  mode: 'continuous' | 'exact';
  backend: string;
  json: boolean;
}

/** An .npy file as a float32 tensor, refusing NaN/Inf and (when given) the wrong shape, naming the option. */
function npyTensor(option: string, path: string, backend: string, shape?: readonly number[]): Tensor {
  const a = readNpy(path);
  if (shape && (a.shape.length !== shape.length || a.shape.some((d, i) => d !== shape[i])))
    throw new Error(`${option} '${path}' has shape [${a.shape.join(', ')}], expected [${shape.join(', ')}]`);
  const bad = a.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new Error(`${option} '${path}' holds ${a.data[bad]} at flat index ${bad}; every value must be finite`);
  return fromArray(Float32Array.from(a.data), a.shape, { backend });
}

/** A progress reporter: one stderr line per phase at most every 2 s, and at each phase's end. */
function progress(quiet: boolean): (e: StepEvent) => void {
  const t0 = performance.now();
  let last = 0;
  return (e) => {
    if (quiet) return;
    const now = performance.now();
    if (e.step !== e.steps && now - last < 2000) return;
    last = now;
    const s = ((now - t0) / 1000).toFixed(1);
    process.stderr.write(`purify: ${e.phase} step ${e.step}/${e.steps} (${s} s)\n`);
  };
}

export async function runPurify(a: PurifyArgs): Promise<void> {
  if (a.kind !== 'ddpmpp' && a.kind !== 'adm')
    throw new Error(
      `--model must be ddpmpp (score_sde, CIFAR-10) or adm (guided-diffusion, ImageNet), got '${a.kind}'`,
    );
  if ((a.bmIncrements === undefined) !== (a.bmTimes === undefined))
    throw new Error('--bm-increments and --bm-times go together (the stored Brownian path and its time grid)');
  if (a.w !== undefined && a.grad === undefined) throw new Error('--w is the cotangent of --grad; give --grad too');
  await initBackend(a.backend);
  const x = npyTensor('--x', a.x, a.backend);
  if (x.shape.length !== 4)
    throw new Error(`--x '${a.x}' has shape [${x.shape.join(', ')}]; expected images [B, C, H, W]`);
  const host = await x.data();
  const outside = host.findIndex((v) => v < 0 || v > 1);
  if (outside >= 0)
    process.stderr.write(
      `purify: warning: --x holds ${host[outside]} at flat index ${outside}; DiffPure expects images in [0, 1] (used as given)\n`,
    );
  const net = await loadNetwork(a.kind, a.config, a.weights, a.backend);
  const seed = a.seed ?? randomSeed();
  const [B, ...img] = x.shape as [number, ...number[]];
  const D = img.reduce((p, q) => p * q, 1);
  let bm: BrownianReplay | undefined;
  if (a.bmIncrements && a.bmTimes) {
    const times = Array.from(readNpy(a.bmTimes).data);
    const inc = readNpy(a.bmIncrements);
    if (inc.shape.length !== 3 || inc.shape[1] !== B || inc.shape[2] !== D)
      throw new Error(
        `--bm-increments '${a.bmIncrements}' has shape [${inc.shape.join(', ')}], expected [steps, ${B}, ${D}] for --x [${x.shape.join(', ')}]`,
      );
    bm = new BrownianReplay({ times, increments: inc.data, shape: [B, D], backend: a.backend });
  }
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
    mode: a.mode,
    noise: a.noise ? npyTensor('--noise', a.noise, a.backend, x.shape) : undefined,
    bm,
    onStep: progress(a.json),
  };
  const t0 = performance.now();
  let y: Tensor;
  let g: Tensor | null = null;
  if (a.grad) {
    const w = a.w ? npyTensor('--w', a.w, a.backend, x.shape) : null;
    [y, g] = tidy(() => {
      const { out, vjpFn, release } = vjp((xx: Tensor) => purify(xx, opts), x);
      const copy = noGrad(() => mul(out, 1)); // release() frees out
      const [gx] = vjpFn(w ?? onesLike(out));
      release();
      return [copy, gx as Tensor];
    });
    w?.dispose();
  } else {
    y = noGrad(() => purify(x, opts));
  }
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
    gradient: a.grad ? { mode: a.mode, out: a.grad, cotangent: a.w ?? 'ones' } : null,
    networkEvaluations: evals,
    seconds,
    out: a.out,
  };
  if (a.json) console.log(JSON.stringify(summary));
  else
    console.log(
      `purified ${B} image(s) [${img.join(', ')}] at t* ${a.tStar}, dt ${a.dt} on ${a.backend} in ${seconds.toFixed(1)} s ` +
        `(${evals} network evaluations; seed ${seed}, pass --seed ${seed} to repeat) -> ${a.out}` +
        (a.grad ? `; ${a.mode} input gradient -> ${a.grad}` : ''),
    );
  for (const t of [x, y, g, opts.noise]) t?.dispose();
  net.module.dispose();
}
