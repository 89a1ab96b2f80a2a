// Adam / AdamW against torch.optim trajectories (test/nn/fixtures/adam.json, written by adam.py beside it with Debian's
// python3-torch): four steps on a 2x3 parameter in float64, plain Adam, Adam with L2 weight decay and a large eps, and
// AdamW. float64 on both sides, so the only differences are the order of a few roundings.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { Parameter } from '../../src/nn/module.js';
import { Adam } from '../../src/nn/optim/index.js';

interface Fixture {
  torch: string;
  shape: number[];
  p0: number[];
  grads: number[][];
  cases: {
    name: string;
    optimizer: 'Adam' | 'AdamW';
    options: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
    params: number[][];
  }[];
}

const fx = JSON.parse(readFileSync(new URL('./fixtures/adam.json', import.meta.url), 'utf8')) as Fixture;

describe(`Adam / AdamW match torch.optim (${fx.torch})`, () => {
  test.each(fx.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const p = new Parameter(T.fromArray(fx.p0, fx.shape, { dtype: 'float64' }));
    const opt = new Adam([p], {
      lr: c.options.lr,
      betas: c.options.betas,
      eps: c.options.eps,
      weightDecay: c.options.weight_decay,
      decoupled: c.optimizer === 'AdamW',
    });
    c.params.forEach((want, i) => {
      const g = T.fromArray(fx.grads[i] as number[], fx.shape, { dtype: 'float64' });
      opt.update([g]);
      g.dispose();
      const got = p.value.dataSync();
      for (let j = 0; j < want.length; j++)
        expect(Math.abs((got[j] as number) - (want[j] as number))).toBeLessThan(1e-14);
    });
    expect(opt.step).toBe(4);
    opt.dispose();
    p.value.dispose();
  });

  test('bad options and mismatched gradients name the problem', () => {
    const p = new Parameter(T.zeros([2]));
    expect(() => new Adam([p], { lr: -1 })).toThrow(/lr must be >= 0/);
    expect(() => new Adam([p], { betas: [0.9, 1] })).toThrow(/betas must be in \[0, 1\)/);
    expect(() => new Adam([new Parameter(T.zeros([1]), true)])).toThrow(/buffer/);
    const opt = new Adam([p]);
    expect(() => opt.update([])).toThrow(/got 0 gradients for 1 parameters/);
    expect(() => opt.update([T.zeros([3])])).toThrow(/gradient 0 has shape \[3\]/);
    opt.dispose();
  });
});
