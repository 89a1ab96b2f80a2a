// Expectation over transformation: the input gradient averaged over `eotIter` independent evaluations of a
// stochastic classifier at the same point, as AutoAttack's APGD does it (grad += g_e, then grad /= eot_iter, in
// float32); the logits and loss it reports are those of the LAST sample, as the official code keeps them.
//
// EOT samples are batched: `eotBatch` copies of the batch go through one forward and backward (default: all of
// them, up to MAX_EOT_ROWS rows per call), which is what makes EOT 20 affordable on a GPU. Each copy e of row r
// draws its randomness from its own key, so batching changes nothing but speed.

import { type AttackModel, type Images, type LossAndCotangent, logitsAndGrad, tileRows } from './model.js';

/** Rows per forward above which EOT copies are split into several calls (memory: rows x the model's activations). */
export const MAX_EOT_ROWS = 256;

export interface EotResult {
  logits: Float32Array;
  k: number;
  loss: Float32Array;
  grad: Float32Array;
}

/**
 * @param keyOf the classifier key of row `r` of x in EOT sample `e`
 * @param loss the loss of a block of `copies` stacked copies of x (labels repeat per copy)
 */
export async function eotGradient(
  model: AttackModel,
  x: Images,
  eotIter: number,
  keyOf: (e: number, r: number) => number,
  loss: (logits: Float32Array, k: number, copies: number) => LossAndCotangent,
  eotBatch?: number,
): Promise<EotResult> {
  const n = x.shape[0];
  const per = Math.max(1, Math.min(eotIter, eotBatch ?? Math.max(1, Math.floor(MAX_EOT_ROWS / Math.max(1, n)))));
  const grad = new Float32Array(x.data.length);
  let last: Omit<EotResult, 'grad'> | null = null;
  for (let e0 = 0; e0 < eotIter; e0 += per) {
    const copies = Math.min(per, eotIter - e0);
    const xs = copies === 1 ? x : tileRows(x, copies);
    const keys: number[] = [];
    for (let c = 0; c < copies; c++) for (let r = 0; r < n; r++) keys.push(keyOf(e0 + c, r));
    const out = await logitsAndGrad(model, xs, keys, (z, k) => loss(z, k, copies));
    const d = x.data.length;
    for (let c = 0; c < copies; c++) {
      const g = out.grad.subarray(c * d, (c + 1) * d);
      for (let j = 0; j < d; j++) grad[j] = (grad[j] as number) + (g[j] as number);
    }
    const k = out.k;
    last = {
      logits: out.logits.slice((copies - 1) * n * k, copies * n * k),
      k,
      loss: out.loss.slice((copies - 1) * n, copies * n),
    };
  }
  if (eotIter !== 1) for (let j = 0; j < grad.length; j++) grad[j] = (grad[j] as number) / eotIter;
  return { ...(last as Omit<EotResult, 'grad'>), grad };
}

/** `labels` repeated `copies` times (the labels of tiled rows). */
export function tileLabels(labels: ArrayLike<number>, copies: number): Int32Array {
  const out = new Int32Array(labels.length * copies);
  for (let c = 0; c < copies; c++)
    for (let i = 0; i < labels.length; i++) out[c * labels.length + i] = labels[i] as number;
  return out;
}
