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

/**
 * Primitives whose cpu kernel writes every element of its output, so a recycled output array need not be zeroed
 * first. The others (conv2dInput and conv2dWeight accumulate, embed writes a sub-grid, scatterAdd adds) get zeros.
 */
const WRITES_ALL = new Set([
  'fill',
  'arange',
  'random',
  'unary',
  'binary',
  'where',
  'cast',
  'reduce',
  'argreduce',
  'permute',
  'expand',
  'slice',
  'concat',
  'gather',
  'matmul',
  'conv2d',
  'normalizeLastAxis',
  'normalizeLastAxisGrad',
  'normalizeChannels',
  'normalizeChannelsGrad',
  'channelMoments',
]);

function fresh(dtype: DType, n: number): TypedArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

/**
 * Freed arrays of one (dtype, length), reused for the next output of that size: a training or SDE loop allocates
 * the same shapes every step, and a fresh multi-MiB array costs page faults, zeroing by the OS and GC work (9% of a
 * DDPM++ training step in the profile that motivated this). Arrays under MIN_LENGTH elements are cheap to allocate
 * and not kept; at most MAX_BYTES are held (beyond that, freed arrays go to the GC as before). An array whose handle
 * was given to user code (dataSync) is never kept, so a caller's array is never overwritten.
 */
class ArrayPool {
  static readonly MIN_LENGTH = 4096;
  static readonly MAX_BYTES = 2 ** 30;
  private readonly free = new Map<string, TypedArray[]>();
  bytes = 0;
  hits = 0;

  take(dtype: DType, n: number, zero: boolean): TypedArray {
    const list = n >= ArrayPool.MIN_LENGTH ? this.free.get(`${dtype}:${n}`) : undefined;
    const a = list?.pop();
    if (!a) return fresh(dtype, n);
    this.bytes -= a.byteLength;
    this.hits++;
    if (zero) a.fill(0);
    return a;
  }

  give(s: Storage): void {
    const a = s.handle as TypedArray;
    if (s.exposed || a.length < ArrayPool.MIN_LENGTH || this.bytes + a.byteLength > ArrayPool.MAX_BYTES) return;
    const key = `${s.dtype}:${a.length}`;
    const list = this.free.get(key);
    if (list) list.push(a);
    else this.free.set(key, [a]);
    this.bytes += a.byteLength;
  }

  clear(): void {
    this.free.clear();
    this.bytes = 0;
  }
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly dtypes: readonly DType[] = ['float32', 'float64'];
  /** Freed arrays kept for reuse (see ArrayPool); `pool.bytes` is what it holds now. */
  readonly pool = new ArrayPool();

  upload(data: TypedArray, dtype: DType): Storage {
    const copy = this.pool.take(dtype, data.length, false);
    copy.set(data);
    return new Storage(this, copy, data.length, dtype);
  }

  async read(storage: Storage): Promise<TypedArray> {
    return (storage.handle as TypedArray).slice();
  }

  free(storage: Storage): void {
    // kept for reuse, or left to the garbage collector
    this.pool.give(storage);
  }

  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage {
    const k = kernels[prim];
    if (!k) throw new Error(`cpu backend has no kernel for primitive '${prim}'`);
    const out = this.pool.take(outDtype, sizeOf(outShape), !WRITES_ALL.has(prim));
    const ins = inputs.map((t) => ({ data: t.storage.handle as TypedArray, shape: t.shape }));
    (k as unknown as (i: typeof ins, a: unknown, o: TypedArray, s: Shape) => void)(ins, attrs, out, outShape);
    return new Storage(this, out, out.length, outDtype);
  }

  flush(): void {}
}
