// Per-channel input normalisation (x - mean) / std, as the classifier wrappers DiffPure uses
// apply before the network (CIFAR-10 and ImageNet statistics).

import * as T from '../../tensor/index.js';

/** (x - mean) / std over axis 1 of x [N, C, ...]; mean and std as C numbers or [C, 1, ...] tensors. */
export function normalizeChannels(
  x: T.Tensor,
  mean: readonly number[] | T.Tensor,
  std: readonly number[] | T.Tensor,
): T.Tensor {
  const c = x.shape[1] as number;
  const view = [c, ...x.shape.slice(2).map(() => 1)];
  const stat = (v: readonly number[] | T.Tensor, what: string) => {
    if (v instanceof T.Tensor) return v;
    if (v.length !== c) throw new Error(`normalizeChannels: ${what} has ${v.length} values for ${c} channels`);
    return T.fromArray(v, view, { dtype: x.dtype, backend: x.backend.name });
  };
  return T.div(T.sub(x, stat(mean, 'mean')), stat(std, 'std'));
}
