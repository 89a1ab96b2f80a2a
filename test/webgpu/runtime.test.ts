// The webgpu runtime: Philox bits, grids past 65535 workgroups, tile edges of the GEMM and
// reduction kernels, memory held flat over long tidy() loops, and the readback pattern that
// must never crash Dawn on lavapipe.

import { describe, expect, test } from 'vitest';
import { vjp } from '../../src/autograd/index.js';
import * as T from '../../src/tensor/index.js';
import { normalAt, uniformAt } from '../../src/tensor/philox.js';
import { noAdapterHint } from '../../src/wgsl/index.js';
import { expectClose } from '../harness/check.js';
import { backend, gpu, gpuRequired } from './setup.js';

const onGpu = { backend: 'webgpu' } as const;

/** Deterministic values in [-1, 1) (float32-exact). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 2 ** 23 - 1;
  }
  return out;
}

/** f on cpu and on webgpu with the same inputs; returns [gpu, cpu] host arrays. */
async function both(
  f: (xs: T.Tensor[]) => T.Tensor,
  inputs: { shape: number[]; data: Float32Array }[],
): Promise<[Float32Array, Float32Array]> {
  const run = (backend: string) => T.tidy(() => f(inputs.map((x) => T.fromArray(x.data, x.shape, { backend }))));
  const yc = run('cpu');
  const yg = run('webgpu');
  const res: [Float32Array, Float32Array] = [(await yg.data()) as Float32Array, (await yc.data()) as Float32Array];
  T.dispose(yc, yg);
  return res;
}

const EDGES = [1, 3, 17, 33, 65];

describe.skipIf(!gpu)('philox', () => {
  test('uniform bits equal the TypeScript generator exactly; normal within float32 rounding', async () => {
    const n = 5000;
    const seed = 2 ** 40 + 12345;
    const stream = 2 ** 33 + 7;
    const u = T.randomUniform([n], { seed, stream, ...onGpu });
    const z = T.randomNormal([n], { seed, stream, ...onGpu });
    const [ug, zg] = [await u.data(), await z.data()];
    for (let i = 0; i < n; i++) expect(ug[i]).toBe(Math.fround(uniformAt(seed, stream, i)));
    // Box-Muller in float32: log, sqrt and cos each within a few ulps; a wrong bit would be O(1)
    const ref = Float64Array.from({ length: n }, (_, i) => normalAt(seed, stream, i));
    for (let i = 0; i < n; i++) {
      expect(Math.abs((zg[i] as number) - (ref[i] as number))).toBeLessThan(1e-5 * (1 + Math.abs(ref[i] as number)));
    }
    T.dispose(u, z);
  });
});

describe.skipIf(!gpu)('grids over 65535 workgroups', () => {
  test('a 16.8M-element random + affine folds its grid into 2-D', async () => {
    // 65535 workgroups of 256 cover 16776960 elements; go past it
    const n = 65535 * 256 + 5000;
    const y = T.tidy(() => T.affine(T.randomUniform([n], { seed: 9, ...onGpu }), 2, -1));
    const d = await y.data();
    y.dispose();
    const check = (i: number) => {
      const want = Math.fround(2 * Math.fround(uniformAt(9, 0, i)) - 1);
      if (Math.abs((d[i] as number) - want) > 1e-7) expect.fail(`element ${i}: ${d[i]} vs ${want}`);
    };
    for (let i = 0; i < n; i += 9973) check(i);
    for (let i = n - 6000; i < n; i++) check(i);
  });
});

describe.skipIf(!gpu)('tile edges', () => {
  test('matmul at sizes 1, 3, 17, 33, 65 (all combinations) and past the big tile', async () => {
    const shapes: [number, number, number][] = [];
    for (const m of EDGES) for (const k of EDGES) for (const n of EDGES) shapes.push([m, k, n]);
    shapes.push([257, 65, 129], [300, 33, 260], [128, 128, 128], [129, 7, 255], [2, 1000, 3]);
    for (const [m, k, n] of shapes) {
      const [g, c] = await both(
        ([a, b]) => T.matmul(a as T.Tensor, b as T.Tensor),
        [
          { shape: [m, k], data: values(m * k, m * 31 + k) },
          { shape: [k, n], data: values(k * n, n * 17 + k) },
        ],
      );
      // sums of k products of magnitude <= 1: error ~ sqrt(k) * 2^-23 * max|y|, 4x margin
      expectClose(`matmul ${m}x${k}x${n}`, g, c, 4 * Math.sqrt(k) * 2 ** -23 + 1e-7);
    }
  });

  test('conv2d and its gradients at channel and spatial tile edges', async () => {
    const cases: [number, number, number, number, number, number][] = [
      // n, c, o, h, k, stride
      [1, 1, 1, 1, 1, 1],
      [2, 3, 17, 5, 3, 1],
      [1, 17, 3, 9, 3, 2],
      [3, 33, 65, 7, 3, 1],
      [2, 65, 33, 3, 1, 1],
      [1, 5, 130, 17, 3, 1],
      [2, 8, 16, 33, 3, 2],
    ];
    for (const [n, c, o, h, k, s] of cases) {
      const xs = [
        { shape: [n, c, h, h], data: values(n * c * h * h, n + c + h) },
        { shape: [o, c, k, k], data: values(o * c * k * k, o + k) },
      ];
      const f = ([x, w]: T.Tensor[]) =>
        T.conv2d(x as T.Tensor, w as T.Tensor, undefined, { padding: k >> 1, stride: s });
      const [g, cpu] = await both(f, xs);
      const tol = 4 * Math.sqrt(c * k * k) * 2 ** -23 + 1e-7;
      expectClose(`conv2d n${n} c${c} o${o} h${h} k${k} s${s}`, g, cpu, tol);
      // VJP: conv2dInput and conv2dWeight with an all-ones-like cotangent
      const grads = async (backend: string) => {
        const ts = xs.map((x) => T.fromArray(x.data, x.shape, { backend }));
        const { out, vjpFn, release } = vjp((a, b) => f([a as T.Tensor, b as T.Tensor]), ...ts);
        const ct = T.fromArray(values(out.size, 5), out.shape, { backend });
        const gs = vjpFn(ct);
        const host = await Promise.all(gs.map((t) => t.data()));
        T.dispose(gs, ts, ct);
        release();
        return host;
      };
      const [gg, gc] = [await grads('webgpu'), await grads('cpu')];
      const big = Math.sqrt(n * h * h * o * k * k);
      expectClose(`conv2dInput n${n} c${c} o${o}`, gg[0]!, gc[0]!, 4 * big * 2 ** -23 + 1e-7);
      expectClose(`conv2dWeight n${n} c${c} o${o}`, gg[1]!, gc[1]!, 4 * big * 2 ** -23 + 1e-7);
    }
  });

  test('reductions over rows of length 1..65 and long rows (workgroup tree)', async () => {
    const shapes: [number[], number[]][] = [];
    for (const r of EDGES) for (const k of EDGES) shapes.push([[r, k], [1]], [[k, r], [0]]);
    shapes.push(
      [[3, 5000], [1]],
      [[2, 70000], [1]],
      [
        [7, 300, 9],
        [0, 2],
      ],
      [
        [4, 33, 65],
        [0, 1, 2],
      ],
    );
    for (const [shape, axes] of shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const data = values(size, size);
      for (const [op, f] of [
        ['sum', T.sum],
        ['max', T.max],
        ['min', T.min],
      ] as const) {
        const [g, c] = await both(([x]) => f(x as T.Tensor, axes, true), [{ shape, data }]);
        expectClose(`${op} [${shape}] axes [${axes}]`, g, c, op === 'sum' ? 4e-7 * Math.sqrt(size) : 0);
      }
    }
  });
});

describe.skipIf(!gpu)('memory', () => {
  test('1000 iterations of ops in tidy() leave bytes in use where they started', async () => {
    let x = T.randomNormal([64, 32], { seed: 1, ...onGpu });
    const w = T.randomNormal([32, 32], { seed: 2, ...onGpu });
    await x.data();
    const start = backend().stats();
    let createdAfterWarmup = 0;
    for (let i = 0; i < 1000; i++) {
      const next = T.tidy(() => T.tanh(T.add(T.matmul(x, w), T.mul(T.sum(x, 1, true), 1e-3))));
      x.dispose();
      x = next;
      if (i === 200) createdAfterWarmup = backend().stats().buffersCreated;
      if (i % 250 === 0) await x.data();
    }
    await x.data();
    const end = backend().stats();
    expect(end.bytesInUse).toBe(start.bytesInUse);
    // the pool reuses buffers: none created after the first iterations (buffers freed while an
    // encoder is open wait for its submit, so the pool first grows to one submit's worth)
    expect(end.buffersCreated).toBe(createdAfterWarmup);
    T.dispose(x, w);
  });
});

describe.skipIf(!gpu)('stability', () => {
  test('submit + mapAsync readback with synchronous JS in between, 300 times; never onSubmittedWorkDone', async () => {
    const queue = backend().device.queue;
    const orig = queue.onSubmittedWorkDone;
    let calls = 0;
    queue.onSubmittedWorkDone = () => {
      calls++;
      return orig.call(queue);
    };
    try {
      let x = T.fromArray(values(4096, 3), [64, 64], onGpu);
      for (let i = 0; i < 300; i++) {
        const y = T.tidy(() => T.sigmoid(T.matmul(x, x)));
        const d = await y.data();
        // synchronous work between the readback and the next submit (the crashing pattern)
        let acc = 0;
        for (let j = 0; j < 20000; j++) acc += Math.sqrt(j + (d[j & 4095] as number));
        expect(Number.isFinite(acc)).toBe(true);
        x.dispose();
        x = y;
      }
      x.dispose();
    } finally {
      queue.onSubmittedWorkDone = orig;
    }
    expect(calls).toBe(0);
  });
});

describe.skipIf(!gpu)('errors', () => {
  test('float64 is refused with a clear error; the no-adapter hint names the fix', () => {
    expect(() => T.fromArray(new Float64Array([1, 2]), [2], onGpu)).toThrow(/float64/);
    expect(noAdapterHint()).toMatch(/bookworm-backports mesa-vulkan-drivers libvulkan1/);
    expect(noAdapterHint()).toMatch(/XDG_RUNTIME_DIR/);
  });
});

describe('required', () => {
  test('DIFFPURE_REQUIRE_WEBGPU=1 means the backend exists (setup.ts throws otherwise)', () => {
    if (gpuRequired) expect(gpu).not.toBeNull();
  });
});
