// DiffPure's CelebA-HQ path at full size on one backend: SDEdit's DDPM UNet (celeba.yml, 113.7 M parameters,
// 256 px, random weights: the cost does not depend on the values) and gan-ensembling's attribute classifier
// (23.0 M). DDPM purification runs t ancestral steps of identical work, so runs at t = 1 and 2 are measured and
// a line through them (seconds = a + b t) gives the paper's t = 500, marked as a projection; the same for the
// exact (checkpointed) input gradient. The classifier's forward and input gradient are measured directly. No peer:
// the official UNet runs only in PyTorch with its checkpoint download; a PyTorch timing is future work.
// Run: node scripts/build.mjs && node dist/bench-ddpm-celebahq.mjs    (JSON on stdout and bench/out/ddpm-celebahq-<backend>.json)
//   BENCH_BACKEND=cpu|webgpu  BENCH_T=1,2  BENCH_BATCH=1

import { mkdirSync, writeFileSync } from 'node:fs';
import { ddpmPurify } from '../src/diffpure/ddpm-purify.js';
import { buildNetwork } from '../src/diffpure/models.js';
import * as T from '../src/index.js';
import { manualSeed } from '../src/nn/init.js';
import { envList, machineInfo } from './machine.js';

const backend = process.env.BENCH_BACKEND ?? 'cpu';
const ts = envList('BENCH_T', '1,2').map(Number);
const batch = Number(process.env.BENCH_BATCH ?? 1);
const PAPER_T = 500;

async function seconds(f: () => T.Tensor): Promise<number> {
  const t0 = performance.now();
  const y = f();
  await y.data();
  y.dispose();
  return (performance.now() - t0) / 1000;
}

/** Least-squares line through (t, s); its value at PAPER_T. */
function project(rows: { t: number; s: number }[]): { perStep: number; intercept: number; at500: number } {
  const n = rows.length;
  const mt = rows.reduce((a, r) => a + r.t, 0) / n;
  const ms = rows.reduce((a, r) => a + r.s, 0) / n;
  const b =
    rows.reduce((a, r) => a + (r.t - mt) * (r.s - ms), 0) /
    Math.max(
      rows.reduce((a, r) => a + (r.t - mt) ** 2, 0),
      1e-12,
    );
  const a = ms - b * mt;
  return { perStep: b, intercept: a, at500: a + b * PAPER_T };
}

async function main() {
  await T.initBackend(backend);
  await T.setBackend(backend);
  manualSeed(0);
  const load0 = machineInfo();
  const unet = buildNetwork('ddpm', undefined);
  const x = T.randomUniform([batch, 3, 256, 256], { seed: 1 });
  const model = (v: T.Tensor, t: T.Tensor) => unet.forward(v, t);
  // one warm-up step (kernels, pools, pipelines)
  await seconds(() => T.noGrad(() => ddpmPurify(x, { model, t: 1, seed: 0 })));
  const purifyRows: { t: number; s: number }[] = [];
  const gradRows: { t: number; s: number }[] = [];
  for (const t of ts) {
    const s = await seconds(() => T.noGrad(() => ddpmPurify(x, { model, t, seed: 0 })));
    purifyRows.push({ t, s });
    console.error(`ddpm purify t=${t}: ${s.toFixed(1)} s`);
    const g = await seconds(() =>
      T.grad((v: T.Tensor) => T.sum(ddpmPurify(v, { model, t, seed: 0, gradient: 'exact' })))(x),
    );
    gradRows.push({ t, s: g });
    console.error(`ddpm exact gradient t=${t}: ${g.toFixed(1)} s`);
  }
  unet.module.dispose();
  const clf = buildNetwork('attribute', undefined);
  await seconds(() => T.noGrad(() => clf.forward(x)));
  const clfForward = await seconds(() => T.noGrad(() => clf.forward(x)));
  const clfGrad = await seconds(() => T.grad((v: T.Tensor) => T.sum(clf.forward(v)))(x));
  clf.module.dispose();
  x.dispose();
  const purifyFit = project(purifyRows);
  const gradFit = project(gradRows);
  const result = {
    bench: 'ddpm-celebahq',
    date: new Date().toISOString(),
    backend,
    batch,
    machine: { ...load0, loadavgAfter: machineInfo().loadavg },
    what: "full-size SDEdit DDPM UNet (celeba.yml) purification at t steps and its exact input gradient; DiffPure's t = 500 projected by a line through the measured t; the attribute classifier's forward and input gradient",
    purify: { measured: purifyRows, perStepSeconds: purifyFit.perStep, projectedT500Seconds: purifyFit.at500 },
    exactGradient: { measured: gradRows, perStepSeconds: gradFit.perStep, projectedT500Seconds: gradFit.at500 },
    attributeClassifier: { forwardSeconds: clfForward, gradientSeconds: clfGrad },
  };
  console.log(JSON.stringify(result, null, 2));
  mkdirSync('bench/out', { recursive: true });
  writeFileSync(`bench/out/ddpm-celebahq-${backend}.json`, `${JSON.stringify(result, null, 2)}\n`);
}

await main();
