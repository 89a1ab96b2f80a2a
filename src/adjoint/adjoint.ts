// sdeintAdjoint: an SDE solve that autograd sees as one differentiable operation, with two ways to
// compute its vector-Jacobian product.
//
// 'continuous' (Li et al. 2020, Prop. 3.3 of Nie et al. 2022; torchsde's sdeint_adjoint). The
//   augmented state [y, a, a_theta] is solved backwards on the same Brownian path, in adjoint time
//   s = -t on its own grid (s_0 = -ts[i], s_(j+1) = min(f32(s_j + dt), -ts[i-1])), starting from
//   y = the forward output and a = dL/dy there. Each step evaluates everything at the later end
//   t = -s_j of its forward interval [t - ds, t], with dW = W(t) - W(t - ds):
//     h        = f - g g'                               (g' = dg_i/dx_i; h = f when g ignores y)
//     y       <- y - h ds - g dW            [+ 1/2 g g' (dW^2 - ds)]                       (Milstein)
//     a       <- a + (dh/dy)^T a ds + g'^2 a ds + g' a dW    [+ 1/2 a (g'^2 - g g'') (dW^2 - ds)]
//     a_theta <- a_theta + (dh/dtheta)^T a ds + (dg/dtheta)^T (a g' ds + a dW)
//                        [+ 1/2 ((dg/dtheta)^T (a g' v) - (dg'/dtheta)^T (a g v))],  v = dW^2 - ds
//   (torchsde adjoint_sde.py: f_corrected_diagonal, g_prod, gdg_prod_diagonal; all VJPs here come
//   from one autograd backward pass per step). y is re-integrated backwards, nothing is stored:
//   memory is O(1) in the number of steps. Because the backward grid differs from the forward one
//   and y is re-integrated, this is NOT the gradient of the discrete forward map: on DiffPure's
//   reverse VP-SDE it differs from it by 5.6% of max at dt 1e-3 (fixture), by the method itself.
// 'exact'. The forward pass keeps the state x_k of every step; the reverse sweep replays step k
//   under autograd's vjp (same Brownian increments, regenerated) and pulls the cotangent back
//   through it. This is the gradient of the discretised forward map itself, equal to autograd
//   through sdeint up to float rounding, for the compute of 'continuous' and the memory of K states.
//
// Either way the result enters autograd as one node (attachCustom, which customOp is built on; used
// directly so that the states 'exact' saves are inputs of the node and live exactly as long as the
// graph that may need them), so grad(x => loss(sdeintAdjoint(sde, x, ts))) needs nothing special.

import { backward, detach, noGrad, vjp } from '../autograd/engine.js';
import { diffusionDependsOnState, makeStepper, noiseTerm, noiseTermGradG } from '../sde/methods.js';
import { integrate, prepare, type SdeintOptions, type Times } from '../sde/sdeint.js';
import { adjointSteps } from '../sde/time.js';
import type { SDE } from '../sde/types.js';
import { zerosLike } from '../tensor/prims/creation.js';
import { add, mul, square, sub } from '../tensor/prims/elementwise.js';
import { narrow, reshape } from '../tensor/prims/shape.js';
import { attachCustom, withGradMode } from '../tensor/runtime.js';
import { type Prim, type Tensor, tidy } from '../tensor/tensor.js';

export type AdjointMode = 'continuous' | 'exact';

export interface AdjointTraceEvent {
  /** Forward time of the adjoint state. */
  t: number;
  y: Tensor;
  a: Tensor;
}

export interface AdjointOptions extends SdeintOptions {
  /** 'continuous' (default; the paper's and torchsde's) or 'exact' (the discrete map's gradient). */
  mode?: AdjointMode;
  /** continuous: the backward scheme, 'euler' or 'milstein' (default milstein for diagonal Ito, as torchsde). */
  adjointMethod?: 'euler' | 'milstein';
  /** continuous: the backward step (default dt). */
  adjointDt?: number;
  /** Also differentiate the SDE's params (sde.params, sde.withParams); off by default. */
  paramGrads?: boolean;
  /** continuous: called with y and a at every adjoint time (diagnostics; tensors are freed afterwards). */
  trace?: (e: AdjointTraceEvent) => void;
}

function leafOf(x: Tensor): Tensor {
  const l = detach(x);
  l.requiresGrad = true;
  return l;
}

/** Row i of a stacked [T, ...] tensor, as a state. */
function row(ys: Tensor, i: number): Tensor {
  return reshape(narrow(ys, 0, i, 1), ys.shape.slice(1));
}

function checkParams(sde: SDE): readonly Tensor[] {
  if (!sde.params || !sde.withParams) {
    throw new Error('sdeintAdjoint: paramGrads needs an SDE with params and withParams(params) (see defineSde)');
  }
  return sde.params;
}

/**
 * Solve like sdeint (same ts, method, dt, Brownian path; output [ts.length, ...x0.shape]) and let
 * autograd differentiate it by the chosen adjoint.
 */
export function sdeintAdjoint(sde: SDE, x0: Tensor, ts: Times, opts: AdjointOptions = {}): Tensor {
  const mode = opts.mode ?? 'continuous';
  if (mode !== 'continuous' && mode !== 'exact')
    throw new Error(`sdeintAdjoint: unknown mode '${mode}' (continuous or exact)`);
  const adjointDt = opts.adjointDt ?? opts.dt ?? 1e-3;
  const p = prepare('sdeintAdjoint', sde, x0, ts, opts, adjointDt);
  const params = opts.paramGrads ? checkParams(sde) : [];
  const gDep = noGrad(() => diffusionDependsOnState(sde, p.ts[0] as number, x0));
  const step = makeStepper(sde, p.method, p.bm, { gDependsOnState: gDep });

  let adjointMethod = opts.adjointMethod;
  if (mode === 'continuous') {
    if (sde.sdeType !== 'ito' && gDep)
      throw new Error('sdeintAdjoint: the continuous adjoint supports Ito SDEs (or g independent of the state)');
    if ((sde.noiseType === 'scalar' || sde.noiseType === 'general') && gDep)
      throw new Error(
        `sdeintAdjoint: the continuous adjoint of ${sde.noiseType} noise needs g independent of the state; use mode 'exact'`,
      );
    adjointMethod ??= sde.noiseType === 'diagonal' && sde.sdeType === 'ito' ? 'milstein' : 'euler';
    if (adjointMethod !== 'euler' && adjointMethod !== 'milstein')
      throw new Error(`sdeintAdjoint: adjointMethod must be 'euler' or 'milstein', got '${adjointMethod}'`);
    if (gDep && !sde.dgdx)
      throw new Error(
        'sdeintAdjoint: g depends on the state, so the continuous adjoint needs dg/dx as tensor ops; ' +
          "give the SDE a dgdx(t, x) method, or use mode 'exact'",
      );
  }

  const { ys, states } = noGrad(() => integrate(step, x0, p.plan, mode === 'exact', opts.onStep));
  const saved = states ? states.slice(1) : [];

  const prim: Prim = {
    name: `sdeintAdjoint.${mode}`,
    vjp: (gys, ctx) => {
      const nIn = 1 + params.length;
      const inputs = ctx.inputs.slice(0, nIn);
      const grads =
        mode === 'exact'
          ? exactBackward(sde, p, params, gys, [inputs[0] as Tensor, ...ctx.inputs.slice(nIn)], gDep, opts.onStep)
          : continuousBackward(
              sde,
              p,
              params,
              gys,
              ctx.output,
              adjointMethod as 'euler' | 'milstein',
              adjointDt,
              gDep,
              opts.trace,
              opts.onStep,
            );
      return [...grads, ...saved.map(() => null)];
    },
  };
  const out = attachCustom(ys, prim, [x0, ...params, ...saved]);
  // the graph node now holds the saved states (or nothing does, when no gradient is recorded)
  for (const s of saved) s.dispose();
  return out;
}

type Prep = ReturnType<typeof prepare>;

/** The exact VJP: replay each step under vjp, last to first. */
function exactBackward(
  sde: SDE,
  p: Prep,
  params: readonly Tensor[],
  gys: Tensor,
  states: readonly Tensor[],
  gDep: boolean,
  onStep: SdeintOptions['onStep'],
): Tensor[] {
  const { times, outputs } = p.plan;
  const K = times.length - 1;
  // cotangent contributions of each output to the step states
  const contrib = new Map<number, [number, number][]>();
  const push = (k: number, j: number, w: number) => {
    if (w === 0) return;
    contrib.set(k, [...(contrib.get(k) ?? []), [j, w]]);
  };
  outputs.forEach((o, j) => {
    push(o.k, j, o.wCurr);
    if (o.k > 0) push(o.k - 1, j, o.wPrev);
  });
  const addContrib = (a: Tensor | null, k: number): Tensor | null => {
    const list = contrib.get(k);
    if (!list) return a;
    return tidy(() => {
      let acc = a;
      for (const [j, w] of list) {
        const c = w === 1 ? row(gys, j) : mul(row(gys, j), w);
        acc = acc ? add(acc, c) : add(c, 0);
      }
      return acc as Tensor;
    });
  };

  let a: Tensor | null = null;
  let aTheta: Tensor[] = params.map((q) => zerosLike(q));
  for (let k = K; k >= 1; k--) {
    onStep?.({ phase: 'backward', step: K - k + 1, steps: K });
    const a1 = addContrib(a, k);
    if (a !== a1) a?.dispose();
    a = a1;
    if (!a) continue; // nothing depends on this state yet
    const cot = a;
    const y = states[k - 1] as Tensor;
    const t0 = times[k - 1] as number;
    const t1 = times[k] as number;
    const res = withGradMode(true, () =>
      tidy(() => {
        const f = (yl: Tensor, ...ps: Tensor[]) => {
          const s = ps.length ? (sde.withParams as NonNullable<SDE['withParams']>)(ps) : sde;
          return makeStepper(s, p.method, p.bm, { gDependsOnState: gDep })(t0, t1, yl);
        };
        const { vjpFn, release } = vjp(f, y, ...params);
        const gs = vjpFn(cot);
        release();
        return gs;
      }),
    );
    a.dispose();
    a = res[0] as Tensor;
    aTheta = aTheta.map((acc, i) => {
      const next = add(acc, res[i + 1] as Tensor);
      acc.dispose();
      (res[i + 1] as Tensor).dispose();
      return next;
    });
  }
  const a0 = addContrib(a, 0) ?? zerosLike(states[0] as Tensor);
  if (a && a !== a0) a.dispose();
  return [a0, ...aTheta];
}

interface AugState {
  y: Tensor;
  a: Tensor;
  aTheta: Tensor[];
}

/** torchsde's stochastic adjoint, interval by interval from the last output back to the first. */
function continuousBackward(
  sde: SDE,
  p: Prep,
  params: readonly Tensor[],
  gys: Tensor,
  ys: Tensor,
  method: 'euler' | 'milstein',
  dt: number,
  gDep: boolean,
  trace: AdjointOptions['trace'],
  onStep: SdeintOptions['onStep'],
): Tensor[] {
  const T = p.ts.length;
  const grids = Array.from({ length: T - 1 }, (_, i) => adjointSteps(p.ts[i] as number, p.ts[i + 1] as number, dt));
  const total = grids.reduce((n, g) => n + g.length, 0);
  let done = 0;
  let st: AugState = { y: row(ys, T - 1), a: row(gys, T - 1), aTheta: params.map((q) => zerosLike(q)) };
  for (let i = T - 1; i >= 1; i--) {
    const steps = grids[i - 1] as [number, number][];
    trace?.({ t: steps[0]?.[0] as number, y: st.y, a: st.a });
    for (const [tHi, tLo] of steps) {
      const prev = st;
      st = tidy(() => adjointStep(sde, p, params, prev, tHi, tLo, method, gDep));
      prev.y.dispose();
      prev.a.dispose();
      for (const q of prev.aTheta) q.dispose();
      trace?.({ t: tLo, y: st.y, a: st.a });
      onStep?.({ phase: 'backward', step: ++done, steps: total });
    }
    // as torchsde: restart y from the forward output at ts[i-1] and add that output's cotangent
    const y = row(ys, i - 1);
    const a = add(st.a, row(gys, i - 1));
    st.y.dispose();
    st.a.dispose();
    st = { y, a, aTheta: st.aTheta };
  }
  st.y.dispose();
  return [st.a, ...st.aTheta];
}

/** One step of the augmented adjoint SDE over the forward interval [tLo, tHi], evaluated at tHi. */
function adjointStep(
  sde: SDE,
  p: Prep,
  params: readonly Tensor[],
  st: AugState,
  tHi: number,
  tLo: number,
  method: 'euler' | 'milstein',
  gDep: boolean,
): AugState {
  const ds = Math.fround(tHi - tLo);
  const dW = p.bm.increment(tLo, tHi);
  return withGradMode(true, () => {
    const yl = leafOf(st.y);
    const pl = params.map(leafOf);
    const s = pl.length ? (sde.withParams as NonNullable<SDE['withParams']>)(pl) : sde;
    const f = s.f(tHi, yl);
    const g = s.g(tHi, yl);
    const gp = gDep ? (s.dgdx as NonNullable<SDE['dgdx']>)(tHi, yl) : null;
    const milstein = method === 'milstein' && gp !== null;
    const h = gp ? sub(f, mul(g, gp)) : f; // recorded: its VJP carries the Ito correction's derivative
    const wrt = [yl, ...pl];
    const out = noGrad(() => {
      const a = st.a;
      let y = sub(sub(st.y, mul(h, ds)), noiseTerm(sde.noiseType, g, dW));
      const v = milstein ? sub(square(dW), ds) : null;
      if (v) y = add(y, mul(mul(mul(g, gp as Tensor), v), 0.5));
      // one backward pass for all VJPs: outputs [h, g, g'] with the cotangents of the update
      const outs: Tensor[] = [h];
      const cots: Tensor[] = [mul(a, ds)];
      if (g.requiresGrad) {
        let cg = noiseTermGradG(sde.noiseType, a, dW, g);
        if (gp) cg = add(cg, mul(mul(a, gp), ds));
        if (v) cg = add(cg, mul(mul(mul(a, gp as Tensor), v), 0.5));
        outs.push(g);
        cots.push(cg);
      }
      if (v && gp?.requiresGrad) {
        outs.push(gp);
        cots.push(mul(mul(mul(a, g), v), -0.5));
      }
      const live = outs.map((o, i) => (o.requiresGrad ? i : -1)).filter((i) => i >= 0);
      const gs = live.length
        ? backward(
            live.map((i) => outs[i] as Tensor),
            live.map((i) => cots[i] as Tensor),
            wrt,
          )
        : wrt.map((w) => zerosLike(w));
      return {
        y,
        a: add(a, gs[0] as Tensor),
        aTheta: st.aTheta.map((q, i) => add(q, gs[i + 1] as Tensor)),
      };
    });
    for (const l of wrt) l.dispose();
    return out;
  });
}
