// The cpu backend: the readable reference every GPU kernel is checked against, and the fallback.

import { type Backend, type DType, type KernelArg, Storage, type TypedArray } from '../backend.js';
import { type Shape, sizeOf } from '../shape.js';
import { convKernels } from './conv.js';
import { creationKernels } from './creation.js';
import { elementwiseKernels } from './elementwise.js';
import type { CpuKernel } from './kernel.js';
import { matmulKernels } from './matmul.js';
import { normKernels } from './norm.js';
import { reduceKernels } from './reduce.js';
import { shapeKernels } from './shape.js';

const kernels: Record<string, CpuKernel> = {
  ...creationKernels,
  ...elementwiseKernels,
  ...reduceKernels,
  ...shapeKernels,
  ...matmulKernels,
  ...convKernels,
  ...normKernels,
};

function alloc(dtype: DType, n: number): TypedArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly dtypes: readonly DType[] = ['float32', 'float64'];

  upload(data: TypedArray, dtype: DType): Storage {
    const copy = alloc(dtype, data.length);
    copy.set(data);
    return new Storage(this, copy, data.length, dtype);
  }

  async read(storage: Storage): Promise<TypedArray> {
    return (storage.handle as TypedArray).slice();
  }

  free(_storage: Storage): void {
    // host memory is returned by the garbage collector once unreferenced
  }

  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage {
    const k = kernels[prim];
    if (!k) throw new Error(`cpu backend has no kernel for primitive '${prim}'`);
    const out = alloc(outDtype, sizeOf(outShape));
    const ins = inputs.map((t) => ({ data: t.storage.handle as TypedArray, shape: t.shape }));
    (k as unknown as (i: typeof ins, a: unknown, o: TypedArray, s: Shape) => void)(ins, attrs, out, outShape);
    return new Storage(this, out, out.length, outDtype);
  }

  flush(): void {}
}
