// Deterministic initialisation for freshly built models (benchmarks, tests): every tensor is
// drawn from the counter-based generator with (seed, stream = running index), so a model built
// twice with the same seed is bit-identical on every backend. Loading a checkpoint replaces it.

import { full, mul, randomUniform, sub, type Tensor } from '../tensor/index.js';

let seed = 0;
let stream = 0;

/** Restart the initialisation stream (torch.manual_seed's role for model construction). */
export function manualSeed(s: number, startStream = 0): void {
  if (!Number.isSafeInteger(s) || s < 0)
    throw new Error(`manualSeed: seed must be a non-negative safe integer, got ${s}`);
  if (!Number.isSafeInteger(startStream) || startStream < 0)
    throw new Error(`manualSeed: startStream must be a non-negative safe integer, got ${startStream}`);
  seed = s;
  stream = startStream;
}

/**
 * Where training step `step` draws its dropout masks: streams 2^40 + step * 2^16 onwards, far from the initialisers'
 * (0, 1, 2, ...), so a resumed run draws the same masks as an uninterrupted one.
 */
export function seedTrainingStep(s: number, step: number): void {
  manualSeed(s, 2 ** 40 + step * 2 ** 16);
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
