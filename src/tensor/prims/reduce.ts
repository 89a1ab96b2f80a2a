// Reductions over any axes (sum, max, min), argmax/argmin, and sumTo (un-broadcasting for VJPs).

import { apply } from '../runtime.js';
import { fmt, normAxes, normAxis, reducedShape, type Shape, shapesEqual } from '../shape.js';
import { type Prim, Tensor } from '../tensor.js';
import { div, eq, mul } from './elementwise.js';
import { expand, reshape } from './shape.js';

export type ReduceOp = 'sum' | 'max' | 'min';
export interface ReduceAttrs {
  readonly op: ReduceOp;
  /** Sorted, normalised axes. */
  readonly axes: readonly number[];
  readonly keepdim: boolean;
}

export const reducePrim: Prim<ReduceAttrs> = {
  name: 'reduce',
  vjp: (g, { inputs, output, attrs }) => {
    const x = inputs[0] as Tensor;
    const keepShape = reducedShape(x.shape, attrs.axes, true);
    const gb = expand(reshape(g, keepShape), x.shape);
    if (attrs.op === 'sum') return [gb];
    // max/min: the gradient is shared evenly by the elements equal to the extremum (as torch.amax)
    const mask = eq(x, expand(reshape(output, keepShape), x.shape));
    const count = reduce('sum', mask, attrs.axes, true);
    return [div(mul(gb, mask), expand(count, x.shape))];
  },
};

function reduce(op: ReduceOp, x: Tensor, axes: number | readonly number[] | undefined, keepdim: boolean): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: argument x must be a Tensor`);
  const ax = normAxes(op, axes, x.rank);
  if (op !== 'sum') {
    for (const a of ax) {
      if (x.shape[a] === 0) throw new Error(`${op}: cannot reduce over axis ${a} of size 0 in ${fmt(x.shape)}`);
    }
  }
  return apply(reducePrim, [x], { op, axes: ax, keepdim }, reducedShape(x.shape, ax, keepdim));
}

/** Sum over `axes` (all when omitted). */
export const sum = (x: Tensor, axes?: number | readonly number[], keepdim = false) => reduce('sum', x, axes, keepdim);
/** Maximum over `axes`; the gradient is split evenly between tied maxima. */
export const max = (x: Tensor, axes?: number | readonly number[], keepdim = false) => reduce('max', x, axes, keepdim);
export const min = (x: Tensor, axes?: number | readonly number[], keepdim = false) => reduce('min', x, axes, keepdim);

export function mean(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes('mean', axes, x.rank);
  const n = ax.reduce((a, i) => a * (x.shape[i] as number), 1);
  return mul(sum(x, ax, keepdim), 1 / n);
}

export interface ArgAttrs {
  readonly op: 'argmax' | 'argmin';
  /** Axis, or null for the flattened tensor. */
  readonly axis: number | null;
  readonly keepdim: boolean;
}

/** Index of the first extremum, stored as a float (exact up to 2^24 in float32). Not differentiable. */
export const argPrim: Prim<ArgAttrs> = { name: 'argreduce' };

function argReduce(op: 'argmax' | 'argmin', x: Tensor, axis: number | undefined, keepdim: boolean): Tensor {
  if (x.size === 0) throw new Error(`${op}: input ${fmt(x.shape)} is empty`);
  if (axis === undefined) {
    return apply(argPrim, [x], { op, axis: null, keepdim }, keepdim ? x.shape.map(() => 1) : []);
  }
  const a = normAxis(op, axis, x.rank);
  return apply(argPrim, [x], { op, axis: a, keepdim }, reducedShape(x.shape, [a], keepdim));
}
export const argmax = (x: Tensor, axis?: number, keepdim = false) => argReduce('argmax', x, axis, keepdim);
export const argmin = (x: Tensor, axis?: number, keepdim = false) => argReduce('argmin', x, axis, keepdim);

/** Sum a broadcast result back down to `shape` (the adjoint of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  if (lead < 0) throw new Error(`sumTo: cannot reduce ${fmt(g.shape)} to larger rank ${fmt(shape)}`);
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return reshape(s, shape);
}
