// Shared pieces of the SDE tests and the SDE bench: fixture loading, error measures, the
// two-layer tanh SDE of the sde_adjoint fixture, and a cpu backend that counts live bytes.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../../src/index.js';
import { readNpy } from '../../src/nn/io/npy.js';
import { defineSde, type NoiseType, type SDE, type SdeType } from '../../src/sde/index.js';
import { type Backend, type DType, type KernelArg, Storage, type TypedArray } from '../../src/tensor/backend.js';
import { CpuBackend } from '../../src/tensor/cpu/backend.js';
import { registerReadyBackend } from '../../src/tensor/runtime.js';
import type { Shape } from '../../src/tensor/shape.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURES = join(here, '..', '..', '..', 'shared', 'fixtures');

export function fixtureDir(name: string): string | null {
  const d = join(FIXTURES, name);
  return existsSync(join(d, 'meta.json')) ? d : null;
}

export function npy(dir: string, file: string): { shape: number[]; data: Float32Array | Float64Array } {
  return readNpy(join(dir, file));
}

export function tensorOf(dir: string, file: string, dtype: DType = 'float32'): T.Tensor {
  const a = npy(dir, file);
  return T.fromArray(a.data, a.shape, { dtype });
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

/** max|a - b| / max|b|. */
export function relMaxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m / maxAbs(b);
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
export function toyParams(D: number, H: number, seed: number, dtype: DType = 'float32'): T.Tensor[] {
  const r = (shape: number[], stream: number, scale: number, shift = 0) =>
    T.tidy(() => {
      const z = T.randomNormal(shape, { seed, stream, dtype: 'float64' });
      // values representable in float32 so float32 and float64 runs see the same parameters
      const host = Float64Array.from(z.dataSync(), (v) => Math.fround(v * scale + shift));
      return T.fromArray(host, shape, { dtype });
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
  }
  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage {
    return this.own(this.inner.run(prim, inputs, attrs, outShape, outDtype));
  }
  flush(): void {}
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
