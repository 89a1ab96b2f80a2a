// The wasm SIMD gemm (src/tensor/cpu/wasm/): against the float64 triple loop and the JS reference kernel, on every
// trans/accumulate combination, the tile edges 1, 3, 17, 33, 65, offsets and padded leading dims, on one thread and on
// the worker pool; results bitwise identical whatever the thread count.
//
// Tolerance. The wasm kernel sums in float32 (each accumulator adds its k products in order, as any float32 BLAS), so
// its bound is the classical deterministic one for a float32 dot product of length k (Higham, Accuracy and Stability
// of Numerical Algorithms, eq. 3.5): |err| <= gamma_{k+1} * (sum_p |A[i, p] B[p, j]| + |C0|), gamma_n = n u / (1 - n u),
// u = 2^-24; the +1 covers adding into a prior C. No slack: it is a rigorous bound, so exceeding it is a bug.
// float64 problems still run the JS kernel and keep its bound.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { gemm, shutdownGemmThreads } from '../src/tensor/cpu/gemm.js';
import { shutdownWasmPool, wasmPoolStats } from '../src/tensor/cpu/wasm/gemm.js';
import { type CpuKernelKind, cpuKernelKind, setCpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import {
  arbCase,
  type Bound,
  build,
  type Case,
  check,
  combos,
  jsKernelBound,
  size,
  withConfig,
} from './harness/gemm-cases.js';

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);
const wasmBound: Bound = (c, absDot, prior) =>
  c.dtype === 'float64' ? jsKernelBound(c, absDot, prior) : gamma(c.k + 1) * (absDot + Math.abs(prior));

let prevKind: CpuKernelKind;
beforeAll(() => {
  prevKind = setCpuKernelKind('wasm');
});
afterAll(async () => {
  setCpuKernelKind(prevKind);
  await shutdownWasmPool();
  await shutdownGemmThreads();
});

/** Runs the pool until its workers have booted (a worker still booting is skipped, so stats would not move). */
async function warmPool(threads: number): Promise<void> {
  for (let t = 0; t < 100 && wasmPoolStats().workerBands === 0; t++) {
    withConfig({ threads, minThreadedMacs: 0, minThreadedDim: 0 }, () =>
      check(
        {
          m: 64,
          n: 64,
          k: 8,
          transA: false,
          transB: false,
          accumulate: false,
          dtype: 'float32',
          offs: [0, 0, 0],
          pads: [0, 0, 0],
          scale: 1,
          seed: 1,
        },
        wasmBound,
      ),
    );
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('wasm gemm', () => {
  test('is the default float32 kernel on this host', () => {
    expect(cpuKernelKind()).toBe('wasm');
  });

  test('single thread: matches the float64 triple loop within the float32 dot-product bound', () => {
    withConfig({ threads: 1 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c, wasmBound)),
        { numRuns: 300 },
      ),
    );
  });

  test.each(combos)('larger than one cache block (k > 512, n > 2048, m > 128) %o', (t) => {
    withConfig({ threads: 1 }, () => {
      check(
        { m: 9, n: 2053, k: 530, ...t, dtype: 'float32', offs: [1, 2, 3], pads: [1, 0, 2], scale: 1, seed: 1 },
        wasmBound,
      );
      check(
        { m: 131, n: 37, k: 1030, ...t, dtype: 'float32', offs: [0, 0, 0], pads: [0, 3, 0], scale: 1, seed: 2 },
        wasmBound,
      );
    });
  });

  test('agrees with the JS kernel on random shapes including tile edges', () => {
    fc.assert(
      fc.property(arbCase(size), (c0) => {
        const c: Case = { ...c0, dtype: 'float32' };
        const viaWasm = withConfig({ threads: 1 }, () => check(c, wasmBound));
        setCpuKernelKind('js');
        try {
          const viaJs = withConfig({ threads: 1 }, () => check(c));
          const g = build(c);
          // each is within its bound of the exact value, so the two are within the sum of both bounds; |A B| <= scale^2
          // and |C0| <= scale bound the inputs of the wasm bound
          const prior = c.accumulate ? c.scale : 0;
          const tol = wasmBound(c, c.k * c.scale * c.scale, prior) + jsKernelBound(c, 0, prior);
          for (let i = 0; i < c.m; i++) {
            for (let j = 0; j < c.n; j++) {
              const x = g.cOff + i * g.ldc + j;
              expect(Math.abs((viaWasm[x] as number) - (viaJs[x] as number))).toBeLessThanOrEqual(tol);
            }
          }
        } finally {
          setCpuKernelKind('wasm');
        }
      }),
      { numRuns: 100 },
    );
  });

  test('k = 0 zeroes C, or leaves it when accumulating', () => {
    for (const accumulate of [false, true]) {
      const c = new Float32Array([1, 2, 3, 4, 5, 6]);
      const a = new Float32Array(0);
      gemm({ m: 2, n: 3, k: 0, a, aOff: 0, lda: 0, b: a, bOff: 0, ldb: 3, c, cOff: 0, ldc: 3, accumulate });
      expect([...c]).toEqual(accumulate ? [1, 2, 3, 4, 5, 6] : [0, 0, 0, 0, 0, 0]);
    }
  });
});

describe('wasm gemm on the worker pool', () => {
  test('workers boot and take bands', async () => {
    await warmPool(2);
    expect(wasmPoolStats().workerBands).toBeGreaterThan(0);
  });

  test('every problem forced onto 3 threads matches the float64 triple loop', async () => {
    await warmPool(3);
    const before = wasmPoolStats();
    withConfig({ threads: 3, minThreadedMacs: 0, minThreadedDim: 0 }, () =>
      fc.assert(
        fc.property(arbCase(size), (c) => void check(c, wasmBound)),
        { numRuns: 200 },
      ),
    );
    const after = wasmPoolStats();
    expect(after.calls).toBeGreaterThan(before.calls);
    expect(after.workerBands).toBeGreaterThan(before.workerBands);
  });

  test('results are bitwise identical on 1, 2 and 3 threads', () => {
    const arb = arbCase(fc.integer({ min: 8, max: 140 })).map((c): Case => ({ ...c, dtype: 'float32' }));
    fc.assert(
      fc.property(arb, (c) => {
        const one = withConfig({ threads: 1 }, () => check(c, wasmBound));
        const two = withConfig({ threads: 2, minThreadedMacs: 0, minThreadedDim: 0 }, () => check(c, wasmBound));
        const three = withConfig({ threads: 3, minThreadedMacs: 0, minThreadedDim: 0 }, () => check(c, wasmBound));
        expect(Array.from(two)).toEqual(Array.from(one));
        expect(Array.from(three)).toEqual(Array.from(one));
      }),
      { numRuns: 40 },
    );
  });
});

describe('the relaxed-SIMD build (fused multiply-add)', () => {
  test('is chosen where the engine validates it, and stays within the float32 bound', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relaxed-'));
    try {
      const entry = join(dir, 'entry.ts');
      const src = (p: string) => JSON.stringify(join(process.cwd(), p));
      writeFileSync(
        entry,
        `import { gemm } from ${src('src/tensor/cpu/gemm.ts')};
import { getWasmRuntime } from ${src('src/tensor/cpu/wasm/runtime.ts')};
const n = 97;
const a = Float32Array.from({ length: n * n }, (_, i) => Math.sin(i));
const b = Float32Array.from({ length: n * n }, (_, i) => Math.cos(3 * i));
const c = new Float32Array(n * n);
gemm({ m: n, n, k: n, a, aOff: 0, lda: n, b, bOff: 0, ldb: n, c, cOff: 0, ldc: n });
let worst = 0;
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
  let s = 0, abs = 0;
  for (let p = 0; p < n; p++) { s += a[i * n + p] * b[p * n + j]; abs += Math.abs(a[i * n + p] * b[p * n + j]); }
  const g = ((n + 1) * 2 ** -24) / (1 - (n + 1) * 2 ** -24);
  worst = Math.max(worst, Math.abs(c[i * n + j] - s) / (g * abs));
}
console.log(JSON.stringify({ relaxed: getWasmRuntime().relaxed, worst }));
`,
      );
      const out = join(dir, 'out.mjs');
      await esbuild.build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm' });
      const run = (flags: string[], env: Record<string, string> = {}) => {
        const r = spawnSync(process.execPath, [...flags, out], {
          encoding: 'utf8',
          timeout: 60_000,
          env: { ...process.env, DIFFPURE_WASM_RELAXED: '', ...env },
        });
        expect(r.stderr).toBe('');
        return JSON.parse(r.stdout) as { relaxed: boolean; worst: number };
      };
      const fused = run(['--experimental-wasm-relaxed-simd']);
      expect(fused.relaxed).toBe(true);
      expect(fused.worst).toBeLessThanOrEqual(1); // error / bound
      // without the flag (Node 20's default) the runtime turns it on itself before compiling the module
      expect(run([]).relaxed).toBe(true);
      const plain = run([], { DIFFPURE_WASM_RELAXED: '0' });
      expect(plain.relaxed).toBe(false);
      expect(plain.worst).toBeLessThanOrEqual(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
