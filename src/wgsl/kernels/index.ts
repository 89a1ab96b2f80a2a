// The WGSL kernel of every primitive, by primitive name (the same names as src/tensor/cpu).

import { convKernels } from './conv.js';
import { creationKernels } from './creation.js';
import { elementwiseKernels } from './elementwise.js';
import type { WgslKernel } from './kernel.js';
import { matmulKernels } from './matmul.js';
import { normKernels } from './norm.js';
import { reduceKernels } from './reduce.js';
import { shapeKernels } from './shape.js';

export type { KernelContext, WgslKernel } from './kernel.js';

export const wgslKernels: Record<string, WgslKernel> = {
  ...creationKernels,
  ...elementwiseKernels,
  ...reduceKernels,
  ...shapeKernels,
  ...matmulKernels,
  ...convKernels,
  ...normKernels,
};
