// WebGPU backend benchmarks (figures, not tests): matmul, conv2d forward/backward at DDPM++
// CIFAR-10 shapes, per-dispatch overhead, peak pool bytes. JSON to stdout and bench/out/webgpu.json.
// Each figure sits beside its reference: this machine's PyTorch (1 thread, measured with
// /usr/bin/python3 when torch imports) or the stated peak.
//
// Env: BENCH_QUICK=1 (fewer shapes), BENCH_BATCH64=1 (also batch 64 convs; slow on lavapipe),
// BENCH_TILE=tx,ty,rm,rn (override the big GEMM tile, for tuning).

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { vjp } from '../src/autograd/index.js';
import * as T from '../src/tensor/index.js';
import { requestAdapter } from '../src/wgsl/device.js';
import {
  describeAdapter,
  initDefaultBackend,
  noAdapterHint,
  type WebGPUBackend,
  webgpuBackend,
  webgpuRequiredByEnv,
} from '../src/wgsl/index.js';
import { matmulTiles } from '../src/wgsl/kernels/matmul.js';
import { machineInfo } from './machine.js';

const quick = process.env.BENCH_QUICK === '1';

function now(): number {
  return performance.now();
}

/** Process CPU seconds (user + system, all threads: on lavapipe this includes the "GPU"). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

let lastCpu = 0;

/**
 * Wall seconds per call of fn, synchronised by a readback at the end; the CPU seconds per call
 * go to lastCpu (on a software adapter a figure per CPU-second is robust to other load).
 */
async function timeOp(fn: () => T.Tensor, minSeconds: number, maxIters = 200): Promise<number> {
  // warm-up: compiles pipelines and fills the pool
  const y = fn();
  await y.data();
  y.dispose();
  let iters = 0;
  const c0 = cpuSeconds();
  const t0 = now();
  let last: T.Tensor | null = null;
  while (iters < maxIters) {
    last?.dispose();
    last = fn();
    iters++;
    if (iters % 4 === 0 || iters === 1) {
      await last.data();
      if ((now() - t0) / 1000 > minSeconds) break;
    }
  }
  if (last) {
    await last.data();
    last.dispose();
  }
  lastCpu = (cpuSeconds() - c0) / iters;
  return (now() - t0) / 1000 / iters;
}

interface TorchRef {
  ok: boolean;
  version?: string;
  /** [GFLOPS wall, GFLOP per CPU-second] by figure name. */
  figures: Record<string, [number, number]>;
  error?: string;
}

/** PyTorch 1-thread figures for the same shapes (Debian's python3-torch), or why not. */
function torchReference(convShapes: ConvShape[], sizes: number[]): TorchRef {
  const py = `
import json, time, torch
torch.set_num_threads(1)
out = {}
def bench(f, flops, mint=0.5):
    f()
    n = 0; t0 = time.perf_counter(); c0 = time.process_time()
    while True:
        f(); n += 1
        if time.perf_counter() - t0 > mint: break
    wall = time.perf_counter() - t0; cpu = time.process_time() - c0
    return [flops * n / wall / 1e9, flops * n / cpu / 1e9]
for s in ${JSON.stringify(sizes)}:
    a = torch.randn(s, s); b = torch.randn(s, s)
    out[f"matmul {s}"] = bench(lambda: a @ b, 2 * s**3)
for (n, c, h) in ${JSON.stringify(convShapes.map((s) => [s.n, s.c, s.h]))}:
    x = torch.randn(n, c, h, h, requires_grad=True); w = torch.randn(c, c, 3, 3, requires_grad=True)
    fl = 2 * n * c * c * 9 * h * h
    out[f"conv2d fwd n{n} c{c} {h}x{h}"] = bench(lambda: torch.nn.functional.conv2d(x, w, padding=1), fl)
    y = torch.nn.functional.conv2d(x, w, padding=1); g = torch.randn_like(y)
    out[f"conv2d bwd n{n} c{c} {h}x{h}"] = bench(lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True), 2 * fl)
print(json.dumps({"version": torch.__version__, "figures": out}))
`;
  try {
    const txt = execFileSync('/usr/bin/python3', ['-c', py], { encoding: 'utf8', timeout: 600_000 });
    const r = JSON.parse(txt.trim().split('\n').pop() as string) as {
      version: string;
      figures: Record<string, [number, number]>;
    };
    return { ok: true, ...r };
  } catch (e) {
    return { ok: false, figures: {}, error: (e as Error).message.split('\n')[0] };
  }
}

interface ConvShape {
  n: number;
  c: number;
  h: number;
}

async function main(): Promise<void> {
  if (!(await requestAdapter()) && !webgpuRequiredByEnv()) {
    // `npm run bench` on a machine without Vulkan: say why, do not fail the other benches
    const json = JSON.stringify({ bench: 'webgpu', skipped: noAdapterHint() }, null, 2);
    console.log(json);
    return;
  }
  await initDefaultBackend({ require: true });
  const gpu = webgpuBackend() as WebGPUBackend;
  const tile = process.env.BENCH_TILE?.split(',').map(Number);
  if (tile && tile.length === 4) {
    const [tx, ty, rm, rn] = tile as [number, number, number, number];
    matmulTiles.big = { tx, ty, rm, rn };
  }
  const adapter = describeAdapter(gpu.adapter);
  const sizes = quick ? [512, 1024] : [512, 1024, 2048];
  const convShapes: ConvShape[] = [
    { n: 8, c: 128, h: 32 },
    { n: 8, c: 256, h: 16 },
    { n: 8, c: 256, h: 8 },
  ];
  if (process.env.BENCH_BATCH64 === '1') {
    convShapes.push({ n: 64, c: 128, h: 32 }, { n: 64, c: 256, h: 16 }, { n: 64, c: 256, h: 8 });
  }
  const figures: Record<string, { value: number; unit: string; reference?: number; referenceNote?: string }> = {};
  const loadBefore = os.loadavg()[0];
  const minS = quick ? 0.5 : 1.5;

  const only = process.env.BENCH_ONLY;
  for (const s of only && only !== 'matmul' ? [] : sizes) {
    const a = T.randomNormal([s, s], { seed: 1 });
    const b = T.randomNormal([s, s], { seed: 2 });
    const sec = await timeOp(() => T.matmul(a, b), minS, s >= 2048 ? 6 : 100);
    figures[`matmul ${s}`] = { value: (2 * s ** 3) / sec / 1e9, unit: 'GFLOPS' };
    figures[`matmul ${s} per CPU-second`] = { value: (2 * s ** 3) / lastCpu / 1e9, unit: 'GFLOP/cpu-s' };
    T.dispose(a, b);
  }

  for (const { n, c, h } of only && only !== 'conv' ? [] : convShapes) {
    const x = T.randomNormal([n, c, h, h], { seed: 3 });
    const w = T.mul(T.randomNormal([c, c, 3, 3], { seed: 4 }), 0.05);
    const flops = 2 * n * c * c * 9 * h * h;
    const fwd = await timeOp(() => T.conv2d(x, w, undefined, { padding: 1 }), minS, 50);
    figures[`conv2d fwd n${n} c${c} ${h}x${h}`] = { value: flops / fwd / 1e9, unit: 'GFLOPS' };
    figures[`conv2d fwd n${n} c${c} ${h}x${h} per CPU-second`] = { value: flops / lastCpu / 1e9, unit: 'GFLOP/cpu-s' };
    // backward = conv2dInput + conv2dWeight (2x the forward's flops), through autograd's vjp
    const gy = T.randomNormal([n, c, h, h], { seed: 5 });
    const { vjpFn, release } = vjp((xx, ww) => T.conv2d(xx, ww, undefined, { padding: 1 }), x, w);
    const bwd = await timeOp(
      () => {
        const [gx, gw] = vjpFn(gy);
        gx?.dispose();
        return gw as T.Tensor;
      },
      minS,
      50,
    );
    release();
    figures[`conv2d bwd n${n} c${c} ${h}x${h}`] = { value: (2 * flops) / bwd / 1e9, unit: 'GFLOPS' };
    figures[`conv2d bwd n${n} c${c} ${h}x${h} per CPU-second`] = {
      value: (2 * flops) / lastCpu / 1e9,
      unit: 'GFLOP/cpu-s',
    };
    T.dispose(x, w, gy);
  }

  // per-dispatch overhead: many tiny adds enqueued, one readback
  {
    const x = T.fromArray([1, 2, 3, 4]);
    const ops = 2000;
    let y = T.add(x, 1);
    await y.data();
    y.dispose();
    const t0 = now();
    y = x;
    for (let i = 0; i < ops; i++) {
      const z = T.add(y, 1);
      if (y !== x) y.dispose();
      y = z;
    }
    const enq = (now() - t0) / ops;
    await y.data();
    const total = (now() - t0) / ops;
    figures['tiny op enqueue (CPU side)'] = { value: enq * 1000, unit: 'us' };
    figures['tiny op end to end'] = { value: total * 1000, unit: 'us' };
    T.dispose(x, y);
  }

  const stats = gpu.stats();
  figures['peak pool bytes'] = { value: stats.peakBytes, unit: 'bytes' };

  const torch =
    process.env.BENCH_NO_TORCH === '1'
      ? { ok: false, figures: {}, error: 'skipped' }
      : torchReference(convShapes, sizes);
  const note = `PyTorch ${torch.version} CPU, 1 thread, this machine (Debian python3-torch: matmul on generic reference BLAS; conv on oneDNN, which may use Winograd, so its GFLOPS are effective: direct-conv flops / time)`;
  for (const [k, [wall, perCpu]] of Object.entries(torch.figures)) {
    const f = figures[k];
    if (f) {
      f.reference = wall;
      f.referenceNote = note;
    }
    const fc = figures[`${k} per CPU-second`];
    if (fc) {
      fc.reference = perCpu;
      fc.referenceNote = note;
    }
  }
  if (!torch.ok) {
    for (const f of Object.values(figures)) {
      if (f.unit === 'GFLOPS') f.referenceNote = `PyTorch reference unavailable: ${torch.error}`;
    }
  }
  const result = {
    bench: 'webgpu',
    date: new Date().toISOString(),
    machine: machineInfo(),
    adapter: { ...adapter, limits: undefined },
    gemmTile: matmulTiles,
    loadAverage: { before: loadBefore, after: os.loadavg()[0] },
    notes: [
      adapter.software
        ? 'software adapter (lavapipe): GPU figures are CPU figures, all cores; PyTorch reference uses 1 thread'
        : 'hardware adapter',
      process.env.BENCH_BATCH64 === '1'
        ? 'batch 64 included'
        : 'batch 64 convs skipped (set BENCH_BATCH64=1); too slow on lavapipe',
      'conv bwd = one vjp call (conv2dInput + conv2dWeight + a cotangent copy); GFLOPS counts 2x the forward flops',
      'per CPU-second figures divide by process CPU time (lavapipe threads included): robust to other load on a shared machine',
      'tiny op: 2000 chained T.add(y, 1) on 4 elements; enqueue = CPU time to record, end to end incl. lavapipe execution (~100 us per dispatch in lavapipe itself)',
    ],
    figures,
    stats,
  };
  const json = JSON.stringify(result, null, 2);
  console.log(json);
  mkdirSync('bench/out', { recursive: true });
  writeFileSync('bench/out/webgpu.json', `${json}\n`);
  gpu.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
