// Shared pieces of the SDE tests (cpu and webgpu) and the SDE bench: fixture loading, error
// measures, the two-layer tanh SDE of the sde_adjoint fixture, the property and memory runs of
// sdeintAdjoint on any backend, and a cpu backend that counts live bytes.

import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type AdjointTraceEvent, sdeintAdjoint } from '../../src/adjoint/index.js';
import * as T from '../../src/index.js';
import { readNpy } from '../../src/nn/io/npy.js';
import {
  BrownianGrid,
  BrownianReplay,
  defineSde,
  type Method,
  type NoiseType,
  type SDE,
  type SdeType,
  sdeint,
} from '../../src/sde/index.js';
import { type Backend, type DType, type KernelArg, Storage, type TypedArray } from '../../src/tensor/backend.js';
import { CpuBackend } from '../../src/tensor/cpu/backend.js';
import { registerReadyBackend } from '../../src/tensor/runtime.js';
import type { Shape } from '../../src/tensor/shape.js';
import { readAndDispose, relErr } from '../harness/fixtures.js';

export { FIXTURES, fixtureDir, maxAbs } from '../harness/fixtures.js';
/** max|a - b| / max|b|. */
export const relMaxErr = relErr;

export function npy(dir: string, file: string): { shape: number[]; data: Float32Array | Float64Array } {
  return readNpy(join(dir, file));
}

export function tensorOf(dir: string, file: string, dtype: DType = 'float32', backend?: string): T.Tensor {
  const a = npy(dir, file);
  return T.fromArray(a.data, a.shape, { dtype, backend });
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] as number) * (b[i] as number);
    aa += (a[i] as number) ** 2;
    bb += (b[i] as number) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

/** ||a - b|| / ||b||. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += ((a[i] as number) - (b[i] as number)) ** 2;
    n += (b[i] as number) ** 2;
  }
  return Math.sqrt(d / n);
}

/** The sde_adjoint fixture's parameters: f(t, y) = W2 tanh(W1 y + u1 t + b1) + b2 (rows of y). */
export interface MlpParams {
  W1: T.Tensor;
  u1: T.Tensor;
  b1: T.Tensor;
  W2: T.Tensor;
  b2: T.Tensor;
}

export function mlpDrift(t: number, y: T.Tensor, [W1, u1, b1, W2, b2]: readonly T.Tensor[]): T.Tensor {
  const pre = T.add(T.add(T.matmul(y, T.transpose(W1 as T.Tensor)), T.mul(u1 as T.Tensor, t)), b1 as T.Tensor);
  return T.add(T.matmul(T.tanh(pre), T.transpose(W2 as T.Tensor)), b2 as T.Tensor);
}

/** The fixture SDE: mlp drift, g(t) = sqrt(0.1 + 0.7 t) on every element (diagonal, Ito). */
export function fixtureSde(p: MlpParams): SDE {
  return defineSde({
    noiseType: 'diagonal',
    params: [p.W1, p.u1, p.b1, p.W2, p.b2],
    f: mlpDrift,
    g: (t, y) => T.fullLike(y, Math.fround(Math.sqrt(Math.fround(0.1 + Math.fround(t * 0.7))))),
  });
}

export type NoiseKind = 'diagonal' | 'additive';

/**
 * A random small SDE for property tests: drift a tanh MLP with a time input, and
 * - diagonal: g = s (1 + 0.5 sin(x)) elementwise (state dependent, with its dgdx),
 * - additive: g = s (1 + t) elementwise (s a parameter vector).
 * params = [W1, u1, b1, W2, b2, s].
 */
export function toySde(noise: NoiseKind, params: readonly T.Tensor[], sdeType: SdeType = 'ito'): SDE {
  const noiseType: NoiseType = noise;
  if (noise === 'diagonal') {
    return defineSde({
      noiseType,
      sdeType,
      params,
      f: mlpDrift,
      g: (_t, x, p) => T.mul(p[5] as T.Tensor, T.add(T.mul(T.sin(x), 0.5), 1)),
      dgdx: (_t, x, p) => T.mul(p[5] as T.Tensor, T.mul(T.cos(x), 0.5)),
    });
  }
  return defineSde({
    noiseType,
    sdeType,
    params,
    f: mlpDrift,
    g: (t, x, p) => T.mul(T.mul(p[5] as T.Tensor, 1 + t), T.onesLike(x)),
  });
}

/** Deterministic toy parameters for state size D, hidden H. */
export function toyParams(D: number, H: number, seed: number, dtype: DType = 'float32', backend?: string): T.Tensor[] {
  const r = (shape: number[], stream: number, scale: number, shift = 0) =>
    T.tidy(() => {
      const z = T.randomNormal(shape, { seed, stream, dtype: 'float64', backend: 'cpu' });
      // values representable in float32 so float32 and float64 runs (and every backend) see the
      // same parameters
      const host = Float64Array.from(z.dataSync(), (v) => Math.fround(v * scale + shift));
      return T.fromArray(host, shape, { dtype, backend });
    });
  return [
    r([H, D], 1, 1 / Math.sqrt(D)),
    r([H], 2, 0.5),
    r([H], 3, 0.1),
    r([D, H], 4, 1 / Math.sqrt(H)),
    r([D], 5, 0.1),
    r([D], 6, 0.1, 0.4),
  ];
}

export function hostOf(t: T.Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}

// ---- a cpu backend that counts live bytes ---------------------------------------------------

/**
 * Delegates to the cpu kernels and counts the bytes of live storages (allocated and not yet
 * released), with the peak. Until the webgpu pool exposes its statistics this is how the
 * memory of the adjoint modes is measured.
 */
export class CountingBackend implements Backend {
  readonly name: string;
  readonly dtypes: readonly DType[];
  live = 0;
  peak = 0;
  private readonly inner = new CpuBackend();
  constructor(name = 'cpu-counting') {
    this.name = name;
    this.dtypes = this.inner.dtypes;
  }
  private own(s: Storage): Storage {
    const bytes = s.length * (s.dtype === 'float64' ? 8 : 4);
    this.live += bytes;
    this.peak = Math.max(this.peak, this.live);
    return new Storage(this, s.handle, s.length, s.dtype);
  }
  resetPeak(): void {
    this.peak = this.live;
  }
  upload(data: TypedArray, dtype: DType): Storage {
    return this.own(this.inner.upload(data, dtype));
  }
  read(storage: Storage): Promise<TypedArray> {
    return this.inner.read(storage);
  }
  free(s: Storage): void {
    this.live -= s.length * (s.dtype === 'float64' ? 8 : 4);
    this.inner.free(s); // the cpu backend's array pool takes it back (by its handle), as it would unwrapped
  }
  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage {
    return this.own(this.inner.run(prim, inputs, attrs, outShape, outDtype));
  }
  flush(): void {}
}

/**
 * Inside a describe block: every test runs on the counting backend, and the previous default backend is restored
 * after the block.
 */
export function onCountingBackend(): void {
  let previous: string;
  beforeAll(async () => {
    previous = T.getBackend().name;
    countingBackend();
    await T.setBackend('cpu-counting');
  });
  afterAll(async () => {
    await T.setBackend(previous);
  });
}

let counting: CountingBackend | null = null;
/** The counting backend, registered once under 'cpu-counting'. */
export function countingBackend(): CountingBackend {
  if (!counting) {
    counting = new CountingBackend();
    registerReadyBackend(counting);
  }
  return counting;
}

// ---- the sdeintAdjoint property runs, on any backend (test/sde/adjoint.test.ts, test/webgpu) --

/** Sizes of the property problems: batch, state, hidden units. */
export const PB = 2;
export const PD = 3;
export const PH = 8;
const ARGNUMS = [0, 1, 2, 3, 4, 5, 6];

export interface Problem {
  x0: T.Tensor;
  params: T.Tensor[];
  w: T.Tensor;
  ts: number[];
}

/**
 * A random toy problem: x0 [PB, PD], the toy parameters and a loss weight w for every output
 * time. Drawn in float64 on cpu and rounded to float32 values, so every backend and dtype sees
 * the same numbers.
 */
export function problem(seed: number, dtype: DType, ts = [0, 0.3, 1], backend?: string): Problem {
  const draw = (shape: number[], stream: number, scale: number) =>
    T.tidy(() => {
      const z = T.randomNormal(shape, { seed, stream, dtype: 'float64', backend: 'cpu' });
      return T.fromArray(
        Float64Array.from(z.dataSync(), (v) => Math.fround(v * scale)),
        shape,
        { dtype, backend },
      );
    });
  return {
    params: toyParams(PD, PH, seed, dtype, backend),
    x0: draw([PB, PD], 100, 0.5),
    w: draw([ts.length, PB, PD], 101, 1),
    ts,
  };
}

export function disposeProblem(pr: Problem): void {
  T.dispose(pr.x0, pr.w, pr.params);
}

export type Solve = (sde: SDE, x: T.Tensor) => T.Tensor;

/** dL/d(x0, params) with L = sum(w * solve(x0)), read back from the problem's backend. */
export async function lossGrads(
  noise: NoiseKind,
  pr: Problem,
  solve: Solve,
  sdeType: SdeType = 'ito',
): Promise<Float64Array[]> {
  const gs = T.tidy(() =>
    T.grad((x, ...p) => T.sum(T.mul(solve(toySde(noise, p, sdeType), x), pr.w)), { argnums: ARGNUMS })(
      pr.x0,
      ...pr.params,
    ),
  );
  return readAndDispose(...gs);
}

/** The largest max|a - b| / max|b| over a list of gradients. */
export const worstRelErr = (a: Float64Array[], b: Float64Array[]) =>
  Math.max(...a.map((x, i) => relErr(x, b[i] as Float64Array)));

/** 'exact' vs autograd through sdeint on one random problem (same path, float32): the worst error. */
export async function exactVsAutograd(
  noise: NoiseKind,
  method: Method,
  sdeType: SdeType,
  seed: number,
  backend?: string,
): Promise<number> {
  const pr = problem(seed, 'float32', undefined, backend);
  try {
    const opts = { method, dt: 1 / 16, seed };
    const ex = await lossGrads(
      noise,
      pr,
      (sde, x) => sdeintAdjoint(sde, x, pr.ts, { ...opts, mode: 'exact', paramGrads: true }),
      sdeType,
    );
    const ag = await lossGrads(noise, pr, (sde, x) => sdeint(sde, x, pr.ts, opts), sdeType);
    return worstRelErr(ex, ag);
  } finally {
    disposeProblem(pr);
  }
}

/**
 * dL/d(x0, params) through sdeintAdjoint in `mode` (Euler, dt 1/16, the seeded default path) on
 * one random problem, built on `backend` in `dtype`: the same numbers on every backend.
 */
export async function adjointGrads(
  noise: NoiseKind,
  seed: number,
  mode: 'continuous' | 'exact',
  dtype: DType,
  backend?: string,
): Promise<Float64Array[]> {
  const pr = problem(seed, dtype, undefined, backend);
  try {
    return await lossGrads(noise, pr, (sde, x) =>
      sdeintAdjoint(sde, x, pr.ts, { method: 'euler', dt: 1 / 16, seed, mode, paramGrads: true }),
    );
  } finally {
    disposeProblem(pr);
  }
}

/**
 * The worst relative gap between the continuous adjoint (default method) and 'exact' at each dt
 * (default 1/8, 1/64, 1/512) on one shared path (a cached BrownianGrid at the finest dt, so every
 * step of both passes is a sum of its cells). Milstein forward on the state-dependent noise, so
 * both gradients converge at order 1 (with Euler, order 0.5, the gap shrinks too, but too slowly
 * for a short test).
 */
export async function continuousGaps(
  noise: NoiseKind,
  seed: number,
  dtype: DType,
  backend?: string,
  dts = [2 ** -3, 2 ** -6, 2 ** -9],
): Promise<number[]> {
  const pr = problem(seed, dtype, [0, 1], backend);
  const finest = Math.min(...dts);
  const bm = new BrownianGrid({ t0: 0, t1: 1, shape: [PB, PD], seed, dt: finest, cache: true, dtype, backend });
  const method = noise === 'diagonal' ? 'milstein' : 'euler';
  try {
    const gaps: number[] = [];
    for (const dt of dts) {
      const ex = await lossGrads(noise, pr, (sde, x) =>
        sdeintAdjoint(sde, x, pr.ts, { dt, bm, method, mode: 'exact', paramGrads: true }),
      );
      const co = await lossGrads(noise, pr, (sde, x) =>
        sdeintAdjoint(sde, x, pr.ts, { dt, bm, method, paramGrads: true }),
      );
      gaps.push(worstRelErr(co, ex));
    }
    return gaps;
  } finally {
    bm.dispose();
    disposeProblem(pr);
  }
}

// ---- memory of the gradient paths, on any backend -------------------------------------------

/** Bytes held by live tensors on one backend, and their peak. */
export interface MemoryMeter {
  readonly backend: string;
  live(): number;
  peak(): number;
  /** Start a new peak at the current bytes in use. */
  resetPeak(): void;
}

export function countingMeter(): MemoryMeter {
  const be = countingBackend();
  return { backend: be.name, live: () => be.live, peak: () => be.peak, resetPeak: () => be.resetPeak() };
}

export type GradPath = 'continuous' | 'exact' | 'autograd';

/**
 * Peak bytes above the baseline while computing one input gradient of sum(x(1)) through `steps`
 * Euler steps of the toy diagonal SDE (state [B, D], hidden H) by `how`, and the bytes left over
 * once everything is freed (0 unless something leaked).
 */
export function gradPeakBytes(
  meter: MemoryMeter,
  how: GradPath,
  steps: number,
  { B, D, H }: { B: number; D: number; H: number },
): { peak: number; leaked: number } {
  const base0 = meter.live();
  const backend = meter.backend;
  const params = toyParams(D, H, 1, 'float32', backend);
  const x0 = T.randomNormal([B, D], { seed: 2, backend });
  const sde = toySde('diagonal', params);
  const solve = (x: T.Tensor) =>
    how === 'autograd'
      ? sdeint(sde, x, [0, 1], { dt: 1 / steps, seed: 4 })
      : sdeintAdjoint(sde, x, [0, 1], { dt: 1 / steps, seed: 4, mode: how });
  meter.resetPeak();
  const base = meter.live();
  const g = T.grad((x) => T.sum(solve(x)))(x0);
  const peak = meter.peak() - base;
  T.dispose(g, x0, params);
  return { peak, leaked: meter.live() - base0 };
}

// ---- the sde_adjoint fixture (torchsde 0.2.6), on any backend -------------------------------

/**
 * ../shared/fixtures/sde_adjoint: a 6-dimensional tanh-MLP SDE, 3 samples, 8 Euler steps on a
 * stored Brownian path, its inputs on `backend`, and the solves the tests compare.
 */
export class SdeAdjointFixture {
  readonly B = 3;
  readonly D = 6;
  readonly ts = [0, 1];
  readonly names = ['x0', 'W1', 'u1', 'b1', 'W2', 'b2'] as const;
  readonly grid: number[];
  readonly x0: T.Tensor;
  readonly w: T.Tensor;
  readonly P: MlpParams;
  private readonly inc: Float32Array | Float64Array;

  constructor(
    readonly dir: string,
    readonly backend?: string,
  ) {
    this.grid = Array.from(npy(dir, 'time_grid.npy').data);
    this.inc = npy(dir, 'brownian_increments.npy').data;
    const t = (name: string) => tensorOf(dir, `${name}.npy`, 'float32', backend);
    this.x0 = t('x0');
    this.w = t('w');
    this.P = { W1: t('W1'), u1: t('u1'), b1: t('b1'), W2: t('W2'), b2: t('b2') };
  }

  /** The stored path (a fresh replay: it holds no tensors). */
  bm(): BrownianReplay {
    return new BrownianReplay({
      times: this.grid,
      increments: this.inc,
      shape: [this.B, this.D],
      backend: this.backend,
    });
  }

  /** A reference array of the fixture. */
  ref(name: string): Float32Array | Float64Array {
    return npy(this.dir, `${name}.npy`).data;
  }

  /** sdeint euler on the fixture's grid (every step) and on ts (x(T) only). */
  async forward(): Promise<{ states: Float64Array; xT: Float64Array }> {
    const sde = fixtureSde(this.P);
    const [states, xT] = T.tidy(() => [
      sdeint(sde, this.x0, this.grid, { method: 'euler', dt: 0.125, bm: this.bm() }),
      T.narrow(sdeint(sde, this.x0, this.ts, { method: 'euler', dt: 0.125, bm: this.bm() }), 0, 1, 1),
    ]);
    const [s, x] = await readAndDispose(states as T.Tensor, xT as T.Tensor);
    return { states: s as Float64Array, xT: x as Float64Array };
  }

  /** L = sum(w * x(T)) and dL/d(x0, W1, u1, b1, W2, b2) through `run`. */
  async lossGrads(run: (sde: SDE, x: T.Tensor) => T.Tensor): Promise<{ value: number; grads: Float64Array[] }> {
    const { B, D, P } = this;
    const { value, grad } = T.valueAndGrad(
      (x, W1, u1, b1, W2, b2) => {
        const ys = run(fixtureSde({ W1, u1, b1, W2, b2 } as MlpParams), x);
        return T.sum(T.mul(T.reshape(T.narrow(ys, 0, 1, 1), [B, D]), this.w));
      },
      { argnums: [0, 1, 2, 3, 4, 5] },
    )(this.x0, P.W1, P.u1, P.b1, P.W2, P.b2);
    const [v, ...grads] = await readAndDispose(value, ...grad);
    return { value: (v as Float64Array)[0] as number, grads };
  }

  dispose(): void {
    T.dispose(this.x0, this.w, Object.values(this.P));
  }
}

/**
 * A trace callback for the continuous adjoint that keeps copies of y and a at every adjoint
 * time (the adjoint frees its own after the call), and reads them back afterwards, flattened.
 */
export function traceCollector(): {
  trace: (e: AdjointTraceEvent) => void;
  read: () => Promise<{ y: number[]; a: number[] }>;
} {
  const ys: T.Tensor[] = [];
  const as: T.Tensor[] = [];
  const flat = (hs: Float64Array[]) => hs.flatMap((h) => Array.from(h));
  return {
    trace: ({ y, a }) => {
      ys.push(T.keep(T.add(y, 0)));
      as.push(T.keep(T.add(a, 0)));
    },
    read: async () => ({ y: flat(await readAndDispose(...ys)), a: flat(await readAndDispose(...as)) }),
  };
}

/** Least-squares slope of log2(error) against log2(dt) for dt = 2^-level: the fitted strong order. */
export function fitOrder(levels: number[], errors: number[]): number {
  const xs = levels.map((l) => -l);
  const ys = errors.map(Math.log2);
  const mx = xs.reduce((a, b) => a + b) / xs.length;
  const my = ys.reduce((a, b) => a + b) / ys.length;
  let num = 0;
  let den = 0;
  xs.forEach((x, i) => {
    num += (x - mx) * ((ys[i] as number) - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}
