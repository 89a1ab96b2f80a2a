// Running a piece of a test on one kind of cpu kernels (the wasm SIMD ones or the JS reference), then restoring the
// previous choice.

import { type CpuKernelKind, setCpuKernelKind } from '../../src/tensor/cpu/wasm/select.js';

export function withKind<R>(k: CpuKernelKind, fn: () => R): R {
  const prev = setCpuKernelKind(k);
  try {
    return fn();
  } finally {
    setCpuKernelKind(prev);
  }
}
