// The tensor layer's public surface: Tensor, creation, primitives, composites, scopes, backends.

export type { Backend, DType, KernelArg, TypedArray } from './backend.js';
export { Storage } from './backend.js';
export * from './composite/norm.js';
export * from './composite/resample.js';
export * from './composite/softmax.js';
export * from './prims/conv.js';
export * from './prims/creation.js';
export * from './prims/elementwise.js';
export * from './prims/matmul.js';
export * from './prims/norm.js';
export * from './prims/reduce.js';
export * from './prims/shape.js';
export { getBackend, initBackend, registerBackend, registeredBackends, setBackend } from './runtime.js';
export type { Shape } from './shape.js';
export { dispose, keep, type Prim, Tensor, tidy, type VjpContext } from './tensor.js';

import { CpuBackend } from './cpu/backend.js';
import { registerReadyBackend } from './runtime.js';

registerReadyBackend(new CpuBackend());
