// torch.nn.Conv1d (weight [out, in/groups, k], bias [out]) on top of conv2d with a height of 1.
// guided-diffusion's attention uses it with k = 1 for the qkv and output projections.

import * as T from '../../tensor/index.js';
import { uniformInit } from '../init.js';
import { Module, type Parameter } from '../module.js';

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
  bias?: boolean;
}

export class Conv1d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: Conv1dOptions = {},
  ) {
    super();
    const groups = opts.groups ?? 1;
    // PyTorch's default: kaiming_uniform(a=sqrt(5)) for the weight and U(±1/sqrt(fan_in)) for the bias
    const bound = 1 / Math.sqrt((inChannels / groups) * kernelSize);
    this.weight = this.registerParameter('weight', uniformInit([outChannels, inChannels / groups, kernelSize], bound));
    this.bias = opts.bias === false ? null : this.registerParameter('bias', uniformInit([outChannels], bound));
  }

  /** x [N, C, L] -> [N, out, L']. */
  forward(x: T.Tensor): T.Tensor {
    if (x.rank !== 3) throw new Error(`Conv1d: x must be [N, C, L], got [${x.shape.join(', ')}]`);
    const [n, c, l] = x.shape as [number, number, number];
    const w = this.weight.value;
    const y = T.conv2d(
      T.reshape(x, [n, c, 1, l]),
      T.reshape(w, [w.shape[0] as number, w.shape[1] as number, 1, this.kernelSize]),
      this.bias?.value,
      {
        stride: [1, this.opts.stride ?? 1],
        padding: [0, this.opts.padding ?? 0],
        dilation: [1, this.opts.dilation ?? 1],
        groups: this.opts.groups ?? 1,
      },
    );
    return T.reshape(y, [n, this.outChannels, y.shape[3] as number]);
  }
}
