// Model throughput: full-size DDPM++ (DiffPure's CIFAR-10 config) and WRN-28-10, random weights,
// forward and input-gradient images/s per backend, and peak GPU pool bytes. PyTorch (Debian
// python3-torch, CPU) runs the same WRN-28-10 in the same run as the peer; DDPM++ has no PyTorch
// peer here (score_sde is not installable from this machine's registries), which the JSON states.
// Run: node scripts/build.mjs && node dist/bench-models.mjs   (BENCH_BACKENDS=cpu,webgpu; BENCH_BATCHES=1,8)

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { buildNetwork, type ModelKind, type Network } from '../src/diffpure/models.js';
import * as T from '../src/index.js';
import { manualSeed } from '../src/nn/init.js';
import { machineInfo } from './machine.js';

const backends = (process.env.BENCH_BACKENDS ?? 'cpu,webgpu').split(',');
const batches = (process.env.BENCH_BATCHES ?? '1,8').split(',').map(Number);

interface Row {
  model: string;
  backend: string;
  batch: number;
  forward_s: number;
  forward_images_per_s: number;
  grad_s: number;
  grad_images_per_s: number;
  grad_over_forward: number;
  peak_pool_bytes: number | null;
}

async function time(fn: () => T.Tensor): Promise<number> {
  const t0 = performance.now();
  const y = fn();
  await y.data(); // the readback waits for all enqueued work
  y.dispose();
  return (performance.now() - t0) / 1000;
}

function poolStats(backend: string): { peak: () => number | null; reset: () => void } {
  if (backend !== 'webgpu') return { peak: () => null, reset: () => {} };
  const b = T.webgpuBackend();
  return { peak: () => b.stats().peakBytes, reset: () => b.resetPeak() };
}

async function benchModel(
  kind: ModelKind,
  label: string,
  config: unknown,
  backend: string,
  imgShape: number[],
): Promise<Row[]> {
  await T.setBackend(backend);
  manualSeed(0);
  const t0 = performance.now();
  const net: Network = T.tidy(() => buildNetwork(kind, config));
  net.module.eval();
  console.error(
    `${label} on ${backend}: built ${net.module.numParameters()} parameters in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const rows: Row[] = [];
  for (const batch of batches) {
    const x = T.randomUniform([batch, ...imgShape], { seed: 1 });
    // ddpmpp receives labels = 999 t; t = 0.1 is DiffPure's t*
    const t = net.needsTime ? T.full([batch], 999 * 0.1) : undefined;
    const stats = poolStats(backend);
    const fwd = () => T.noGrad(() => net.forward(x, t));
    const loss = (xx: T.Tensor) => T.sum(net.forward(xx, t));
    const gradFn = () => T.tidy(() => T.grad(loss)(x));
    await time(fwd); // warm-up: pipelines, pool
    stats.reset();
    const f = await time(fwd);
    await time(gradFn);
    const g = await time(gradFn);
    const row: Row = {
      model: label,
      backend,
      batch,
      forward_s: f,
      forward_images_per_s: batch / f,
      grad_s: g,
      grad_images_per_s: batch / g,
      grad_over_forward: g / f,
      peak_pool_bytes: stats.peak(),
    };
    console.error(JSON.stringify(row));
    rows.push(row);
    x.dispose();
    t?.dispose();
  }
  net.module.dispose();
  return rows;
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
for (const backend of backends) {
  try {
    await T.initBackend(backend);
  } catch (e) {
    console.error(`skipping ${backend}: ${e instanceof Error ? e.message : e}`);
    continue;
  }
  rows.push(
    ...(await benchModel(
      'ddpmpp',
      'DDPM++ cifar10 deep continuous (nf 128, 8 blocks)',
      undefined,
      backend,
      [3, 32, 32],
    )),
  );
  rows.push(...(await benchModel('wrn', 'WideResNet-28-10', undefined, backend, [3, 32, 32])));
}
const result = {
  bench: 'models',
  machine: { ...machineInfo(), adapter: backends.includes('webgpu') ? await T.describeDefaultAdapter() : null },
  note: 'seconds are wall time of one call after one warm-up call, read back to the host; images/s = batch / seconds',
  rows,
  peer: {
    'WideResNet-28-10 PyTorch cpu': torchPeer(),
    'DDPM++ PyTorch': 'not measured: score_sde_pytorch is not installable from the registries this machine reaches',
  },
};
mkdirSync('bench/out', { recursive: true });
writeFileSync('bench/out/models.json', `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
