// CPU benchmark: matmul and conv2d forward through the public API, in GFLOPS, next to PyTorch on this machine.
// Run: node scripts/build.mjs && node dist/bench-cpu.mjs   (JSON on stdout and in bench/out/cpu.json)
//
// Figures are medians of several timed runs after warm-up. The peer is Debian's /usr/bin/python3 with python3-torch,
// torch.set_num_threads(1), timing the same shapes in the same run; if it cannot be run the figure is null and the
// JSON says why. Ours runs with the default thread count (all cores) and, for reference, with one thread.

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { conv2d, matmul, randomNormal, type Tensor } from '../src/index.js';
import { configureGemm, gemm, gemmThreadStats } from '../src/tensor/cpu/gemm.js';

interface Case {
  name: string;
  /** Floating-point operations of one run (a multiply-add counts 2). */
  flops: number;
  /** Builds the inputs and returns a function that runs the op once and reads its result. */
  setup: () => { run: () => void; dispose: () => void };
  /** Timed runs (after 2 warm-up runs). */
  runs: number;
}

const readAll = (t: Tensor) => {
  t.dataSync();
  t.dispose();
};

function matmulCase(n: number, runs: number): Case {
  return {
    name: `matmul ${n}x${n}x${n}`,
    flops: 2 * n ** 3,
    runs,
    setup: () => {
      const a = randomNormal([n, n], { seed: 1 });
      const b = randomNormal([n, n], { seed: 2 });
      return { run: () => readAll(matmul(a, b)), dispose: () => [a, b].forEach((t) => void t.dispose()) };
    },
  };
}

/**
 * The gemm kernel alone (src/tensor/cpu/gemm.ts) on arrays allocated once, for comparison with the matmul op: the
 * difference is what the op pays around the kernel, mostly first-touching its freshly allocated output.
 */
function gemmOnlyCase(n: number, runs: number): Case {
  return {
    name: `gemm kernel only ${n}x${n}x${n}`,
    flops: 2 * n ** 3,
    runs,
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

/** conv2d forward, C in = C out = 128, HxW 32x32, 3x3 kernel, padding 1, stride 1. */
function convCase(batch: number, runs: number): Case {
  const c = 128;
  const hw = 32;
  return {
    name: `conv2d N=${batch} C=${c} ${hw}x${hw} k3 pad1`,
    flops: 2 * batch * c * hw * hw * c * 9,
    runs,
    setup: () => {
      const x = randomNormal([batch, c, hw, hw], { seed: 3 });
      const w = randomNormal([c, c, 3, 3], { seed: 4 });
      return {
        run: () => readAll(conv2d(x, w, undefined, { padding: 1 })),
        dispose: () => [x, w].forEach((t) => void t.dispose()),
      };
    },
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((p, q) => p - q);
  const h = s.length >> 1;
  return s.length % 2 ? (s[h] as number) : ((s[h - 1] as number) + (s[h] as number)) / 2;
};

function timeCase(c: Case): { gflops: number; bestGflops: number; medianMs: number; timesMs: number[] } {
  const { run, dispose } = c.setup();
  run();
  run();
  const timesMs: number[] = [];
  for (let i = 0; i < c.runs; i++) {
    const t0 = performance.now();
    run();
    timesMs.push(performance.now() - t0);
  }
  dispose();
  const medianMs = median(timesMs);
  // gflops is the figure (median run); bestGflops (fastest run) shows what the code does when nothing else competes.
  return {
    gflops: round(c.flops / medianMs / 1e6),
    bestGflops: round(c.flops / Math.min(...timesMs) / 1e6),
    medianMs: round(medianMs),
    timesMs: timesMs.map(round),
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

// ---------------------------------------------------------------------------------------------------------------
// PyTorch reference: the same shapes, timed the same way, in one python process.

const PYTHON = '/usr/bin/python3';
const PY_SCRIPT = `
import json, sys, time, statistics, torch
import torch.nn.functional as F
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)
def bench(run, runs):
    run(); run()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); run(); ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts)
out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "blas": None,
       "mkldnn": torch.backends.mkldnn.is_available(), "ms": {}, "bestMs": {}}
for line in torch.__config__.show().split(","):
    if "BLAS_INFO" in line: out["blas"] = line.split("=")[-1].strip()
with torch.no_grad():
    for c in spec["cases"]:
        if c["kind"] == "matmul":
            n = c["n"]; a = torch.randn(n, n); b = torch.randn(n, n)
            out["ms"][c["name"]], out["bestMs"][c["name"]] = bench(lambda: torch.matmul(a, b), c["runs"])
        else:
            x = torch.randn(c["batch"], 128, 32, 32); w = torch.randn(128, 128, 3, 3)
            out["ms"][c["name"]], out["bestMs"][c["name"]] = bench(lambda: F.conv2d(x, w, padding=1), c["runs"])
print(json.dumps(out))
`;

interface PyResult {
  torch: string;
  threads: number;
  blas: string | null;
  mkldnn: boolean;
  ms: Record<string, number>;
  bestMs: Record<string, number>;
}

function runPytorch(
  cases: { kind: string; name: string; n?: number; batch?: number; runs: number }[],
  threads: number,
): PyResult | { error: string } {
  const r = spawnSync(PYTHON, ['-c', PY_SCRIPT, JSON.stringify({ threads, cases })], {
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  if (r.error) return { error: `${PYTHON}: ${r.error.message}` };
  if (r.status !== 0) return { error: `${PYTHON} exited with ${r.status}: ${r.stderr.trim().split('\n').pop()}` };
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as PyResult;
  } catch {
    return { error: `could not parse the python output: ${r.stdout.slice(0, 200)}` };
  }
}

/** Which libblas Debian's alternatives point at (PyTorch's BLAS_INFO=generic means it calls that one). */
function debianBlas(): string | null {
  const r = spawnSync('readlink', ['-f', '/etc/alternatives/libblas.so.3-x86_64-linux-gnu'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// ---------------------------------------------------------------------------------------------------------------

function main(): void {
  const cases: (Case & { py: { kind: string; n?: number; batch?: number } })[] = [
    { ...matmulCase(256, 21), py: { kind: 'matmul', n: 256 } },
    { ...matmulCase(512, 11), py: { kind: 'matmul', n: 512 } },
    { ...matmulCase(1024, 7), py: { kind: 'matmul', n: 1024 } },
    { ...convCase(1, 11), py: { kind: 'conv2d', batch: 1 } },
    { ...convCase(8, 5), py: { kind: 'conv2d', batch: 8 } },
  ];
  const cpus = os.cpus();
  const defaults = configureGemm({});
  const loadBefore = os.loadavg().map(round);

  // Each case is measured in turn by us (all threads, then one) and by PyTorch (one thread, then all), so that the
  // figures compared with each other are taken close together in time on this shared machine.
  const withThreads = <T>(threads: number, fn: () => T): T => {
    configureGemm({ threads });
    try {
      return fn();
    } finally {
      configureGemm(defaults);
    }
  };
  const peerGflops = (py: PyResult | { error: string }, c: Case, best = false) => {
    const ms = 'ms' in py ? (best ? py.bestMs : py.ms)[c.name] : undefined;
    return ms ? round(c.flops / ms / 1e6) : null;
  };
  type PyOutcome = PyResult | { error: string };
  let py1 = { error: 'not run' } as PyOutcome; // the last case's, for the versions reported below
  let pyAll = { error: 'not run' } as PyOutcome;
  const results = cases.map((c) => {
    const o = timeCase(c);
    const o1 = withThreads(1, () => timeCase(c));
    const pyCase = [{ ...c.py, name: c.name, runs: c.runs }];
    py1 = runPytorch(pyCase, 1);
    pyAll = runPytorch(pyCase, cpus.length);
    const torch1 = peerGflops(py1, c);
    return {
      name: c.name,
      gflop: round(c.flops / 1e9),
      ours: { threads: defaults.threads, ...o },
      ours1Thread: o1,
      pytorch1Thread: torch1,
      pytorch1ThreadBest: peerGflops(py1, c, true),
      pytorchAllThreads: peerGflops(pyAll, c),
      ratioVsPytorch1Thread: torch1 ? round(o.gflops / torch1) : null,
    };
  });
  const kernelOnly = [256, 512, 1024].map((n, i) => gemmOnlyCase(n, [21, 11, 7][i] as number));
  const gemmKernelOnly = kernelOnly.map((c) => ({
    name: c.name,
    ours: { threads: defaults.threads, ...timeCase(c) },
    ours1Thread: withThreads(1, () => timeCase(c)),
  }));
  const loadAfter = os.loadavg().map(round);

  const mm1024 = results.find((r) => r.name === 'matmul 1024x1024x1024');
  const report = {
    bench: 'cpu',
    date: new Date().toISOString(),
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      os: `${os.platform()} ${os.release()}`,
      arch: os.arch(),
    },
    node: process.version,
    // Other processes compete for the cores; a 1-minute load average near or above the core count means the figures
    // (ours and PyTorch's alike) understate what an idle machine does.
    loadAverage1m5m15m: { before: loadBefore, after: loadAfter },
    gemmThreads: { ...defaults, ...gemmThreadStats() },
    unit: 'GFLOPS (median of the timed runs; a multiply-add counts 2 flops)',
    peer: {
      what: 'PyTorch (Debian python3-torch), same shapes, same run, each case right after ours',
      python: PYTHON,
      pytorch1Thread:
        'error' in py1
          ? { measured: false, why: py1.error }
          : { measured: true, torch: py1.torch, threads: py1.threads, blasInfo: py1.blas, mkldnn: py1.mkldnn },
      pytorchAllThreads:
        'error' in pyAll ? { measured: false, why: pyAll.error } : { measured: true, threads: pyAll.threads },
      libblas: debianBlas(),
      // BLAS_INFO=generic: torch.matmul calls whatever libblas.so.3 Debian's alternatives select (the reference BLAS
      // unless OpenBLAS or BLIS is installed), while conv2d goes through oneDNN (mkldnn) with its own AVX2/AVX-512
      // kernels. So the matmul peer here is far below the 40-50 GFLOPS an optimised sgemm reaches, and the conv peer
      // is an optimised library.
      note: 'torch.matmul -> libblas above (BLAS_INFO=generic); F.conv2d -> oneDNN when mkldnn is true',
    },
    target: {
      what: 'cpu matmul 1024 >= 0.2x PyTorch 1-thread sgemm, and >= 9 GFLOPS (issue 2)',
      matmul1024: mm1024?.ours.gflops ?? null,
      ratio: mm1024?.ratioVsPytorch1Thread ?? null,
      met: !!mm1024 && mm1024.ours.gflops >= 9 && (mm1024.ratioVsPytorch1Thread ?? 1) >= 0.2,
    },
    results,
    // Not the public API: gemm() straight into arrays allocated once (see gemmOnlyCase).
    gemmKernelOnly,
  };
  const json = JSON.stringify(report, null, 2);
  console.log(json);
  const outDir = new URL('../bench/out/', import.meta.url);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(new URL('cpu.json', outDir), `${json}\n`);
}

main();
