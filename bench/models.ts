// Model throughput: full-size DDPM++ (DiffPure's CIFAR-10 config) and WRN-28-10, random weights,
// forward and input-gradient images/s per backend and batch, and the peak bytes of live tensors
// (webgpu: the pool's counters; cpu: the counting cpu backend). PyTorch (Debian python3-torch,
// CPU) runs the same WRN-28-10 in the same run as the peer; DDPM++ has no PyTorch peer here
// (score_sde is not installable from this machine's registries), which the JSON states.
// Each model is warmed up once at batch 1 (pipelines, JIT, pool); every row is one timed call.
// The JSON is rewritten after each row, so a long run keeps what it has measured.
// Run: node scripts/build.mjs && node dist/bench-models.mjs
//   BENCH_BACKENDS=cpu,webgpu  BENCH_MODELS=ddpmpp,wrn  BENCH_BATCHES=1,8,64
//   BENCH_MEM_GIB=0.75 x RAM: a batch's gradient is skipped (and the row says why) when the gradient
//   peak per image measured at a smaller batch, times the batch, would pass this budget (host RAM:
//   right for cpu and lavapipe; on a hardware GPU set it to the device's memory)
//   BENCH_TORCH=1  BENCH_OUT=bench/out/models.json

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { buildNetwork, type ModelKind, type Network } from '../src/diffpure/models.js';
import * as T from '../src/index.js';
import { manualSeed } from '../src/nn/init.js';
import { envList, machineInfo } from './machine.js';
import { meter, timed, useMeteredBackend } from './meter.js';

const backends = envList('BENCH_BACKENDS', 'cpu,webgpu');
const models = envList('BENCH_MODELS', 'ddpmpp,wrn');
const batches = envList('BENCH_BATCHES', '1,8,64').map(Number);
const memBudget = Number(process.env.BENCH_MEM_GIB ?? (0.75 * os.totalmem()) / 2 ** 30) * 2 ** 30;
const withTorch = process.env.BENCH_TORCH !== '0';
const outFile = process.env.BENCH_OUT ?? 'bench/out/models.json';

const LABELS: Record<string, string> = {
  ddpmpp: 'DDPM++ cifar10 deep continuous (nf 128, 8 blocks)',
  wrn: 'WideResNet-28-10',
};

interface Row {
  model: string;
  backend: string;
  batch: number;
  forward_s: number;
  forward_images_per_s: number;
  forward_peak_bytes: number;
  grad_s: number | null;
  grad_images_per_s: number | null;
  grad_over_forward: number | null;
  grad_peak_bytes: number | null;
  grad_skipped?: string;
  weight_bytes: number;
  loadavg_1m: number;
}

/** Wall seconds of one call and the peak bytes above what was live before it. */
async function measure(backend: string, fn: () => T.Tensor): Promise<{ seconds: number; peak: number }> {
  const r = await timed(meter(backend), fn);
  return { seconds: r.seconds, peak: r.peakBytes };
}

async function benchModel(
  kind: ModelKind,
  backend: string,
  imgShape: number[],
  done: (row: Row) => void,
): Promise<void> {
  const label = LABELS[kind] ?? kind;
  await useMeteredBackend(backend);
  manualSeed(0);
  const before = meter(backend).live();
  const t0 = performance.now();
  const net: Network = T.tidy(() => buildNetwork(kind, undefined));
  net.module.eval();
  const weightBytes = meter(backend).live() - before;
  console.error(
    `${label} on ${backend}: built ${net.module.numParameters()} parameters in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const inputs = (batch: number) => {
    const x = T.randomUniform([batch, ...imgShape], { seed: 1 });
    // ddpmpp receives labels = 999 t; t = 0.1 is DiffPure's t*
    const t = net.needsTime ? T.full([batch], 999 * 0.1) : undefined;
    return { x, t };
  };
  const fwd = (x: T.Tensor, t?: T.Tensor) => () => T.tidy(() => T.noGrad(() => net.forward(x, t)));
  const gradFn = (x: T.Tensor, t?: T.Tensor) => () =>
    T.tidy(() => T.grad((xx: T.Tensor) => T.sum(net.forward(xx, t)))(x));
  // warm-up at batch 1; its gradient peak starts the per-image estimate the memory budget uses
  let gradBytesPerImage: number;
  {
    const { x, t } = inputs(1);
    await measure(backend, fwd(x, t));
    gradBytesPerImage = (await measure(backend, gradFn(x, t))).peak;
    x.dispose();
    t?.dispose();
  }
  for (const batch of batches) {
    const { x, t } = inputs(batch);
    const f = await measure(backend, fwd(x, t));
    const projected = gradBytesPerImage * batch;
    const skip = projected > memBudget;
    const g = skip ? null : await measure(backend, gradFn(x, t));
    if (g) gradBytesPerImage = Math.max(gradBytesPerImage, g.peak / batch);
    const row: Row = {
      model: label,
      backend,
      batch,
      forward_s: f.seconds,
      forward_images_per_s: batch / f.seconds,
      forward_peak_bytes: f.peak,
      grad_s: g?.seconds ?? null,
      grad_images_per_s: g ? batch / g.seconds : null,
      grad_over_forward: g ? g.seconds / f.seconds : null,
      grad_peak_bytes: g?.peak ?? null,
      ...(skip && {
        grad_skipped: `projected ${(projected / 2 ** 30).toFixed(1)} GiB (the largest per-image peak at a smaller batch x ${batch}) > budget ${(memBudget / 2 ** 30).toFixed(1)} GiB`,
      }),
      weight_bytes: weightBytes,
      loadavg_1m: os.loadavg()[0] as number,
    };
    console.error(JSON.stringify(row));
    done(row);
    x.dispose();
    t?.dispose();
  }
  net.module.dispose();
}

/** The same WRN-28-10 in PyTorch (RobustBench's layout), 1 and all threads, images/s. */
function torchPeer(): unknown {
  const script = `
import json, time, torch, torch.nn as nn, torch.nn.functional as F
class Block(nn.Module):
    def __init__(s, i, o, st):
        super().__init__(); s.bn1=nn.BatchNorm2d(i); s.conv1=nn.Conv2d(i,o,3,st,1,bias=False)
        s.bn2=nn.BatchNorm2d(o); s.conv2=nn.Conv2d(o,o,3,1,1,bias=False)
        s.sc = None if (i==o and st==1) else nn.Conv2d(i,o,1,st,0,bias=False)
    def forward(s, x):
        o = F.relu(s.bn1(x)); y = s.conv2(F.relu(s.bn2(s.conv1(o))))
        return y + (x if s.sc is None else s.sc(o))
class WRN(nn.Module):
    def __init__(s, d=28, k=10):
        super().__init__(); n=(d-4)//6; w=[16,16*k,32*k,64*k]; s.conv1=nn.Conv2d(3,16,3,1,1,bias=False)
        L=[]
        for g,st in zip(range(3),[1,2,2]):
            for b in range(n): L.append(Block(w[g] if b==0 else w[g+1], w[g+1], st if b==0 else 1))
        s.blocks=nn.Sequential(*L); s.bn=nn.BatchNorm2d(w[3]); s.fc=nn.Linear(w[3],10)
    def forward(s,x): return s.fc(F.adaptive_avg_pool2d(F.relu(s.bn(s.blocks(s.conv1(x)))),1).flatten(1))
out = {}
for threads in [1, ${os.cpus().length}]:
    torch.set_num_threads(threads); m = WRN().eval()
    for b in ${JSON.stringify(batches)}:
        x = torch.rand(b,3,32,32)
        with torch.no_grad(): m(x)
        t=time.perf_counter()
        with torch.no_grad(): m(x)
        f=time.perf_counter()-t
        xg = x.clone().requires_grad_(True); m(xg).sum().backward()
        xg = x.clone().requires_grad_(True); t=time.perf_counter(); m(xg).sum().backward(); g=time.perf_counter()-t
        out[f"threads{threads}_batch{b}"] = {"forward_images_per_s": b/f, "grad_images_per_s": b/g}
print(json.dumps({"torch": torch.__version__, **out}))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 1_800_000 });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' ') };
  return JSON.parse(r.stdout);
}

const rows: Row[] = [];
let peer: Record<string, unknown> = {
  'DDPM++ PyTorch': 'not measured: score_sde_pytorch is not installable from the registries this machine reaches',
};
let adapter: unknown = null;
function write(): void {
  const result = {
    bench: 'models',
    machine: { ...machineInfo(), adapter },
    note: 'seconds are wall time of one call read back to the host, after one warm-up call of forward and gradient at batch 1; images/s = batch / seconds; peak bytes are above what was live before the call (the weights, the input); grad null: not timed at that batch, grad_skipped says why',
    rows,
    peer,
  };
  mkdirSync('bench/out', { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
}
if (withTorch && models.includes('wrn')) {
  peer = { ...peer, 'WideResNet-28-10 PyTorch cpu': torchPeer() };
  write();
}
for (const backend of backends) {
  try {
    await T.initBackend(backend);
  } catch (e) {
    console.error(`skipping ${backend}: ${e instanceof Error ? e.message : e}`);
    continue;
  }
  if (backend === 'webgpu') adapter = await T.describeDefaultAdapter();
  for (const kind of models) {
    await benchModel(kind as ModelKind, backend, [3, 32, 32], (row) => {
      rows.push(row);
      write();
    });
  }
}
write();
console.log(readFileSync(outFile, 'utf8'));
