// One fixed step of each integrator, written with tensor ops so autograd can differentiate it
// (autograd through sdeint, and the 'exact' adjoint, which replays these steps under vjp).
// Formulas and float32 operation order follow torchsde 0.2.6 (_core/methods/*.py).
//
//   euler     Ito Euler-Maruyama: y + f dt + g dW. Strong order 0.5 (1.0 for additive noise).
//   milstein  diagonal/additive noise, Ito (or Stratonovich): euler + 1/2 g g' (dW^2 - dt) (dW^2).
//             Strong order 1.0. g' = dg_i/dx_i from sde.dgdx, or one VJP of g (see below).
//   heun      Stratonovich Heun (predictor-corrector). Strong order 1.0 for diagonal noise.
//   sra1      Roessler's SRA1 for additive noise (torchsde's 'srk' on additive SDEs): two stages,
//             needs W and U = int (W(s) - W(t0)) ds of each step. Strong order 1.5.
// Euler and Heun, the two schemes general noise allows, write their noise term as noiseTerm(g, dW):
// g dW elementwise, or the product of g [..., d, m] with dW [..., m].

import { backward, detach, noGrad } from '../autograd/engine.js';
import { onesLike } from '../tensor/prims/creation.js';
import { add, mul, square, sub } from '../tensor/prims/elementwise.js';
import { sum, sumTo } from '../tensor/prims/reduce.js';
import { unsqueeze } from '../tensor/prims/shape.js';
import { isGradEnabled, withGradMode } from '../tensor/runtime.js';
import { type Tensor, tidy } from '../tensor/tensor.js';
import type { BrownianMotion } from './brownian.js';
import { f32 } from './time.js';
import type { SDE } from './types.js';

export type Method = 'euler' | 'milstein' | 'heun' | 'sra1';
export const METHODS: readonly Method[] = ['euler', 'milstein', 'heun', 'sra1'];

/** Strong order of each method on each noise type (torchsde's table). */
export function strongOrder(method: Method, noiseType: SDE['noiseType']): number {
  if (method === 'euler') return noiseType === 'additive' ? 1 : 0.5;
  if (method === 'heun' && noiseType === 'general') return 0.5; // 1.0 only for commutative noise
  if (method === 'sra1') return 1.5;
  return 1;
}

/** Is `leaf` among the tensors `out` was computed from (through recorded ops)? */
export function dependsOn(out: Tensor, leaf: Tensor): boolean {
  const seen = new Set<Tensor>();
  const stack = [out];
  while (stack.length) {
    const t = stack.pop() as Tensor;
    if (t === leaf) return true;
    if (seen.has(t)) continue;
    seen.add(t);
    for (const i of t.node?.inputs ?? []) if (i.requiresGrad) stack.push(i);
  }
  return false;
}

/** Does g(t, .) depend on the state? Decided once per solve by tracing one evaluation. */
export function diffusionDependsOnState(sde: SDE, t: number, x: Tensor): boolean {
  if (sde.noiseType === 'additive') return false;
  return withGradMode(true, () => {
    const leaf = detach(x);
    leaf.requiresGrad = true;
    // tidy, not g.dispose(): g may hand back a tensor it does not own (a parameter)
    const dep = tidy(() => dependsOn(sde.g(t, leaf), leaf));
    leaf.dispose();
    return dep;
  });
}

/**
 * dg_i/dx_i at (t, x): sde.dgdx when given (differentiable); otherwise one VJP of g with a
 * cotangent of ones, which is exact for diagonal noise but is a constant to any enclosing
 * autograd, so it is refused while gradients are being recorded through x.
 */
export function diffusionDerivative(sde: SDE, t: number, x: Tensor, what: string): Tensor {
  if (sde.dgdx) return sde.dgdx(t, x);
  if (isGradEnabled() && x.requiresGrad) {
    throw new Error(
      `${what}: g depends on the state, and differentiating through this needs dg/dx as tensor ops; ` +
        'give the SDE a dgdx(t, x) method (elementwise dg_i/dx_i)',
    );
  }
  return withGradMode(true, () => {
    const leaf = detach(x);
    leaf.requiresGrad = true;
    const g = sde.g(t, leaf);
    const [d] = backward([g], [onesLike(g)], [leaf]);
    g.dispose();
    leaf.dispose();
    return d as Tensor;
  });
}

export interface StepperOptions {
  /** Whether g depends on x (skips Milstein terms when false); traced on first use when omitted. */
  gDependsOnState?: boolean;
}

/** y_(k+1) from y_k over [t0, t1]. */
export type Stepper = (t0: number, t1: number, y: Tensor) => Tensor;

export function checkMethod(op: string, sde: SDE, method: Method): void {
  if (!METHODS.includes(method)) throw new Error(`${op}: unknown method '${method}'; one of ${METHODS.join(', ')}`);
  const { noiseType, sdeType } = sde;
  if (!['diagonal', 'additive', 'scalar', 'general'].includes(noiseType))
    throw new Error(`${op}: unknown noise type '${noiseType}' (diagonal, additive, scalar or general)`);
  if (sdeType !== 'ito' && sdeType !== 'stratonovich')
    throw new Error(`${op}: unknown SDE type '${sdeType}' (ito or stratonovich)`);
  // For additive noise the Ito and Stratonovich readings coincide, so any method fits.
  const additive = noiseType === 'additive';
  if ((method === 'euler' || method === 'sra1') && sdeType !== 'ito' && !additive)
    throw new Error(`${op}: method '${method}' integrates Ito SDEs; use 'heun' or 'milstein' for Stratonovich`);
  if (method === 'heun' && sdeType !== 'stratonovich' && !additive)
    throw new Error(`${op}: method 'heun' integrates Stratonovich SDEs; use 'euler' or 'milstein' for Ito`);
  if (method === 'milstein' && (noiseType === 'scalar' || noiseType === 'general'))
    throw new Error(`${op}: method 'milstein' supports diagonal and additive noise, not ${noiseType}`);
  if (method === 'sra1' && !additive)
    throw new Error(`${op}: method 'sra1' needs additive noise (noiseType 'additive'), got '${noiseType}'`);
}

/**
 * The noise term of a step: g dW (elementwise, broadcasting) or, for general noise,
 * sum_j g[..., i, j] dW[..., j] with g [..., d, m] and dW [..., m].
 */
export function noiseTerm(noiseType: SDE['noiseType'], g: Tensor, dW: Tensor): Tensor {
  if (noiseType !== 'general') return mul(g, dW);
  checkGeneralShapes(g.shape, dW.shape);
  return sum(mul(g, unsqueeze(dW, -2)), [dW.rank]);
}

/**
 * noiseTerm's cotangent for g, given the cotangent `a` of the term (x's shape): a dW, or for
 * general noise the outer product a dW^T summed over g's broadcast axes.
 */
export function noiseTermGradG(noiseType: SDE['noiseType'], a: Tensor, dW: Tensor, g: Tensor): Tensor {
  if (noiseType !== 'general') return mul(a, dW);
  return sumTo(mul(unsqueeze(a, -1), unsqueeze(dW, -2)), g.shape);
}

/** g [..., d, m] against dW [..., m] (general noise), with an error naming both shapes. */
function checkGeneralShapes(g: readonly number[], dW: readonly number[]): void {
  const r = dW.length;
  const ok = g.length === r + 1 && g[r] === dW[r - 1] && dW.slice(0, -1).every((d, i) => d === g[i] || g[i] === 1);
  if (!ok)
    throw new Error(
      `general noise: g(t, x) has shape [${g.join(', ')}] but the Brownian increment is [${dW.join(', ')}]; ` +
        'g must be [...x.shape, m] for a state x [..., d] and m Brownian motions',
    );
}

/** m, the number of Brownian motions of a general-noise SDE, from one evaluation of g at (t, x). */
export function generalNoiseSize(sde: SDE, t: number, x: Tensor): number {
  // tidy, not g.dispose(): g may hand back a tensor it does not own (x, a parameter)
  const shape = noGrad(() => tidy(() => [...sde.g(t, x).shape]));
  // leading axes may broadcast (size 1); the state axis d may not
  const fits = (d: number, i: number) => shape[i] === d || (shape[i] === 1 && i < x.shape.length - 1);
  if (shape.length !== x.shape.length + 1 || !x.shape.every(fits))
    throw new Error(
      `general noise: g(t, x) has shape [${shape.join(', ')}] for x [${x.shape.join(', ')}]; ` +
        'it must be [...x.shape, m] (m Brownian motions; leading axes may be 1 to broadcast)',
    );
  return shape[shape.length - 1] as number;
}

export function makeStepper(sde: SDE, method: Method, bm: BrownianMotion, opts: StepperOptions = {}): Stepper {
  checkMethod('sdeint', sde, method);
  let gDep = opts.gDependsOnState;
  const stateDependent = (t: number, y: Tensor) => {
    if (gDep === undefined) gDep = noGrad(() => diffusionDependsOnState(sde, t, y));
    return gDep;
  };

  switch (method) {
    case 'euler':
      return (t0, t1, y) => {
        const dt = f32(t1 - t0);
        const dW = bm.increment(t0, t1);
        return add(add(y, mul(sde.f(t0, y), dt)), noiseTerm(sde.noiseType, sde.g(t0, y), dW));
      };

    case 'milstein':
      return (t0, t1, y) => {
        const dt = f32(t1 - t0);
        const dW = bm.increment(t0, t1);
        const g = sde.g(t0, y);
        const y1 = add(add(y, mul(sde.f(t0, y), dt)), mul(g, dW));
        if (!stateDependent(t0, y)) return y1;
        const v = sde.sdeType === 'ito' ? sub(square(dW), dt) : square(dW);
        const gp = diffusionDerivative(sde, t0, y, 'milstein');
        return add(y1, mul(mul(mul(g, gp), v), 0.5));
      };

    case 'heun':
      return (t0, t1, y) => {
        const dt = f32(t1 - t0);
        const dW = bm.increment(t0, t1);
        const f0 = sde.f(t0, y);
        const gw0 = noiseTerm(sde.noiseType, sde.g(t0, y), dW);
        const yp = add(add(y, mul(f0, dt)), gw0);
        const f1 = sde.f(t1, yp);
        const gw1 = noiseTerm(sde.noiseType, sde.g(t1, yp), dW);
        return add(y, mul(add(add(mul(add(f0, f1), dt), gw0), gw1), 0.5));
      };

    case 'sra1':
      return (t0, t1, y) => {
        const spaceTime = bm.spaceTime?.bind(bm);
        if (!spaceTime) throw new Error("sdeint: method 'sra1' needs a Brownian motion with spaceTime()");
        const dt = f32(t1 - t0);
        const { W, U } = spaceTime(t0, t1);
        const Ur = mul(U, f32(1 / dt));
        // tableau (torchsde tableaus/sra1.py): C0 = (0, 3/4), C1 = (1, 0), A0[1][0] = 3/4,
        // B0[1][0] = 3/2, alpha = (1/3, 2/3), beta1 = (1, 0), beta2 = (-1, 1)
        const tA = f32(t0 + dt); // t0 + C1[0] dt
        const tB = f32(t0 + f32(0.75 * dt)); // t0 + C0[1] dt
        const f0 = sde.f(t0, y);
        const gA = sde.g(tA, y);
        const y1 = add(add(y, mul(f0, f32(dt / 3))), mul(gA, sub(W, Ur)));
        const h1 = add(add(y, mul(f0, f32(0.75 * dt))), mul(mul(gA, Ur), 1.5));
        const f1 = sde.f(tB, h1);
        return add(add(y1, mul(f1, f32((2 / 3) * dt))), mul(sde.g(t0, y), Ur));
      };
  }
}
