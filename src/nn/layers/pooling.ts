// Max pooling with PyTorch's semantics, and global average pooling.
//
// maxPool2d gathers the k*k shifted, strided views of the padded input into one axis and picks
// the first maximum along it (argmax), so the gradient goes to exactly one input per window,
// the first in row-major window order, as torch.nn.functional.max_pool2d's backward does (a plain
// max reduction would split it between ties). Padding behaves as -inf: padded positions get a
// large negative offset, so they never win a window that holds a real element (every window
// does, since PyTorch requires padding <= kernel / 2).

import * as T from '../../tensor/index.js';
import { Module } from '../module.js';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** Added to padded positions; far below any activation, far above -float32 max. */
const PAD_OFFSET = -1e30;

export interface MaxPool2dOptions {
  stride?: Pair;
  padding?: Pair;
}

/** torch.nn.functional.max_pool2d(x, kernel, stride (default kernel), padding), ceil_mode=False, dilation 1. */
export function maxPool2d(x: T.Tensor, kernel: Pair, opts: MaxPool2dOptions = {}): T.Tensor {
  if (x.rank !== 4) throw new Error(`maxPool2d: x must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [kh, kw] = pair(kernel);
  const [sh, sw] = pair(opts.stride ?? [kh, kw]);
  const [ph, pw] = pair(opts.padding ?? 0);
  if (ph > kh / 2 || pw > kw / 2)
    throw new Error(`maxPool2d: padding (${ph}, ${pw}) must be at most half the kernel (${kh}, ${kw})`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
  if (oh < 1 || ow < 1) throw new Error(`maxPool2d: input [${x.shape.join(', ')}] is smaller than the kernel`);
  let xp = x;
  if (ph || pw) {
    const inside = T.ones([1, 1, h, w], { dtype: x.dtype, backend: x.backend.name });
    const offset = T.mul(
      T.sub(
        T.pad(inside, [
          [ph, ph],
          [pw, pw],
        ]),
        1,
      ),
      -PAD_OFFSET,
    );
    xp = T.add(
      T.pad(x, [
        [ph, ph],
        [pw, pw],
      ]),
      offset,
    );
  }
  const windows: T.Tensor[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      windows.push(T.slice(xp, [null, null, [i, i + (oh - 1) * sh + 1, sh], [j, j + (ow - 1) * sw + 1, sw]]));
    }
  }
  const stacked = T.stack(windows, 4); // [N, C, OH, OW, kh*kw]
  const first = T.argmax(stacked, 4, true);
  return T.reshape(T.gather(stacked, 4, first), [n, c, oh, ow]);
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly opts: MaxPool2dOptions = {},
  ) {
    super();
  }
  forward(x: T.Tensor): T.Tensor {
    return maxPool2d(x, this.kernelSize, this.opts);
  }
}

/** AdaptiveAvgPool2d((1, 1)) followed by flatten: [N, C, H, W] -> [N, C]. */
export function globalAvgPool2d(x: T.Tensor): T.Tensor {
  if (x.rank !== 4) throw new Error(`globalAvgPool2d: x must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  return T.mean(x, [2, 3]);
}
