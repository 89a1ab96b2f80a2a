// A NaN in a forward pass is never silently dropped: each op below gives what PyTorch 1.13 gives
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
        expect(got.map((v) => (Number.isNaN(v) ? 'NaN' : v))).toEqual(
          expected.map((v) => (Number.isNaN(v) ? 'NaN' : v)),
        );
      } finally {
        await T.setBackend('cpu');
      }
    });
  }
}

describe('NaN propagates as in PyTorch (cpu)', () => suite('cpu'));
describe.skipIf(!gpu)('NaN propagates as in PyTorch (webgpu)', () => suite('webgpu'));
