// gemm (src/tensor/cpu/gemm.ts): every trans/accumulate combination, odd sizes at the register-tile edges, offsets
// and padded leading dims, single-threaded and on the worker threads, against a naive float64 triple loop.
//
// Tolerance. Entry C[i, j] is a dot product of length K.
// - float32: the design's bound for a float32 reduction of length K is an absolute error of order
//   sqrt(K) * max|a| * max|b| * 2^-23 (roundings of random sign add up like a random walk, and a blocked sum keeps the
//   partial sums short); we allow 4x that. Our kernel is well inside it: float32 inputs convert to float64 exactly,
//   products and sums are float64, and C is rounded to float32 once per KC = 256 block of K (at most 4 roundings
//   here, each <= 2^-24 |C|, with |C| ~ sqrt(K) * max|a| * max|b| / 3 for the zero-mean uniform inputs used). The
//   float64 reference's own error is negligible at this scale.
// - float64: kernel and reference both sum in float64, each rounding up to K partial sums of size up to
//   ~sqrt(K) * max|a| * max|b|; their difference is of order K * max|a| * max|b| * 2^-52 (sqrt(K) roundings of size
//   sqrt(K)); we allow 4x that. It is still ~2^25 times tighter than the float32 bound, so a float32 rounding
//   anywhere in the float64 path would fail it.
// With accumulate, the prior value of C is rounded in as well: add eps * |C0|.
// Out-of-view elements of A and B are NaN (reading one would poison a result), C's view starts as NaN unless
// accumulating (so every entry must be written), and C's out-of-view elements must keep their sentinel.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { gemm, gemmThreadStats, gemmThreadsAvailable, shutdownGemmThreads } from '../src/tensor/cpu/gemm.js';
import { type CpuKernelKind, setCpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { arbCase, type Case, check, combos, size, withConfig } from './harness/gemm-cases.js';

// float32 goes to the wasm kernels by default; this file holds the JS kernel to its own, tighter bound.
let prevKind: CpuKernelKind;
beforeAll(() => {
  prevKind = setCpuKernelKind('js');
});
afterAll(() => {
  setCpuKernelKind(prevKind);
});

afterAll(() => shutdownGemmThreads());

describe('gemm single-threaded', () => {
  test('matches the float64 triple loop: odd sizes, trans, accumulate, offsets, leading dims', () => {
    withConfig({ threads: 1 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c)),
        { numRuns: 300 },
      ),
    );
  });

  test.each(combos)('larger than one cache block (k > 256, n > 2048) %o', (t) => {
    withConfig({ threads: 1 }, () => {
      check({ m: 9, n: 2053, k: 300, ...t, dtype: 'float32', offs: [1, 2, 3], pads: [1, 0, 2], scale: 1, seed: 1 });
      check({ m: 131, n: 37, k: 600, ...t, dtype: 'float64', offs: [0, 0, 0], pads: [0, 3, 0], scale: 1, seed: 2 });
    });
  });

  test('k = 0 zeroes C, or leaves it when accumulating; m = 0 and n = 0 do nothing', () => {
    for (const accumulate of [false, true]) {
      const c = new Float32Array([1, 2, 3, 4, 5, 6]);
      const a = new Float32Array(0);
      gemm({ m: 2, n: 3, k: 0, a, aOff: 0, lda: 0, b: a, bOff: 0, ldb: 3, c, cOff: 0, ldc: 3, accumulate });
      expect([...c]).toEqual(accumulate ? [1, 2, 3, 4, 5, 6] : [0, 0, 0, 0, 0, 0]);
    }
    const c = new Float64Array([7]);
    gemm({ m: 0, n: 1, k: 1, a: c, aOff: 0, lda: 1, b: c, bOff: 0, ldb: 1, c, cOff: 0, ldc: 1 });
    gemm({ m: 1, n: 0, k: 1, a: c, aOff: 0, lda: 1, b: c, bOff: 0, ldb: 1, c, cOff: 0, ldc: 1 });
    expect(c[0]).toBe(7);
  });
});

describe('gemm on worker threads', () => {
  test('worker threads are available under Node', () => {
    expect(gemmThreadsAvailable()).toBe(true);
  });

  test('every problem forced onto 3 threads matches the float64 triple loop', () => {
    const before = gemmThreadStats();
    withConfig({ threads: 3, minThreadedMacs: 0, minThreadedDim: 0 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c)),
        { numRuns: 200 },
      ),
    );
    const after = gemmThreadStats();
    expect(after.threadedCalls).toBeGreaterThan(before.threadedCalls);
    expect(after.workerBands).toBeGreaterThan(before.workerBands);
  });

  test.each(combos)('sizes above the default threshold take the threaded path %o', (t) => {
    const before = gemmThreadStats();
    withConfig({ threads: 2 }, () => {
      // split by rows (m >= n), by columns (n > m, and n > one 2048-column panel), float64, shared memory in place
      check({ m: 300, n: 257, k: 129, ...t, dtype: 'float32', offs: [3, 1, 2], pads: [2, 1, 3], scale: 1, seed: 3 });
      check({ m: 17, n: 2100, k: 100, ...t, dtype: 'float32', offs: [0, 5, 1], pads: [0, 0, 1], scale: 4, seed: 4 });
      check({ m: 200, n: 33, k: 257, ...t, dtype: 'float64', offs: [1, 0, 0], pads: [1, 1, 0], scale: 1, seed: 5 });
      const sh = { m: 129, n: 140, k: 100, ...t, offs: [2, 2, 2], pads: [1, 2, 3], scale: 1, seed: 6, shared: true };
      check({ ...sh, dtype: 'float32' } as Case);
    });
    const after = gemmThreadStats();
    expect(after.threadedCalls - before.threadedCalls).toBe(4);
    expect(after.workerBands - before.workerBands).toBe(4);
  });

  test('threaded results are bitwise identical to single-threaded ones (same kernel in the workers)', () => {
    const arb = arbCase(fc.integer({ min: 8, max: 140 }));
    fc.assert(
      fc.property(arb, (c) => {
        const one = withConfig({ threads: 1 }, () => check(c));
        const many = withConfig({ threads: 2, minThreadedMacs: 0, minThreadedDim: 0 }, () => check(c));
        expect(Array.from(many)).toEqual(Array.from(one));
      }),
      { numRuns: 40 },
    );
  });

  test('the worker kernel survives an esbuild bundle (as in dist/*.mjs)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gemm-bundle-'));
    try {
      const entry = join(dir, 'entry.ts');
      const gemmPath = join(process.cwd(), 'src/tensor/cpu/gemm.ts');
      writeFileSync(
        entry,
        `import { gemm, gemmThreadStats } from ${JSON.stringify(gemmPath)};
const n = 160;
const a = Float32Array.from({ length: n * n }, (_, i) => ((i * 7) % 13) - 6);
const b = Float32Array.from({ length: n * n }, (_, i) => ((i * 5) % 11) - 5);
const c = new Float32Array(n * n);
gemm({ m: n, n, k: n, a, aOff: 0, lda: n, b, bOff: 0, ldb: n, c, cOff: 0, ldc: n });
let bad = 0;
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
  let s = 0;
  for (let p = 0; p < n; p++) s += a[i * n + p] * b[p * n + j];
  if (s !== c[i * n + j]) bad++;
}
console.log(JSON.stringify({ bad, ...gemmThreadStats() }));
`,
      );
      const out = join(dir, 'out.mjs');
      await esbuild.build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm' });
      // the workers are unref'd: the script must exit on its own once done
      const env = { ...process.env, DIFFPURE_CPU_THREADS: '2', DIFFPURE_CPU_KERNELS: 'js' };
      const r = spawnSync(process.execPath, [out], { encoding: 'utf8', env, timeout: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      // small integers: every product and sum is exact, so the result must be too
      expect(JSON.parse(r.stdout)).toEqual({ bad: 0, threadedCalls: 1, workerBands: 1, takenBack: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
