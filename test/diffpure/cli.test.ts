// The command line reproduces the fixtures: `diffpure forward` on each official checkpoint, and
// `diffpure convert` to safetensors and back, compared with the PyTorch outputs (1e-4 max|ref|,
// the fixtures' stated tolerance).

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { main } from '../../src/diffpure/cli.js';
import { readNpy } from '../../src/nn/io/index.js';

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

  test('bad invocations fail with a message naming the argument', async () => {
    expect(await main(['forward', '--model', 'vit'])).toBe(1);
    expect(await main(['forward', '--model', 'wrn', '--x', 'x.npy'])).toBe(1);
    expect(await main(['convert', 'only-one.pth', '--model', 'wrn'])).toBe(1);
    expect(await main(['nope'])).toBe(2);
  });
});
