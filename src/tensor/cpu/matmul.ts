// Batched matmul on cpu: broadcast batch dims, then one gemm per matrix pair.

import { broadcastStrides, type Shape, sizeOf } from '../shape.js';
import { gemm } from './gemm.js';
import { type CpuArg, type CpuKernel, forEachStrided } from './kernel.js';

const matmul: CpuKernel = (ins, _attrs, out, outShape: Shape) => {
  const [a, b] = ins as [CpuArg, CpuArg];
  const m = a.shape[a.shape.length - 2] as number;
  const k = a.shape[a.shape.length - 1] as number;
  const n = b.shape[b.shape.length - 1] as number;
  const batch = outShape.slice(0, -2);
  // Matrix offsets of each batch entry under broadcasting (strides in units of whole matrices).
  const sa = broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * m * k);
  const sb = broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * k * n);
  if (sizeOf(batch) === 0) return;
  forEachStrided(batch, [0, 0], [sa, sb], (i, o) => {
    gemm({
      m,
      n,
      k,
      a: a.data,
      aOff: o[0] as number,
      lda: k,
      b: b.data,
      bOff: o[1] as number,
      ldb: n,
      c: out,
      cOff: i * m * n,
      ldc: n,
    });
  });
};

export const matmulKernels: Record<string, CpuKernel> = { matmul };
