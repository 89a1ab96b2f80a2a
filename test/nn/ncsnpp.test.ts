// NCSN++ / DDPM++ (score_sde's ncsnpp) against the official PyTorch code through the ddpmpp
// fixtures: parameter counts, state-dict keys in checkpoint order, the network output, the score
// and the input gradient with the EMA weights of real checkpoint files. Plus the input-VJP
// dot-product identity in float64 on tiny configs (with and without FIR resampling), and the FIR
// resampling ops against the identities the StyleGAN2 design promises.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { manualSeed } from '../../src/nn/init.js';
import { extractStateDict, loadTorchCheckpoint } from '../../src/nn/io/index.js';
import { readNpy } from '../../src/nn/io/npy.js';
import {
  convDownsample2d,
  downsample2d,
  naiveDownsample2d,
  naiveUpsample2d,
  setupKernel,
  upfirdn2d,
  upsample2d,
  upsampleConv2d,
} from '../../src/nn/layers/upfirdn.js';
import { buildShapeOnly, describeShapeOnly } from '../../src/nn/meta.js';
import {
  DDPMPP_CIFAR10_DEEP_CONTINUOUS,
  NCSNpp,
  ncsnppConfigFromJson,
  type ScoreSdeConfigJson,
} from '../../src/nn/models/ncsnpp.js';
import { checkDotProduct } from '../harness/check.js';
import { relErr } from '../harness/fixtures.js';
import type { OpCase } from '../harness/sample.js';
import { ddpmppErrors, FIXTURE_TOL } from './fixture-helpers.js';

const FIXTURE = '../shared/fixtures/ddpmpp';

interface FixtureMeta {
  config: ScoreSdeConfigJson;
  n_params: number;
  n_param_tensors: number;
  full_size_reference: { nf: number; num_res_blocks: number; n_params: number };
  param_names_in_ema_order: string[];
  state_dict_shapes: Record<string, number[]>;
  recommended_tolerance: string;
}

const meta = (dir: string): FixtureMeta => JSON.parse(readFileSync(`${dir}/meta.json`, 'utf8'));
const npy = (dir: string, name: string) => readNpy(`${dir}/${name}.npy`);
const stripModule = (k: string) => k.replace(/^(module\.)+/, '');

function fixtureModel(dir: string, entry: 'ema' | 'model' = 'ema'): NCSNpp {
  const m = T.tidy(() => new NCSNpp(meta(dir).config)).eval();
  // EMA (default): the shadow_params list mapped in order onto the model's parameter names, the
  // sigmas buffer from the 'model' entry; loaded strictly
  const ck = loadTorchCheckpoint(`${dir}/checkpoint.pth`);
  m.loadStateDict(extractStateDict(ck, { weights: entry, parameterNames: m.emaParameterNames() }));
  return m;
}

describe('NCSNpp structure', () => {
  test('parameter counts: fixture configs and the full DiffPure CIFAR-10 config', async () => {
    // sources: meta.json n_params / n_param_tensors, counted by the official PyTorch model
    for (const dir of [FIXTURE, `${FIXTURE}/nf8_with_adam_state`]) {
      const info = meta(dir);
      const m = await describeShapeOnly(() => new NCSNpp(info.config));
      expect(m.numParameters).toBe(info.n_params);
    }
    expect(meta(FIXTURE).n_params).toBe(2_474_787);
    // full size: meta.json full_size_reference (nf 128, 8 res blocks), 106,632,579 parameters
    const ref = meta(FIXTURE).full_size_reference;
    expect(ref.n_params).toBe(106_632_579);
    const full = await describeShapeOnly(() => new NCSNpp(DDPMPP_CIFAR10_DEEP_CONTINUOUS));
    expect(full.numParameters).toBe(ref.n_params);
    // the exported config is the fixture's official config at full size
    const fixtureCfg = ncsnppConfigFromJson(meta(FIXTURE).config);
    expect(ncsnppConfigFromJson(DDPMPP_CIFAR10_DEEP_CONTINUOUS)).toEqual({
      ...fixtureCfg,
      nf: ref.nf,
      numResBlocks: ref.num_res_blocks,
    });
  });

  test('state-dict keys and shapes are those of the checkpoints, parameters in EMA order', async () => {
    for (const dir of [FIXTURE, `${FIXTURE}/nf8_with_adam_state`]) {
      const info = meta(dir);
      const m = await describeShapeOnly(() => new NCSNpp(info.config));
      const wantShapes = Object.entries(info.state_dict_shapes).map(([k, s]) => [stripModule(k), s]);
      expect([...m.shapes].map(([k, s]) => [k, [...s]])).toEqual(wantShapes);
      const built = await buildShapeOnly(() => new NCSNpp(info.config));
      const names = built.namedParameters().map(([k]) => k);
      expect(names).toEqual(info.param_names_in_ema_order.map(stripModule));
      expect(names.length).toBe(info.n_param_tensors);
      expect(built.emaParameterNames()).toEqual(names);
    }
    // Fourier features are frozen (requires_grad=False), so score_sde's EMA list skips them
    const fourier = structuredClone(DDPMPP_CIFAR10_DEEP_CONTINUOUS);
    Object.assign(fourier.model, { nf: 8, num_res_blocks: 1, embedding_type: 'fourier' });
    const f = await buildShapeOnly(() => new NCSNpp(fourier));
    const all = f.namedParameters().map(([k]) => k);
    expect(all[0]).toBe('all_modules.0.W');
    expect(f.emaParameterNames()).toEqual(all.slice(1));
  });

  test('config errors name the field', () => {
    const cfg = structuredClone(DDPMPP_CIFAR10_DEEP_CONTINUOUS);
    delete cfg.model.nf;
    expect(() => ncsnppConfigFromJson(cfg)).toThrow(/missing model.nf/);
    const bad = structuredClone(DDPMPP_CIFAR10_DEEP_CONTINUOUS);
    bad.model.progressive = 'sideways';
    expect(() => ncsnppConfigFromJson(bad)).toThrow(/progressive is 'sideways'/);
    expect(() => ncsnppConfigFromJson({ model: {}, data: {} } as ScoreSdeConfigJson)).toThrow(/missing model.nf/);
  });
});

describe('NCSNpp parity with the official score_sde checkpoints (ddpmpp fixtures, cpu)', () => {
  // Tolerance: the fixture README's 1e-4 * max|ref| per array (float32 vs float64 of the same
  // computation in PyTorch differs by ~1e-6 * max|ref|, see meta.json float32_vs_float64).
  const TOL = FIXTURE_TOL;

  for (const sub of ['', '/nf8_with_adam_state']) {
    const dir = FIXTURE + sub;
    test(`EMA weights: raw output, score and input gradient (${sub || 'nf32, 2 res blocks'})`, async () => {
      expect(meta(dir).recommended_tolerance).toMatch(/1e-4 \* max\|ref\|/);
      const m = fixtureModel(dir);
      const e = await ddpmppErrors(dir, (x, labels) => m.forward(x, labels), { backend: 'cpu' });
      console.log(
        `ddpmpp${sub}: max|err|/max|ref| raw ${e.raw.toExponential(2)}, score ${e.score.toExponential(2)}, grad_x ${e.gradX.toExponential(2)}`,
      );
      expect(e.raw).toBeLessThan(TOL);
      expect(e.score).toBeLessThan(TOL);
      expect(e.gradX).toBeLessThan(TOL);
      // a loader that took the non-EMA weights would land here instead
      expect(e.vsModelWeights).toBeGreaterThan(0.05);
      m.dispose();
    });
  }

  test("the checkpoint's raw 'model' weights reproduce the diagnostic output (nf8)", () => {
    const dir = `${FIXTURE}/nf8_with_adam_state`;
    const m = fixtureModel(dir, 'model');
    const x = npy(dir, 'x');
    const labels = npy(dir, 'labels');
    const y = T.tidy(() => m.forward(T.fromArray(x.data, x.shape), T.fromArray(labels.data, labels.shape)).dataSync());
    expect(relErr(y, npy(dir, 'raw_output_modelweights_diagnostic').data)).toBeLessThan(TOL);
    m.dispose();
  });
});

/** A model in float64 on cpu, for finite differences. */
function tinyModel64(model: Record<string, unknown>, data: Record<string, unknown> = {}): NCSNpp {
  const cfg = structuredClone(DDPMPP_CIFAR10_DEEP_CONTINUOUS);
  Object.assign(cfg.model, { nf: 8, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [4], init_scale: 1 }, model);
  Object.assign(cfg.data, { image_size: 8 }, data);
  manualSeed(1);
  const m = T.tidy(() => new NCSNpp(cfg)).eval();
  for (const [, p] of m.namedSlots()) {
    const old = p.value;
    p.value = T.keep(T.astype(old, 'float64'));
    old.dispose();
  }
  return m;
}

describe('NCSNpp input gradient: dot-product identity <J v, w> = <v, J^T w> in float64', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['DDPM++ (BigGAN blocks, positional, naive resampling)', {}],
    [
      'NCSN++ (FIR, Fourier, output_skip / residual pyramids, scale_by_sigma)',
      {
        fir: true,
        embedding_type: 'fourier',
        progressive: 'output_skip',
        progressive_input: 'residual',
        scale_by_sigma: true,
      },
    ],
    [
      'DDPM blocks with FIR conv resampling, residual / input_skip cat pyramids',
      {
        resblock_type: 'ddpm',
        fir: true,
        progressive: 'residual',
        progressive_input: 'input_skip',
        progressive_combine: 'cat',
        scale_by_sigma: true,
      },
    ],
  ];
  for (const [name, overrides] of cases) {
    test(name, () => {
      const m = tinyModel64(overrides);
      const fourier = overrides.embedding_type === 'fourier';
      const c: OpCase = {
        name: `NCSNpp ${name}`,
        arb: undefined as never,
        f: ([x]) => {
          const t = T.fromArray(fourier ? [0.5, 3] : [50, 700], [2], { dtype: (x as T.Tensor).dtype });
          return m.forward(x as T.Tensor, t);
        },
      };
      // x in [-1, 1], rounded to float32 values as the harness expects
      const x = T.tidy(() =>
        Float64Array.from(T.randomUniform([2, 3, 8, 8], { seed: 5 }).dataSync(), (v) => 2 * v - 1),
      );
      checkDotProduct(c, { inputs: [{ shape: [2, 3, 8, 8], data: x }], params: undefined }, 7);
      m.dispose();
    });
  }
});

describe('FIR resampling (upfirdn2d)', () => {
  const rand = (shape: number[], stream: number) => T.randomNormal(shape, { seed: 3, stream });

  test('with the box filter [1, 1] it is nearest upsampling and 2x2 averaging', () => {
    T.tidy(() => {
      const x = rand([2, 3, 6, 6], 0);
      expect(relErr(upsample2d(x, [1, 1]).dataSync(), naiveUpsample2d(x).dataSync())).toBeLessThan(1e-6);
      expect(relErr(downsample2d(x, [1, 1]).dataSync(), naiveDownsample2d(x).dataSync())).toBeLessThan(1e-6);
      expect(relErr(downsample2d(x, [1, 1]).dataSync(), T.avgPool2d(x, 2, 2).dataSync())).toBeLessThan(1e-6);
    });
  });

  test('a normalised filter keeps a constant image constant away from the borders', () => {
    T.tidy(() => {
      const x = T.full([1, 2, 8, 8], 1.5);
      const up = upsample2d(x, [1, 3, 3, 1]);
      const down = downsample2d(x, [1, 3, 3, 1]);
      expect(up.shape).toEqual([1, 2, 16, 16]);
      expect(down.shape).toEqual([1, 2, 4, 4]);
      const inner = (t: T.Tensor, b: number) => T.slice(t, [null, null, [b, -b], [b, -b]]).dataSync();
      for (const v of inner(up, 2)) expect(v).toBeCloseTo(1.5, 6);
      for (const v of inner(down, 1)) expect(v).toBeCloseTo(1.5, 6);
    });
  });

  test('the fused conv resampling equals resampling then conv3x3 away from the borders', () => {
    // StyleGAN2's upsample_conv_2d / conv_downsample_2d pad once instead of twice, so only the
    // border rows differ; with the box filter they agree everywhere
    T.tidy(() => {
      const x = rand([2, 3, 12, 12], 1);
      const w = rand([4, 3, 3, 3], 2);
      for (const k of [
        [1, 1],
        [1, 3, 3, 1],
      ]) {
        const b = k.length === 2 ? 0 : 4;
        const crop = (t: T.Tensor, c: number) => (c ? T.slice(t, [null, null, [c, -c], [c, -c]]) : t).dataSync();
        const up = upsampleConv2d(x, w, k);
        const upRef = T.conv2d(upsample2d(x, k), w, undefined, { padding: 1 });
        expect(up.shape).toEqual([2, 4, 24, 24]);
        expect(relErr(crop(up, b), crop(upRef, b))).toBeLessThan(1e-5);
        const down = convDownsample2d(x, w, k);
        const downRef = downsample2d(T.conv2d(x, w, undefined, { padding: 1 }), k);
        expect(down.shape).toEqual([2, 4, 6, 6]);
        expect(relErr(crop(down, b / 2), crop(downRef, b / 2))).toBeLessThan(1e-5);
      }
    });
  });

  test('upfirdn2d VJP: dot-product identity, incl. negative padding (a crop) and up + down', () => {
    const k = setupKernel([1, 2, 3, 1]);
    const opts = [
      { up: 2, pad: [2, 1] as const },
      { down: 2, pad: [1, 1] as const },
      { up: 3, down: 2, pad: [-1, 2] as const },
      { pad: [-2, -1] as const },
    ];
    for (const o of opts) {
      const c: OpCase = {
        name: `upfirdn2d ${JSON.stringify(o)}`,
        arb: undefined as never,
        f: ([x]) => upfirdn2d(x as T.Tensor, k, o),
      };
      const x = T.tidy(() => Float64Array.from(rand([2, 2, 7, 8], 4).dataSync()));
      checkDotProduct(c, { inputs: [{ shape: [2, 2, 7, 8], data: x }], params: undefined }, 11);
    }
  });
});
