// A NaN reaching these ops is not silently dropped: each op below gives what PyTorch 1.13 gives
// (Debian's python3-torch, CPU; the expected values were printed by it, e.g.
// torch.relu(torch.tensor([nan, 1, -1, 2])) -> [nan, 1, 0, 2]), on cpu and on webgpu. The webgpu
// kernels test NaN on the bits because a driver may compile `x != x` as false (lavapipe did).

import { describe, expect, test } from 'vitest';
import * as T from '../src/index.js';
import { maxPool2d } from '../src/nn/layers/pooling.js';
import { gpu } from './webgpu/setup.js';

const N = Number.NaN;

/** [name, op, expected]: the PyTorch values for x = [nan, 1, -1, 2], y = [1, nan, 0, 3]. */
const CASES: [string, (x: T.Tensor, y: T.Tensor) => T.Tensor, number[]][] = [
  ['relu', (x) => T.relu(x), [N, 1, 0, 2]],
  ['maximum', (x, y) => T.maximum(x, y), [N, N, 0, 3]],
  ['minimum', (x, y) => T.minimum(x, y), [N, N, -1, 2]],
  ['clamp(0, 1)', (x) => T.clamp(x, 0, 1), [N, 1, 0, 1]],
  ['sign', (x) => T.sign(x), [0, 1, -1, 1]],
  ['abs', (x) => T.abs(x), [N, 1, 1, 2]],
  ['max', (x) => T.max(x), [N]],
  ['min', (x) => T.min(x), [N]],
  ['max over axis 1 of [[1, nan], [2, 3]]', () => T.max(T.fromArray([1, N, 2, 3], [2, 2]), 1), [N, 3]],
  ['argmax of [3, nan, -5, nan]', () => T.argmax(T.fromArray([3, N, -5, N], [4])), [1]],
  ['argmin of [3, nan, -5, nan]', () => T.argmin(T.fromArray([3, N, -5, N], [4])), [1]],
  ['softmax', (x) => T.softmax(x), [N, N, N, N]],
  ['erf', (x) => T.erf(x), [N, 0.8427007794380188, -0.8427007794380188, 0.9953222870826721]],
  ['gelu', (x) => T.gelu(x), [N, 0.8413447141647339, -0.1586552858352661, 1.9544999599456787]],
  ['silu', (x) => T.silu(x), [N, 0.7310585975646973, -0.2689414322376251, 1.7615940570831299]],
  // relu's backward: torch.ops.aten.threshold_backward(y, x, 0)
  ['reluGrad(y, x)', (x, y) => T.reluGrad(y, x), [1, N, 0, 3]],
  // torch.where takes a bool condition, and bool(nan) is True
  ['where(x, 1, 2)', (x) => T.where(x, 1, 2), [1, 1, 1, 1]],
  // 1000 elements in one row: the webgpu reduction takes its workgroup path (tree merge)
  [
    'max of 1000 with a NaN at 500',
    () =>
      T.max(
        T.fromArray(
          Array.from({ length: 1000 }, (_, i) => (i === 500 ? N : i)),
          [1, 1000],
        ),
        1,
      ),
    [N],
  ],
  [
    'min of 1000 with a NaN at 500',
    () =>
      T.min(
        T.fromArray(
          Array.from({ length: 1000 }, (_, i) => (i === 500 ? N : i)),
          [1, 1000],
        ),
        1,
      ),
    [N],
  ],
  ['sum', (x) => T.sum(x), [N]],
  ['eq(x, x)', (x) => T.eq(x, x), [0, 1, 1, 1]],
  ['ne(x, x)', (x) => T.ne(x, x), [1, 0, 0, 0]],
  ['lt(x, y)', (x, y) => T.lt(x, y), [0, 0, 1, 1]],
  ['ge(x, y)', (x, y) => T.ge(x, y), [0, 0, 0, 0]],
  [
    'maxPool2d 2x2 of [[nan, 1, 5, 6], [2, 3, 7, 8]]',
    () => maxPool2d(T.fromArray([N, 1, 5, 6, 2, 3, 7, 8], [1, 1, 2, 4]), 2),
    [N, 8],
  ],
];

function suite(backend: string) {
  for (const [name, op, expected] of CASES) {
    test(`${name}`, async () => {
      await T.setBackend(backend);
      try {
        const y = T.tidy(() => op(T.fromArray([N, 1, -1, 2], [4]), T.fromArray([1, N, 0, 3], [4])));
        const got = Array.from(await y.data());
        y.dispose();
        // NaN exactly where PyTorch has one; other values to float32 rounding (a few ulps)
        expect(got.map(Number.isNaN)).toEqual(expected.map(Number.isNaN));
        got.forEach((v, i) => {
          const e = expected[i] as number;
          if (!Number.isNaN(e))
            expect(Math.abs(v - e), `element ${i}: ${v} vs ${e}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(e)));
        });
      } finally {
        await T.setBackend('cpu');
      }
    });
  }
}

describe('NaN propagates as in PyTorch (cpu)', () => suite('cpu'));
describe.skipIf(!gpu)('NaN propagates as in PyTorch (webgpu)', () => suite('webgpu'));
