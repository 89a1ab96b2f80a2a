// torch.nn.Embedding: a [num, dim] table looked up by integer index (stored as float values).

import * as T from '../../tensor/index.js';
import { nextRandom } from '../init.js';
import { Module, type Parameter } from '../module.js';

export class Embedding extends Module {
  readonly weight: Parameter;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    super();
    // PyTorch initialises embeddings with N(0, 1)
    this.weight = this.registerParameter('weight', T.randomNormal([numEmbeddings, embeddingDim], nextRandom()));
  }

  /** indices [N] (integers) -> [N, dim]. */
  forward(indices: T.Tensor | readonly number[]): T.Tensor {
    return T.indexSelect(this.weight.value, 0, indices);
  }
}
