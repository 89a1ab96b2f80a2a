// The command line reproduces the fixtures: `diffpure forward` on each official checkpoint,
// `diffpure convert` to safetensors and back, and `diffpure purify` on DiffPure's own pipeline
// (diffpure_revsde: stored forward noise and Brownian increments, dt 0.01), compared with the
// PyTorch outputs (1e-4 max|ref|, the fixtures' stated tolerance).

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test, vi } from 'vitest';
import { main } from '../../src/diffpure/cli.js';
import { readNpy, writeNpy } from '../../src/nn/io/index.js';
import { hashedUniform } from '../nn/resnet_hashed_weights.js';
import { yieldToLoop } from './revsde-helpers.js';

const F = '../shared/fixtures';
const dir = mkdtempSync(join(tmpdir(), 'diffpure-cli-'));
const meta = (name: string) => JSON.parse(readFileSync(`${F}/${name}/meta.json`, 'utf8'));

function config(name: string, obj: unknown): string {
  const p = join(dir, `${name}.json`);
  writeFileSync(p, JSON.stringify(obj));
  return p;
}

function relErr(outPath: string, refPath: string): number {
  const a = readNpy(outPath);
  const b = readNpy(refPath);
  expect(a.shape).toEqual(b.shape);
  let e = 0;
  let m = 0;
  for (let i = 0; i < b.data.length; i++) {
    e = Math.max(e, Math.abs((a.data[i] as number) - (b.data[i] as number)));
    m = Math.max(m, Math.abs(b.data[i] as number));
  }
  return e / m;
}

describe('diffpure forward reproduces the fixtures', () => {
  test('ddpmpp: score_sde checkpoint (EMA), labels = 999 t', async () => {
    const out = join(dir, 'ddpmpp.npy');
    const cfg = config('ddpmpp', meta('ddpmpp').config);
    const args = ['--model', 'ddpmpp', '--config', cfg, '--x', `${F}/ddpmpp/x.npy`, '--t', `${F}/ddpmpp/labels.npy`];
    expect(await main(['forward', ...args, '--weights', `${F}/ddpmpp/checkpoint.pth`, '--out', out])).toBe(0);
    expect(relErr(out, `${F}/ddpmpp/raw_output_ema.npy`)).toBeLessThan(1e-4);
    // and through safetensors
    const st = join(dir, 'ddpmpp.safetensors');
    expect(await main(['convert', `${F}/ddpmpp/checkpoint.pth`, st, '--model', 'ddpmpp', '--config', cfg])).toBe(0);
    const out2 = join(dir, 'ddpmpp2.npy');
    expect(await main(['forward', ...args, '--weights', st, '--out', out2])).toBe(0);
    expect(relErr(out2, `${F}/ddpmpp/raw_output_ema.npy`)).toBeLessThan(1e-4);
  });

  test('adm: guided-diffusion checkpoint, integer timesteps', async () => {
    const out = join(dir, 'adm.npy');
    const cfg = config('adm', meta('adm').create_model_and_diffusion_kwargs);
    const args = ['--model', 'adm', '--config', cfg, '--weights', `${F}/adm/model.pt`, '--x', `${F}/adm/x.npy`];
    expect(await main(['forward', ...args, '--t', `${F}/adm/t.npy`, '--out', out])).toBe(0);
    expect(relErr(out, `${F}/adm/output.npy`)).toBeLessThan(1e-4);
  });

  test('wrn: RobustBench checkpoint with state_dict wrapper and module. prefixes', async () => {
    const out = join(dir, 'wrn.npy');
    // the fixture's architecture (meta.json 'architecture': WideResNet(depth=16, widen_factor=2))
    const cfg = config('wrn', { depth: 16, widen_factor: 2, num_classes: 10, dropRate: 0 });
    expect(
      await main([
        'forward',
        '--model',
        'wrn',
        '--config',
        cfg,
        '--weights',
        `${F}/wrn/model.pt`,
        '--x',
        `${F}/wrn/x.npy`,
        '--out',
        out,
      ]),
    ).toBe(0);
    expect(relErr(out, `${F}/wrn/logits.npy`)).toBeLessThan(1e-4);
  });

  test("vit: DeiT's {'model': ...} checkpoint (reduced ViT), also through safetensors", async () => {
    const R = 'test/nn/fixtures/classifiers';
    const ref = JSON.parse(readFileSync(`${R}/vit_meta.json`, 'utf8')).models.vit_p8_d48_depth2_h3;
    const shape = ref.input_shape as number[];
    const x = join(dir, 'vit_x.npy');
    const n = shape.reduce((p, q) => p * q, 1);
    writeNpy(x, Float32Array.from(hashedUniform(ref.input_key, n)), shape);
    const cfg = config('vit', ref.config);
    const logits = join(dir, 'vit_logits.npy');
    writeNpy(logits, Float32Array.from((ref.logits as number[][]).flat()), [shape[0] as number, 10]);
    const args = ['--model', 'vit', '--config', cfg, '--x', x];
    const out = join(dir, 'vit.npy');
    expect(await main(['forward', ...args, '--weights', `${R}/${ref.checkpoint_file}`, '--out', out])).toBe(0);
    expect(relErr(out, logits)).toBeLessThan(1e-4);
    const st = join(dir, 'vit.safetensors');
    expect(await main(['convert', `${R}/${ref.checkpoint_file}`, st, '--model', 'vit', '--config', cfg])).toBe(0);
    const out2 = join(dir, 'vit2.npy');
    expect(await main(['forward', ...args, '--weights', st, '--out', out2])).toBe(0);
    expect(relErr(out2, logits)).toBeLessThan(1e-4);
  });

  test('bad invocations fail with a message naming the argument', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    const said = () => String(err.mock.calls.at(-1)?.[0]);
    try {
      expect(await main(['forward', '--model', 'vgg'])).toBe(1);
      expect(said()).toMatch(/--model must be one of ddpmpp, adm, ddpm, wrn, resnet, vit, attribute, got 'vgg'/);
      expect(await main(['forward', '--model', 'wrn', '--x', 'x.npy'])).toBe(1);
      expect(said()).toMatch(/^diffpure forward: /);
      expect(await main(['convert', 'only-one.pth', '--model', 'wrn'])).toBe(1);
      expect(said()).toMatch(/^diffpure convert: /);
      const cfg = config('vit-bad', { patch: 8 });
      expect(await main(['convert', 'in.pth', 'out.safetensors', '--model', 'vit', '--config', cfg])).toBe(1);
      expect(said()).toMatch(/VisionTransformer: unknown option\(s\) patch; timm's names: img_size, patch_size/);
      expect(await main(['nope'])).toBe(2);
      expect(said()).toMatch(/unknown command 'nope'/);
    } finally {
      err.mockRestore();
    }
  });
});

describe('diffpure purify reproduces the diffpure_revsde fixture', () => {
  const R = `${F}/diffpure_revsde`;
  const base = (out: string) => [
    'purify',
    '--config',
    config('ddpmpp-revsde', meta('ddpmpp').config),
    '--weights',
    `${F}/ddpmpp/checkpoint.pth`,
    '--x',
    `${R}/x_in.npy`,
    '--out',
    out,
    '--dt',
    '0.01',
    '--noise',
    `${R}/forward_noise.npy`,
    '--bm-increments',
    `${R}/brownian_increments.npy`,
    '--bm-times',
    `${R}/time_grid.npy`,
  ];

  test('purified images and the exact input gradient', async () => {
    const out = join(dir, 'purified.npy');
    const g = join(dir, 'grad.npy');
    // the fixture's loss is sum(w * purified in [-1, 1]) = 2 sum(w * purified in [0, 1]) - const
    const w = readNpy(`${R}/loss_weight.npy`);
    const w2 = join(dir, 'w2.npy');
    writeNpy(
      w2,
      Float32Array.from(w.data, (v) => 2 * v),
      w.shape,
    );
    const log = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await yieldToLoop(); // the run below blocks the loop for tens of seconds
    try {
      expect(await main([...base(out), '--grad', g, '--w', w2, '--mode', 'exact'])).toBe(0);
      // progress reached the last step of both passes
      const lines = log.mock.calls.map((c) => String(c[0]));
      expect(lines.some((l) => /purify: forward step 10\/10/.test(l))).toBe(true);
      expect(lines.some((l) => /purify: backward step 10\/10/.test(l))).toBe(true);
    } finally {
      log.mockRestore();
    }
    const y = readNpy(out);
    const centered = join(dir, 'centered.npy');
    writeNpy(
      centered,
      Float32Array.from(y.data, (v) => 2 * v - 1),
      y.shape,
    );
    expect(relErr(centered, `${R}/purified.npy`)).toBeLessThan(1e-4);
    expect(relErr(g, `${R}/grad_x_in_autograd.npy`)).toBeLessThan(1e-4);
  });

  test('bad inputs are named', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const out = join(dir, 'never.npy');
      const nan = join(dir, 'nan.npy');
      writeNpy(nan, Float32Array.from([0.5, Number.NaN, 0.2, 0.1]), [1, 1, 2, 2]);
      expect(await main(['purify', '--weights', 'w.pth', '--x', nan, '--out', out])).toBe(1);
      expect(await main([...base(out), '--mode', 'adjoint'])).toBe(1);
      expect(await main([...base(out), '--tstar', '2'])).toBe(1);
      expect(await main(['purify', '--x', nan, '--out', out])).toBe(1);
      // a path stored at dt 0.01 cannot drive a solve at dt 0.001 (it would be interpolated)
      expect(await main([...base(out), '--dt', '0.001'])).toBe(1);
      const msgs = err.mock.calls.map((c) => String(c[0]));
      expect(msgs[0]).toMatch(/--x '.*nan\.npy' holds NaN at flat index 1/);
      expect(msgs[1]).toMatch(/--mode must be continuous, exact or autograd \(ddpm\), got 'adjoint'/);
      expect(msgs[2]).toMatch(/--tstar must be a number in \(0, 1\], got '2'/);
      expect(msgs[3]).toMatch(/--weights is required/);
      expect(msgs[4]).toMatch(/--bm-times '.*time_grid\.npy' has no node at the solver time .* --dt 0\.001/);
    } finally {
      err.mockRestore();
    }
  });
});

describe("diffpure purify --model ddpm reproduces DiffPure's CelebA-HQ purification (ddpm_celebahq fixture)", () => {
  const D = `${F}/ddpm_celebahq`;
  test('replayed draws: the purified images at t = 20; forward on the UNet and the attribute classifier', async () => {
    const cfg = config('ddpm-celebahq', meta('ddpm_celebahq').unet.config_used);
    const out = join(dir, 'ddpm-purified.npy');
    const log = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const said = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    await yieldToLoop();
    try {
      // DiffPure's --t 20 is --tstar 0.02 here (t* = t / 1000)
      const args = ['purify', '--model', 'ddpm', '--config', cfg, '--weights', `${D}/unet.pth`];
      const io = ['--x', `${D}/purify_x_in.npy`, '--out', out, '--tstar', '0.02'];
      const replay = ['--noise', `${D}/purify_forward_noise.npy`, '--step-noise', `${D}/purify_step_noise.npy`];
      expect(await main([...args, ...io, ...replay])).toBe(0);
      expect(said.mock.calls.flat().join('\n')).toMatch(/with 20 DDPM steps .*noise replayed/);
      // a mode of the VP-SDE, and half of the replayed draws, are refused by name
      const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      expect(await main([...args, ...io, ...replay, '--grad', join(dir, 'g.npy'), '--mode', 'continuous'])).toBe(1);
      expect(await main([...args, ...io, '--noise', `${D}/purify_forward_noise.npy`])).toBe(1);
      expect(err.mock.calls.flat().join('\n')).toMatch(/gradient is exact[\s\S]*--noise \(forward\) and --step-noise/);
      err.mockRestore();
    } finally {
      log.mockRestore();
      said.mockRestore();
    }
    // the output is (out + 1) / 2 of the fixture's [-1, 1] output, unclamped
    const y = readNpy(out);
    const centered = join(dir, 'ddpm-centered.npy');
    writeNpy(
      centered,
      Float32Array.from(y.data, (v) => 2 * v - 1),
      y.shape,
    );
    expect(relErr(centered, `${D}/purify_output.npy`)).toBeLessThan(1e-4);

    const unetOut = join(dir, 'ddpm-unet.npy');
    const fwdArgs = ['forward', '--model', 'ddpm', '--config', cfg, '--weights', `${D}/unet.pth`];
    expect(await main([...fwdArgs, '--x', `${D}/unet_x.npy`, '--t', `${D}/unet_t.npy`, '--out', unetOut])).toBe(0);
    expect(relErr(unetOut, `${D}/unet_output.npy`)).toBeLessThan(1e-4);
    const clfOut = join(dir, 'attribute.npy');
    const clfArgs = ['forward', '--model', 'attribute', '--weights', `${D}/classifier_net_best.pth`];
    expect(await main([...clfArgs, '--x', `${D}/clf_x.npy`, '--out', clfOut])).toBe(0);
    expect(relErr(clfOut, `${D}/clf_logits.npy`)).toBeLessThan(1e-4);
  }, 180_000);
});
