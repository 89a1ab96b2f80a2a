// The optimizers against PyTorch, float64 on both sides (so the only differences are the order of a few roundings):
// Adam / AdamW trajectories (fixtures/adam.json from adam.py), and SGD, clip_grad_norm_, score_sde's
// optimization_manager step, its EMA and the lr schedules (fixtures/optim_more.json from optim_more.py), all written
// with Debian's python3-torch by the scripts beside them.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { Parameter } from '../../src/nn/module.js';
import { Adam, clipGradNorm, Ema, lrAt, SGD } from '../../src/nn/optim/index.js';

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

interface More {
  torch: string;
  shape: number[];
  p0: number[];
  grads: number[][];
  sgd: {
    options: { lr: number; momentum?: number; dampening?: number; weight_decay?: number; nesterov?: boolean };
    params: number[][];
  }[];
  clip: { max_norm: number; total: number; a: number[]; b: number[] }[];
  score_sde_step: { lr: number; warmup: number; grad_clip: number; grad_scale: number; params: number[][] };
  ema: { decay: number; params: number[][]; shadow: number[][] };
  cosine: { lr: number; total: number; min_lr: number; lrs: number[] };
  steplr: { lr: number; step_size: number; gamma: number; lrs: number[] };
}

const more = JSON.parse(readFileSync(new URL('./fixtures/optim_more.json', import.meta.url), 'utf8')) as More;
const f64 = (data: number[], shape: number[]) => T.fromArray(data, shape, { dtype: 'float64' });
const close = (got: ArrayLike<number>, want: number[], tol = 1e-14) => {
  for (let j = 0; j < want.length; j++) expect(Math.abs((got[j] as number) - (want[j] as number))).toBeLessThan(tol);
};

describe(`SGD, clipping, score_sde's step, EMA and schedules match PyTorch (${more.torch}; optim_more.py)`, () => {
  test.each(more.sgd.map((c) => [JSON.stringify(c.options), c] as const))('SGD %s', (_n, c) => {
    const p = new Parameter(f64(more.p0, more.shape));
    const o = c.options;
    const opt = new SGD([p], {
      lr: o.lr,
      momentum: o.momentum,
      dampening: o.dampening,
      weightDecay: o.weight_decay,
      nesterov: o.nesterov,
    });
    c.params.forEach((want, i) => {
      const g = f64(more.grads[i] as number[], more.shape);
      opt.update([g]);
      g.dispose();
      close(p.value.dataSync(), want);
    });
    opt.dispose();
  });

  test.each(more.clip.map((c) => [c.max_norm, c] as const))('clip_grad_norm_ with max_norm %d', (_m, c) => {
    const a = f64(more.grads[0] as number[], [2, 3]);
    const b = f64((more.grads[1] as number[]).slice(0, 4), [4]);
    const r = clipGradNorm([a, b], c.max_norm);
    expect(Math.abs(r.totalNorm - c.total)).toBeLessThan(1e-14);
    close((r.grads[0] as T.Tensor).dataSync(), c.a);
    close((r.grads[1] as T.Tensor).dataSync(), c.b);
  });

  test("score_sde's optimization_manager: Adam with warm-up and clipping", () => {
    const s = more.score_sde_step;
    const p = new Parameter(f64(more.p0, more.shape));
    const opt = new Adam([p], { lr: s.lr });
    s.params.forEach((want, i) => {
      const g = T.affine(f64(more.grads[i] as number[], more.shape), s.grad_scale, 0);
      opt.lr = lrAt(s.lr, i, { kind: 'constant', warmup: s.warmup });
      const { grads } = clipGradNorm([g], s.grad_clip);
      opt.update(grads);
      close(p.value.dataSync(), want, 1e-15);
    });
  });

  test("score_sde's EMA with use_num_updates", () => {
    const e = more.ema;
    const p = new Parameter(f64(more.p0, more.shape));
    const ema = new Ema([p], e.decay);
    e.params.forEach((v, i) => {
      p.value = f64(v, more.shape);
      ema.update();
      close((ema.shadow[0] as T.Tensor).dataSync(), e.shadow[i] as number[]);
    });
  });

  test('CosineAnnealingLR (up to T_max; we then hold minLr where its recursion rises again) and StepLR', () => {
    const c = more.cosine;
    for (let t = 0; t <= c.total; t++) {
      expect(lrAt(c.lr, t, { kind: 'cosine', total: c.total, minLr: c.min_lr })).toBeCloseTo(c.lrs[t] as number, 14);
    }
    const s = more.steplr;
    s.lrs.forEach((want, t) => {
      expect(lrAt(s.lr, t, { kind: 'step', stepSize: s.step_size, gamma: s.gamma })).toBeCloseTo(want, 14);
    });
  });
});
