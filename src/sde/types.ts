// The SDE contract, after torchsde: drift f(t, x), diffusion g(t, x), a noise type and an SDE type.
//
//   dX = f(t, X) dt + g(t, X) dW       (Ito; 'stratonovich' reads the noise term as g o dW)
//
// Times are plain numbers holding float32 values (the solvers round them as torch does); states
// are tensors of any shape, the leading axis usually the batch. Noise types:
//   'diagonal'  one Brownian motion per state element; g (broadcastable to x) with g_i depending
//               on x_i only (torchsde's diagonal noise as its Milstein scheme assumes), so dg/dx
//               is elementwise.
//   'additive'  as 'diagonal' but g does not depend on x (it may depend on t and parameters).
//   'scalar'    one Brownian motion per batch row (shape [B, 1, ...]) shared by every element;
//               g broadcastable to x.
//   'general'   torchsde's general noise: x [..., d], g [..., d, m], m Brownian motions per row
//               (shape [..., m]); the noise term is the matrix-vector product g dW. m is read off
//               g(ts[0], x0). Euler and Heun only (no Milstein, as torchsde without Levy areas).

import type { Tensor } from '../tensor/tensor.js';

export type NoiseType = 'diagonal' | 'additive' | 'scalar' | 'general';
export type SdeType = 'ito' | 'stratonovich';

export interface SDE {
  readonly noiseType: NoiseType;
  readonly sdeType: SdeType;
  /** Drift at time t, same shape as x. */
  f(t: number, x: Tensor): Tensor;
  /** Diffusion at time t: broadcastable to x's shape, or [...x.shape, m] for general noise. */
  g(t: number, x: Tensor): Tensor;
  /**
   * Optional dg_i/dx_i (diagonal noise), written with tensor ops. Milstein uses it for its
   * correction term; gradients through Milstein and the continuous adjoint's Ito corrections need
   * it when g depends on x (our autograd is first order, so d2g/dx2 comes from differentiating
   * this function). Without it, Milstein gets dg/dx from one VJP of g.
   */
  dgdx?(t: number, x: Tensor): Tensor;
  /** The tensors f and g read besides x (for parameter gradients). */
  readonly params?: readonly Tensor[];
  /** The same SDE reading `params` in place of `this.params` (same order and shapes). */
  withParams?(params: readonly Tensor[]): SDE;
}

export interface SdeSpec {
  noiseType?: NoiseType;
  sdeType?: SdeType;
  params?: readonly Tensor[];
  f(t: number, x: Tensor, params: readonly Tensor[]): Tensor;
  g(t: number, x: Tensor, params: readonly Tensor[]): Tensor;
  dgdx?(t: number, x: Tensor, params: readonly Tensor[]): Tensor;
}

/**
 * An SDE from functions of (t, x, params): `withParams` comes for free, so parameter gradients
 * work through sdeint (autograd) and sdeintAdjoint alike. Defaults: diagonal noise, Ito.
 */
export function defineSde(spec: SdeSpec): SDE {
  const make = (params: readonly Tensor[]): SDE => {
    const sde: SDE = {
      noiseType: spec.noiseType ?? 'diagonal',
      sdeType: spec.sdeType ?? 'ito',
      params,
      f: (t, x) => spec.f(t, x, params),
      g: (t, x) => spec.g(t, x, params),
      withParams: (ps) => {
        if (ps.length !== params.length) {
          throw new Error(`withParams: expected ${params.length} parameter tensors, got ${ps.length}`);
        }
        return make(ps);
      },
    };
    const dg = spec.dgdx;
    return dg ? { ...sde, dgdx: (t, x) => dg(t, x, params) } : sde;
  };
  return make(spec.params ?? []);
}
