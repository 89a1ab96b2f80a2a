// Cases for matmul: square and odd sizes at tile edges, broadcast batch dims, 1-D promotion.

import fc from 'fast-check';
import * as T from '../../src/index.js';
import { dimArb, type OpCase, tensorArb } from '../harness/sample.js';

/** a [...ba, m, k] @ b [...bb, k, n] with broadcastable batch dims; a or b may be 1-D. */
const matmulArb = fc
  .record({
    m: dimArb(65),
    k: dimArb(65),
    n: dimArb(65),
    batch: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
    maskA: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }),
    dropB: fc.integer({ min: 0, max: 2 }),
    vecA: fc.boolean(),
    vecB: fc.boolean(),
  })
  .filter((r) => r.m * r.k * r.n * r.batch.reduce((a, b) => a * b, 1) <= 40000)
  .chain((r) => {
    const batchA = r.batch.map((d, i) => (r.maskA[i] ? 1 : d));
    const batchB = r.batch.slice(Math.min(r.dropB, r.batch.length));
    // 1-D operands only without batch dims, to keep the promotion rules simple to read
    const sa = r.vecA && r.batch.length === 0 ? [r.k] : [...batchA, r.m, r.k];
    const sb = r.vecB && r.batch.length === 0 ? [r.k] : [...batchB, r.k, r.n];
    return fc.tuple(tensorArb(sa, -1, 1), tensorArb(sb, -1, 1)).map((inputs) => ({ inputs, params: undefined }));
  });

export const linalgCases: OpCase[] = [
  {
    name: 'matmul: batched, broadcast, 1-D promotion, odd sizes',
    arb: matmulArb,
    f: ([a, b]) => T.matmul(a as T.Tensor, b as T.Tensor),
    // float32 accumulates K <= 65 products of magnitude <= 1 in float32: error <= K * 2^-24 * sum|a||b|
    // in the worst case, ~ sqrt(K) * 2^-24 typically; 2e-5 of (max|y| + 1) covers K = 65 with margin.
    tol32: 2e-5,
    runs: 25,
  },
];
