// guided-diffusion's ADM UNet against the official PyTorch code through the adm fixture
// (../shared/fixtures/adm: DiffPure's ImageNet flags shrunk to 32 px, made by guided-diffusion's
// own create_model_and_diffusion): state-dict keys and shapes, parameter counts (fixture and the
// full 256x256 model, the latter built shape-only), the output and the input gradient with the
// real checkpoint file. Plus the flag translation of create_model, the timestep embedding, the
// two attention orders, and the input-VJP dot-product identity in float64 on tiny configs.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { manualSeed } from '../../src/nn/init.js';
import { extractStateDict } from '../../src/nn/io/checkpoint.js';
import { loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { buildShapeOnly, describeShapeOnly, materialize } from '../../src/nn/meta.js';
import {
  type AdmFlags,
  admOptionsFromFlags,
  admTimestepEmbedding,
  createAdmModel,
  DIFFPURE_IMAGENET_FLAGS,
  qkvAttention,
  type UNetModel,
} from '../../src/nn/models/adm.js';
import { checkDotProduct } from '../harness/check.js';
import { relErr } from '../harness/fixtures.js';
import type { OpCase } from '../harness/sample.js';
import { admErrors, FIXTURE_TOL } from './fixture-helpers.js';

const FIXTURE = '../shared/fixtures/adm';

interface AdmMeta {
  create_model_and_diffusion_kwargs: AdmFlags;
  n_params: number;
  full_size_reference: { n_params: number };
  state_dict_keys: string[];
  state_dict_shapes: Record<string, number[]>;
  attention_downsample_rates: number[];
}
const meta: AdmMeta = JSON.parse(readFileSync(`${FIXTURE}/meta.json`, 'utf8'));

describe('ADM UNet structure (guided-diffusion create_model)', () => {
  test('the fixture config has its state-dict keys, shapes and parameter count', () => {
    const m = createAdmModel(meta.create_model_and_diffusion_kwargs);
    const sd = m.stateDict();
    expect([...sd.keys()]).toEqual(meta.state_dict_keys);
    for (const [k, t] of sd) expect(t.shape, k).toEqual(meta.state_dict_shapes[k]);
    expect(m.numParameters()).toBe(meta.n_params); // 1,435,142
    expect([...m.options.attentionResolutions].sort((a, b) => a - b)).toEqual(meta.attention_downsample_rates);
    m.dispose();
  });

  test("DiffPure's 256x256 ImageNet model has the official parameter count (built shape-only)", async () => {
    // 552,814,086: the fixture's full_size_reference, counted by running guided-diffusion's code
    const { numParameters, shapes } = await describeShapeOnly(() => createAdmModel(DIFFPURE_IMAGENET_FLAGS));
    expect(numParameters).toBe(meta.full_size_reference.n_params);
    expect(numParameters).toBe(552_814_086);
    expect(shapes.get('input_blocks.0.0.weight')).toEqual([256, 3, 3, 3]);
    expect(shapes.get('out.2.weight')).toEqual([6, 256, 3, 3]);
    // attention at 32, 16, 8 px: 4 (256 ch), 8 and 16 (512 ch) heads of 64 channels
    expect(shapes.get('middle_block.1.qkv.weight')).toEqual([3 * 1024, 1024, 1]);
    expect(shapes.has('label_emb.weight')).toBe(false);
  });

  test('flags translate as create_model does', () => {
    const o = admOptionsFromFlags(DIFFPURE_IMAGENET_FLAGS);
    expect(o.channelMult).toEqual([1, 1, 2, 2, 4, 4]);
    expect(o.attentionResolutions).toEqual([8, 16, 32]);
    expect(o.outChannels).toBe(6);
    expect(o.numClasses).toBeNull();
    expect(admOptionsFromFlags({ image_size: 64 }).channelMult).toEqual([1, 2, 3, 4]);
    expect(admOptionsFromFlags({ image_size: 128 }).channelMult).toEqual([1, 1, 2, 3, 4]);
    expect(admOptionsFromFlags({ image_size: 512 }).channelMult).toEqual([0.5, 1, 1, 2, 2, 4, 4]);
    expect(admOptionsFromFlags({ image_size: 32, channel_mult: '1,2,2' }).channelMult).toEqual([1, 2, 2]);
    expect(admOptionsFromFlags({ learn_sigma: false }).outChannels).toBe(3);
    expect(admOptionsFromFlags({ class_cond: true }).numClasses).toBe(1000);
    expect(() => admOptionsFromFlags({ image_size: 48 })).toThrow(/unsupported image size: 48/);
    expect(() => admOptionsFromFlags({ image_size: 32, channel_mult: '1,x' })).toThrow(/channel_mult/);
  });

  test('a shape-only model refuses a state dict with missing or unexpected keys', async () => {
    const m = await buildShapeOnly(() => createAdmModel(meta.create_model_and_diffusion_kwargs));
    const sd = new Map([...m.stateDict()].map(([k, t]) => [k, { shape: t.shape, data: new Float32Array(t.size) }]));
    sd.delete('out.2.bias');
    sd.set('label_emb.weight', { shape: [1000, 128], data: new Float32Array(128000) });
    expect(() => materialize(m, sd)).toThrow(/Missing key\(s\) in state_dict: "out.2.bias"[\s\S]*Unexpected key\(s\)/);
    expect(() => m.forward(T.zeros([1, 3, 32, 32]), T.zeros([1]))).toThrow(/meta/);
  });

  test('num_head_channels must divide the channels, as guided-diffusion asserts', () => {
    expect(() => createAdmModel({ ...meta.create_model_and_diffusion_kwargs, num_head_channels: 24 })).toThrow(
      /not divisible by num_head_channels 24/,
    );
  });
});

describe('ADM pieces', () => {
  test('timestep embedding is [cos(t f), sin(t f)] with f_k = 10000^(-k / half)', () => {
    T.tidy(() => {
      const t = [0, 50, 999];
      const dim = 10;
      const emb = admTimestepEmbedding(T.fromArray(t, [3]), dim).dataSync();
      const odd = admTimestepEmbedding(T.fromArray(t, [3]), dim + 1);
      expect(odd.shape).toEqual([3, dim + 1]);
      const half = dim / 2;
      for (let b = 0; b < 3; b++) {
        expect(odd.dataSync()[b * (dim + 1) + dim]).toBe(0);
        for (let k = 0; k < half; k++) {
          const arg = (t[b] as number) * 10000 ** (-k / half);
          // float32 rounding of the argument (up to 999 * 2^-24 relative) bounds the difference
          expect(Math.abs((emb[b * dim + k] as number) - Math.cos(arg))).toBeLessThan(1e-4);
          expect(Math.abs((emb[b * dim + half + k] as number) - Math.sin(arg))).toBeLessThan(1e-4);
        }
      }
    });
  });

  test('legacy and new attention orders agree once the qkv channels are permuted', () => {
    T.tidy(() => {
      const [b, heads, ch, len] = [2, 3, 4, 5];
      const legacy = T.randomNormal([b, heads, 3, ch, len], { seed: 1, dtype: 'float64' }); // heads outer
      const newer = T.permute(legacy, [0, 2, 1, 3, 4]); // q/k/v outer
      const a = qkvAttention(T.reshape(legacy, [b, heads * 3 * ch, len]), heads, false);
      const c = qkvAttention(T.reshape(newer, [b, 3 * heads * ch, len]), heads, true);
      expect(relErr(a.dataSync(), c.dataSync())).toBeLessThan(1e-12);
      // against a direct per-head softmax(q^T k / sqrt(ch)) v
      const qkv = legacy.dataSync();
      const at = (n: number, h: number, j: number, c0: number, t: number) =>
        qkv[((((n * heads + h) * 3 + j) * ch + c0) * len + t) as number] as number;
      const out = a.dataSync();
      for (let n = 0; n < b; n++)
        for (let h = 0; h < heads; h++)
          for (let t = 0; t < len; t++) {
            const logits = Array.from({ length: len }, (_, s) => {
              let d = 0;
              for (let c0 = 0; c0 < ch; c0++) d += at(n, h, 0, c0, t) * at(n, h, 1, c0, s);
              return d / Math.sqrt(ch);
            });
            const mx = Math.max(...logits);
            const e = logits.map((l) => Math.exp(l - mx));
            const z = e.reduce((p, q) => p + q, 0);
            for (let c0 = 0; c0 < ch; c0++) {
              let v = 0;
              for (let s = 0; s < len; s++) v += ((e[s] as number) / z) * at(n, h, 2, c0, s);
              expect(out[((n * heads + h) * ch + c0) * len + t]).toBeCloseTo(v, 12);
            }
          }
    });
  });
});

describe('ADM parity with guided-diffusion (adm fixture, cpu)', () => {
  // One model for the tests below, built shape-only and given the checkpoint's weights directly
  // (no random init); the checkpoint is a plain state dict without prefixes.
  let model: UNetModel | null = null;
  const load = async (): Promise<UNetModel> => {
    if (!model) {
      const sd = extractStateDict(loadTorchCheckpoint(`${FIXTURE}/model.pt`));
      model = materialize(await buildShapeOnly(() => createAdmModel(meta.create_model_and_diffusion_kwargs)), sd);
      model.eval();
    }
    return model;
  };

  test('model.pt loads strictly and the output matches for t = 0 and 50 (tolerance 1e-4 max|ref|)', async () => {
    const m = await load();
    // the batch elements are independent (GroupNorm and attention act per sample), so
    // samples 0 and 1 run here and sample 2 with its gradient in the next test
    const e = await admErrors((x, t) => m.forward(x, t), {
      backend: 'cpu',
      rows: { start: 0, count: 2 },
      withGrad: false,
    });
    console.log(`adm output (t = 0, 50): max|err| / max|ref| = ${e.output.toExponential(2)}`);
    expect(e.output).toBeLessThan(FIXTURE_TOL);
  });

  test('output and input gradient of sum(w * output) match for t = 999', async () => {
    const m = await load();
    const e = await admErrors((x, t) => m.forward(x, t), {
      backend: 'cpu',
      rows: { start: 2, count: 1 },
      withGrad: true,
    });
    console.log(
      `adm t = 999: output err ${e.output.toExponential(2)}, grad_x err ${e.gradX?.toExponential(2)} (of max|ref|)`,
    );
    expect(e.output).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
  });
});

describe('ADM input gradient: dot-product identity <J v, w> = <v, J^T w> in float64', () => {
  const tiny = (flags: Partial<AdmFlags>): UNetModel => {
    manualSeed(3);
    const m = T.tidy(() =>
      createAdmModel({
        image_size: 8,
        num_channels: 32,
        channel_mult: '1,2',
        num_res_blocks: 1,
        attention_resolutions: '4',
        num_head_channels: 16,
        learn_sigma: true,
        ...flags,
      }),
    ).eval();
    // float64, and every weight moved off the official zero init so each path carries gradient
    m.namedSlots().forEach(([, p], i) => {
      const old = p.value;
      p.value = T.keep(
        T.add(T.astype(old, 'float64'), T.randomNormal(old.shape, { seed: 4, stream: i, dtype: 'float64' })),
      );
      old.dispose();
    });
    return m;
  };
  const cases: [string, Partial<AdmFlags>, number[] | undefined][] = [
    ["DiffPure's flags (resblock up/down, scale-shift norm, legacy attention)", { resblock_updown: true }, undefined],
    [
      'conv resampling, additive embedding, new attention order, class-conditional',
      { resblock_updown: false, use_scale_shift_norm: false, use_new_attention_order: true, class_cond: true },
      [3, 997],
    ],
  ];
  for (const [name, flags, labels] of cases) {
    test(name, () => {
      const m = tiny(flags);
      const c: OpCase = {
        name: `ADM ${name}`,
        arb: undefined as never,
        f: ([x]) => m.forward(x as T.Tensor, T.fromArray([10, 900], [2], { dtype: (x as T.Tensor).dtype }), labels),
      };
      const x = T.tidy(() =>
        Float64Array.from(T.randomUniform([2, 3, 8, 8], { seed: 5 }).dataSync(), (v) => 2 * v - 1),
      );
      checkDotProduct(c, { inputs: [{ shape: [2, 3, 8, 8], data: x }], params: undefined }, 7);
      m.dispose();
    });
  }
});
