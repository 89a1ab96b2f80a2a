// DeiT's VisionTransformer (timm layout): keys, shapes and parameter count of
// deit_small_patch16_224, and logits and input gradient of a reduced ViT (patch 8, width 48,
// 2 blocks, 3 heads) against torchvision 0.14's VisionTransformer on the same hashed weights
// mapped to its names (test/nn/fixtures/classifiers/make_vit_refs.py), on cpu and webgpu.
// Also: DiffPure's mean/std wrapper, the official {'model': ...} checkpoint layout, bad input.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { buildModule, loadNetwork } from '../../src/diffpure/models.js';
import * as T from '../../src/index.js';
import { detectCheckpointKind, extractStateDict } from '../../src/nn/io/checkpoint.js';
import { readNpy } from '../../src/nn/io/npy.js';
import type { PyValue } from '../../src/nn/io/pickle.js';
import { buildShapeOnly, describeShapeOnly, materialize } from '../../src/nn/meta.js';
import { ImageNetClassifier } from '../../src/nn/models/resnet.js';
import { deitSmall, VisionTransformer, type VitOptions } from '../../src/nn/models/vit.js';
import { relErr } from '../harness/fixtures.js';
import { expectNoLeak } from '../webgpu/helpers.js';
import { gpu } from '../webgpu/setup.js';
import { outputAndGrad } from './fixture-helpers.js';
import {
  CLASSIFIER_REFS,
  hashedCotangent,
  hashedInput,
  hashedStateDict,
  type RefModel,
} from './resnet_hashed_weights.js';

interface VitRefs {
  torchvision: string;
  models: Record<string, RefModel & { config: VitOptions }>;
  full_size: Record<string, { config: VitOptions; n_params: number; state_dict_shapes: Record<string, number[]> }>;
}
const refs: VitRefs = JSON.parse(readFileSync(`${CLASSIFIER_REFS}/vit_meta.json`, 'utf8'));
const SMALL = 'vit_p8_d48_depth2_h3';

describe('DeiT VisionTransformer structure', () => {
  test("deit_small_patch16_224: timm's keys and shapes, 22,050,664 parameters (built shape-only)", async () => {
    const ref = refs.full_size.deit_small_patch16_224 as VitRefs['full_size'][string];
    const d = await describeShapeOnly(() => deitSmall());
    // 22,050,664: DeiT's published parameter count (22M), and what torchvision builds (vit_meta.json)
    expect(d.numParameters).toBe(22_050_664);
    expect(d.numParameters).toBe(ref.n_params);
    expect([...d.shapes.keys()]).toEqual(Object.keys(ref.state_dict_shapes));
    expect(Object.fromEntries(d.shapes)).toEqual(ref.state_dict_shapes);
  });

  test("DiffPure's ImageNet wrapper keeps timm's keys under 'resnet.'", async () => {
    const d = await describeShapeOnly(() => new ImageNetClassifier(deitSmall()));
    const keys = Object.keys((refs.full_size.deit_small_patch16_224 as VitRefs['full_size'][string]).state_dict_shapes);
    expect([...d.shapes.keys()]).toEqual(keys.map((k) => `resnet.${k}`));
  });

  test('bad configs and inputs name what is wrong', () => {
    expect(() => new VisionTransformer({ img_size: 30, patch_size: 8 })).toThrow(
      /img_size 30 is not a multiple of patch_size 8/,
    );
    expect(() => new VisionTransformer({ embed_dim: 50, num_heads: 3, depth: 1 })).toThrow(
      /embed_dim 50 is not divisible by num_heads 3/,
    );
    expect(() => new VisionTransformer({ depth: 0 })).toThrow(/depth must be a positive integer/);
    expect(() => new VisionTransformer({ qkv_bias: 'false' as unknown as boolean })).toThrow(
      /qkv_bias must be true or false, got "false"/,
    );
    expect(() => new VisionTransformer({ patch: 8 } as Partial<VitOptions>)).toThrow(/unknown option\(s\) patch/);
    T.tidy(() => {
      const m = new VisionTransformer({
        img_size: 16,
        patch_size: 8,
        embed_dim: 12,
        depth: 1,
        num_heads: 2,
        num_classes: 3,
      });
      expect(() => m.forward(T.zeros([1, 3, 32, 32]))).toThrow(/input must be \[B, 3, 16, 16\], got \[1, 3, 32, 32\]/);
      m.dispose();
    });
  });
});

/** Logits and d sum(w * logits)/dx of the reduced ViT on `backend`, errors against torchvision. */
async function parity(backend: string): Promise<{ errY: number; errG: number }> {
  const ref = refs.models[SMALL] as VitRefs['models'][string];
  const m = await buildShapeOnly(() => new VisionTransformer(ref.config).eval());
  expect([...m.stateDict().keys()]).toEqual(ref.state_dict_keys);
  expect(m.numParameters()).toBe(ref.n_params);
  materialize(m, hashedStateDict(m), { backend });
  try {
    const x = hashedInput(ref, backend);
    const w = hashedCotangent(ref, backend);
    const r = await outputAndGrad((xx) => m.forward(xx), x, w);
    return {
      errY: relErr(r.out, ref.logits.flat()),
      errG: relErr(r.grad as Float64Array, readNpy(`${CLASSIFIER_REFS}/${ref.grad_x_file}`).data),
    };
  } finally {
    m.dispose();
  }
}

describe('DeiT VisionTransformer against torchvision (hashed weights, tolerance 1e-4 max|ref|)', () => {
  test(`${SMALL} on cpu: logits and input gradient`, async () => {
    const { errY, errG } = await parity('cpu');
    console.log(`cpu ${SMALL}: logits err ${errY.toExponential(2)}, grad_x err ${errG.toExponential(2)} (of max|ref|)`);
    expect(errY).toBeLessThan(1e-4);
    expect(errG).toBeLessThan(1e-4);
  });

  test.skipIf(!gpu)(`${SMALL} on webgpu: logits and input gradient, no bytes left behind`, async () => {
    const { errY, errG } = await expectNoLeak('vit', () => parity('webgpu'));
    console.log(
      `webgpu ${SMALL}: logits err ${errY.toExponential(2)}, grad_x err ${errG.toExponential(2)} (of max|ref|)`,
    );
    expect(errY).toBeLessThan(1e-4);
    expect(errG).toBeLessThan(1e-4);
  });
});

describe.skipIf(!gpu)('DeiT VisionTransformer memory (webgpu pool)', () => {
  test('a forward outside any tidy scope frees every intermediate it made', async () => {
    const ref = refs.models[SMALL] as VitRefs['models'][string];
    await expectNoLeak('vit forward', async () => {
      const m = await buildShapeOnly(() => new VisionTransformer(ref.config).eval());
      materialize(m, hashedStateDict(m), { backend: 'webgpu' });
      const x = hashedInput(ref, 'webgpu');
      const y = T.noGrad(() => m.forward(x));
      await y.data();
      T.dispose(y, x);
      m.dispose();
    });
  });
});

describe("DeiT checkpoints: facebookresearch/deit's {'model': state dict}", () => {
  const host = (shape: number[]) => ({
    shape,
    dtype: 'float32' as const,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });

  test("detected as 'deit' and unwrapped; a missing 'model' entry is named", () => {
    const sd = new Map<PyValue, PyValue>([
      ['cls_token', host([1, 1, 4]) as unknown as PyValue],
      ['head.bias', host([3]) as unknown as PyValue],
    ]);
    const ck = new Map<PyValue, PyValue>([['model', sd as unknown as PyValue]]);
    expect(detectCheckpointKind(ck as unknown as PyValue)).toBe('deit');
    expect([...extractStateDict(ck as unknown as PyValue).keys()]).toEqual(['cls_token', 'head.bias']);
    expect(() => extractStateDict(new Map() as unknown as PyValue, { kind: 'deit' })).toThrow(/weights under 'model'/);
  });

  test('--model vit builds DeiT-S by default and takes timm keyword arguments', async () => {
    const d = await describeShapeOnly(() => buildModule('vit', undefined));
    expect(d.numParameters).toBe(22_050_664);
    const small = await describeShapeOnly(() =>
      buildModule('vit', (refs.models[SMALL] as VitRefs['models'][string]).config),
    );
    expect(small.numParameters).toBe((refs.models[SMALL] as RefModel).n_params);
  });

  test("a torch.save({model: ...}) file loads through loadNetwork and gives torchvision's logits", async () => {
    const ref = refs.models[SMALL] as VitRefs['models'][string] & { checkpoint_file: string };
    const net = await loadNetwork('vit', ref.config, `${CLASSIFIER_REFS}/${ref.checkpoint_file}`);
    const err = T.tidy(() => {
      const x = hashedInput(ref);
      return relErr(net.forward(x).dataSync(), ref.logits.flat());
    });
    net.module.dispose();
    expect(err).toBeLessThan(1e-4);
  });
});
