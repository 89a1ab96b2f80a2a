// What a kernel family sees of the runtime, and the signature of a primitive's WGSL kernel.

import type { KernelArg } from '../../tensor/backend.js';
import type { Shape } from '../../tensor/shape.js';
import type { GpuBuf } from '../pool.js';
import type { Program } from '../program.js';

export interface KernelContext {
  readonly limits: GPUSupportedLimits;
  /** Record one dispatch of `p` reading `inputs` and writing `out` (in the open pass). */
  dispatch(p: Program, inputs: readonly GpuBuf[], out: GpuBuf): void;
  /** A scratch buffer of at least `bytes`; give it back with release() once dispatched. */
  alloc(bytes: number): GpuBuf;
  release(b: GpuBuf): void;
}

/**
 * A primitive's kernel: writes the output (already allocated, `outShape` non-empty) from the
 * inputs, with the primitive's own attrs (see src/tensor/prims).
 */
export type WgslKernel = (
  ctx: KernelContext,
  ins: readonly KernelArg[],
  attrs: never,
  outShape: Shape,
  out: GpuBuf,
) => void;

export const bufOf = (a: KernelArg): GpuBuf => a.storage.handle as GpuBuf;
