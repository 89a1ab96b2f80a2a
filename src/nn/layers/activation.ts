// Parameter-free modules (torch.nn.SiLU, ReLU, Identity). They hold no weights, but inside a
// Sequential they take an index, so registering them keeps the following layers' state-dict
// keys where PyTorch puts them (e.g. in_layers.0 = norm, in_layers.1 = SiLU, in_layers.2 = conv).

import * as T from '../../tensor/index.js';
import { Module } from '../module.js';

export class SiLU extends Module {
  forward(x: T.Tensor): T.Tensor {
    return T.silu(x);
  }
}

export class ReLU extends Module {
  forward(x: T.Tensor): T.Tensor {
    return T.relu(x);
  }
}

export class Identity extends Module {
  forward(x: T.Tensor): T.Tensor {
    return x;
  }
}
