// softmax, log_softmax, logsumexp: composites of primitives (gradients for free).
// The max subtracted for stability is detached: it cancels exactly in value and derivative.

import { detach } from '../../autograd/engine.js';
import { add, div, exp, log, sub } from '../prims/elementwise.js';
import { max, sum } from '../prims/reduce.js';
import { squeeze } from '../prims/shape.js';
import { normAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';

function stableMax(x: Tensor, axis: number): Tensor {
  return detach(max(x, axis, true));
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
