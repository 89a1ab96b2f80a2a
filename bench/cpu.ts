// CPU kernel benchmark: gemm and the three convolutions, wasm and JS kernels, 1 and 2 threads, next to PyTorch on this
// machine in the same run. Run: node scripts/build.mjs && node dist/bench-cpu.mjs (JSON on stdout, bench/out/cpu.json)
//
// Figures are medians of timed runs after 2 warm-up runs, in GFLOPS (a multiply-add counts 2). Ours: gemm is the
// library's gemm entry (src/tensor/cpu/gemm.ts) on Float32Arrays allocated once (for wasm this includes copying the
// operands into wasm memory and C back); the convolutions are the conv2d / conv2dInput / conv2dWeight primitives
// through the public ops, output read back. PyTorch (Debian python3-torch, /usr/bin/python3) with
// torch.set_num_threads(t) times the same shapes: gemm both as torch.mm (Debian's libblas: the reference BLAS unless
// OpenBLAS is installed) and as torch._C._nn.mkldnn_linear, oneDNN's sgemm (AVX-512 FMA on this machine; a 1x1
// F.conv2d of this shape fell to a 3-GFLOPS path, so it is not used); the convolutions as
// F.conv2d and aten.convolution_backward (input or weight gradient only). If python cannot run, peers are null and
// the JSON says why.
// Environment: BENCH_THREADS (default "1,2"), BENCH_KERNELS (default "wasm,js").

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import * as T from '../src/index.js';
import { configureGemm, gemm } from '../src/tensor/cpu/gemm.js';
import { type CpuKernelKind, setCpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { conv2dInput, conv2dWeight } from '../src/tensor/prims/conv.js';
import { envList, machineInfo } from './machine.js';

const threadList = envList('BENCH_THREADS', '1,2').map(Number);
const kernels = envList('BENCH_KERNELS', 'wasm,js') as CpuKernelKind[];

interface Case {
  name: string;
  flops: number;
  runs: number;
  /** What the python peer runs: ['mm', n], ['conv', n, batch] or ['convIn' | 'convW', batch]. */
  py: (string | number)[];
  setup: () => { run: () => void; dispose: () => void };
}

function gemmCase(n: number): Case {
  return {
    name: `gemm ${n}x${n}x${n}`,
    flops: 2 * n ** 3,
    runs: n >= 1024 ? 5 : 11,
    py: ['mm', n],
    setup: () => {
      const a = Float32Array.from({ length: n * n }, (_, i) => Math.sin(i));
      const b = Float32Array.from({ length: n * n }, (_, i) => Math.cos(i));
      const c = new Float32Array(n * n);
      return {
        run: () => gemm({ m: n, n, k: n, a, aOff: 0, lda: n, b, bOff: 0, ldb: n, c, cOff: 0, ldc: n }),
        dispose: () => {},
      };
    },
  };
}

const C = 128;
const HW = 32;
const geom = { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 } as const;

function convCase(kind: 'conv2d' | 'conv2dInput' | 'conv2dWeight', batch: number): Case {
  return {
    name: `${kind} N=${batch} C=${C}->${C} ${HW}x${HW} k3 pad1`,
    flops: 2 * batch * C * HW * HW * C * 9,
    runs: 5,
    py: [kind, batch],
    setup: () => {
      const x = T.randomNormal([batch, C, HW, HW], { seed: 3 });
      const w = T.randomNormal([C, C, 3, 3], { seed: 4 });
      const gy = T.randomNormal([batch, C, HW, HW], { seed: 5 });
      const op = () =>
        kind === 'conv2d'
          ? T.conv2d(x, w, undefined, { padding: 1 })
          : kind === 'conv2dInput'
            ? conv2dInput(gy, w, { ...geom, inShape: x.shape })
            : conv2dWeight(x, gy, { ...geom, wShape: w.shape });
      return {
        run: () => {
          const y = op();
          y.dataSync();
          y.dispose();
        },
        dispose: () => T.dispose(x, w, gy),
      };
    },
  };
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1] as number;
const round = (x: number) => Math.round(x * 1000) / 1000;

function time(c: Case): { gflops: number; medianMs: number } {
  const { run, dispose } = c.setup();
  run();
  run();
  const ms: number[] = [];
  for (let i = 0; i < c.runs; i++) {
    const t0 = performance.now();
    run();
    ms.push(performance.now() - t0);
  }
  dispose();
  const m = median(ms);
  return { gflops: round(c.flops / m / 1e6), medianMs: round(m) };
}

const PY = `
import json, sys, time, statistics, torch
import torch.nn.functional as F
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"]); torch.manual_seed(0)
def bench(fn, runs):
    fn(); fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)
out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(), "ms": {}}
cb = torch.ops.aten.convolution_backward
with torch.no_grad():
    for c in spec["cases"]:
        k, runs, name = c["py"][0], c["runs"], c["name"]
        if k == "mm":
            n = c["py"][1]; a = torch.randn(n, n); b = torch.randn(n, n)
            out["ms"][name + " torch.mm"] = bench(lambda: torch.mm(a, b), runs)
            am = a.to_mkldnn(); bt = b.t().contiguous().to_mkldnn()   # linear(A, B^T) = A B on oneDNN
            out["ms"][name + " oneDNN"] = bench(lambda: torch._C._nn.mkldnn_linear(am, bt, None), runs)
        else:
            N = c["py"][1]; x = torch.randn(N, 128, 32, 32); w = torch.randn(128, 128, 3, 3); gy = torch.randn(N, 128, 32, 32)
            if k == "conv2d": fn = lambda: F.conv2d(x, w, padding=1)
            elif k == "conv2dInput": fn = lambda: cb(gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])
            else: fn = lambda: cb(gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])
            out["ms"][name] = bench(fn, runs)
print(json.dumps(out))
`;

function pytorch(cases: Case[], threads: number): { ms: Record<string, number>; torch?: string } | { error: string } {
  const spec = { threads, cases: cases.map((c) => ({ name: c.name, runs: c.runs, py: c.py })) };
  const r = spawnSync('/usr/bin/python3', ['-c', PY, JSON.stringify(spec)], {
    encoding: 'utf8',
    timeout: 900_000,
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  if (r.error) return { error: `/usr/bin/python3: ${r.error.message}` };
  if (r.status !== 0) return { error: `python exited with ${r.status}: ${r.stderr.trim().split('\n').pop()}` };
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
}

function main(): void {
  const cases = [
    ...[256, 512, 1024].map(gemmCase),
    ...(['conv2d', 'conv2dInput', 'conv2dWeight'] as const).flatMap((k) => [1, 8].map((b) => convCase(k, b))),
  ];
  const defaults = configureGemm({});
  const loadBefore = os.loadavg().map(round);
  const rows: Record<string, unknown>[] = [];
  const peers: Record<number, unknown> = {};
  for (const threads of threadList) {
    const ours: Record<string, Record<string, unknown>> = {};
    for (const k of kernels) {
      const prev = setCpuKernelKind(k);
      configureGemm({ threads });
      for (const c of cases) {
        ours[c.name] ??= {};
        (ours[c.name] as Record<string, unknown>)[k] = time(c);
        process.stderr.write(`${k} ${threads} thread(s) ${c.name}: ${JSON.stringify(ours[c.name]?.[k])}\n`);
      }
      configureGemm(defaults);
      setCpuKernelKind(prev);
    }
    const py = pytorch(cases, threads);
    peers[threads] = 'error' in py ? { measured: false, why: py.error } : { measured: true, torch: py.torch };
    for (const c of cases) {
      const gf = (key: string) => ('ms' in py && py.ms[key] ? round(c.flops / (py.ms[key] as number) / 1e6) : null);
      const peer =
        c.py[0] === 'mm'
          ? { oneDNN: gf(`${c.name} oneDNN`), torchMm: gf(`${c.name} torch.mm`) }
          : { torch: gf(c.name) };
      const mine = ours[c.name] as Record<string, { gflops: number }>;
      const best = peer.oneDNN ?? peer.torch ?? null;
      rows.push({
        name: c.name,
        threads,
        gflop: round(c.flops / 1e9),
        ours: mine,
        pytorch: peer,
        wasmVsPytorch: best && mine.wasm ? round(mine.wasm.gflops / best) : null,
      });
    }
  }
  const find = (name: string, threads: number) =>
    rows.find((r) => r.name === name && r.threads === threads) as
      | { ours: Record<string, { gflops: number }>; wasmVsPytorch: number | null }
      | undefined;
  const g1024 = find('gemm 1024x1024x1024', 1);
  const conv8 = find(`conv2d N=8 C=${C}->${C} ${HW}x${HW} k3 pad1`, 1);
  const report = {
    bench: 'cpu',
    date: new Date().toISOString(),
    machine: machineInfo(),
    loadAverage1m5m15m: { before: loadBefore, after: os.loadavg().map(round) },
    unit: 'GFLOPS (median of the timed runs; a multiply-add counts 2 flops)',
    peer: { what: 'PyTorch, same shapes, same run, after ours at each thread count', byThreads: peers },
    targets: {
      gemm1024OneThread: { want: '>= 40 GFLOPS (wasm)', got: g1024?.ours.wasm?.gflops ?? null },
      conv2dN8OneThread: { want: ">= 0.8x PyTorch's 1-thread F.conv2d (wasm)", got: conv8?.wasmVsPytorch ?? null },
    },
    results: rows,
  };
  const json = JSON.stringify(report, null, 2);
  console.log(json);
  mkdirSync('bench/out', { recursive: true });
  writeFileSync('bench/out/cpu.json', `${json}\n`);
}

main();
