// softmax, log_softmax, logsumexp: composites of primitives (gradients for free).
// The max subtracted for stability is detached: it cancels exactly in value and derivative.

import { detach } from '../../autograd/engine.js';
import { abs, add, div, eq, exp, log, sub, where } from '../prims/elementwise.js';
import { max, sum } from '../prims/reduce.js';
import { squeeze } from '../prims/shape.js';
import { normAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';

/** The detached max along axis; 0 where it is infinite (an all -inf slice), so x - m stays -inf, not NaN. */
function stableMax(x: Tensor, axis: number): Tensor {
  const m = detach(max(x, axis, true));
  return where(eq(abs(m), Number.POSITIVE_INFINITY), 0, m);
}

export function logsumexp(x: Tensor, axis: number, keepdim = false): Tensor {
  const a = normAxis('logsumexp', axis, x.rank);
  const m = stableMax(x, a);
  const y = add(log(sum(exp(sub(x, m)), a, true)), m);
  return keepdim ? y : squeeze(y, a);
}

export function softmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis('softmax', axis, x.rank);
  const e = exp(sub(x, stableMax(x, a)));
  return div(e, sum(e, a, true));
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis('logSoftmax', axis, x.rank);
  return sub(x, logsumexp(x, a, true));
}
