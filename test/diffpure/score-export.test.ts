// `diffpure train score --export`: a tiny score run (nf 8, 2 steps on Debian's Fashion-MNIST) written as
// score_sde_pytorch's checkpoint. Our reader reads it back to the run's tensors (model, EMA, Adam moments); and, where
// /usr/bin/python3 has torch and a score_sde_pytorch source is named (SCORE_SDE_DIR: a checkout; SCORE_SDE_GIT: its
// git directory), score_sde's own create_model / get_optimizer / ExponentialMovingAverage / restore_checkpoint load
// it and the EMA model's output matches ours (fixtures/score_export_check.py).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { noGrad } from '../../src/autograd/index.js';
import { FASHION_MNIST_DIR } from '../../src/diffpure/data/idx.js';
import { loadScoreRun } from '../../src/diffpure/train/score.js';
import { scoreSdeConfigForRun, scoreSdeSigmas } from '../../src/diffpure/train/score-export.js';
import { extractStateDict, type HostTensor, readSafetensors, writeNpy } from '../../src/nn/io/index.js';
import { loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { NCSNpp } from '../../src/nn/models/ncsnpp.js';
import { fromArray } from '../../src/tensor/index.js';
import { TINY_SCORE } from './tiny-score.js';

const dir = mkdtempSync(join(tmpdir(), 'score-export-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(process.cwd(), 'bin', 'diffpure.mjs');

const TINY = TINY_SCORE;

/**
 * The other special cases: Gaussian Fourier features (W is requires_grad=False in score_sde: no EMA entry, no Adam
 * state, the official model runs the raw W) and fir=True (score_sde's upfirdn2d, its CPU path).
 */
const TINY_FOURIER_FIR = { ...TINY, model: { ...TINY.model, embedding_type: 'fourier', fourier_scale: 16, fir: true } };

/** A child process, awaited without blocking this worker's event loop (vitest's RPC times out on a busy box). */
function run(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Why the PyTorch check cannot run here, or null. */
function pytorchSkipReason(): string | null {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return `${py} not found`;
  const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.status !== 0) return `${py} cannot import torch and numpy`;
  const src = process.env.SCORE_SDE_DIR;
  const git = process.env.SCORE_SDE_GIT;
  if (src) return existsSync(join(src, 'models', 'ncsnpp.py')) ? null : `SCORE_SDE_DIR=${src} has no models/ncsnpp.py`;
  if (git) return existsSync(git) ? null : `SCORE_SDE_GIT=${git} does not exist`;
  return 'no score_sde_pytorch source: set SCORE_SDE_DIR to a checkout (or SCORE_SDE_GIT to its git directory)';
}

const PYTORCH_SKIP = pytorchSkipReason();

const equal = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.prototype.every.call(a, (x: number, i: number) => Object.is(x, b[i]));

function exportSuite(name: string, config: typeof TINY, labels: Float32Array) {
  const out = join(dir, name);
  const pth = join(dir, `${name}.pth`);
  let ckpt: Map<string, HostTensor>;
  let stderr = '';
  /** Indices into model.parameters() that score_sde does not train (GaussianFourierProjection.W). */
  let frozen: Set<number>;
  let paramKeys: string[];

  /** Our EMA network as score_sde runs it from the export: EMA weights, but the raw value of frozen parameters. */
  function oursAsOfficial(): NCSNpp {
    const { net } = loadScoreRun(out, 'ema');
    const raw = new Map(
      [...frozen].map((i) => [paramKeys[i] as string, ckpt.get(`model.${paramKeys[i]}`) as HostTensor]),
    );
    net.loadStateDict(raw, { strict: false });
    return net;
  }

  beforeAll(async () => {
    const cfg = join(dir, `${name}.json`);
    writeFileSync(cfg, JSON.stringify(config));
    const common = ['train', 'score', '--config', cfg, '--out', out];
    const t = await run(process.execPath, [
      bin,
      ...common,
      '--steps',
      '2',
      '--batch',
      '4',
      '--limit',
      '64',
      '--warmup',
      '3',
    ]);
    expect(t.status, t.stderr).toBe(0);
    const r = await run(process.execPath, [bin, ...common, '--export', pth]);
    expect(r.status, r.stderr).toBe(0);
    stderr = r.stderr;
    ckpt = readSafetensors(join(out, 'checkpoint.safetensors')).tensors;
    paramKeys = loadScoreRun(out, 'model')
      .net.namedParameters()
      .map(([k]) => k);
    frozen = new Set(paramKeys.flatMap((k, i) => (k === 'all_modules.0.W' ? [i] : [])));
    expect(frozen.size).toBe(config.model.embedding_type === 'fourier' ? 1 : 0);
  }, 300_000);

  test('the CLI names what it wrote', () => {
    expect(stderr).toMatch(/\(step 2\) -> .*\.pth: score_sde checkpoint \{'optimizer', 'model': \d+ tensors/);
    // trainScore leaves the Fourier W fixed, as score_sde: nothing to note
    expect(stderr).not.toMatch(/note:/);
  });

  test('our reader reads back the run: model, EMA list, Adam moments, counters', () => {
    const obj = loadTorchCheckpoint(readFileSync(pth)) as Map<unknown, unknown>;
    expect([...obj.keys()]).toEqual(['optimizer', 'model', 'ema', 'step']);
    expect(obj.get('step')).toBe(2);
    const { net } = loadScoreRun(out, 'model');
    const keys = [...net.stateDict().keys()];
    const model = obj.get('model') as Map<string, HostTensor>;
    expect([...model.keys()]).toEqual(keys.map((k) => `module.${k}`));
    expect(keys[0]).toBe('sigmas');
    const sigmas = model.get('module.sigmas') as HostTensor;
    expect(sigmas.dtype).toBe('float64');
    expect(equal(sigmas.data, scoreSdeSigmas(0.01, 50, 1000))).toBe(true);
    for (const k of keys.slice(1)) {
      const t = model.get(`module.${k}`) as HostTensor;
      expect(t.dtype).toBe('float32');
      expect(equal(t.data, (ckpt.get(`model.${k}`) as HostTensor).data), k).toBe(true);
    }
    const params = paramKeys.length;
    expect(keys.length).toBe(params + 1);
    const trained = [...Array(params).keys()].filter((i) => !frozen.has(i));

    const ema = obj.get('ema') as Map<string, unknown>;
    expect([...ema.keys()]).toEqual(['decay', 'num_updates', 'shadow_params']);
    expect(ema.get('decay')).toBe(0.999);
    expect(ema.get('num_updates')).toBe(2);
    const shadow = ema.get('shadow_params') as HostTensor[];
    expect(shadow).toHaveLength(trained.length);
    shadow.forEach((t, j) => {
      // our checkpoint numbers the trained parameters only: ema.<j> is the j-th trained parameter
      expect(equal(t.data, (ckpt.get(`ema.${j}`) as HostTensor).data), `ema ${j}`).toBe(true);
    });

    const opt = obj.get('optimizer') as Map<string, unknown>;
    const state = opt.get('state') as Map<number, Map<string, HostTensor>>;
    expect([...state.keys()]).toEqual(trained);
    for (const [i, s] of state) {
      const j = trained.indexOf(i);
      expect([...s.keys()]).toEqual(['step', 'exp_avg', 'exp_avg_sq']);
      expect(s.get('step')).toMatchObject({ dtype: 'float32', shape: [] });
      expect([...(s.get('step') as HostTensor).data]).toEqual([2]);
      expect(equal((s.get('exp_avg') as HostTensor).data, (ckpt.get(`adam_m.${j}`) as HostTensor).data)).toBe(true);
      expect(equal((s.get('exp_avg_sq') as HostTensor).data, (ckpt.get(`adam_v.${j}`) as HostTensor).data)).toBe(true);
    }
    const [group] = opt.get('param_groups') as Map<string, unknown>[];
    expect(Object.fromEntries(group as Map<string, unknown>)).toEqual({
      lr: (2e-4 * 2) / 3, // the lr of step 2 with warm-up 3 (lrAt)
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0,
      amsgrad: false,
      maximize: false,
      foreach: null,
      capturable: false,
      differentiable: false,
      fused: false,
      params: [...Array(params).keys()],
    });
  });

  test("extractStateDict(kind 'score_sde') gives the EMA network, same outputs as ours", () => {
    // a frozen W is in score_sde's parameters but not in its EMA list: name the EMA's parameters, take W from 'model'
    const obj = loadTorchCheckpoint(readFileSync(pth));
    const parameterNames = paramKeys.filter((_, i) => !frozen.has(i));
    const sd = extractStateDict(obj, { kind: 'score_sde', parameterNames });
    const raw = extractStateDict(obj, { kind: 'score_sde', weights: 'model' });
    for (const i of frozen) sd.set(paramKeys[i] as string, raw.get(paramKeys[i] as string) as HostTensor);
    const ours = oursAsOfficial();
    const back = new NCSNpp(config);
    back.loadStateDict(sd);
    back.eval();
    for (const [k, t] of ours.stateDict()) {
      const a = t.dataSync();
      const b = (back.stateDict().get(k) as typeof t).dataSync();
      if (k === 'sigmas') for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i] as number, 5);
      else expect(equal(a, b), k).toBe(true);
    }
    const x = fromArray(
      Float32Array.from({ length: 2 * 784 }, (_, i) => Math.sin(i * 0.37)),
      [2, 1, 28, 28],
    );
    const l = fromArray(labels.slice(0, 2), [2]);
    const [ya, yb] = noGrad(() => [ours.forward(x, l).dataSync(), back.forward(x, l).dataSync()]);
    expect(equal(ya as Float32Array, yb as Float32Array)).toBe(true);
  });

  const why = PYTORCH_SKIP;
  test.skipIf(why !== null)(
    `score_sde's restore_checkpoint loads it and its EMA model matches ours${why ? ` (skipped: ${why})` : ''}`,
    async () => {
      const io = join(dir, `${name}-io`);
      mkdirSync(io, { recursive: true });
      const n = labels.length;
      const x = Float32Array.from({ length: n * 784 }, (_, i) => Math.sin(i * 0.61 + 0.3) * 0.9);
      const net = oursAsOfficial();
      const ours = noGrad(() => net.forward(fromArray(x, [n, 1, 28, 28]), fromArray(labels, [n])).dataSync());
      writeNpy(join(io, 'x.npy'), x, [n, 1, 28, 28]);
      writeNpy(join(io, 'labels.npy'), labels, [n]);
      writeNpy(join(io, 'ours.npy'), Float32Array.from(ours), [n, 1, 28, 28]);
      writeFileSync(join(io, 'config.json'), JSON.stringify(scoreSdeConfigForRun(out)));
      const src = process.env.SCORE_SDE_DIR
        ? ['--score-sde', process.env.SCORE_SDE_DIR]
        : ['--score-sde-git', process.env.SCORE_SDE_GIT as string];
      const script = join(process.cwd(), 'test', 'diffpure', 'fixtures', 'score_export_check.py');
      const args = [script, ...src, '--ckpt', pth, '--config', join(io, 'config.json'), '--inputs', io];
      const r = await run('/usr/bin/python3', args);
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout.trim().split('\n').pop() as string);
      console.log(`score_sde check (${name}): ${JSON.stringify(res)}`);
      expect(res).toMatchObject({
        strict_missing: [],
        strict_unexpected: [],
        step: 2,
        ema_num_updates: 2,
        ema_decay: 0.999,
        shadow_params: paramKeys.length - frozen.size,
        parameters: paramKeys.length,
        raw_equals_file_model: true,
        layout_equal: true,
        adam_steps_after_one_more: [3],
      });
      expect(res.max_rel_err).toBeLessThan(1e-5);
      // PyTorch 1.13's weights_only unpickler has no BINFLOAT (opcode 71), and the layout has floats (decay, lr, ...)
      if (res.torch.startsWith('1.')) expect(res.weights_only).toMatch(/Unsupported operand 71/);
    },
    300_000,
  );
}

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('diffpure train score --export (score_sde checkpoint)', () => {
  // positional embedding: score_sde's VP-SDE continuous score_fn runs model(x, t * 999)
  describe('DDPM++ (positional, fir off)', () => exportSuite('ddpmpp', TINY, Float32Array.of(50, 300, 600, 950)));
  // Fourier features: the condition is sigma (the model takes its log)
  describe('NCSN++-style (fourier, fir on)', () =>
    exportSuite('fourier-fir', TINY_FOURIER_FIR, Float32Array.of(0.05, 0.5, 2, 10)));
});
