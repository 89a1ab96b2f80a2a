// Tensor creation: from host data, constants, ranges and counter-based random numbers.
// These make leaves (no inputs), so they have no VJP.

import type { DType, TypedArray } from '../backend.js';
import { getBackend } from '../runtime.js';
import { checkShape, fmt, type Shape, sizeOf } from '../shape.js';
import { Tensor } from '../tensor.js';

export interface CreateOptions {
  dtype?: DType;
  /** Backend name; defaults to the current backend (setBackend). */
  backend?: string;
}

function create(op: string, attrs: unknown, shape: Shape, opts: CreateOptions): Tensor {
  checkShape(op, 'shape', shape);
  const dtype = opts.dtype ?? 'float32';
  const backend = getBackend(opts.backend);
  if (!backend.dtypes.includes(dtype)) {
    throw new Error(`${op}: backend '${backend.name}' does not support ${dtype}; use float32 or the cpu backend`);
  }
  return new Tensor(backend.run(op, [], attrs, shape, dtype), [...shape], dtype);
}

/** A tensor holding a copy of `data` (row-major) with the given shape (default: 1-D). */
export function fromArray(data: ArrayLike<number>, shape?: Shape, opts: CreateOptions = {}): Tensor {
  const s = shape ?? [data.length];
  checkShape('fromArray', 'shape', s);
  if (sizeOf(s) !== data.length) {
    throw new Error(`fromArray: data has ${data.length} elements but shape ${fmt(s)} needs ${sizeOf(s)}`);
  }
  const dtype = opts.dtype ?? (data instanceof Float64Array ? 'float64' : 'float32');
  const backend = getBackend(opts.backend);
  if (!backend.dtypes.includes(dtype)) {
    throw new Error(`fromArray: backend '${backend.name}' does not support ${dtype}; use float32 or the cpu backend`);
  }
  const host: TypedArray = dtype === 'float64' ? Float64Array.from(data) : Float32Array.from(data);
  return new Tensor(backend.upload(host, dtype), [...s], dtype);
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  return create('fill', { value }, shape, opts);
}
export const zeros = (shape: Shape, opts: CreateOptions = {}) => full(shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOptions = {}) => full(shape, 1, opts);
export const zerosLike = (t: Tensor) => full(t.shape, 0, { dtype: t.dtype, backend: t.backend.name });
export const onesLike = (t: Tensor) => full(t.shape, 1, { dtype: t.dtype, backend: t.backend.name });
export const fullLike = (t: Tensor, v: number) => full(t.shape, v, { dtype: t.dtype, backend: t.backend.name });

/** start, start+step, ... below stop (as NumPy/PyTorch arange). */
export function arange(start: number, stop?: number, step = 1, opts: CreateOptions = {}): Tensor {
  let a = start;
  let b = stop;
  if (b === undefined) {
    b = a;
    a = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new Error(`arange: step must be finite and non-zero, got ${step}`);
  const n = Math.max(0, Math.ceil((b - a) / step));
  return create('arange', { start: a, step }, [n], opts);
}

export interface RandomOptions extends CreateOptions {
  /** Key of the generator (integer in [0, 2^53)). */
  seed: number;
  /** Independent stream under the same seed, e.g. the SDE step index (integer in [0, 2^53)). */
  stream?: number;
}

function checkSeed(op: string, o: RandomOptions): void {
  for (const k of ['seed', 'stream'] as const) {
    const v = o[k] ?? 0;
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${op}: ${k} must be a non-negative safe integer, got ${v}`);
  }
}

/** Uniform [0,1) numbers; element i is a pure function of (seed, stream, i), identical on every backend. */
export function randomUniform(shape: Shape, opts: RandomOptions): Tensor {
  checkSeed('randomUniform', opts);
  return create('random', { dist: 'uniform', seed: opts.seed, stream: opts.stream ?? 0 }, shape, opts);
}

/** Standard normal numbers (Box-Muller on Philox words); element i depends only on (seed, stream, i). */
export function randomNormal(shape: Shape, opts: RandomOptions): Tensor {
  checkSeed('randomNormal', opts);
  return create('random', { dist: 'normal', seed: opts.seed, stream: opts.stream ?? 0 }, shape, opts);
}
