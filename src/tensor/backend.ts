// The contract between tensor ops and the devices that run them.
// Ops enqueue work and return at once; only reading data back is asynchronous.

import type { Shape } from './shape.js';

export type DType = 'float32' | 'float64';
export type TypedArray = Float32Array | Float64Array;

/** Device memory holding one tensor's elements (row-major), shared by views, reference counted. */
export class Storage {
  refs = 1;
  /** Set when the handle was handed to user code (Tensor.dataSync): the cpu backend then never reuses its memory. */
  exposed = false;
  constructor(
    readonly backend: Backend,
    /** The backend's own handle: a TypedArray on cpu, a pooled GPUBuffer on webgpu. */
    readonly handle: unknown,
    readonly length: number,
    readonly dtype: DType,
  ) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.backend.free(this);
  }
}

/** One kernel input: storage plus the logical shape it is read with. */
export interface KernelArg {
  readonly storage: Storage;
  readonly shape: Shape;
  readonly dtype: DType;
}

export interface Backend {
  readonly name: string;
  /** dtypes this backend can store and compute in. */
  readonly dtypes: readonly DType[];
  /** Copy host data to a new storage. */
  upload(data: TypedArray, dtype: DType): Storage;
  /** Copy a storage back to the host (resolves after all enqueued work that writes it). */
  read(storage: Storage): Promise<TypedArray>;
  /** Return storage memory (called when its reference count reaches 0). */
  free(storage: Storage): void;
  /**
   * Run primitive `prim` on `inputs`, writing a new storage of `outShape`/`outDtype`.
   * Shape checks are done by the caller; attrs are the primitive's own (see src/tensor/prims).
   */
  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage;
  /** Submit pending work (no-op on cpu). */
  flush(): void;
}
