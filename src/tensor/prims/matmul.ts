// Batched matrix multiply with NumPy's matmul rules (1-D promotion, broadcast batch dims).

import { apply } from '../runtime.js';
import { broadcastShapes, fmt } from '../shape.js';
import { type Prim, Tensor } from '../tensor.js';
import { sumTo } from './reduce.js';
import { reshape, transpose } from './shape.js';

/** Operands are at least 2-D here; the batch dims of a and b broadcast against each other. */
export const matmulPrim: Prim<undefined> = {
  name: 'matmul',
  vjp: (g, { inputs }) => {
    const [a, b] = inputs as [Tensor, Tensor];
    return [
      a.requiresGrad ? sumTo(matmul(g, transpose(b)), a.shape) : null,
      b.requiresGrad ? sumTo(matmul(transpose(a), g), b.shape) : null,
    ];
  },
};

export function matmul(a: Tensor, b: Tensor): Tensor {
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new Error('matmul: arguments a and b must be Tensors');
  if (a.rank === 0 || b.rank === 0)
    throw new Error(`matmul: operands must be at least 1-D, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  // 1-D operands are promoted to matrices and the added axis removed afterwards, as NumPy does.
  const a2 = a.rank === 1 ? reshape(a, [1, a.size]) : a;
  const b2 = b.rank === 1 ? reshape(b, [b.size, 1]) : b;
  const m = a2.shape[a2.rank - 2] as number;
  const k = a2.shape[a2.rank - 1] as number;
  const k2 = b2.shape[b2.rank - 2] as number;
  const n = b2.shape[b2.rank - 1] as number;
  if (k !== k2) {
    throw new Error(
      `matmul: inner dimensions differ: a ${fmt(a.shape)} has ${k} columns, b ${fmt(b.shape)} has ${k2} rows`,
    );
  }
  const batch = broadcastShapes('matmul', a2.shape.slice(0, -2), b2.shape.slice(0, -2));
  const out = apply(matmulPrim, [a2, b2], undefined, [...batch, m, n]);
  if (a.rank === 1 && b.rank === 1) return reshape(out, []);
  if (a.rank === 1) return reshape(out, [...batch, n]);
  if (b.rank === 1) return reshape(out, [...batch, m]);
  return out;
}
