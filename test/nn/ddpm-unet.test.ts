// The DDPM UNet of DiffPure's CelebA-HQ path (ddpm/unet_ddpm.py Model = SDEdit models/diffusion.py)
// against the official PyTorch code through ../shared/fixtures/ddpm_celebahq: the full-size
// parameter count (shape-only), state-dict keys and shapes in checkpoint order, output and input
// gradient at timesteps 0, 999, 17, 500 from the fixture's unet.pth, and the named errors.
// Every expected value comes from the fixture's meta.json or .npy files.

import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { extractStateDict, loadTorchCheckpoint, type StateDict } from '../../src/nn/io/index.js';
import { buildShapeOnly, describeShapeOnly } from '../../src/nn/meta.js';
import {
  CELEBA_HQ_DDPM_CONFIG,
  type DdpmConfigJson,
  DdpmUNet,
  ddpmConfigFromJson,
  ddpmTimestepEmbedding,
} from '../../src/nn/models/ddpm-unet.js';
import { FIXTURES, fixtureArray, fixtureTensor, readMeta, relErr } from '../harness/fixtures.js';
import { FIXTURE_TOL, outputAndGrad } from './fixture-helpers.js';

const DIR = `${FIXTURES}/ddpm_celebahq`;

interface UnetMeta {
  unet: {
    full_config_configs_celeba_yml: DdpmConfigJson;
    config_used: DdpmConfigJson;
    n_params: number;
    full_size_n_params: number;
    state_dict_keys_and_shapes: [string, number[]][];
    inputs: { t: number[] };
    recommended_tolerance: string;
  };
}
const meta = readMeta<UnetMeta>(DIR).unet;

function checkpoint(): StateDict {
  return extractStateDict(loadTorchCheckpoint(`${DIR}/unet.pth`));
}

/** The fixture model (config_used: 32 px, ch 32, ch_mult [1, 1, 2], 1 block) with unet.pth loaded strictly. */
function fixtureModel(): DdpmUNet {
  const m = T.tidy(() => new DdpmUNet(meta.config_used)).eval();
  m.loadStateDict(checkpoint());
  return m;
}

describe('DDPM UNet structure', () => {
  test('full size (celeba.yml) has 113,673,219 parameters, built shape-only', async () => {
    // source: meta.json unet.full_size_n_params, counted on the official Model
    expect(meta.full_size_n_params).toBe(113_673_219);
    expect(CELEBA_HQ_DDPM_CONFIG).toEqual(meta.full_config_configs_celeba_yml);
    const full = await describeShapeOnly(() => new DdpmUNet(CELEBA_HQ_DDPM_CONFIG));
    expect(full.numParameters).toBe(meta.full_size_n_params);
    expect(full.shapes.get('conv_in.weight')).toEqual([128, 3, 3, 3]);
    // attention only at 16 px (level 4 of 6) and in the middle
    expect(full.shapes.get('down.4.attn.1.q.weight')).toEqual([512, 512, 1, 1]);
    expect([...full.shapes.keys()].filter((k) => /^(down|up)\.\d\.attn/.test(k) && !/^(down|up)\.4\./.test(k))).toEqual(
      [],
    );
  });

  test('state-dict keys and shapes are those of unet.pth, in order', async () => {
    // source: meta.json unet.state_dict_keys_and_shapes (the official model.state_dict()), n_params
    const m = await describeShapeOnly(() => new DdpmUNet(meta.config_used));
    expect([...m.shapes].map(([k, s]) => [k, [...s]])).toEqual(meta.state_dict_keys_and_shapes);
    expect(m.numParameters).toBe(meta.n_params);
    // and the checkpoint file has exactly these, in this order
    expect([...checkpoint()].map(([k, v]) => [k, [...v.shape]])).toEqual(meta.state_dict_keys_and_shapes);
  });

  test('config errors name the field', () => {
    const cfg = structuredClone(CELEBA_HQ_DDPM_CONFIG);
    delete cfg.model.ch;
    expect(() => ddpmConfigFromJson(cfg)).toThrow(/missing model.ch\b/);
    const odd = structuredClone(CELEBA_HQ_DDPM_CONFIG);
    odd.model.ch = 48;
    expect(() => new DdpmUNet(odd)).toThrow(/multiple of 32/);
    const size = structuredClone(CELEBA_HQ_DDPM_CONFIG);
    size.data.image_size = 100;
    expect(() => ddpmConfigFromJson(size)).toThrow(/image_size 100 is not divisible by 2\^5/);
  });

  test('timestep embedding is [sin(t f), cos(t f)] with f_k = 10000^(-k / (half - 1))', () => {
    T.tidy(() => {
      const t = [0, 17, 999];
      const dim = 8;
      const emb = ddpmTimestepEmbedding(T.fromArray(t, [3]), dim).dataSync();
      const half = dim / 2;
      for (let b = 0; b < 3; b++) {
        for (let k = 0; k < half; k++) {
          const arg = (t[b] as number) * 10000 ** (-k / (half - 1));
          // float32 rounding of the argument (up to 999 * 2^-23 relative) bounds the difference
          expect(Math.abs((emb[b * dim + k] as number) - Math.sin(arg))).toBeLessThan(2e-4);
          expect(Math.abs((emb[b * dim + half + k] as number) - Math.cos(arg))).toBeLessThan(2e-4);
        }
      }
      expect(ddpmTimestepEmbedding(T.fromArray(t, [3]), dim + 1).shape).toEqual([3, dim + 1]);
    });
  });
});

describe('DDPM UNet parity with the official Model (ddpm_celebahq fixture, cpu)', () => {
  test('output and input gradient at t = 0, 999, 17, 500', async () => {
    // tolerance: the README's 1e-4 * max|ref| (float32 vs float64 in PyTorch: 1.1e-6 and 2.2e-6)
    expect(meta.recommended_tolerance).toMatch(/1e-4 \* max\|ref\|/);
    expect(Array.from(fixtureArray(DIR, 'unet_t').data)).toEqual(meta.inputs.t);
    const m = fixtureModel();
    const t = fixtureTensor(DIR, 'unet_t');
    const r = await outputAndGrad(
      (x) => m.forward(x, t),
      fixtureTensor(DIR, 'unet_x'),
      fixtureTensor(DIR, 'unet_vjp_weight'),
    );
    const out = relErr(r.out, fixtureArray(DIR, 'unet_output').data);
    const grad = relErr(r.grad as Float64Array, fixtureArray(DIR, 'unet_grad_x_of_sum_w_output').data);
    console.log(`ddpm unet: max|err|/max|ref| output ${out.toExponential(2)}, grad_x ${grad.toExponential(2)}`);
    expect(out).toBeLessThan(FIXTURE_TOL);
    expect(grad).toBeLessThan(FIXTURE_TOL);
    // timesteps as numbers give the same output
    const y = T.tidy(() => m.forward(fixtureTensor(DIR, 'unet_x'), meta.inputs.t).dataSync());
    expect(relErr(y, r.out)).toBe(0);
    t.dispose();
    m.dispose();
  });
});

describe('DDPM UNet errors', () => {
  test('a checkpoint of the wrong layout names its missing and unexpected keys', () => {
    const m = T.tidy(() => new DdpmUNet(meta.config_used));
    const sd = checkpoint();
    const wrapped: StateDict = new Map([...sd].map(([k, v]) => [`module.${k}`, v]));
    expect(() => m.loadStateDict(wrapped)).toThrow(
      /Missing key\(s\) in state_dict: "temb.dense.0.weight"[\s\S]*Unexpected key\(s\) in state_dict: "module.temb.dense.0.weight"/,
    );
    const partial = new Map(sd);
    partial.delete('mid.attn_1.q.bias');
    partial.set('up.1.block.0.conv_shortcut.weight', {
      dtype: 'float32',
      shape: [32, 96, 3, 3],
      data: new Float32Array(32 * 96 * 9),
    });
    expect(() => m.loadStateDict(partial)).toThrow(
      /Missing key\(s\) in state_dict: "mid.attn_1.q.bias"[\s\S]*Unexpected key\(s\) in state_dict: "up.1.block.0.conv_shortcut.weight"/,
    );
    m.dispose();
  });

  test('the full-size model refuses the shrunk checkpoint by shape', async () => {
    const full = await buildShapeOnly(() => new DdpmUNet(CELEBA_HQ_DDPM_CONFIG));
    expect(() => full.loadStateDict(checkpoint())).toThrow(
      /size mismatch for temb.dense.0.weight: copying a param with shape \[128, 32\], the shape in the current model is \[512, 128\]/,
    );
  });

  test('timesteps outside [0, 999] or not integers, and wrong image sizes, are named errors', () => {
    const m = fixtureModel();
    T.tidy(() => {
      const x = T.zeros([2, 3, 32, 32]);
      expect(() => m.forward(x, [0, 1000])).toThrow(/timestep t\[1\] = 1000 must be an integer in \[0, 999\]/);
      expect(() => m.forward(x, T.fromArray([-1, 3], [2]))).toThrow(/t\[0\] = -1 must be an integer in \[0, 999\]/);
      expect(() => m.forward(x, [17.5, 3])).toThrow(/t\[0\] = 17.5 must be an integer/);
      expect(() => m.forward(x, [NaN, 3])).toThrow(/t\[0\] = NaN/);
      expect(() => m.forward(x, [1, 2, 3])).toThrow(/3 timesteps for a batch of 2/);
      expect(() => m.forward(T.zeros([2, 3, 64, 64]), [1, 2])).toThrow(
        /images must be 32x32 \(data.image_size\), got 64x64/,
      );
      expect(() => m.forward(T.zeros([2, 3, 32, 16]), [1, 2])).toThrow(/got 32x16/);
      expect(() => m.forward(T.zeros([2, 1, 32, 32]), [1, 2])).toThrow(/x must be \[B, 3, H, W\]/);
    });
    m.dispose();
  });
});
