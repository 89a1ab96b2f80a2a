// The catalog of op cases shared by the cpu property tests and the webgpu parity tests.

import type { OpCase } from '../harness/sample.js';
import { compositeCases } from './composite.js';
import { convCases } from './conv.js';
import { elementwiseCases } from './elementwise.js';
import { linalgCases } from './linalg.js';
import { normCases } from './norm.js';
import { reduceCases } from './reduce.js';
import { shapeCases } from './shape.js';

export const allCases: OpCase[] = [
  ...elementwiseCases,
  ...(reduceCases as OpCase[]),
  ...linalgCases,
  ...(convCases as OpCase[]),
  ...shapeCases,
  ...compositeCases,
  ...(normCases as OpCase[]),
];
