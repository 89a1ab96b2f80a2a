// Gradient accuracy through DiffPure's purification around the ddpmpp fixture's DDPM++ (nf 32,
// EMA weights): the paper's adjoint ('continuous') against the exact gradient of the discrete
// solve ('exact'), same seed and path, one image, t* = 0.1, at several dt. Also the seconds per
// purification and per input gradient. cpu by default (BENCH_BACKEND=webgpu for the GPU backend).
// Run: node scripts/build.mjs && node dist/bench-sde-ddpmpp.mjs   (BENCH_DTS=0.01,0.001)

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadNetwork } from '../src/diffpure/models.js';
import { purify } from '../src/diffpure/purify.js';
import * as T from '../src/index.js';
import { machineInfo } from './machine.js';

const fixture = '../shared/fixtures/ddpmpp';
const backend = process.env.BENCH_BACKEND ?? 'cpu';
const dts = (process.env.BENCH_DTS ?? '0.01,0.001').split(',').map(Number);
// BENCH_PURIFY=0 skips timing the plain purification (saves ~10% at small dt).
const timePurify = process.env.BENCH_PURIFY !== '0';
const outFile = `bench/out/sde-ddpmpp-${backend}-dt${dts.join('_')}.json`;

await T.initBackend(backend);
const config = JSON.parse(readFileSync(`${fixture}/meta.json`, 'utf8')).config;
const net = await loadNetwork('ddpmpp', config, `${fixture}/checkpoint.pth`, backend);
const x = T.randomUniform([1, 3, 32, 32], { seed: 5, backend });
const w = T.randomNormal([1, 3, 32, 32], { seed: 6, backend });
const model = (xx: T.Tensor, labels: T.Tensor) => net.forward(xx, labels);

async function timed<R>(fn: () => Promise<R>): Promise<[R, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

const rows: unknown[] = [];
for (const dt of dts) {
  const opts = { model, scoreType: 'score_sde' as const, tStar: 0.1, dt, seed: 11 };
  const [, purifySeconds] = timePurify
    ? await timed(async () => {
        const y = T.noGrad(() => purify(x, opts));
        await y.data();
        y.dispose();
      })
    : [undefined, null];
  const grads: Record<string, Float64Array> = {};
  const seconds: Record<string, number> = {};
  for (const mode of ['exact', 'continuous'] as const) {
    const [g, s] = await timed(async () => {
      const gt = T.grad((xx) => T.sum(T.mul(purify(xx, { ...opts, mode }), w)))(x);
      const d = Float64Array.from(await gt.data());
      gt.dispose();
      return d;
    });
    grads[mode] = g;
    seconds[mode] = s;
  }
  const e = grads.exact as Float64Array;
  const c = grads.continuous as Float64Array;
  let diff = 0;
  let ne = 0;
  let nc = 0;
  let dot = 0;
  let maxDiff = 0;
  let maxE = 0;
  for (let i = 0; i < e.length; i++) {
    const d = (c[i] as number) - (e[i] as number);
    diff += d * d;
    ne += (e[i] as number) ** 2;
    nc += (c[i] as number) ** 2;
    dot += (c[i] as number) * (e[i] as number);
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxE = Math.max(maxE, Math.abs(e[i] as number));
  }
  const row = {
    dt,
    steps: Math.round(0.1 / dt),
    relL2: Math.sqrt(diff / ne),
    relMax: maxDiff / maxE,
    cosine: dot / Math.sqrt(ne * nc),
    seconds: { purify: purifySeconds, gradExact: seconds.exact, gradContinuous: seconds.continuous },
  };
  console.error(JSON.stringify(row));
  rows.push(row);
  // Written after every row: a run at dt 1e-4 takes an hour, and a partial table is still useful.
  save();
}

function save() {
  const result = {
    bench: 'sde-ddpmpp',
    what: 'continuous (paper) vs exact input gradient of sum(w * purify(x)), ddpmpp fixture DDPM++ (nf 32), batch 1, t* 0.1',
    backend,
    machine: machineInfo(),
    rows,
  };
  mkdirSync('bench/out', { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
}
console.log(readFileSync(outFile, 'utf8'));
