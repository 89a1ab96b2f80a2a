// Deterministic initialisation for freshly built models (benchmarks, tests): every tensor is
// drawn from the counter-based generator with (seed, stream = running index), so a model built
// twice with the same seed is bit-identical on every backend. Loading a checkpoint replaces it.

import { full, mul, randomUniform, sub, type Tensor } from '../tensor/index.js';

let seed = 0;
let stream = 0;

/** Restart the initialisation stream (torch.manual_seed's role for model construction). */
export function manualSeed(s: number): void {
  if (!Number.isSafeInteger(s) || s < 0)
    throw new Error(`manualSeed: seed must be a non-negative safe integer, got ${s}`);
  seed = s;
  stream = 0;
}

/** The next (seed, stream) pair; dropout masks and initialisers draw from here. */
export function nextRandom(): { seed: number; stream: number } {
  return { seed, stream: stream++ };
}

/** U(-bound, bound), PyTorch's default for Conv2d/Linear with bound = 1/sqrt(fan_in). */
export function uniformInit(shape: readonly number[], bound: number): Tensor {
  return mul(sub(randomUniform(shape, nextRandom()), 0.5), 2 * bound);
}

export function constantInit(shape: readonly number[], v: number): Tensor {
  return full(shape, v);
}
