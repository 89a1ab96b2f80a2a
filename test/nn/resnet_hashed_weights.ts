import { readFileSync } from 'node:fs';
// Deterministic weights from a 32-bit integer hash, recomputed bit for bit by
// test/nn/fixtures/classifiers/make_refs.py, so reference outputs can be checked without storing
// weight files: entry k of the state dict (in state-dict order) gets element i from
// u(k, i) = (fmix32(fmix32(k * 0x9E3779B1 + 0x2545F491) ^ i) + 0.5) / 2^32, mapped by role
// (BatchNorm statistics and affine, LayerNorm scale, He-uniform conv weights, Linear weights, biases).

import * as T from '../../src/index.js';
import type { HostWeights, Module } from '../../src/nn/index.js';

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** n numbers u(key, i) in (0, 1), in float64. */
export function hashedUniform(key: number, n: number): Float64Array {
  const base = fmix32((Math.imul(key, 0x9e3779b1) + 0x2545f491) >>> 0);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = (fmix32((base ^ i) >>> 0) + 0.5) / 2 ** 32;
  return out;
}

/**
 * The state dict make_refs.py's set_hashed_weights gives the same architecture (num_batches_tracked
 * 0 as in a fresh model; DMWideResNet's 'mean' and 'std' buffers left out, they keep their values).
 */
export function hashedStateDict(model: Module): Map<string, HostWeights> {
  const sd = [...model.stateDict()];
  const bn = new Set(sd.filter(([k]) => k.endsWith('running_mean')).map(([k]) => k.slice(0, k.lastIndexOf('.'))));
  const out = new Map<string, HostWeights>();
  sd.forEach(([name, t], k) => {
    const shape = t.shape;
    if (name === 'mean' || name === 'std') return;
    if (name.endsWith('num_batches_tracked')) {
      out.set(name, { shape, data: new Float32Array(1) });
      return;
    }
    const u = hashedUniform(k, t.size);
    const dot = name.lastIndexOf('.');
    const prefix = dot < 0 ? '' : name.slice(0, dot);
    const last = name.slice(dot + 1);
    let f: (u: number) => number;
    if (last === 'running_var') f = (v) => 0.5 + v;
    else if (last === 'running_mean') f = (v) => 0.2 * (2 * v - 1);
    else if (bn.has(prefix) && last === 'weight') f = (v) => 0.75 + 0.5 * v;
    else if (bn.has(prefix) && last === 'bias') f = (v) => 0.2 * (2 * v - 1);
    else if (last === 'weight' && shape.length === 1)
      f = (v) => 0.75 + 0.5 * v; // LayerNorm's scale
    else if (shape.length === 4) {
      const bound = Math.sqrt(6 / ((shape[1] as number) * (shape[2] as number) * (shape[3] as number)));
      f = (v) => (2 * v - 1) * bound;
    } else if (shape.length === 2) {
      const bound = Math.sqrt(3 / (shape[1] as number));
      f = (v) => (2 * v - 1) * bound;
    } else f = (v) => 0.1 * (2 * v - 1);
    const data = new Float32Array(u.length);
    for (let i = 0; i < u.length; i++) data[i] = f(u[i] as number);
    out.set(name, { shape, data });
  });
  return out;
}

/** test/nn/fixtures/classifiers: outputs of torchvision / RobustBench on hash-initialised weights (see its README). */
export const CLASSIFIER_REFS = 'test/nn/fixtures/classifiers';
export interface RefModel {
  n_params: number;
  input_shape: number[];
  input_key: number;
  logits: number[][];
  grad_x_file: string;
  state_dict_keys: string[];
}
export interface Refs {
  torchvision: string;
  models: Record<string, RefModel>;
  full_size: Record<string, { n_params: number; state_dict_shapes: Record<string, number[]> }>;
}
export const classifierRefs: Refs = JSON.parse(readFileSync(`${CLASSIFIER_REFS}/meta.json`, 'utf8'));
/** Key of the hashed cotangent the reference input gradients were taken with. */
export const COTANGENT_KEY = 2_000_001;

/** The reference input x = u(input_key, i) of a model in the refs, as float32 on `backend`. */
export function hashedInput(ref: RefModel, backend?: string): T.Tensor {
  const shape = ref.input_shape;
  const n = shape.reduce((a, b) => a * b, 1);
  return T.fromArray(hashedUniform(ref.input_key, n), shape, { dtype: 'float32', backend });
}

/** The cotangent w = 2 u(COTANGENT_KEY, i) - 1 the reference input gradient was taken with. */
export function hashedCotangent(ref: RefModel, backend?: string): T.Tensor {
  const [b, k] = [ref.logits.length, (ref.logits[0] as number[]).length];
  const w = Float64Array.from(hashedUniform(COTANGENT_KEY, b * k), (u) => 2 * u - 1);
  return T.fromArray(w, [b, k], { dtype: 'float32', backend });
}
