// groupNorm on the fused normalizeLastAxis kernel against the unfused composite it replaced
// (groupNormComposite): the benchmark design.md asks for before fusing. ms per call at DDPM++
// CIFAR-10 shapes (batch 8; 128 channels at 32x32 and 256 at 16x16; 32 groups; eps 1e-6; weight
// and bias), forward and forward + backward (one vjp: graph, cotangents of x, weight and bias),
// on webgpu and cpu (float32). JSON to stdout and bench/out/norm.json.
//
// Env: BENCH_QUICK=1 (shorter timing), NORM_LANES=k (force k lanes per row on webgpu, for tuning).

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { vjp } from '../src/autograd/index.js';
import * as T from '../src/tensor/index.js';
import { requestAdapter } from '../src/wgsl/device.js';
import {
  describeAdapter,
  initDefaultBackend,
  noAdapterHint,
  webgpuBackend,
  webgpuRequiredByEnv,
} from '../src/wgsl/index.js';
import { normLanes, normTuning } from '../src/wgsl/kernels/norm.js';
import { machineInfo } from './machine.js';

const quick = process.env.BENCH_QUICK === '1';
const minSeconds = quick ? 0.5 : 1.5;
if (process.env.NORM_LANES) normTuning.lanes = Number(process.env.NORM_LANES);

/** Process CPU ms (user + system, all threads: on lavapipe this includes the "GPU"). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1] as number;

/**
 * Wall and CPU ms per call of each fn, as the median over rounds of CALLS calls ending in one
 * readback. The fns take turns round by round, so load from other processes on this shared
 * machine falls on them alike; CPU ms per call is the steadier figure under such load.
 */
async function msPerCall(fns: (() => T.Tensor)[]): Promise<{ wall: number; cpu: number }[]> {
  const CALLS = 4;
  // warm-up: compiles pipelines and fills the pool
  for (const fn of fns) {
    const y = fn();
    await y.data();
    y.dispose();
  }
  const wall: number[][] = fns.map(() => []);
  const cpu: number[][] = fns.map(() => []);
  const t0 = performance.now();
  for (let r = 0; r < 3 || ((performance.now() - t0) / 1000 < minSeconds * fns.length && r < 30); r++) {
    for (const [i, fn] of fns.entries()) {
      const w0 = performance.now();
      const c0 = cpuMs();
      let y: T.Tensor | null = null;
      for (let k = 0; k < CALLS; k++) {
        y?.dispose();
        y = fn();
      }
      await (y as T.Tensor).data();
      (y as T.Tensor).dispose();
      wall[i]?.push((performance.now() - w0) / CALLS);
      cpu[i]?.push((cpuMs() - c0) / CALLS);
    }
  }
  return fns.map((_, i) => ({ wall: median(wall[i] as number[]), cpu: median(cpu[i] as number[]) }));
}

type GroupNorm = (x: T.Tensor, g: number, w?: T.Tensor, b?: T.Tensor, eps?: number) => T.Tensor;
const impls: [string, GroupNorm][] = [
  ['fused', T.groupNorm],
  ['composite', T.groupNormComposite],
];
const shapes = [
  [8, 128, 32, 32],
  [8, 256, 16, 16],
] as const;

interface Figure {
  /** Wall ms per call. */
  value: number;
  unit: 'ms';
  /** Process CPU ms per call (all threads). */
  cpuMs: number;
  /** The composite's wall ms at the same shape and pass: the peer the fusion must beat. */
  reference?: number;
  /** composite / fused, wall and CPU. */
  speedup?: number;
  cpuSpeedup?: number;
}

async function benchBackend(backend: string): Promise<Record<string, Figure>> {
  const figures: Record<string, Figure> = {};
  for (const shape of shapes) {
    const [, c, h] = shape;
    const x = T.randomNormal([...shape], { seed: 1, backend });
    const w = T.add(T.mul(T.randomNormal([c], { seed: 2, backend }), 0.1), 1);
    const b = T.mul(T.randomNormal([c], { seed: 3, backend }), 0.1);
    const gy = T.randomNormal([...shape], { seed: 4, backend });
    const fwd = (gn: GroupNorm) => () => gn(x, 32, w, b, 1e-6);
    const fwdBwd = (gn: GroupNorm) => () => {
      const r = vjp((xx, ww, bb) => gn(xx, 32, ww, bb, 1e-6), x, w, b);
      const [gx, gw, gb] = r.vjpFn(gy);
      r.release();
      T.dispose(gw, gb);
      return gx as T.Tensor;
    };
    for (const [pass, make] of [
      ['fwd', fwd],
      ['fwd+bwd', fwdBwd],
    ] as const) {
      const [f, comp] = (await msPerCall(impls.map(([, gn]) => make(gn)))) as [
        { wall: number; cpu: number },
        { wall: number; cpu: number },
      ];
      const label = `groupNorm ${pass} n8 c${c} ${h}x${h}`;
      figures[`${label} fused`] = {
        value: f.wall,
        unit: 'ms',
        cpuMs: f.cpu,
        reference: comp.wall,
        speedup: comp.wall / f.wall,
        cpuSpeedup: comp.cpu / f.cpu,
      };
      figures[`${label} composite`] = { value: comp.wall, unit: 'ms', cpuMs: comp.cpu };
    }
    T.dispose(x, w, b, gy);
  }
  return figures;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  const result: Record<string, unknown> = {
    bench: 'norm',
    date: new Date().toISOString(),
    machine: machineInfo(),
    notes: [
      'ms per call: median over rounds of 4 calls ending in one readback; fused and composite take turns round by round',
      'cpuMs: process CPU time per call, lavapipe threads included: steadier than wall time when other processes share the machine',
      'fwd+bwd: one vjp (forward graph, cotangents of x, weight and bias); the fused VJP is the closed form in tensor ops',
      'reference = the composite (groupNormComposite) at the same shape and pass; speedup = composite / fused',
    ],
    cpu: await benchBackend('cpu'),
  };
  if ((await requestAdapter()) || webgpuRequiredByEnv()) {
    await initDefaultBackend({ require: true });
    const gpu = webgpuBackend();
    result.adapter = { ...describeAdapter(gpu.adapter), limits: undefined, features: undefined };
    result.lanesPerRow = Object.fromEntries(shapes.map(([, c, h]) => [`c${c} ${h}x${h}`, normLanes((c / 32) * h * h)]));
    result.webgpu = await benchBackend('webgpu');
    gpu.destroy();
  } else {
    result.webgpu = { skipped: noAdapterHint() };
  }
  // other processes on the machine slow both variants; the 1-minute load says how busy it was
  result.loadAverage = { before: loadBefore, after: os.loadavg()[0] };
  const json = JSON.stringify(result, null, 2);
  console.log(json);
  mkdirSync('bench/out', { recursive: true });
  writeFileSync('bench/out/norm.json', `${json}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
