// Creation kernels on cpu: fill, arange, Philox random numbers.

import { normalAt, uniformAt } from '../philox.js';
import type { CpuKernel } from './kernel.js';

const fill: CpuKernel = (_ins, attrs: { value: number }, out) => {
  out.fill(attrs.value);
};

const arange: CpuKernel = (_ins, attrs: { start: number; step: number }, out) => {
  for (let i = 0; i < out.length; i++) out[i] = attrs.start + i * attrs.step;
};

const random: CpuKernel = (_ins, attrs: { dist: 'uniform' | 'normal'; seed: number; stream: number }, out) => {
  const f = attrs.dist === 'uniform' ? uniformAt : normalAt;
  for (let i = 0; i < out.length; i++) out[i] = f(attrs.seed, attrs.stream, i);
};

export const creationKernels: Record<string, CpuKernel> = { fill, arange, random };
