// sdeint: fixed-step integration on torchsde's schedule, differentiable by ordinary autograd.
//
// Each step runs in its own tidy() scope and the state it replaces is released at once, so a long
// solve holds a constant number of tensors; when autograd records through the solve, the graph
// keeps what it needs alive by reference count and memory grows with the steps, as it must.

import { add, mul } from '../tensor/prims/elementwise.js';
import { stack } from '../tensor/prims/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { tidy } from '../tensor/tensor.js';
import { BrownianGrid, type BrownianMotion, brownianShape, mergeNodes, randomSeed } from './brownian.js';
import { generalNoiseSize, type Method, makeStepper, type Stepper, type StepperOptions } from './methods.js';
import { adjointSteps, checkDt, checkTimes, type SolvePlan, solvePlan } from './time.js';
import type { SDE } from './types.js';

export interface SdeintOptions {
  /** 'euler' (default, DiffPure's), 'milstein', 'heun' (Stratonovich) or 'sra1' (additive noise). */
  method?: Method;
  /** Fixed step (default 1e-3, torchsde's default). */
  dt?: number;
  /** The Brownian path; by default a seeded BrownianGrid on the solver's (and its adjoint's) step times. */
  bm?: BrownianMotion;
  /** Seed of the default path (random when omitted). */
  seed?: number;
  /** Called after every solver step, and in sdeintAdjoint after every backward step: progress of long solves. */
  onStep?: (e: StepEvent) => void;
}

/** Progress of a solve: `step` of `steps` done in the forward solve or the gradient's backward pass. */
export interface StepEvent {
  phase: 'forward' | 'backward';
  step: number;
  steps: number;
}

/** Times given as numbers, a Float32Array, or anything array-like. */
export type Times = ArrayLike<number>;

export interface DefaultBrownianOptions {
  dt: number;
  seed?: number;
  /** Step of the continuous adjoint pass whose times also become nodes (default dt). */
  adjointDt?: number;
}

/**
 * The path sdeint and sdeintAdjoint build when none is given: a BrownianGrid whose nodes are the
 * solver's step times and the continuous adjoint pass's (which straddle them: it steps back from
 * ts[-1]), so every query of either pass is a sum of whole cells, exact in law with no bridge
 * refinement. Both functions build the same nodes, so the same seed gives the same path, and the
 * same output, whichever is called and in whichever adjoint mode (unless adjointDt differs).
 */
export function defaultBrownian(sde: SDE, x0: Tensor, ts: readonly number[], o: DefaultBrownianOptions): BrownianGrid {
  const plan = solvePlan(ts, o.dt);
  const lists: number[][] = [[...plan.times]];
  for (let i = ts.length - 1; i > 0; i--) {
    lists.push(adjointSteps(ts[i - 1] as number, ts[i] as number, o.adjointDt ?? o.dt).map(([hi]) => hi));
  }
  return new BrownianGrid({
    t0: ts[0] as number,
    t1: ts[ts.length - 1] as number,
    shape: brownianShape(
      sde.noiseType,
      x0.shape,
      sde.noiseType === 'general' ? generalNoiseSize(sde, ts[0] as number, x0) : undefined,
    ),
    seed: o.seed ?? randomSeed(),
    nodes: mergeNodes(...lists),
    dtype: x0.dtype,
    backend: x0.backend.name,
  });
}

/**
 * Run `step` over the plan from x0. Returns the outputs stacked on a new leading axis and, with
 * keepStates, every step state [x0, y_1, ..., y_K] (the caller owns y_1..y_K).
 */
export function integrate(
  step: Stepper,
  x0: Tensor,
  plan: SolvePlan,
  keepStates = false,
  onStep?: (e: StepEvent) => void,
): { ys: Tensor; states: Tensor[] | null } {
  const { times, outputs } = plan;
  const outs: Tensor[] = [];
  const pinned = new Set<Tensor>([x0]);
  const states: Tensor[] | null = keepStates ? [x0] : null;
  let prev: Tensor | null = null;
  let curr = x0;
  let next = 1;
  const emit = (k: number) => {
    while (next < outputs.length && (outputs[next] as (typeof outputs)[number]).k === k) {
      const { wPrev, wCurr } = outputs[next] as (typeof outputs)[number];
      if (wPrev === 0 && wCurr === 1) {
        outs.push(curr);
        pinned.add(curr);
      } else {
        const p = prev as Tensor;
        outs.push(tidy(() => add(mul(p, wPrev), mul(curr, wCurr))));
      }
      next++;
    }
  };
  outs.push(x0);
  for (let k = 1; k < times.length; k++) {
    const y = curr;
    const y1 = tidy(() => step(times[k - 1] as number, times[k] as number, y));
    if (prev && !pinned.has(prev) && !keepStates) prev.dispose();
    prev = curr;
    curr = y1;
    states?.push(y1);
    emit(k);
    onStep?.({ phase: 'forward', step: k, steps: times.length - 1 });
  }
  const ys = stack(outs, 0);
  if (!keepStates) {
    for (const t of [prev, curr, ...outs]) if (t && t !== x0) t.dispose();
  } else {
    for (const t of outs) if (!states?.includes(t)) t.dispose();
  }
  return { ys, states };
}

export interface Prepared {
  ts: number[];
  dt: number;
  method: Method;
  plan: SolvePlan;
  bm: BrownianMotion;
}

export function prepare(
  op: string,
  sde: SDE,
  x0: Tensor,
  ts: Times,
  opts: SdeintOptions,
  adjointDt?: number,
): Prepared {
  if (!sde || typeof sde.f !== 'function' || typeof sde.g !== 'function')
    throw new Error(`${op}: sde must have methods f(t, x) and g(t, x)`);
  const tsF = checkTimes(op, ts);
  const dt = checkDt(op, opts.dt ?? 1e-3);
  const method = opts.method ?? 'euler';
  const plan = solvePlan(tsF, dt);
  const bm = opts.bm ?? defaultBrownian(sde, x0, tsF, { dt, seed: opts.seed, adjointDt });
  if (bm.t0 > (tsF[0] as number) || bm.t1 < (tsF[tsF.length - 1] as number)) {
    throw new Error(`${op}: the Brownian motion covers [${bm.t0}, ${bm.t1}] but ts spans [${tsF[0]}, ${tsF.at(-1)}]`);
  }
  return { ts: tsF, dt, method, plan, bm };
}

/**
 * Solve sde from x0 at ts[0] and return the states at every ts, stacked: shape [ts.length,
 * ...x0.shape] (torchsde's ys). Gradients flow through it with ordinary autograd.
 */
export function sdeint(sde: SDE, x0: Tensor, ts: Times, opts: SdeintOptions = {}, stepper?: StepperOptions): Tensor {
  const p = prepare('sdeint', sde, x0, ts, opts);
  const step = makeStepper(sde, p.method, p.bm, stepper);
  return integrate(step, x0, p.plan, false, opts.onStep).ys;
}
