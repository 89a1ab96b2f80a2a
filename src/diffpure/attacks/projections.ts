// Threat models and the checks every attack makes on its inputs before any work.

import type { Images } from './model.js';

export type Norm = 'Linf' | 'L2';

export const NORMS: readonly Norm[] = ['Linf', 'L2'];

/**
 * Validates images (NCHW, finite, in [0, 1]), labels (integers, one per image), the norm, eps and the sample ids;
 * returns the sample ids (default 0..B-1). Nothing is clamped: out-of-range images are refused.
 */
export function checkAttackInputs(
  attack: string,
  x: Images,
  y: ArrayLike<number>,
  norm: string,
  eps: number,
  sampleIds?: readonly number[],
): number[] {
  const [b, c, h, w] = x.shape;
  if (x.shape.length !== 4 || x.data.length !== b * c * h * w) {
    throw new Error(
      `${attack}: x must be images [B, C, H, W] with B*C*H*W values; got shape [${x.shape.join(', ')}] and ${x.data.length} values`,
    );
  }
  if (b === 0) throw new Error(`${attack}: x holds no images`);
  for (let i = 0; i < x.data.length; i++) {
    const v = x.data[i] as number;
    if (!(v >= 0 && v <= 1)) {
      const at = `image ${Math.floor(i / (c * h * w))}, flat index ${i}`;
      throw new Error(
        `${attack}: x must lie in [0, 1] (no value is clamped); found ${v} at ${at}. Scale images to [0, 1] first`,
      );
    }
  }
  if (y.length !== b) throw new Error(`${attack}: ${y.length} labels for ${b} images`);
  for (let i = 0; i < b; i++) {
    const v = y[i] as number;
    if (!Number.isInteger(v) || v < 0)
      throw new Error(`${attack}: label ${v} of image ${i} is not a class index (a non-negative integer)`);
  }
  if (!NORMS.includes(norm as Norm))
    throw new Error(`${attack}: norm must be one of ${NORMS.join(', ')}, got '${norm}'`);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new Error(`${attack}: eps must be a finite number >= 0, got ${eps}`);
  const ids = sampleIds ? [...sampleIds] : Array.from({ length: b }, (_, i) => i);
  if (ids.length !== b) throw new Error(`${attack}: ${ids.length} sample ids for ${b} images`);
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id < 0)
      throw new Error(`${attack}: sample id ${id} is not a non-negative integer`);
  }
  return ids;
}

/** Labels must be classes of the classifier: checked once its number of classes K is known. */
export function checkLabelRange(attack: string, y: ArrayLike<number>, k: number): void {
  for (let i = 0; i < y.length; i++) {
    const v = y[i] as number;
    if (v >= k)
      throw new Error(`${attack}: label ${v} of image ${i} is not a class of this ${k}-class classifier (0..${k - 1})`);
  }
}

/** An option that must be an integer >= min, named in the error. */
export function positiveInt(attack: string, key: string, v: number, min = 1): number {
  if (!Number.isInteger(v) || v < min) throw new Error(`${attack}: ${key} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** An option that must be a finite number >= 0, named in the error. */
export function finiteNonNegative(attack: string, key: string, v: number): number {
  if (!(Number.isFinite(v) && v >= 0)) throw new Error(`${attack}: ${key} must be a finite number >= 0, got ${v}`);
  return v;
}

/** torch.sign: 0 at 0. */
export const sign = (v: number) => (v > 0 ? 1 : v < 0 ? -1 : 0);

/** clamp(v, 0, 1): the image box. */
export const clamp01 = (v: number) => Math.min(Math.max(v, 0), 1);
