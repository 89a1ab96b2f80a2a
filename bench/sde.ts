// SDE bench (cpu): how far the paper's gradient ('continuous', torchsde's stochastic adjoint) is
// from the exact gradient of the discretised solve ('exact'), and what each costs in memory and
// time. Writes JSON to stdout and bench/out/sde.json.
//
// Accuracy: relative error ||g_cont - g_exact|| / ||g_exact||, max-relative error and cosine, at
// dt 1e-3, 5e-4, 1e-4, on toy problems, each on one shared Brownian path per problem:
//   fixture-mlp   the sde_adjoint fixture's SDE shape (tanh-MLP drift, g depends on t only), t in [0, 1];
//   toy-diagonal  tanh-MLP drift, g = s (1 + sin(x)/2) (state-dependent, Milstein adjoint);
//   toy-additive  tanh-MLP drift, g = s (1 + t);
//   vp-toy        DiffPure's reverse VP-SDE (RevVPSDE, score_sde) from 1 - t* = 0.9 to 1 - 1e-5 with
//                 a small tanh "eps network" in place of DDPM++, the configuration whose score blows
//                 up as std(tau) -> 1e-3 at the end time, where the continuous adjoint starts.
// Memory: peak live bytes (a counting cpu backend; test/webgpu measures the webgpu pool's)
// while computing one input gradient of a [1, 3072] state (one CIFAR-10 image) at 100 and 1000
// steps, for 'continuous', 'exact' and autograd through sdeint.
// The DDPM++ figures are in bench/sde-ddpmpp.ts (accuracy around the fixture's DDPM++) and
// bench/purify-ddpmpp.ts (the full-size model: seconds and peak bytes per purification and gradient).

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { sdeintAdjoint } from '../src/adjoint/index.js';
import * as T from '../src/index.js';
import { defaultBrownian, defineSde, RevVPSDE, type SDE, sdeint, vpReverseTimes } from '../src/sde/index.js';
import { cosine, countingBackend, hostOf, mlpDrift, relL2, relMaxErr, toyParams, toySde } from '../test/sde/helpers.js';

interface Problem {
  name: string;
  what: string;
  sde: (params: readonly T.Tensor[]) => SDE;
  params: T.Tensor[];
  x0: T.Tensor;
  ts: [number, number];
  method: 'euler' | 'milstein';
}

const B = 4;
const D = 16;
const H = 32;

function problems(): Problem[] {
  const x0 = T.mul(T.randomNormal([B, D], { seed: 1 }), 0.5);
  const toy = toyParams(D, H, 7);
  const mlpOnly = toy.slice(0, 5);
  // a 3072-wide eps "network" for the VP problem: eps = tanh(x W + label u), W [D, D] on an 8x8 image
  const vpParams = [
    T.mul(T.randomNormal([D, D], { seed: 3 }), 1 / Math.sqrt(D)),
    T.mul(T.randomNormal([D], { seed: 4 }), 0.5),
  ];
  const vpSde = (p: readonly T.Tensor[]) =>
    new RevVPSDE({
      scoreType: 'score_sde',
      imgShape: [1, 4, 4],
      params: p,
      withParams: (q) => (img, labels) => eps(img, labels, q),
      model: (img, labels) => eps(img, labels, p),
    });
  const eps = (img: T.Tensor, labels: T.Tensor, [W, u]: readonly T.Tensor[]) => {
    const x = T.reshape(img, [img.shape[0] as number, D]);
    const lab = T.reshape(T.mul(labels, 1 / 1000), [img.shape[0] as number, 1]);
    return T.reshape(T.tanh(T.add(T.matmul(x, W as T.Tensor), T.mul(lab, u as T.Tensor))), img.shape);
  };
  return [
    {
      name: 'fixture-mlp',
      what: 'tanh-MLP drift, g(t) = sqrt(0.1 + 0.7 t) (independent of x, like DiffPure), t in [0, 1], Euler',
      sde: (p) => defineSde({ params: p, f: mlpDrift, g: (t, x) => T.fullLike(x, Math.sqrt(0.1 + 0.7 * t)) }),
      params: mlpOnly,
      x0,
      ts: [0, 1],
      method: 'euler',
    },
    {
      name: 'toy-diagonal',
      what: 'tanh-MLP drift, g = s (1 + sin(x)/2) elementwise, t in [0, 1], Euler forward, Milstein adjoint',
      sde: (p) => toySde('diagonal', p),
      params: toy,
      x0,
      ts: [0, 1],
      method: 'euler',
    },
    {
      name: 'toy-additive',
      what: 'tanh-MLP drift, g = s (1 + t), t in [0, 1], Euler',
      sde: (p) => toySde('additive', p),
      params: toy,
      x0,
      ts: [0, 1],
      method: 'euler',
    },
    {
      name: 'vp-toy',
      what: "DiffPure's reverse VP-SDE (score_sde scaling) with a tanh eps-model, t from 0.9 to 1 - 1e-5 (t* = 0.1), Euler",
      sde: vpSde,
      params: vpParams,
      x0,
      ts: vpReverseTimes(0.1),
      method: 'euler',
    },
  ];
}

function accuracy(pr: Problem, dt: number) {
  const w = T.randomNormal([B, D], { seed: 11 });
  // one path: nodes of both passes at this dt (the default grid), regenerated identically per mode
  const bm = defaultBrownian(pr.sde(pr.params), pr.x0, pr.ts, { dt, seed: 99 });
  const grad = (mode: 'continuous' | 'exact') => {
    const t0 = performance.now();
    const gs = T.tidy(() =>
      T.grad(
        (x, ...p) => {
          const ys = sdeintAdjoint(pr.sde(p), x, pr.ts, { dt, bm, method: pr.method, mode, paramGrads: true });
          return T.sum(T.mul(T.reshape(T.narrow(ys, 0, 1, 1), [B, D]), w));
        },
        { argnums: [0, ...pr.params.map((_, i) => i + 1)] },
      )(pr.x0, ...pr.params).map(hostOf),
    );
    return { gx: gs[0] as Float64Array, gp: gs.slice(1), s: (performance.now() - t0) / 1000 };
  };
  const ex = grad('exact');
  const co = grad('continuous');
  const flat = (g: { gx: Float64Array; gp: Float64Array[] }) => Float64Array.from([...g.gp.flatMap((p) => [...p])]);
  return {
    dt,
    steps: Math.round((pr.ts[1] - pr.ts[0]) / dt),
    input: { relL2: relL2(co.gx, ex.gx), relMax: relMaxErr(co.gx, ex.gx), cosine: cosine(co.gx, ex.gx) },
    params: { relL2: relL2(flat(co), flat(ex)), cosine: cosine(flat(co), flat(ex)) },
    seconds: { exact: +ex.s.toFixed(3), continuous: +co.s.toFixed(3) },
  };
}

async function memory(steps: number, how: 'continuous' | 'exact' | 'autograd') {
  const be = countingBackend();
  await T.setBackend('cpu-counting');
  try {
    const Dm = 3072;
    const params = toyParams(Dm, 8, 1);
    const x0 = T.randomNormal([1, Dm], { seed: 2 });
    const sde = toySde('additive', params);
    const solve = (x: T.Tensor) =>
      how === 'autograd'
        ? sdeint(sde, x, [0, 1], { dt: 1 / steps, seed: 4 })
        : sdeintAdjoint(sde, x, [0, 1], { dt: 1 / steps, seed: 4, mode: how });
    const base = be.live;
    be.resetPeak();
    const t0 = performance.now();
    const g = T.grad((x) => T.sum(solve(x)))(x0);
    const s = (performance.now() - t0) / 1000;
    const peak = be.peak - base;
    g.dispose();
    x0.dispose();
    for (const p of params) p.dispose();
    return { steps, peakBytes: peak, seconds: +s.toFixed(3) };
  } finally {
    await T.setBackend('cpu');
  }
}

async function main() {
  await T.setBackend('cpu');
  const prs = problems();
  const table = prs.map((pr) => ({
    problem: pr.name,
    what: pr.what,
    rows: [1e-3, 5e-4, 1e-4].map((dt) => accuracy(pr, dt)),
  }));
  const mem = [];
  for (const how of ['continuous', 'exact', 'autograd'] as const) {
    mem.push({ mode: how, runs: [await memory(100, how), await memory(1000, how)] });
  }
  const out = {
    bench: 'sde',
    machine: {
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      memGiB: +(totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
    },
    backend: 'cpu',
    gradientAccuracy: {
      note: "continuous (torchsde's stochastic adjoint, the paper's gradient) against exact (gradient of the discretised solve), same path; input = dL/dx0, params = all SDE parameters",
      table,
    },
    memory: {
      note: 'peak live bytes above baseline during one input gradient, state [1, 3072] float32 (12 KiB), additive-noise tanh-MLP SDE; counting cpu backend',
      stateBytes: 3072 * 4,
      results: mem,
    },
    seeAlso:
      'bench/sde-ddpmpp.ts (accuracy around the fixture DDPM++), bench/purify-ddpmpp.ts (full-size DDPM++ seconds and peak bytes)',
  };
  const json = JSON.stringify(out, null, 1);
  mkdirSync('bench/out', { recursive: true });
  writeFileSync('bench/out/sde.json', json);
  console.log(json);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
