// DiffPure at full size: the DDPM++ CIFAR-10 deep config (106.6 M parameters, DiffPure's
// checkpoint_8.pth architecture, random weights: the cost does not depend on the values), dt 1e-3.
// Per backend and step count: seconds per purification of a batch, per input gradient in each
// mode ('exact', 'continuous' = the paper's adjoint) and through plain autograd of sdeint, the
// gradient/forward ratios, and the peak bytes above the weights (webgpu: pool bytes of live
// tensors; cpu: a counting cpu backend). The solve has steps = t* / dt, so a run at t* = n / 1000
// is n steps of exactly the per-step work of DiffPure's t* = 0.1 (100 steps); each row is measured,
// and a least-squares line seconds = a + b steps over the rows gives the projected 100-step figure,
// reported as a projection. BENCH_FULL=1 also measures the 100-step purification itself.
// Run: node scripts/build.mjs && node dist/bench-purify-ddpmpp.mjs
//   BENCH_BACKENDS=cpu,webgpu  BENCH_STEPS=2,5  BENCH_AUTOGRAD_STEPS=1,2  BENCH_BATCH=1  BENCH_FULL=0
//   BENCH_CONFIG=meta.json (a smaller score_sde config from a fixture's meta.json, to try the bench quickly)

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { buildNetwork, type Network } from '../src/diffpure/models.js';
import { FORWARD_NOISE_STREAM, purify } from '../src/diffpure/purify.js';
import * as T from '../src/index.js';
import { manualSeed } from '../src/nn/init.js';
import { RevVPSDE, sdeint, vpDiffuse, vpReverseTimes } from '../src/sde/index.js';
import { relMaxErr } from '../test/sde/helpers.js';
import { envList, machineInfo } from './machine.js';
import { meter, timed, useMeteredBackend } from './meter.js';

const list = (name: string, dflt: string) => envList(name, dflt).map(Number);
const backends = (process.env.BENCH_BACKENDS ?? 'cpu,webgpu').split(',');
const stepCounts = list('BENCH_STEPS', '2,5');
const autogradSteps = list('BENCH_AUTOGRAD_STEPS', '1,2');
const batch = Number(process.env.BENCH_BATCH ?? 1);
const full = process.env.BENCH_FULL === '1';
const configFile = process.env.BENCH_CONFIG;
const config: unknown = configFile ? JSON.parse(readFileSync(configFile, 'utf8')).config : undefined;
const DT = 1e-3;
const SEED = 11;

interface Timing {
  seconds: number;
  peakBytes: number;
  overPurify?: number;
}
interface Row {
  steps: number;
  tStar: number;
  purify: Timing;
  gradExact: Timing;
  gradContinuous: Timing;
  continuousVsExactRelMax: number;
}

/**
 * purify() with the reverse solve through plain autograd of sdeint instead of sdeintAdjoint (the
 * same forward noise and Brownian path under one seed): the memory that the adjoint modes avoid.
 */
function purifyAutograd(net: Network, x: T.Tensor, tStar: number): T.Tensor {
  return T.tidy(() => {
    const [B, ...imgShape] = x.shape as [number, ...number[]];
    const D = imgShape.reduce((a, b) => a * b, 1);
    const e = T.randomNormal(x.shape, { seed: SEED, stream: FORWARD_NOISE_STREAM });
    const xt = vpDiffuse(T.mul(T.sub(x, 0.5), 2), tStar, e);
    const sde = new RevVPSDE({ model: (xx, l) => net.forward(xx, l), scoreType: 'score_sde', imgShape });
    const ys = sdeint(sde, T.reshape(xt, [B, D]), vpReverseTimes(tStar), { method: 'euler', dt: DT, seed: SEED });
    return T.mul(T.add(T.reshape(T.narrow(ys, 0, 1, 1), x.shape), 1), 0.5);
  });
}

/** Least squares seconds = a + b steps; null with fewer than two distinct step counts. */
function lineFit(points: { steps: number; seconds: number }[]): { perStep: number; fixed: number } | null {
  const n = points.length;
  if (new Set(points.map((p) => p.steps)).size < 2) return null;
  const mx = points.reduce((s, p) => s + p.steps, 0) / n;
  const my = points.reduce((s, p) => s + p.seconds, 0) / n;
  const sxy = points.reduce((s, p) => s + (p.steps - mx) * (p.seconds - my), 0);
  const sxx = points.reduce((s, p) => s + (p.steps - mx) ** 2, 0);
  const perStep = sxy / sxx;
  return { perStep, fixed: my - perStep * mx };
}

async function benchBackend(backend: string) {
  await useMeteredBackend(backend);
  const m = meter(backend);
  manualSeed(0);
  let t0 = performance.now();
  const net = T.tidy(() => buildNetwork('ddpmpp', config));
  net.module.eval();
  const buildSeconds = (performance.now() - t0) / 1000;
  const weightBytes = m.live();
  console.error(`${backend}: built DDPM++ (${net.module.numParameters()} parameters) in ${buildSeconds.toFixed(1)} s`);
  const x = T.randomUniform([batch, 3, 32, 32], { seed: 5 });
  const w = T.randomNormal([batch, 3, 32, 32], { seed: 6 });
  const model = (xx: T.Tensor, labels: T.Tensor) => net.forward(xx, labels);
  const loss = (y: T.Tensor) => T.sum(T.mul(y, w));

  // one network forward and input gradient at t = 0.1 (labels 99.9): the per-step unit of work
  const labels = T.full([batch], 99.9);
  await timed(m, () => T.noGrad(() => model(x, labels))); // warm-up: pipelines, pool, gemm workers
  const netForward = await timed(m, () => T.noGrad(() => model(x, labels)));
  const netGrad = await timed(m, () => T.tidy(() => T.grad((xx) => T.sum(T.mul(model(xx, labels), w)))(x)));
  labels.dispose();
  console.error(
    `${backend}: network forward ${netForward.seconds.toFixed(2)} s, gradient ${netGrad.seconds.toFixed(2)} s`,
  );

  const rows: Row[] = [];
  for (const steps of stepCounts) {
    const tStar = steps / 1000;
    const opts = { model, scoreType: 'score_sde' as const, tStar, dt: DT, seed: SEED };
    const fwd = await timed(m, () => T.noGrad(() => purify(x, opts)));
    const grad = async (mode: 'exact' | 'continuous') =>
      timed(m, () => T.tidy(() => T.grad((xx) => loss(purify(xx, { ...opts, mode })))(x)));
    const exact = await grad('exact');
    const continuous = await grad('continuous');
    const row = {
      steps,
      tStar,
      purify: { seconds: fwd.seconds, peakBytes: fwd.peakBytes },
      gradExact: { seconds: exact.seconds, peakBytes: exact.peakBytes, overPurify: exact.seconds / fwd.seconds },
      gradContinuous: {
        seconds: continuous.seconds,
        peakBytes: continuous.peakBytes,
        overPurify: continuous.seconds / fwd.seconds,
      },
      continuousVsExactRelMax: relMaxErr(continuous.host, exact.host),
    };
    console.error(`${backend}: ${JSON.stringify(row)}`);
    rows.push(row);
  }

  // autograd through sdeint keeps every step's network activations: few steps only
  const autograd: unknown[] = [];
  for (const steps of autogradSteps) {
    const tStar = steps / 1000;
    const r = await timed(m, () => T.tidy(() => T.grad((xx) => loss(purifyAutograd(net, xx, tStar)))(x)));
    const ex = await timed(m, () =>
      T.tidy(() =>
        T.grad((xx) => loss(purify(xx, { model, scoreType: 'score_sde', tStar, dt: DT, seed: SEED, mode: 'exact' })))(
          x,
        ),
      ),
    );
    // same path and noise: autograd and 'exact' are the same gradient up to float32 round-off
    const row = { steps, seconds: r.seconds, peakBytes: r.peakBytes, relMaxVsExact: relMaxErr(r.host, ex.host) };
    console.error(`${backend}: autograd ${JSON.stringify(row)}`);
    autograd.push(row);
  }

  const pts = (k: 'purify' | 'gradExact' | 'gradContinuous') =>
    rows.map((r) => ({ steps: r.steps, seconds: r[k].seconds }));
  const projected: Record<string, unknown> = {};
  for (const k of ['purify', 'gradExact', 'gradContinuous'] as const) {
    const f = lineFit(pts(k));
    projected[k] = f && {
      perStepSeconds: f.perStep,
      fixedSeconds: f.fixed,
      seconds100Steps: f.fixed + 100 * f.perStep,
    };
  }

  let full100: unknown = null;
  if (full) {
    t0 = performance.now();
    const r = await timed(m, () =>
      T.noGrad(() => purify(x, { model, scoreType: 'score_sde', tStar: 0.1, dt: DT, seed: SEED })),
    );
    full100 = { steps: 100, tStar: 0.1, seconds: r.seconds, peakBytes: r.peakBytes };
    console.error(`${backend}: full ${JSON.stringify(full100)}`);
  }

  x.dispose();
  w.dispose();
  net.module.dispose();
  return {
    backend,
    parameters: net.module.numParameters(),
    weightBytes,
    buildSeconds,
    network: { forwardSeconds: netForward.seconds, gradSeconds: netGrad.seconds, gradPeakBytes: netGrad.peakBytes },
    rows,
    autograd,
    projected,
    measured100Steps: full100,
  };
}

const results = [];
for (const backend of backends) {
  try {
    results.push(await benchBackend(backend));
  } catch (e) {
    console.error(`${backend}: skipped: ${e instanceof Error ? e.message : e}`);
    results.push({ backend, skipped: e instanceof Error ? e.message : String(e) });
  }
  // written after every backend: a run takes tens of minutes
  const out = {
    bench: 'purify-ddpmpp',
    config: configFile ?? 'DDPMPP_CIFAR10_DEEP_CONTINUOUS (DiffPure configs/cifar10.yml)',
    what: "DiffPure purification at full size: DDPM++ cifar10 deep continuous (nf 128, 8 blocks, random weights), batch images 3x32x32, dt 1e-3, t* = steps / 1000, loss sum(w * purify(x)); peakBytes are above the weights' bytes",
    batch,
    machine: {
      ...machineInfo(),
      adapter: backends.includes('webgpu') ? await T.describeDefaultAdapter().catch(() => null) : null,
    },
    results,
  };
  mkdirSync('bench/out', { recursive: true });
  const tag = `${configFile ? 'custom-' : ''}${backends.join('-')}${full ? '-full' : ''}-batch${batch}`;
  writeFileSync(`bench/out/purify-ddpmpp-${tag}.json`, `${JSON.stringify(out, null, 2)}\n`);
  if (results.length === backends.length) console.log(JSON.stringify(out, null, 2));
}
