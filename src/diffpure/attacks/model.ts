// The classifier every attack takes, and the two things attacks ask of it: logits without a graph, and the
// input gradient of a loss whose derivative in the logits is computed on the host (losses.ts).
//
// A classifier maps images x [B, C, H, W] in [0, 1] to logits [B, K]. It may be stochastic (DiffPure's defended
// classifier purifies before it classifies): then row r draws its randomness from `keys[r]`, a key the attack
// derives from (seed, attack, run, iteration, EOT sample, index of the image in the whole data set). A row's result
// therefore does not depend on the batch it was evaluated in, which is what makes sharded evaluation exact.
// Deterministic classifiers ignore the keys.

import { vjp } from '../../autograd/engine.js';
import { fromArray } from '../../tensor/prims/creation.js';
import { withGradMode } from '../../tensor/runtime.js';
import { type Tensor, tidy } from '../../tensor/tensor.js';

/** One random key per batch row (an integer in [0, 2^53)); see the file comment. */
export type NoiseKeys = readonly number[];

/** (x [B, C, H, W] in [0, 1], one key per row) => logits [B, K]. */
export type Classifier = (x: Tensor, keys: NoiseKeys) => Tensor;

/** Images on the host: NCHW float32 in [0, 1]. */
export interface Images {
  readonly data: Float32Array;
  readonly shape: readonly [number, number, number, number];
}

export interface AttackResult {
  /** Adversarial images where the attack succeeded, the clean images elsewhere (as the official perturb). */
  adv: Images;
  /** Still correctly classified at x and at every iterate the attack tried (the official acc flag). */
  robust: boolean[];
}

export interface AttackModel {
  readonly classify: Classifier;
  /** Backend the inputs are created on (default: the current backend). */
  readonly backend?: string;
}

/** Accepts a bare function as a model on the current backend. */
export function asModel(m: AttackModel | Classifier): AttackModel {
  return typeof m === 'function' ? { classify: m } : m;
}

let lastYield = 0;

/**
 * Lets the event loop run (timers, IPC, progress) at most every 200 ms: an attack awaits thousands of forwards, and
 * on the cpu backend data() resolves at once, which would otherwise hold the loop for minutes (vitest's worker RPC
 * times out after 60 s).
 */
export async function letEventLoopRun(): Promise<void> {
  const now = performance.now();
  if (now - lastYield < 200) return;
  await new Promise<void>((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));
  lastYield = performance.now();
}

const rowSize = (shape: readonly number[]) => (shape[1] as number) * (shape[2] as number) * (shape[3] as number);

/** Rows `rows` of `x` as a new Images. */
export function takeRows(x: Images, rows: readonly number[]): Images {
  const d = rowSize(x.shape);
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    out.set(x.data.subarray(r * d, (r + 1) * d), i * d);
  });
  return { data: out, shape: [rows.length, x.shape[1], x.shape[2], x.shape[3]] };
}

/** `copies` copies of x stacked along the batch: [x; x; ...]. */
export function tileRows(x: Images, copies: number): Images {
  const out = new Float32Array(x.data.length * copies);
  for (let c = 0; c < copies; c++) out.set(x.data, c * x.data.length);
  return { data: out, shape: [x.shape[0] * copies, x.shape[1], x.shape[2], x.shape[3]] };
}

function checkLogits(z: Tensor, rows: number): number {
  if (z.shape.length !== 2 || z.shape[0] !== rows) {
    throw new Error(
      `classifier: returned logits of shape [${z.shape.join(', ')}] for ${rows} images; ` +
        'a classifier must return [B, K] logits for x [B, C, H, W]',
    );
  }
  return z.shape[1] as number;
}

/** Logits [B, K] on the host, without recording a graph. */
export async function logitsOf(
  model: AttackModel,
  x: Images,
  keys: NoiseKeys,
): Promise<{ logits: Float32Array; k: number }> {
  await letEventLoopRun();
  const xt = fromArray(x.data, x.shape, { backend: model.backend });
  // tidy: the classifier's intermediates are freed; only the logits survive the call
  const z = withGradMode(false, () => tidy(() => model.classify(xt, keys)));
  try {
    const k = checkLogits(z, x.shape[0]);
    const logits = Float32Array.from(await z.data());
    return { logits, k };
  } finally {
    xt.dispose();
    z.dispose();
  }
}

/**
 * What a loss gives back for logits z [B, K]: the per-row loss and its derivative in the logits
 * (the cotangent backpropagated through the classifier).
 */
export interface LossAndCotangent {
  loss: Float32Array;
  dz: Float32Array;
}

/**
 * The logits at x and the input gradient of sum_rows loss(logits): the classifier's VJP with the cotangent the
 * loss computes on the host from the logits.
 */
export async function logitsAndGrad(
  model: AttackModel,
  x: Images,
  keys: NoiseKeys,
  loss: (logits: Float32Array, k: number) => LossAndCotangent,
): Promise<{ logits: Float32Array; k: number; loss: Float32Array; grad: Float32Array }> {
  await letEventLoopRun();
  const xt = fromArray(x.data, x.shape, { backend: model.backend });
  // tidy drops our references to the intermediates; the graph keeps what the backward needs until release()
  const { out, vjpFn, release } = withGradMode(true, () => tidy(() => vjp((v) => model.classify(v, keys), xt)));
  try {
    const k = checkLogits(out, x.shape[0]);
    const logits = Float32Array.from(await out.data());
    const l = loss(logits, k);
    const cot = fromArray(l.dz, [x.shape[0], k], { backend: model.backend });
    const [g] = tidy(() => vjpFn(cot));
    cot.dispose();
    const grad = Float32Array.from(await (g as Tensor).data());
    (g as Tensor).dispose();
    return { logits, k, loss: l.loss, grad };
  } finally {
    release();
    xt.dispose();
  }
}

/** argmax of each row of z [B, K] (the first maximum, as torch.max on distinct values). */
export function predictions(z: Float32Array, k: number): Int32Array {
  const b = z.length / k;
  const out = new Int32Array(b);
  for (let r = 0; r < b; r++) {
    let best = 0;
    for (let j = 1; j < k; j++) if ((z[r * k + j] as number) > (z[r * k + best] as number)) best = j;
    out[r] = best;
  }
  return out;
}
