// The `diffpure` command line: one binary, subcommands, --help on each, --json for machines.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readNpy, writeNpy, writeSafetensors } from '../nn/io/index.js';
import { buildShapeOnly } from '../nn/meta.js';
import { currentConfig } from '../tensor/cpu/gemm.js';
import { cpuKernelsInfo } from '../tensor/cpu/wasm/select.js';
import { fromArray, getBackend, initBackend, registeredBackends, tidy } from '../tensor/index.js';
import { describeDefaultAdapter, noAdapterHint } from '../wgsl/index.js';
import { runAutoAttack } from './attack-command.js';
import { fitSineDemo } from './demo.js';
import { DEFAULT_PRESET, PRESETS } from './eval/protocol.js';
import { presetList, runEvalCommand, runMergeCommand } from './eval-command.js';
import { buildModule, checkConfig, checkpointStateDict, loadNetwork, MODEL_KINDS, type ModelKind } from './models.js';
import { runPurify } from './purify-command.js';
import { runTrain } from './train-command.js';

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  /** Number of positional arguments the command takes ('many': one or more). */
  positionals?: number | 'many';
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

function modelKind(v: unknown): ModelKind {
  if (!MODEL_KINDS.includes(v as ModelKind))
    throw new Error(`--model must be one of ${MODEL_KINDS.join(', ')}, got '${v ?? ''}'`);
  return v as ModelKind;
}

function readConfig(kind: ModelKind, path: unknown): unknown {
  if (path === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(String(path), 'utf8'));
  } catch (e) {
    throw new Error(`--config '${path}': ${e instanceof Error ? e.message : e}`);
  }
  return checkConfig(kind, json);
}

function required(v: Record<string, unknown>, name: string): string {
  const x = v[name];
  if (typeof x !== 'string' || x.length === 0) throw new Error(`--${name} is required`);
  return x;
}

const commands: Record<string, Command> = {
  info: {
    summary: 'backends available here, and the GPU adapter with its limits and features',
    usage: 'diffpure info [--json]',
    options: { json: { type: 'boolean' } },
    async run(v) {
      const adapter = await describeDefaultAdapter();
      const backends: Record<string, unknown> = {};
      for (const name of registeredBackends().filter((n) => n !== 'meta')) {
        try {
          const b = await initBackend(name);
          backends[name] = {
            available: true,
            dtypes: b.dtypes,
            ...(name === 'cpu' ? cpuKernelsInfo(currentConfig().threads) : {}),
          };
        } catch (e) {
          backends[name] = { available: false, reason: e instanceof Error ? e.message : String(e) };
        }
      }
      if (v.json) {
        console.log(JSON.stringify({ node: process.version, backends, adapter }, null, 2));
        return;
      }
      console.log(`diffpure-ts on Node ${process.version}`);
      for (const [name, info] of Object.entries(backends)) {
        const i = info as {
          available: boolean;
          dtypes?: string[];
          reason?: string;
          kernels?: string;
          threads?: number;
          wasmSimd?: { relaxedSimdFma?: boolean };
        };
        const fma = i.kernels === 'wasm' && i.wasmSimd?.relaxedSimdFma ? ' with relaxed-SIMD FMA' : '';
        const kernels = i.kernels ? `, ${i.kernels} kernels${fma}, ${i.threads} thread(s)` : '';
        console.log(
          `  ${name}: ${i.available ? `available (${i.dtypes?.join(', ')}${kernels})` : `unavailable: ${i.reason}`}`,
        );
      }
      if (!adapter) console.log(`  adapter: none (${noAdapterHint()})`);
      else console.log(`  adapter:\n${indent(JSON.stringify(adapter, null, 2), 4)}`);
    },
  },
  convert: {
    summary: 'convert an official PyTorch checkpoint to safetensors (score_sde: the EMA weights)',
    usage: `diffpure convert <in.pth> <out.safetensors> --model ${MODEL_KINDS.join('|')} [--config cfg.json]`,
    options: { model: { type: 'string' }, config: { type: 'string' } },
    positionals: 2,
    async run(v, pos) {
      const [input, output] = pos as [string, string];
      const kind = modelKind(v.model);
      const config = readConfig(kind, v.config);
      // shape-only: the keys, names and shapes the checkpoint must fill, without allocating weights
      const module = await buildShapeOnly(() => buildModule(kind, config));
      const sd = checkpointStateDict(kind, module, input);
      module.loadStateDict(sd); // strict: the file is complete and every shape is right
      writeSafetensors(output, sd, {
        format: 'pt',
        model: kind,
        ...(config ? { config: JSON.stringify(config) } : {}),
      });
      const n = [...sd.values()].reduce((a, t) => a + t.data.length, 0);
      console.log(`${input} -> ${output}: ${sd.size} tensors, ${n} values (${kind})`);
    },
  },
  forward: {
    summary: 'run a network on x.npy (and t.npy) and write its raw output, to compare with PyTorch',
    usage:
      `diffpure forward --model ${MODEL_KINDS.join('|')} [--config cfg.json]\n` +
      '    --weights w.(pth|pt|safetensors) --x x.npy [--t t.npy] --out y.npy [--backend cpu|webgpu]',
    options: {
      model: { type: 'string' },
      config: { type: 'string' },
      weights: { type: 'string' },
      x: { type: 'string' },
      t: { type: 'string' },
      out: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
    },
    async run(v) {
      const kind = modelKind(v.model);
      const backend = String(v.backend);
      await initBackend(backend);
      const net = await loadNetwork(kind, readConfig(kind, v.config), required(v, 'weights'), backend);
      const xs = readNpy(required(v, 'x'));
      const ts = v.t === undefined ? undefined : readNpy(String(v.t));
      if (net.needsTime && !ts)
        throw new Error(`--t is required for --model ${kind} (the time input the PyTorch module receives)`);
      const t0 = performance.now();
      const y = tidy(() =>
        net.forward(
          fromArray(Float32Array.from(xs.data), xs.shape, { backend }),
          ts ? fromArray(Float32Array.from(ts.data), ts.shape, { backend }) : undefined,
        ),
      );
      const data = await y.data();
      writeNpy(required(v, 'out'), Float32Array.from(data), y.shape);
      console.log(
        `${kind} on ${backend}: x ${JSON.stringify(xs.shape)} -> ${v.out} ${JSON.stringify(y.shape)} in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
      );
    },
  },
  purify: {
    summary: "DiffPure's purification of images in [0, 1] (x.npy), optionally with the input gradient",
    usage:
      'diffpure purify --weights checkpoint_8.pth --x x.npy --out purified.npy [--model ddpmpp|adm|ddpm]\n' +
      '    [--config cfg.json] [--tstar 0.1 (ddpm: 0.5)] [--dt 0.001] [--seed N] [--noise e.npy]\n' +
      '    [--bm-increments dW.npy --bm-times t.npy] [--step-noise steps.npy]\n' +
      '    [--grad g.npy [--w w.npy] [--mode continuous|exact|autograd]]\n' +
      '    [--backend cpu|webgpu] [--json]\n' +
      "  --grad writes d sum(w * purified) / dx (w defaults to ones) by the paper's adjoint (continuous, default)\n" +
      '  or the exact gradient of the discrete solve (exact). Without --seed a seed is drawn and printed.\n' +
      "  --model ddpm is DiffPure's CelebA-HQ path (SDEdit's DDPM UNet, celeba_hq.ckpt): t = 1000 t* ancestral steps\n" +
      '  (the paper: t* 0.5, the default), --dt unused; --noise [B, C, H, W] and --step-noise [t, B, C, H, W] replay the\n' +
      '  draws; --mode exact (default: per-step checkpointing) or autograd. DiffPure itself has no gradient here (BPDA).',
    options: {
      model: { type: 'string', default: 'ddpmpp' },
      config: { type: 'string' },
      weights: { type: 'string' },
      x: { type: 'string' },
      out: { type: 'string' },
      tstar: { type: 'string' },
      dt: { type: 'string', default: '0.001' },
      seed: { type: 'string' },
      noise: { type: 'string' },
      'bm-increments': { type: 'string' },
      'bm-times': { type: 'string' },
      grad: { type: 'string' },
      w: { type: 'string' },
      mode: { type: 'string' },
      'step-noise': { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' },
    },
    async run(v) {
      const kind = modelKind(v.model);
      const num = (name: string) => {
        const n = Number(v[name]);
        if (!(n > 0 && n <= 1)) throw new Error(`--${name} must be a number in (0, 1], got '${v[name]}'`);
        return n;
      };
      const mode = v.mode as string | undefined;
      if (mode !== undefined && mode !== 'continuous' && mode !== 'exact' && mode !== 'autograd')
        throw new Error(`--mode must be continuous, exact or autograd (ddpm), got '${mode}'`);
      await runPurify({
        kind,
        config: readConfig(kind, v.config),
        weights: required(v, 'weights'),
        x: required(v, 'x'),
        out: required(v, 'out'),
        // DiffPure's t*: 0.1 on CIFAR-10 (score_sde) and ImageNet; 0.5 (--t 500) on CelebA-HQ's DDPM path
        tStar: v.tstar === undefined ? (kind === 'ddpm' ? 0.5 : 0.1) : num('tstar'),
        dt: num('dt'),
        seed: v.seed === undefined ? undefined : positiveInt('--seed', String(v.seed), true),
        noise: v.noise as string | undefined,
        stepNoise: v['step-noise'] as string | undefined,
        bmIncrements: v['bm-increments'] as string | undefined,
        bmTimes: v['bm-times'] as string | undefined,
        grad: v.grad as string | undefined,
        w: v.w as string | undefined,
        mode,
        backend: String(v.backend),
        json: !!v.json,
      });
    },
  },
  train: {
    summary: 'train resumably: classifier (a WideResNet), score (an NCSN++), purified (a purified training set)',
    usage:
      'diffpure train classifier|score|purified [options]   (each writes a resumable run folder, --out)\n' +
      '\n' +
      'diffpure train classifier [--data fmnist] [--data-dir DIR] [--out runs/classifier] [--config wrn.json]\n' +
      '    [--steps 1000] [--batch 64] [--lr 0.1] [--momentum 0.9] [--weight-decay 5e-4] [--warmup 0] [--seed 0]\n' +
      '    [--no-augment] [--noise-std 0] [--limit N] [--checkpoint-every 100] [--init RUN_DIR]\n' +
      '    [--purified DIR [--purified-fraction 0.5]] [--resume] [--no-eval] [--eval-limit N] [--json]\n' +
      "  RobustBench's WideResNet (config {depth, widen_factor, ...}), SGD + Nesterov, cosine lr, crop and flip;\n" +
      "  --init starts from a run folder's weights; --purified swaps that share of each batch for purified images.\n" +
      'diffpure train classifier --evaluate --out DIR [--eval-limit N]     test accuracy into DIR/metrics.json\n' +
      "diffpure train classifier --export model.pt --out DIR                RobustBench's {'state_dict'} (torch.save)\n" +
      'diffpure train classifier --ship weights/x.safetensors --out DIR     weights, x.config.json, manifest x.json\n' +
      '\n' +
      'diffpure train score [--data fmnist] [--data-dir DIR] [--config score_sde.json] [--out runs/score] [--steps 1000]\n' +
      '    [--batch 64] [--lr 2e-4] [--warmup 5000] [--grad-clip 1] [--t-power 1] [--seed 0] [--limit N]\n' +
      '    [--checkpoint-every 100] [--grid-every 1000] [--resume] [--json]\n' +
      "  score_sde's NCSN++ with its DSM loss, Adam and EMA; --t-power p draws t = eps + (1 - eps) u^p (more near 0).\n" +
      'diffpure train score --evaluate --out DIR [--classifier-weights weights/fmnist-classifier.safetensors[,RUN_DIR,...]]\n' +
      '    [--classifier-config P] [--t-star 0.1,0.2,0.3,0.5] [--dt 0.005] [--eval-limit 1000] [--eval-batch 100] [--seed 0]\n' +
      '  the classifiers on the first test images purified at each t* by the EMA weights, into DIR/metrics.json\n' +
      '  (one purification, read by every classifier listed).\n' +
      "diffpure train score --export checkpoint.pth --out DIR      score_sde_pytorch's save_checkpoint layout\n" +
      'diffpure train score --ship weights/x.safetensors --out DIR  EMA weights, x.config.json, manifest x.json\n' +
      '\n' +
      'diffpure train purified [--out runs/purified] [--score-weights weights/fmnist-score.safetensors]\n' +
      '    [--score-config P] [--t-star 0.1] [--dt 0.005] [--count 4000] [--batch 100] [--seed 0] [--shard i/n]\n' +
      '  training images purified by DiffPure, one .npy per batch, for train classifier --purified. Rerun to\n' +
      '  continue; --shard i/n makes batches i, i+n, ... so that one process per core fills the same folder.',
    options: {
      data: { type: 'string' },
      'data-dir': { type: 'string' },
      out: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      momentum: { type: 'string' },
      'weight-decay': { type: 'string' },
      warmup: { type: 'string' },
      seed: { type: 'string' },
      'no-augment': { type: 'boolean' },
      limit: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      config: { type: 'string' },
      resume: { type: 'boolean' },
      evaluate: { type: 'boolean' },
      export: { type: 'string' },
      ship: { type: 'string' },
      'grad-clip': { type: 'string' },
      't-power': { type: 'string' },
      'grid-every': { type: 'string' },
      'no-eval': { type: 'boolean' },
      'eval-limit': { type: 'string' },
      'eval-batch': { type: 'string' },
      'noise-std': { type: 'string' },
      init: { type: 'string' },
      'classifier-weights': { type: 'string' },
      'classifier-config': { type: 'string' },
      'score-weights': { type: 'string' },
      'score-config': { type: 'string' },
      count: { type: 'string' },
      shard: { type: 'string' },
      purified: { type: 'string' },
      'purified-fraction': { type: 'string' },
      't-star': { type: 'string' },
      dt: { type: 'string' },
      json: { type: 'boolean' },
    },
    positionals: 1,
    async run(v, pos) {
      await runTrain(v, pos[0] as string);
    },
  },
  autoattack: {
    summary: 'AutoAttack (standard, plus, rand, custom) against a classifier, or against DiffPure (--score-weights)',
    usage:
      'diffpure autoattack --model wrn --weights model.pt [--config wrn.json] --x x.npy --y y.npy --eps 0.031373\n' +
      '    [--norm Linf|L2] [--version standard|plus|rand|custom] [--attacks apgd-ce,apgd-t,...] [--eot-iter 20]\n' +
      '    [--seed 0] [--bs 250] [--verdict single|majority:N|any:N] [--out adv.npy] [--backend cpu|webgpu] [--json]\n' +
      '    [--score-weights checkpoint_8.pth [--score-model ddpmpp|adm|ddpm] [--score-config cfg.json] [--tstar 0.1]\n' +
      '     [--dt 0.001] [--gradient continuous|exact|bpda]]\n' +
      '  x.npy: images [B, C, H, W] in [0, 1] (float32); y.npy: their labels [B] (integers).\n' +
      "  With --score-weights the classifier is defended by DiffPure's purification at --tstar; its gradient is the\n" +
      "  paper's adjoint (continuous, default), the exact gradient of the solve (exact), or BPDA's identity (bpda).\n" +
      "  The verdict rule (AutoAttack's single stochastic pass by default) is printed with the results.\n" +
      '  --n-iter lowers APGD/FAB iterations from 100 (a quick look, not AutoAttack).',
    options: {
      model: { type: 'string', default: 'wrn' },
      config: { type: 'string' },
      weights: { type: 'string' },
      x: { type: 'string' },
      y: { type: 'string' },
      eps: { type: 'string' },
      norm: { type: 'string', default: 'Linf' },
      version: { type: 'string', default: 'standard' },
      attacks: { type: 'string' },
      'eot-iter': { type: 'string' },
      'n-iter': { type: 'string' },
      seed: { type: 'string', default: '0' },
      bs: { type: 'string', default: '250' },
      verdict: { type: 'string', default: 'single' },
      out: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' },
      'score-weights': { type: 'string' },
      'score-model': { type: 'string', default: 'ddpmpp' },
      'score-config': { type: 'string' },
      tstar: { type: 'string', default: '0.1' },
      dt: { type: 'string', default: '0.001' },
      gradient: { type: 'string', default: 'continuous' },
    },
    async run(v) {
      const kind = modelKind(v.model);
      const eps = Number(required(v, 'eps'));
      if (!(Number.isFinite(eps) && eps >= 0)) throw new Error(`--eps must be a number >= 0, got '${v.eps}'`);
      const unit = (name: string) => {
        const n = Number(v[name]);
        if (!(n > 0 && n <= 1)) throw new Error(`--${name} must be a number in (0, 1], got '${v[name]}'`);
        return n;
      };
      const scoreKind = v['score-weights'] ? modelKind(v['score-model']) : null;
      await runAutoAttack({
        kind,
        config: readConfig(kind, v.config),
        weights: required(v, 'weights'),
        x: required(v, 'x'),
        y: required(v, 'y'),
        eps,
        norm: String(v.norm),
        version: String(v.version),
        attacks: v.attacks as string | undefined,
        eotIter: v['eot-iter'] === undefined ? undefined : positiveInt('--eot-iter', String(v['eot-iter'])),
        nIter: v['n-iter'] === undefined ? undefined : positiveInt('--n-iter', String(v['n-iter'])),
        seed: positiveInt('--seed', String(v.seed), true),
        bs: positiveInt('--bs', String(v.bs)),
        verdict: String(v.verdict),
        out: v.out as string | undefined,
        json: v.json === true,
        backend: String(v.backend),
        score: scoreKind
          ? {
              kind: scoreKind,
              config: readConfig(scoreKind, v['score-config']),
              weights: String(v['score-weights']),
              tStar: unit('tstar'),
              dt: unit('dt'),
              gradient: String(v.gradient),
            }
          : undefined,
      });
    },
  },
  eval: {
    summary: "DiffPure's robustness evaluation: a protocol's attacks on DiffPure and the bare classifier, as a table",
    usage:
      'diffpure eval [--protocol NAME|mine.json]\n' +
      '    [--out DIR] [--shard i/n] [--backend cpu|webgpu] [--images N] [--seeds 121,122] [--batch N]\n' +
      '    [--data-dir DIR] [--classifier-weights P] [--classifier-config P] [--score-weights P] [--score-config P]\n' +
      '    [--dt 0.001] [--fresh] [--json] | --list | --print NAME\n' +
      `  NAME: ${Object.keys(PRESETS).join(', ')}\n  (--list says what each is).\n` +
      `  Runs a protocol (default ${DEFAULT_PRESET}: the embedded Fashion-MNIST models, a few minutes on a laptop CPU)\n` +
      '  and prints standard and robust accuracy of DiffPure and of the bare classifier (mean ± std over seeds,\n' +
      "  DiffPure's min(rand, standard) where the protocol asks), with what produced every number.\n" +
      '  Writes to --out (default eval-runs/<protocol>): records.jsonl (one line per image x seed x attack, flushed\n' +
      '  per batch), adv/*.npy (adversarial images; AutoAttack runs leave their log beside them as adv/*.log),\n' +
      '  results.md, results.json and grid-<attack>.png.\n' +
      '  Rerunning the same command resumes (after a crash or kill -9) and ends with the same numbers; a changed\n' +
      '  protocol or option refuses to resume into old records (--fresh discards them).\n' +
      '  --shard i/n (or a Slurm job array, or a Kubernetes Indexed Job: see docs/) runs shard i of n (the batches\n' +
      '  split by estimated cost);\n' +
      "  'diffpure merge DIR' joins the shards' records into the table one run gives.\n" +
      '  --list shows the presets; --print NAME prints one as JSON to copy, edit and pass back with --protocol.\n' +
      '  --images N keeps the first N images of the sample list (a quicker, smaller run; recorded as such).',
    options: {
      protocol: { type: 'string', default: DEFAULT_PRESET },
      out: { type: 'string' },
      shard: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      images: { type: 'string' },
      seeds: { type: 'string' },
      batch: { type: 'string' },
      'data-dir': { type: 'string' },
      'classifier-weights': { type: 'string' },
      'classifier-config': { type: 'string' },
      'score-weights': { type: 'string' },
      'score-config': { type: 'string' },
      dt: { type: 'string' },
      fresh: { type: 'boolean' },
      json: { type: 'boolean' },
      list: { type: 'boolean' },
      print: { type: 'string' },
    },
    async run(v) {
      if (v.list) {
        console.log(presetList());
        return;
      }
      if (v.print !== undefined) {
        const preset = PRESETS[String(v.print)];
        if (!preset) throw new Error(`--print '${v.print}': no such preset; one of ${Object.keys(PRESETS).join(', ')}`);
        console.log(JSON.stringify(preset, null, 2));
        return;
      }
      const dt = v.dt === undefined ? undefined : Number(v.dt);
      if (dt !== undefined && !(dt > 0 && dt < 1)) throw new Error(`--dt must be a number in (0, 1), got '${v.dt}'`);
      await runEvalCommand({
        protocol: String(v.protocol),
        out: v.out as string | undefined,
        shard: v.shard as string | undefined,
        backend: String(v.backend),
        images: v.images === undefined ? undefined : positiveInt('--images', String(v.images)),
        seeds:
          v.seeds === undefined
            ? undefined
            : String(v.seeds)
                .split(',')
                .map((s) => {
                  if (s.trim() === '')
                    throw new Error(`--seeds '${v.seeds}': an empty item; give e.g. --seeds 121,122,123`);
                  return positiveInt('--seeds', s.trim(), true);
                }),
        batch: v.batch === undefined ? undefined : positiveInt('--batch', String(v.batch)),
        dataDir: v['data-dir'] as string | undefined,
        classifierWeights: v['classifier-weights'] as string | undefined,
        classifierConfig: v['classifier-config'] as string | undefined,
        scoreWeights: v['score-weights'] as string | undefined,
        scoreConfig: v['score-config'] as string | undefined,
        dt,
        fresh: v.fresh === true,
        json: v.json === true,
      });
    },
  },
  merge: {
    summary: "join the records of 'diffpure eval' shards into one table (the same as one run's)",
    usage:
      'diffpure merge DIR|records.jsonl [more ...] [--out DIR] [--json]\n' +
      '  Reads records.jsonl and records-i-of-n.jsonl in each folder, checks they come from the same protocol,\n' +
      '  sample list and backend, and writes results.md and results.json to --out (default: the first folder).',
    positionals: 'many',
    options: { out: { type: 'string' }, json: { type: 'boolean' } },
    async run(v, positionals) {
      runMergeCommand(positionals, v.out as string | undefined, v.json === true);
    },
  },
  demo: {
    summary: 'fit y = sin(3x) with a small MLP by Adam, using the library autograd',
    usage: 'diffpure demo [--steps 500] [--seed 0] [--lr 0.01] [--backend cpu|webgpu] [--json]',
    options: {
      steps: { type: 'string', default: '500' },
      seed: { type: 'string', default: '0' },
      lr: { type: 'string', default: '0.01' },
      backend: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' },
    },
    async run(v) {
      const steps = positiveInt('--steps', v.steps as string);
      const seed = positiveInt('--seed', v.seed as string, true);
      const lr = Number(v.lr);
      if (!(lr > 0)) throw new Error(`--lr must be a positive number, got '${v.lr}'`);
      const backend = v.backend as string;
      await initBackend(backend);
      const res = await fitSineDemo({
        steps,
        seed,
        lr,
        backend: getBackend(backend).name,
        every: Math.max(1, Math.floor(steps / 10)),
        onProgress: v.json
          ? undefined
          : (s, l) => console.log(`step ${String(s).padStart(5)}  loss ${l.toExponential(4)}`),
      });
      if (v.json) console.log(JSON.stringify({ backend, seed, lr, ...res }));
      else
        console.log(
          `fit ${steps} steps in ${res.seconds.toFixed(2)} s on ${backend}: loss ${res.initialLoss.toExponential(3)} -> ${res.finalLoss.toExponential(3)}`,
        );
    },
  },
};

function indent(s: string, n: number): string {
  return s
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}

function positiveInt(name: string, s: string, allowZero = false): number {
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got '${s}'`);
  }
  return v;
}

function help(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return `usage: diffpure <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'diffpure <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`diffpure: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`usage: ${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: cmd.options,
      strict: true,
      allowPositionals: !!cmd.positionals,
    });
    const want = cmd.positionals ?? 0;
    if (want === 'many' ? positionals.length === 0 : want !== positionals.length) {
      throw new Error(
        `expected ${want === 'many' ? 'one or more' : want} positional argument(s), got ${positionals.length}\nusage: ${cmd.usage}`,
      );
    }
    await cmd.run(values as Record<string, string | boolean | undefined>, positionals);
    return 0;
  } catch (e) {
    console.error(`diffpure ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
