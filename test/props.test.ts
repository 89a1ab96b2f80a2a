// Every op case of the catalog under the three properties of test/harness/check.ts, on cpu.
// Test names read "<op>: (a) VJP = float64 central differences", etc.

import { describe, test } from 'vitest';
import { allCases } from './cases/index.js';
import { checkDotProduct, checkF32, checkVjpFd, property } from './harness/check.js';

for (const c of allCases) {
  describe(c.name, () => {
    if (!c.noGrad) {
      test('(a) VJP = float64 central differences', () => property(c, checkVjpFd));
      test('(b) dot-product identity <Jv, w> = <v, J^T w>', () => property(c, checkDotProduct));
    }
    test('(c) float32 agrees with float64 (forward and VJP)', () => property(c, checkF32));
  });
}
