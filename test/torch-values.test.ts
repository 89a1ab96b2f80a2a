// Forward values of composites against PyTorch 1.13 (Debian python3-torch), printed by:
//   x = torch.arange(9.).reshape(1, 1, 3, 3)
//   F.interpolate(x, scale_factor=1.5, mode='nearest' | 'bilinear', align_corners=False)
//   torch.logsumexp(torch.tensor([-inf, -inf]), 0)
// These pin the conventions (index rounding, scale-factor handling, edge cases) that the
// property tests cannot see, since they compare an op only with itself.

import { expect, test } from 'vitest';
import * as T from '../src/index.js';

const x = () => T.reshape(T.arange(9, undefined, 1, { dtype: 'float64' }), [1, 1, 3, 3]);

test('upsampleNearest2d with a fractional scale factor matches F.interpolate', async () => {
  const y = T.upsampleNearest2d(x(), { scaleFactor: 1.5 });
  expect(await y.toArray()).toEqual([0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8]);
});

test('upsampleBilinear2d with a fractional scale factor matches F.interpolate', async () => {
  const ref = [
    0, 0.5, 1.1666667461395264, 1.8333333730697632, 1.5, 2, 2.6666667461395264, 3.3333334922790527, 3.5, 4,
    4.666666507720947, 5.333333492279053, 5.5, 6, 6.666666507720947, 7.333333969116211,
  ];
  const y = await T.upsampleBilinear2d(x(), { scaleFactor: 1.5 }).toArray();
  // torch computed in float32: 1e-6 covers its rounding
  for (const [i, v] of y.entries()) expect(Math.abs(v - (ref[i] as number))).toBeLessThan(1e-6);
});

test('logsumexp of an all -inf slice is -inf, as torch.logsumexp', async () => {
  const y = T.logsumexp(T.fromArray([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY], [2]), 0);
  expect(await y.item()).toBe(Number.NEGATIVE_INFINITY);
});
