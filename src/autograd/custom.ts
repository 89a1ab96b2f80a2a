// Custom differentiable operations: a forward computed any way the caller likes (e.g. an SDE
// solve under noGrad) and a hand-written VJP, seen by autograd as one node.

import { attachCustom, withGradMode } from '../tensor/runtime.js';
import type { Prim, Tensor } from '../tensor/tensor.js';

export interface CustomOp {
  readonly name: string;
  /** Computes the output; runs with gradient recording off. */
  forward(...inputs: Tensor[]): Tensor;
  /** Cotangents of the inputs given the output cotangent (null where none). */
  vjp(g: Tensor, inputs: readonly Tensor[], output: Tensor): (Tensor | null)[];
}

/** Turn a CustomOp into a function on tensors that autograd differentiates through its vjp. */
export function customOp(op: CustomOp): (...inputs: Tensor[]) => Tensor {
  const prim: Prim = { name: op.name, vjp: (g, ctx) => op.vjp(g, ctx.inputs, ctx.output) };
  return (...inputs) => {
    const out = withGradMode(false, () => op.forward(...inputs));
    return attachCustom(out, prim, inputs);
  };
}
