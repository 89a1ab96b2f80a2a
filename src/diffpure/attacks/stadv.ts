// StAdv (Xiao et al., ICLR 2018) as DiffPure's stadv_eot runs it (NVlabs/DiffPure 985703f stadv_eot/attacks.py
// StAdvAttack on the vendored mister_ed: PGD.attack, ParameterizedXformAdv, FullSpatial, CWLossF6,
// PerturbationNormLoss, RegularizedLoss), which is perceptual-advex's StAdvAttack plus an EOT loop:
//
//   G = identity grid (F.affine_grid of the identity, align_corners=False), [N, H, W, 2] normalised (x, y)
//   repeat nIter times:
//     G = clamp(G, -1, 1); G = I + clamp(G - I, -bound, bound)            (constrain_params, before every forward)
//     loss_n = -[(z_y - max_{j != y} z_j) + lambda * L_flow(G - I)]      (maximised; lambda = 0.0025 / bound)
//     g = mean over eotIter samples of d(-sum_n loss_n)/dG; Adam(lr 0.01) step on G
//   return grid_sample(x, constrain(G))                                  (bilinear, zero padding)
//
// with z = classifier(grid_sample(x, G)) and L_flow = sum_p sum_{q in 4-neighbours} sqrt(||f_p - f_q||^2 + 1e-10),
// replicate borders (a missing neighbour is the pixel itself). The host arithmetic (identity grid, projection,
// loss, Adam) is float32 in the official order of operations.
//
// Official quirks kept (named where they happen):
// - the attack returns the LAST iterate, not the best one: mister_ed's PGD.attack keeps best_perturbation and
//   then returns `perturbation` (same in perceptual-advex); `returnBest: true` returns the kept best instead;
// - the keep_best bookkeeping compares the loss measured BEFORE the Adam step but stores the grid AFTER it;
// - every image is attacked, including those the classifier already gets wrong (no clean check);
// - the EOT loop averages gradients (and the per-example losses) over eotIter independent samples.
//
// Differentiating at the identity grid: every sample sits exactly on a pixel centre, where bilinear sampling has a
// kink. In float32 the unnormalised coordinate of PyTorch's identity grid is exactly the integer j, floor() gives j,
// and the coordinate gradient is the forward difference I[j+1] - I[j] (zero padding beyond the edge). gridSample
// (src/tensor/composite/resample.ts) evaluates the same float32 expression, so it takes the same side; the identity
// grid here reproduces PyTorch's float32 linspace bit for bit (test/diffpure/attacks/stadv.test.ts).

import { vjp } from '../../autograd/engine.js';
import { gridSample } from '../../tensor/composite/resample.js';
import { fromArray } from '../../tensor/prims/creation.js';
import { withGradMode } from '../../tensor/runtime.js';
import { type Tensor, tidy } from '../../tensor/tensor.js';
import { MAX_EOT_ROWS } from './eot.js';
import {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  letEventLoopRun,
  logitsOf,
  type NoiseKeys,
  predictions,
  tileRows,
} from './model.js';
import { checkAttackInputs, checkLabelRange } from './projections.js';
import { type AttackRandom, KeyedRandom } from './random.js';

const f = Math.fround;

/** sqrt's offset in the flow loss, as the float32 scalar PyTorch adds to a float32 tensor. */
const FLOW_EPS = f(1e-10);

export interface StadvOptions {
  /** L-inf bound on the flow in normalised grid units (default 0.05 = 0.8 px on 32x32 images). */
  bound?: number;
  /**
   * Adam iterations (default 100, what DiffPure and Laidlaw et al. pass on CIFAR-10; StAdvAttack's own default
   * is PGD_ITERS = 20). Always run in full: an int num_iterations disables mister_ed's early stop.
   */
  nIter?: number;
  /** Adam learning rate (default 0.01, StAdvAttack's setdefault). */
  lr?: number;
  /** Weight of the flow loss (default 0.0025 / bound, StAdvAttack's perturbation_norm_loss). */
  lambda?: number;
  /** EOT samples per gradient (default 1 as perceptual-advex; DiffPure's stadv_eot runs 20). */
  eotIter?: number;
  /** EOT samples per forward (default: as many as MAX_EOT_ROWS rows allow). */
  eotBatch?: number;
  /**
   * Return the best iterate (highest mean loss, official keep_best bookkeeping) instead of the last one.
   * Default false: QUIRK, the official attack returns the last iterate.
   */
  returnBest?: boolean;
  /** Seed of a stochastic classifier's draws (default 0). */
  seed?: number;
  /** Source of the classifier keys (default KeyedRandom(seed)); StAdv itself draws no random numbers. */
  random?: AttackRandom;
  /** Index of each row in the whole data set (default 0..B-1): the key of its random numbers. */
  sampleIds?: readonly number[];
  /** Name in random purposes and errors (default 'stadv'). */
  name?: string;
  /** Called once per iteration with the state before the Adam step (for tests and progress). */
  trace?: (e: StadvTrace) => void;
}

export interface StadvTrace {
  kind: 'iter';
  i: number;
  /** The projected grid the forward used [N, H, W, 2]. */
  grid: Float32Array;
  /** Per-example loss (maximised), averaged over the EOT samples (official loss_per_example_ave). */
  loss: Float32Array;
  /** L_flow of the grid per example (official perturbation_norm). */
  flowNorm: Float32Array;
  /** The gradient handed to Adam: mean over EOT samples of d(-sum loss)/dG. */
  grad: Float32Array;
}

export interface StadvResult extends AttackResult {
  /** The sampling grid of the returned images [N, H, W, 2] (projected), normalised (x, y) coordinates. */
  grid: Float32Array;
}

/**
 * F.affine_grid(identity, [n, c, h, w], align_corners=False) in float32, as PyTorch computes it: the base
 * coordinates are torch.linspace(-1, 1, size) (its two-sided float32 formula) times (size - 1) / size. Returns
 * [n, h, w, 2] with [..., 0] = x (width) and [..., 1] = y (height).
 *
 * Bit-exact against PyTorch at size 32 (the fixture; there every vector width of PyTorch's CPU linspace agrees).
 * At some other sizes (16, 28, 64, 224, 256, ...) PyTorch's vectorised linspace computes base + k * step per SIMD
 * lane, so its last bits depend on the CPU's vector width; this is the scalar formula. Those last bits decide on
 * which side of a pixel centre a sample falls, hence which one-sided difference the first gradient takes.
 */
export function identityGrid(n: number, h: number, w: number): Float32Array {
  const base = (size: number): Float32Array => {
    const out = new Float32Array(size);
    if (size === 1) return out; // linspace(-1, 1, 1) = [-1], times 0 / 1
    const step = f(2 / (size - 1));
    const half = Math.floor(size / 2);
    for (let i = 0; i < size; i++) {
      const v = i < half ? f(-1 + f(step * i)) : f(1 - f(step * (size - i - 1)));
      out[i] = f(f(v * (size - 1)) / size);
    }
    return out;
  };
  const bx = base(w);
  const by = base(h);
  const out = new Float32Array(n * h * w * 2);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const o = ((b * h + i) * w + j) * 2;
        out[o] = bx[j] as number;
        out[o + 1] = by[i] as number;
      }
    }
  }
  return out;
}

/**
 * constrain_params in place: clip_params (G += clamp(G, -1, 1) - G), then the L-inf projection around the identity
 * (G += (clamp(G - I, -bound, bound) + I) - G), in float32 in the official order.
 */
export function projectGrid(grid: Float32Array, identity: Float32Array, bound: number): void {
  const b = f(bound);
  for (let k = 0; k < grid.length; k++) {
    const g = grid[k] as number;
    const c = Math.min(Math.max(g, -1), 1);
    const g1 = f(g + f(c - g));
    const id = identity[k] as number;
    const ref = f(Math.min(Math.max(f(g1 - id), -b), b) + id);
    grid[k] = f(g1 + f(ref - g1));
  }
}

/**
 * The stAdv flow smoothness per example (official FullSpatial.stAdv_norm) of the flow G - I, and optionally its
 * gradient d(sum_n weight * L_flow_n)/dG added into `gradOut` [N, H, W, 2].
 */
export function flowNorm(
  grid: Float32Array,
  identity: Float32Array,
  n: number,
  h: number,
  w: number,
  grad?: { out: Float32Array; weight: number },
): Float32Array {
  const d = new Float32Array(grid.length);
  for (let k = 0; k < d.length; k++) d[k] = f((grid[k] as number) - (identity[k] as number));
  const out = new Float32Array(n);
  const wt = grad ? f(grad.weight) : 0;
  // the four neighbour maps in the official order: rows (up, down), then columns (left, right)
  const dirs: readonly [number, number][] = [
    [-1, 0],
    [1, 0],
    [0, -1],
    [0, 1],
  ];
  for (let b = 0; b < n; b++) {
    let total = 0;
    for (const [di, dj] of dirs) {
      let s = 0;
      for (let i = 0; i < h; i++) {
        const qi = Math.min(Math.max(i + di, 0), h - 1);
        for (let j = 0; j < w; j++) {
          const qj = Math.min(Math.max(j + dj, 0), w - 1);
          const p = ((b * h + i) * w + j) * 2;
          const q = ((b * h + qi) * w + qj) * 2;
          const du = f((d[p] as number) - (d[q] as number));
          const dv = f((d[p + 1] as number) - (d[q + 1] as number));
          const r = f(Math.sqrt(f(f(f(du * du) + f(dv * dv)) + FLOW_EPS)));
          s += r; // float64: close to PyTorch's cascaded float32 sum over H x W
          if (grad && (du !== 0 || dv !== 0)) {
            // d r / d du = du / r (pow(0.5) then pow(2) backward); the neighbour gets the opposite sign
            const k = f(wt * f(0.5 / r));
            const gu = f(f(k * 2) * du);
            const gv = f(f(k * 2) * dv);
            grad.out[p] = f((grad.out[p] as number) + gu);
            grad.out[p + 1] = f((grad.out[p + 1] as number) + gv);
            grad.out[q] = f((grad.out[q] as number) - gu);
            grad.out[q + 1] = f((grad.out[q + 1] as number) - gv);
          }
        }
      }
      total = f(total + f(s));
    }
    out[b] = total;
  }
  return out;
}

/**
 * The CW f6 margin z_y - max_{j != y} z_j per row (kappa = inf: unclipped) and its derivative in the logits
 * (+1 at y, -1 at the largest other class).
 */
function marginAndCotangent(
  z: Float32Array,
  k: number,
  y: ArrayLike<number>,
): { margin: Float32Array; dz: Float32Array } {
  const rows = z.length / k;
  const margin = new Float32Array(rows);
  const dz = new Float32Array(z.length);
  for (let r = 0; r < rows; r++) {
    const yr = y[r % y.length] as number;
    let other = -1;
    for (let j = 0; j < k; j++) {
      if (j === yr) continue;
      if (other < 0 || (z[r * k + j] as number) > (z[r * k + other] as number)) other = j;
    }
    margin[r] = f((z[r * k + yr] as number) - (z[r * k + other] as number));
    dz[r * k + yr] = 1;
    dz[r * k + other] = -1;
  }
  return { margin, dz };
}

interface Resolved {
  bound: number;
  nIter: number;
  lr: number;
  lambda: number;
  eotIter: number;
  eotBatch: number;
  returnBest: boolean;
  random: AttackRandom;
  name: string;
  trace: (e: StadvTrace) => void;
}

function resolve(o: StadvOptions, rows: number): Resolved {
  const name = o.name ?? 'stadv';
  const bound = o.bound ?? 0.05;
  if (!(Number.isFinite(bound) && bound > 0))
    throw new Error(`${name}: bound must be a finite number > 0, got ${bound}`);
  const nIter = o.nIter ?? 100;
  const eotIter = o.eotIter ?? 1;
  for (const [k, v] of [
    ['nIter', nIter],
    ['eotIter', eotIter],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: ${k} must be a positive integer, got ${v}`);
  }
  if (o.eotBatch !== undefined && !(Number.isInteger(o.eotBatch) && o.eotBatch >= 1))
    throw new Error(`${name}: eotBatch must be a positive integer, got ${o.eotBatch}`);
  const lr = o.lr ?? 0.01;
  if (!(Number.isFinite(lr) && lr > 0)) throw new Error(`${name}: lr must be a finite number > 0, got ${lr}`);
  const lambda = o.lambda ?? 0.0025 / bound;
  if (!(Number.isFinite(lambda) && lambda >= 0))
    throw new Error(`${name}: lambda must be a finite number >= 0, got ${lambda}`);
  const eotBatch = Math.max(1, Math.min(eotIter, o.eotBatch ?? Math.max(1, Math.floor(MAX_EOT_ROWS / rows))));
  return {
    bound,
    nIter,
    lr,
    lambda,
    eotIter,
    eotBatch,
    returnBest: o.returnBest ?? false,
    random: o.random ?? new KeyedRandom(o.seed ?? 0),
    name,
    trace: o.trace ?? (() => {}),
  };
}

function tileArray(a: Float32Array, copies: number): Float32Array {
  if (copies === 1) return a;
  const out = new Float32Array(a.length * copies);
  for (let c = 0; c < copies; c++) out.set(a, c * a.length);
  return out;
}

/**
 * Logits of classify(gridSample(x, grid)) and the grid gradient of sum_rows <dz_row, logits_row>, where the
 * cotangent dz is computed on the host from the logits.
 */
async function logitsAndGridGrad(
  model: AttackModel,
  x: Images,
  grid: Float32Array,
  gridShape: readonly [number, number, number, number],
  keys: NoiseKeys,
  cotangent: (logits: Float32Array, k: number) => Float32Array,
): Promise<{ logits: Float32Array; k: number; grad: Float32Array }> {
  await letEventLoopRun();
  const xt = fromArray(x.data, x.shape, { backend: model.backend });
  const gt = fromArray(grid, gridShape, { backend: model.backend });
  // tidy drops our references to the intermediates; the graph keeps what the backward needs until release()
  const { out, vjpFn, release } = withGradMode(true, () =>
    tidy(() => vjp((g) => model.classify(gridSample(xt, g), keys), gt)),
  );
  try {
    if (out.shape.length !== 2 || out.shape[0] !== x.shape[0]) {
      throw new Error(
        `classifier: returned logits of shape [${out.shape.join(', ')}] for ${x.shape[0]} images; ` +
          'a classifier must return [B, K] logits for x [B, C, H, W]',
      );
    }
    const k = out.shape[1] as number;
    const logits = Float32Array.from(await out.data());
    const cot = fromArray(cotangent(logits, k), [x.shape[0], k], { backend: model.backend });
    const [g] = tidy(() => vjpFn(cot));
    cot.dispose();
    const grad = Float32Array.from(await (g as Tensor).data());
    (g as Tensor).dispose();
    return { logits, k, grad };
  } finally {
    release();
    xt.dispose();
    gt.dispose();
  }
}

/** grid_sample(x, grid) (bilinear, zero padding, align_corners=False) on the host, without a graph. */
export async function sampleGrid(x: Images, grid: Float32Array, backend?: string): Promise<Images> {
  const [n, , h, w] = x.shape;
  const xt = fromArray(x.data, x.shape, { backend });
  const gt = fromArray(grid, [n, h, w, 2], { backend });
  const y = withGradMode(false, () => gridSample(xt, gt));
  try {
    return { data: Float32Array.from(await y.data()), shape: x.shape };
  } finally {
    xt.dispose();
    gt.dispose();
    y.dispose();
  }
}

/**
 * StAdv against `model` (official StAdvAttack(model, bound, num_iterations, eot_iter)(x, y)): the spatially
 * transformed images and DiffPure's verdict, one pass of the classifier on them (get_accuracy).
 */
export async function stadv(
  modelOrFn: AttackModel | Classifier,
  x: Images,
  labels: ArrayLike<number>,
  opts: StadvOptions = {},
): Promise<StadvResult> {
  const model = asModel(modelOrFn);
  const name = opts.name ?? 'stadv';
  const y = Int32Array.from({ length: labels.length }, (_, i) => labels[i] as number);
  const [n, , h, w] = x.shape;
  const o = resolve(opts, n);
  const ids = checkAttackInputs(name, x, y, 'Linf', o.bound, opts.sampleIds);
  const per = h * w * 2;
  const identity = identityGrid(n, h, w);
  const grid = identity.slice();
  const lambda = f(o.lambda);

  // Adam state (PyTorch 1.13 single-tensor Adam, betas 0.9 / 0.999, eps 1e-8, in float32)
  const b1 = 0.9;
  const b2 = 0.999;
  const b1f = f(b1);
  const b2f = f(b2);
  const a1 = f(1 - b1);
  const a2 = f(1 - b2);
  const epsf = f(1e-8);
  const m = new Float32Array(grid.length);
  const v = new Float32Array(grid.length);

  const bestLoss = new Float32Array(n).fill(Number.NEGATIVE_INFINITY);
  const bestGrid = o.returnBest ? grid.slice() : null;
  const tiledX = new Map<number, Images>();
  const xCopies = (copies: number): Images => {
    let t = tiledX.get(copies);
    if (!t) {
      t = copies === 1 ? x : tileRows(x, copies);
      tiledX.set(copies, t);
    }
    return t;
  };
  let labelsChecked = false;

  for (let it = 0; it < o.nIter; it++) {
    projectGrid(grid, identity, o.bound); // constrain_params before the forward
    const flowGrad = new Float32Array(grid.length);
    const flow = flowNorm(grid, identity, n, h, w, { out: flowGrad, weight: lambda });
    const pert = Float32Array.from(flow, (t) => f(t * lambda));
    const grad = new Float32Array(grid.length);
    const lossSum = new Float32Array(n);
    for (let e0 = 0; e0 < o.eotIter; e0 += o.eotBatch) {
      const copies = Math.min(o.eotBatch, o.eotIter - e0);
      const keys: number[] = [];
      for (let c = 0; c < copies; c++)
        for (let r = 0; r < n; r++) keys.push(o.random.noiseKey([name, it, e0 + c], ids[r] as number));
      let margin: Float32Array = new Float32Array(0);
      const res = await logitsAndGridGrad(
        model,
        xCopies(copies),
        tileArray(grid, copies),
        [n * copies, h, w, 2],
        keys,
        (z, k) => {
          if (!labelsChecked) {
            checkLabelRange(name, y, k);
            labelsChecked = true;
          }
          const mc = marginAndCotangent(z, k, y);
          margin = mc.margin;
          return mc.dz;
        },
      );
      for (let c = 0; c < copies; c++) {
        // one EOT sample: loss_n = -(margin_n + lambda L_flow_n); its grid gradient (classifier + flow) is added
        for (let r = 0; r < n; r++) {
          const l = -f((margin[c * n + r] as number) + (pert[r] as number));
          lossSum[r] = f((lossSum[r] as number) + l);
        }
        const gc = res.grad.subarray(c * n * per, (c + 1) * n * per);
        for (let j = 0; j < grid.length; j++) {
          const ge = f((gc[j] as number) + (flowGrad[j] as number));
          grad[j] = f((grad[j] as number) + ge);
        }
      }
    }
    if (o.eotIter !== 1) {
      for (let j = 0; j < grad.length; j++) grad[j] = f((grad[j] as number) / o.eotIter);
      for (let r = 0; r < n; r++) lossSum[r] = f((lossSum[r] as number) / o.eotIter);
    }
    o.trace({ kind: 'iter', i: it, grid: grid.slice(), loss: lossSum.slice(), flowNorm: flow, grad: grad.slice() });

    // Adam step (torch.optim.Adam, 1.13 _single_tensor_adam): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
    // G += (-lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    const t = it + 1;
    const stepSize = f(-(o.lr / (1 - b1 ** t)));
    const bc2 = f(Math.sqrt(1 - b2 ** t));
    for (let j = 0; j < grid.length; j++) {
      const g = grad[j] as number;
      const mj = f(f((m[j] as number) * b1f) + f(g * a1));
      const vj = f(f((v[j] as number) * b2f) + f(f(a2 * g) * g));
      m[j] = mj;
      v[j] = vj;
      const denom = f(f(f(Math.sqrt(vj)) / bc2) + epsf);
      grid[j] = f((grid[j] as number) + f(f(stepSize * mj) / denom));
    }

    if (bestGrid) {
      // keep_best: the loss measured BEFORE the step decides, the grid AFTER the step is stored (official)
      for (let r = 0; r < n; r++) {
        if ((bestLoss[r] as number) < (lossSum[r] as number) || it === 0) {
          bestLoss[r] = lossSum[r] as number;
          bestGrid.set(grid.subarray(r * per, (r + 1) * per), r * per);
        }
      }
    }
  }

  // QUIRK: the official attack returns the last iterate (perturbation(x), projected once more), not the best one
  const finalGrid = bestGrid ?? grid;
  projectGrid(finalGrid, identity, o.bound);
  const adv = await sampleGrid(x, finalGrid, model.backend);
  const verdict = await logitsOf(
    model,
    adv,
    ids.map((id) => o.random.noiseKey([name, 'verdict'], id)),
  );
  checkLabelRange(name, y, verdict.k);
  const robust = Array.from(predictions(verdict.logits, verdict.k), (p, r) => p === y[r]);
  return { adv, robust, grid: finalGrid };
}
