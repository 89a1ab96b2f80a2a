// The cpu matrix-multiply kernel every matmul and conv goes through.
// C[m, n] (+)= sum_k A[m, k] B[k, n]; all row-major with explicit offsets and leading dims.

import type { TypedArray } from '../backend.js';

export interface GemmArgs {
  m: number;
  n: number;
  k: number;
  a: TypedArray;
  aOff: number;
  /** Elements between rows of A (A[i, p] at aOff + i*lda + p), or, if transA, A[i, p] at aOff + p*lda + i. */
  lda: number;
  transA?: boolean;
  b: TypedArray;
  bOff: number;
  ldb: number;
  transB?: boolean;
  c: TypedArray;
  cOff: number;
  ldc: number;
  /** Add into C instead of overwriting it. */
  accumulate?: boolean;
}

/** Reference ikj loop: contiguous inner loop over n. */
export function gemm(g: GemmArgs): void {
  const { m, n, k, a, b, c, lda, ldb, ldc, aOff, bOff, cOff } = g;
  const ta = !!g.transA;
  const tb = !!g.transB;
  for (let i = 0; i < m; i++) {
    const ci = cOff + i * ldc;
    if (!g.accumulate) c.fill(0, ci, ci + n);
    for (let p = 0; p < k; p++) {
      const av = a[ta ? aOff + p * lda + i : aOff + i * lda + p] as number;
      if (av === 0) continue;
      if (tb) {
        for (let j = 0; j < n; j++) c[ci + j] += av * (b[bOff + j * ldb + p] as number);
      } else {
        const bp = bOff + p * ldb;
        for (let j = 0; j < n; j++) c[ci + j] += av * (b[bp + j] as number);
      }
    }
  }
}
