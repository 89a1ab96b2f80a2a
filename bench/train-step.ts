// Training-step benchmark on cpu: forward, backward to every parameter and an Adam update, for the two models this
// project trains on a CPU (issue 13): a small DDPM++ (score_sde NCSN++, nf 32, ch_mult (1, 2, 2), 1 res block,
// attention at 16, 1x32x32) and a WideResNet-16-4 at 28x28x1. PyTorch (Debian python3-torch) runs the same step in
// the same run, with the same thread count.
// Run: node scripts/build.mjs && node dist/bench-train-step.mjs   (JSON on stdout and in bench/out/train-step.json)
//
// Effective GFLOPS = FLOPs / seconds, FLOPs = 2 x the multiply-adds of every conv2d, conv2dInput, conv2dWeight and
// matmul primitive the step runs (forward and backward, counted by this bench from the shapes); elementwise work,
// normalisation and the optimizer are not counted, so the figure is the rate at which the step gets its convolution
// and matmul work done. The same count is used for PyTorch's time.
//
// Losses: the WRN takes cross-entropy on random labels; the DDPM++ a mean squared error between its output and a
// random target at random times (the cost of score_sde's DSM loss up to a few elementwise ops).
// PyTorch peer: the WRN twin is RobustBench's WideResNet class written out below (input channels 1, global average
// pooling, as ours). NCSN++ is score_sde's own models/ncsnpp.py, used when SCORE_SDE_DIR points at a checkout of
// yang-song/score_sde_pytorch (this project does not vendor it); otherwise that peer is null and the JSON says why.
//
// Environment: BENCH_STEPS (timed steps, default 3, after 2 warm-up steps), BENCH_MODELS (ddpmpp-small,wrn-16-4),
// BENCH_DDPMPP_BATCH (default 32), BENCH_WRN_BATCH (default 64), BENCH_THREADS (default "2,1": ours and the peer's).

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import * as T from '../src/index.js';
import { manualSeed } from '../src/nn/init.js';
import { DDPMPP_CIFAR10_DEEP_CONTINUOUS, NCSNpp, ncsnppConfigFromJson } from '../src/nn/models/ncsnpp.js';
import { WideResNet } from '../src/nn/models/wrn.js';
import type { Module, Parameter } from '../src/nn/module.js';
import { Adam } from '../src/nn/optim/index.js';
import type { CpuBackend } from '../src/tensor/cpu/backend.js';
import { configureGemm } from '../src/tensor/cpu/gemm.js';
import { cpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { envList, machineInfo, pythonPeer } from './machine.js';

const steps = Number(process.env.BENCH_STEPS ?? 3);
const models = envList('BENCH_MODELS', 'ddpmpp-small,wrn-16-4');
const threadList = envList('BENCH_THREADS', '2,1').map(Number);
const batches: Record<string, number> = {
  'ddpmpp-small': Number(process.env.BENCH_DDPMPP_BATCH ?? 32),
  'wrn-16-4': Number(process.env.BENCH_WRN_BATCH ?? 64),
};

/** score_sde's config for the small DDPM++ (the JSON score_sde's own code reads). */
function smallDdpmppJson() {
  const j = structuredClone(DDPMPP_CIFAR10_DEEP_CONTINUOUS);
  Object.assign(j.model, { nf: 32, ch_mult: [1, 2, 2], num_res_blocks: 1, attn_resolutions: [16], dropout: 0 });
  Object.assign(j.data, { num_channels: 1, image_size: 32 });
  return j;
}

interface Setup {
  net: Module;
  /** The scalar loss of one batch (forward only; the step differentiates it). */
  loss: () => T.Tensor;
  inputs: T.Tensor[];
}

function setup(model: string, batch: number): Setup {
  manualSeed(0);
  if (model === 'ddpmpp-small') {
    const net = new NCSNpp(ncsnppConfigFromJson(smallDdpmppJson() as never));
    const x = T.randomNormal([batch, 1, 32, 32], { seed: 1 });
    const target = T.randomNormal([batch, 1, 32, 32], { seed: 2 });
    const t = T.affine(T.randomUniform([batch], { seed: 3 }), 999, 0);
    return { net, inputs: [x, target, t], loss: () => T.mean(T.square(T.sub(net.forward(x, t), target))) };
  }
  const net = new WideResNet({ depth: 16, widen_factor: 4, num_classes: 10, in_channels: 1 });
  const x = T.randomUniform([batch, 1, 28, 28], { seed: 1 });
  const labels = Array.from({ length: batch }, (_, i) => (i * 7) % 10);
  const onehot = T.fromArray(
    labels.flatMap((l) => Array.from({ length: 10 }, (_, k) => +(k === l))),
    [batch, 10],
  );
  const loss = () => T.neg(T.mean(T.sum(T.mul(onehot, T.logSoftmax(net.forward(x), -1)), [1])));
  return { net, inputs: [x, onehot], loss };
}

/** Multiply-adds of the matmul and convolution primitives the cpu backend runs while fn does. */
function countMacs(fn: () => void): number {
  const cpu = T.getBackend('cpu') as unknown as CpuBackend;
  const run = cpu.run.bind(cpu);
  let macs = 0;
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  cpu.run = (prim, inputs, attrs, outShape, outDtype) => {
    const a = attrs as { groups?: number; wShape?: number[] };
    const sh = inputs.map((i) => i.shape);
    if (prim === 'matmul') {
      const [x, y] = sh as [number[], number[]];
      macs += (size(outShape) / (y.at(-1) as number)) * (x.at(-1) as number) * (y.at(-1) as number);
    } else if (prim === 'conv2d') {
      const w = sh[1] as number[];
      macs += size(outShape) * size(w.slice(1)); // every output: Cin/groups * kh * kw
    } else if (prim === 'conv2dInput') {
      const [gy, w] = sh as [number[], number[]];
      macs += size(gy) * size(w.slice(1));
    } else if (prim === 'conv2dWeight') {
      const gy = sh[1] as number[];
      macs += size(gy) * size((a.wShape as number[]).slice(1));
    }
    return run(prim, inputs, attrs, outShape, outDtype);
  };
  try {
    fn();
  } finally {
    cpu.run = run;
  }
  return macs;
}

/** One training step: gradients of the loss to every parameter, then Adam. */
function trainStep(s: Setup, params: Parameter[], opt: Adam): void {
  for (const p of params) p.value.requiresGrad = true;
  const grads = T.tidy(() => {
    const loss = s.loss();
    return T.backward(
      [loss],
      [T.onesLike(loss)],
      params.map((p) => p.value),
    );
  });
  opt.update(grads);
  for (const g of grads) g.dispose();
}

const PY = `
import json, sys, time, statistics, torch, torch.nn as nn, torch.nn.functional as F
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"]); torch.manual_seed(0)

class Block(nn.Module):  # RobustBench's BasicBlock
    def __init__(s, i, o, stride):
        super().__init__()
        s.bn1 = nn.BatchNorm2d(i); s.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        s.bn2 = nn.BatchNorm2d(o); s.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        s.eq = i == o; s.short = None if s.eq else nn.Conv2d(i, o, 1, stride, 0, bias=False)
    def forward(s, x):
        a = F.relu(s.bn1(x))
        out = s.conv2(F.relu(s.bn2(s.conv1(a))))
        return (x if s.eq else s.short(a)) + out

class WRN(nn.Module):  # RobustBench's WideResNet, 1 input channel, global average pooling
    def __init__(s, depth, widen, ncls, cin):
        super().__init__()
        n = (depth - 4) // 6; ch = [16, 16 * widen, 32 * widen, 64 * widen]
        s.conv1 = nn.Conv2d(cin, ch[0], 3, 1, 1, bias=False)
        mk = lambda i, o, st: nn.Sequential(*[Block(i if k == 0 else o, o, st if k == 0 else 1) for k in range(n)])
        s.b1 = mk(ch[0], ch[1], 1); s.b2 = mk(ch[1], ch[2], 2); s.b3 = mk(ch[2], ch[3], 2)
        s.bn = nn.BatchNorm2d(ch[3]); s.fc = nn.Linear(ch[3], ncls)
    def forward(s, x):
        o = F.relu(s.bn(s.b3(s.b2(s.b1(s.conv1(x))))))
        return s.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))

B = spec["batch"]
if spec["model"] == "wrn-16-4":
    net = WRN(16, 4, 10, 1); x = torch.rand(B, 1, 28, 28); y = torch.arange(B) * 7 % 10
    loss_fn = lambda: F.cross_entropy(net(x), y)
else:
    sys.path.insert(0, spec["score_sde"])
    from models import ncsnpp  # noqa: registers the model
    from models import utils as mutils
    class C(dict):
        __getattr__ = dict.__getitem__
    cfg = json.loads(spec["config"])
    config = C(model=C(cfg["model"]), data=C(cfg["data"]), training=C(cfg["training"]))
    config.device = "cpu"
    net = mutils.get_model("ncsnpp")(config)
    x = torch.randn(B, 1, 32, 32); tgt = torch.randn(B, 1, 32, 32); t = torch.rand(B) * 999
    loss_fn = lambda: ((net(x, t) - tgt) ** 2).mean()
net.train()
opt = torch.optim.Adam(net.parameters(), lr=1e-4)
def step():
    opt.zero_grad(set_to_none=True); loss_fn().backward(); opt.step()
step(); step()
ts = []
for _ in range(spec["steps"]):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": statistics.median(ts), "all": ts}))
`;

function pytorch(model: string, batch: number, threads: number): Record<string, unknown> {
  const scoreSde = process.env.SCORE_SDE_DIR;
  if (model === 'ddpmpp-small' && !scoreSde) {
    return { measured: false, why: 'SCORE_SDE_DIR is not set (a checkout of yang-song/score_sde_pytorch)' };
  }
  const spec = { model, batch, threads, steps, score_sde: scoreSde, config: JSON.stringify(smallDdpmppJson()) };
  return pythonPeer(PY, spec, threads, 1_800_000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

function main(): void {
  const out: Record<string, unknown>[] = [];
  const report = {
    bench: 'train-step',
    date: new Date().toISOString(),
    machine: machineInfo(),
    cpuKernels: cpuKernelKind(),
    flops: 'FLOPs = 2 x multiply-adds of conv2d / conv2dInput / conv2dWeight / matmul primitives in one step (counted)',
    results: out,
  };
  const defaults = configureGemm({});
  for (const model of models) {
    const batch = batches[model] as number;
    const s = setup(model, batch);
    s.net.train();
    const params = s.net.parameterSlots();
    const opt = new Adam(params, { lr: 1e-4 });
    const macs = countMacs(() => trainStep(s, params, opt));
    const flops = 2 * macs;
    for (const threads of threadList) {
      configureGemm({ threads });
      const loadBefore = os.loadavg()[0];
      trainStep(s, params, opt);
      trainStep(s, params, opt);
      const times: number[] = [];
      for (let i = 0; i < steps; i++) {
        const t0 = performance.now();
        trainStep(s, params, opt);
        times.push((performance.now() - t0) / 1000);
      }
      const sec = median(times);
      process.stderr.write(
        `${model} batch ${batch}, ${threads} thread(s): ${sec.toFixed(2)} s per step; running PyTorch\n`,
      );
      const peer = pytorch(model, batch, threads);
      const peerSec = peer.measured ? (peer.seconds as number) : null;
      const row = {
        model,
        batch,
        threads,
        parameters: params.reduce((a, p) => a + p.value.size, 0),
        gflopPerStep: r3(flops / 1e9),
        seconds: r3(sec),
        allSeconds: times.map(r3),
        imagesPerSecond: r3(batch / sec),
        effectiveGflops: r3(flops / sec / 1e9),
        pytorch: peer,
        pytorchImagesPerSecond: peerSec ? r3(batch / peerSec) : null,
        pytorchEffectiveGflops: peerSec ? r3(flops / peerSec / 1e9) : null,
        speedVsPytorch: peerSec ? r3(peerSec / sec) : null,
        loadavg1mBefore: loadBefore,
        loadavg1mAfter: os.loadavg()[0],
      };
      out.push(row);
      mkdirSync('bench/out', { recursive: true });
      writeFileSync('bench/out/train-step.json', `${JSON.stringify(report, null, 2)}\n`);
    }
    opt.dispose();
  }
  configureGemm(defaults);
  console.log(JSON.stringify(report, null, 2));
}

main();
