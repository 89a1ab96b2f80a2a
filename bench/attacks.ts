// Attack throughput: gradient evaluations (or queries) per second and seconds per image for APGD-CE, FAB-T and
// Square on the attacks fixture's WideResNet-16-2 (../shared/fixtures/attacks, 3x32x32), EOT batching on and off
// against a stochastic twin of it, and one forward and one input gradient of DiffPure's defended classifier (the ddpmpp
// fixture's score model, nf 32, in front; t* 0.1, both gradient modes). Peer, in the same run: the official
// fra31/auto-attack 6482e4d attacks on PyTorch (Debian python3-torch, CPU, same thread count) on the same network,
// when AUTOATTACK_DIR points at a directory holding its autoattack/*.py at 6482e4d (e.g. for each f in
// `git ls-tree --name-only 6482e4d autoattack/`: `git show 6482e4d:$f > DIR/$f`);
// otherwise the peer is null and the JSON says why. The adaptive attacks against DiffPure (PGD-EOT, BPDA+EOT,
// StAdv at the paper's settings, extrapolated) are bench/attacks-adaptive.ts.
// Run: node scripts/build.mjs && node dist/bench-attacks.mjs   (JSON on stdout and in bench/out/attacks.json)
//
// Environment: BENCH_ITERS (APGD/FAB iterations timed, default 10; seconds per image are extrapolated to the
// official 100 and labelled so), BENCH_QUERIES (Square, default 100), BENCH_BATCHES (default "1,16"),
// BENCH_BACKENDS (default "cpu"; add webgpu for lavapipe or a real GPU), BENCH_DIFFPURE (default 1: run the
// defended classifier case), BENCH_THREADS (ours and the peer's, default 2).

// the entry registers every backend (webgpu included), which the imports of single modules below do not
import '../src/index.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { apgd } from '../src/diffpure/attacks/apgd.js';
import { fabTargeted } from '../src/diffpure/attacks/fab.js';
import { crossEntropyLoss } from '../src/diffpure/attacks/losses.js';
import { type AttackModel, logitsAndGrad, logitsOf } from '../src/diffpure/attacks/model.js';
import { mixKey } from '../src/diffpure/attacks/random.js';
import { square } from '../src/diffpure/attacks/square.js';
import { defendedClassifier, type GradientMode } from '../src/diffpure/defense.js';
import { loadNetwork } from '../src/diffpure/models.js';
import { configureGemm } from '../src/tensor/cpu/gemm.js';
import { cpuKernelKind } from '../src/tensor/cpu/wasm/select.js';
import { add, concat, initBackend, mul, randomNormal } from '../src/tensor/index.js';
import { attackImages, envList, machineInfo, pythonPeer, timedAsync } from './machine.js';

const FIX = join(process.cwd(), '..', 'shared', 'fixtures');
const ATT = join(FIX, 'attacks');
const iters = Number(process.env.BENCH_ITERS ?? 10);
const queries = Number(process.env.BENCH_QUERIES ?? 100);
const batches = envList('BENCH_BATCHES', '1,16').map(Number);
const backends = envList('BENCH_BACKENDS', 'cpu');
const threads = Number(process.env.BENCH_THREADS ?? 2);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

const images = (b: number) => attackImages(ATT, b);

const PY = String.raw`
import json, sys, time, torch, torch.nn as nn, torch.nn.functional as F
spec = json.loads(sys.argv[1]); torch.set_num_threads(spec["threads"]); sys.path.insert(0, spec["autoattack"])
from autoattack.autopgd_base import APGDAttack
from autoattack.fab_pt import FABAttack_PT
from autoattack.square import SquareAttack
class Block(nn.Module):  # RobustBench wide_resnet.py BasicBlock, written out (the package pulls in timm)
    def __init__(s, i, o, stride):
        super().__init__()
        s.bn1 = nn.BatchNorm2d(i); s.relu1 = nn.ReLU(inplace=True); s.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        s.bn2 = nn.BatchNorm2d(o); s.relu2 = nn.ReLU(inplace=True); s.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        s.equal = i == o; s.convShortcut = None if s.equal else nn.Conv2d(i, o, 1, stride, 0, bias=False)
    def forward(s, x):
        if not s.equal: x = s.relu1(s.bn1(x)); out = x
        else: out = s.relu1(s.bn1(x))
        out = s.conv2(s.relu2(s.bn2(s.conv1(out if s.equal else x))))
        return torch.add(x if s.equal else s.convShortcut(x), out)
class Group(nn.Module):
    def __init__(s, n, i, o, stride):
        super().__init__(); s.layer = nn.Sequential(*[Block(i if k == 0 else o, o, stride if k == 0 else 1) for k in range(n)])
    def forward(s, x): return s.layer(x)
class WRN(nn.Module):
    def __init__(s, depth=16, w=2, nc=10):
        super().__init__(); c = [16, 16 * w, 32 * w, 64 * w]; n = (depth - 4) // 6
        s.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False); s.block1 = Group(n, c[0], c[1], 1); s.block2 = Group(n, c[1], c[2], 2)
        s.block3 = Group(n, c[2], c[3], 2); s.bn1 = nn.BatchNorm2d(c[3]); s.relu = nn.ReLU(inplace=True); s.fc = nn.Linear(c[3], nc); s.nC = c[3]
    def forward(s, x):
        out = s.relu(s.bn1(s.block3(s.block2(s.block1(s.conv1(x))))))
        return s.fc(F.avg_pool2d(out, 8).view(-1, s.nC))
net = WRN(); sd = torch.load(spec["weights"], map_location="cpu")["state_dict"]
net.load_state_dict({k[len("module."):]: v for k, v in sd.items()}); net.eval()
import numpy as np
X = torch.tensor(np.load(spec["x"])); Y = torch.tensor(np.load(spec["y"]))
out = []
for b in spec["batches"]:
    idx = [i % 16 for i in range(b)]; x = X[idx].clone(); y = Y[idx].clone()
    a = APGDAttack(net, n_restarts=1, n_iter=spec["iters"], eps=0.025, norm="Linf", eot_iter=1, seed=0, device="cpu", loss="ce")
    t0 = time.perf_counter(); a.perturb(x, y); t = time.perf_counter() - t0
    out.append({"attack": "apgd-ce", "batch": b, "seconds": t})
    f = FABAttack_PT(net, n_restarts=1, n_iter=spec["iters"], eps=0.025, seed=0, norm="Linf", device="cpu", n_target_classes=1); f.targeted = True
    t0 = time.perf_counter(); f.perturb(x, y); t = time.perf_counter() - t0
    out.append({"attack": "fab-t", "batch": b, "seconds": t})
    s = SquareAttack(net, p_init=.8, n_queries=spec["queries"], eps=0.025, norm="Linf", n_restarts=1, seed=0, device="cpu", resc_schedule=False)
    t0 = time.perf_counter(); s.perturb(x, y); t = time.perf_counter() - t0
    out.append({"attack": "square", "batch": b, "seconds": t})
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": out}))
`;

function peer(): Record<string, unknown> {
  const dir = process.env.AUTOATTACK_DIR;
  if (!dir) return { measured: false, why: 'AUTOATTACK_DIR is not set (a checkout of fra31/auto-attack at 6482e4d)' };
  const spec = {
    autoattack: dir,
    threads,
    iters,
    queries,
    batches,
    weights: join(ATT, 'model.pt'),
    x: join(ATT, 'x.npy'),
    y: join(ATT, 'y.npy'),
  };
  return pythonPeer(PY, spec, threads, 3_600_000);
}

async function main(): Promise<void> {
  configureGemm({ threads });
  const results: Record<string, unknown>[] = [];
  const report = {
    bench: 'attacks',
    date: new Date().toISOString(),
    machine: machineInfo(),
    cpuKernels: cpuKernelKind(),
    threads,
    note:
      'gradient evaluations = images x gradients (APGD: nIter + 1 per image; FAB-T: one gradient and one forward per ' +
      'iteration; Square: one forward per query). secondsPerImage100 extrapolates the timed iterations to the official 100.',
    results,
    pytorch: null as Record<string, unknown> | null,
  };
  const save = () => {
    mkdirSync('bench/out', { recursive: true });
    writeFileSync('bench/out/attacks.json', `${JSON.stringify(report, null, 2)}\n`);
  };
  for (const backend of backends) {
    await initBackend(backend);
    const wrn = await loadNetwork(
      'wrn',
      { depth: 16, widen_factor: 2, num_classes: 10 },
      join(ATT, 'model.pt'),
      backend,
    );
    const model: AttackModel = { backend, classify: (v) => wrn.forward(v) };
    for (const b of batches) {
      const { x, y } = images(b);
      // all images attacked: labels from the clean prediction would drop the two the network gets wrong; the
      // official APGD skips them too, so both sides do the same work
      const loadBefore = os.loadavg()[0];
      const a = await timedAsync(() => apgd(model, x, y, { eps: 0.025, nIter: iters, seed: 0 }));
      results.push({
        backend,
        attack: 'apgd-ce',
        batch: b,
        iterations: iters,
        seconds: r3(a.seconds),
        secondsPerImage100: r3((a.seconds / b) * (100 / iters)),
        loadavg: [loadBefore, os.loadavg()[0]],
      });
      process.stderr.write(`${backend} apgd-ce batch ${b}: ${a.seconds.toFixed(2)} s for ${iters} iterations\n`);
      const f = await timedAsync(() => fabTargeted(model, x, y, { eps: 0.025, nIter: iters, nTargetClasses: 1 }));
      results.push({
        backend,
        attack: 'fab-t',
        batch: b,
        iterations: iters,
        targets: 1,
        seconds: r3(f.seconds),
        secondsPerImage100: r3((f.seconds / b) * (100 / iters)),
      });
      process.stderr.write(`${backend} fab-t batch ${b}: ${f.seconds.toFixed(2)} s\n`);
      const s = await timedAsync(() => square(model, x, y, { eps: 0.025, nQueries: queries, seed: 0 }));
      results.push({
        backend,
        attack: 'square',
        batch: b,
        queries,
        seconds: r3(s.seconds),
        queriesPerSecond: r3((queries * b) / s.seconds),
      });
      process.stderr.write(`${backend} square batch ${b}: ${s.seconds.toFixed(2)} s\n`);
      save();
    }
    // EOT batching: 8 EOT samples of a stochastic twin (input noise std 0.05 from the row keys), 2 images
    const noisy: AttackModel = {
      backend,
      classify: (v, keys) =>
        wrn.forward(
          add(
            v,
            mul(
              concat(
                keys.map((k) => randomNormal([1, 3, 32, 32], { seed: k, backend })),
                0,
              ),
              0.05,
            ),
          ),
        ),
    };
    const { x: x2, y: y2 } = images(2);
    for (const eotBatch of [1, 8]) {
      const e = await timedAsync(() => apgd(noisy, x2, y2, { eps: 0.025, nIter: 2, eotIter: 8, eotBatch, seed: 0 }));
      results.push({
        backend,
        attack: 'apgd-ce eot 8',
        batch: 2,
        eotBatch,
        iterations: 2,
        seconds: r3(e.seconds),
        gradientEvaluationsPerSecond: r3((3 * 8 * 2) / e.seconds),
      });
      process.stderr.write(`${backend} apgd eot 8 (eotBatch ${eotBatch}): ${e.seconds.toFixed(2)} s\n`);
      save();
    }
    if (process.env.BENCH_DIFFPURE !== '0') {
      const meta = JSON.parse((await import('node:fs')).readFileSync(join(FIX, 'ddpmpp', 'meta.json'), 'utf8'));
      const score = await loadNetwork('ddpmpp', meta.config, join(FIX, 'ddpmpp', 'checkpoint.pth'), backend);
      const { x: x1, y: y1 } = images(1);
      for (const gradient of ['continuous', 'exact'] as GradientMode[]) {
        const dp: AttackModel = {
          backend,
          classify: defendedClassifier({
            model: (v, t) => score.forward(v, t),
            scoreType: 'score_sde',
            tStar: 0.1,
            gradient,
            classifier: (v) => wrn.forward(v),
          }),
        };
        // timed directly: an APGD run here measured only its clean check whenever the defended classifier got the
        // image wrong (APGD skips those), which this one-image bench cannot rule out
        const keys = [mixKey(0, ['bench'])];
        const f = await timedAsync(() => logitsOf(dp, x1, keys));
        const g = await timedAsync(() => logitsAndGrad(dp, x1, keys, (z, k) => crossEntropyLoss(z, k, y1)));
        results.push({
          backend,
          attack: `DiffPure (ddpmpp fixture nf 32, t* 0.1, ${gradient}): one purify+classify, one input gradient`,
          batch: 1,
          secondsPerForward: r3(f.seconds),
          secondsPerGradient: r3(g.seconds),
        });
        process.stderr.write(
          `${backend} DiffPure ${gradient}: forward ${f.seconds.toFixed(1)} s, gradient ${g.seconds.toFixed(1)} s\n`,
        );
        save();
      }
      score.module.dispose();
    }
    wrn.module.dispose();
  }
  report.pytorch = peer();
  const p = report.pytorch as { measured: boolean; results?: { attack: string; batch: number; seconds: number }[] };
  if (p.measured && p.results) {
    for (const r of results) {
      const q = p.results.find((z) => z.attack === r.attack && z.batch === r.batch);
      if (q && r.backend === 'cpu') r.speedVsPytorch = r3(q.seconds / (r.seconds as number));
    }
  }
  save();
  console.log(JSON.stringify(report, null, 2));
}

await main();
