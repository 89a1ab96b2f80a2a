// DiffPure's CelebA-HQ attribute classifier (gan-ensembling's D in DiffPure's ClassifierWrapper)
// against part 3 of the ddpm_celebahq fixture (../shared/fixtures/ddpm_celebahq, made by the
// official modules in float32): parameter counts, state-dict names and shapes, the
// {state_dict, optimizer, epoch, valacc} checkpoint, the logits and the input gradient of
// sum(w * logits), bad inputs, and memory. Every expected value comes from the fixture's files or
// meta.json `classifier` (named at each use).
//
// Tolerance: the fixture's max|ours - ref| <= 1e-4 * max|ref| per array, the gradient measured
// against its own max (8.3e-4). The fixture moved its inputs so that every LeakyReLU input is at
// least 1.5e-4 of its layer's RMS away from 0 (50 times float32's pre-activation error), so no
// slope flips between float32 implementations and the tolerance need not absorb one.

import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadNetwork } from '../../src/diffpure/models.js';
import * as T from '../../src/index.js';
import { loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { encodeTorchCheckpoint, type TorchValue } from '../../src/nn/io/torch-write.js';
import { buildShapeOnly, describeShapeOnly } from '../../src/nn/meta.js';
import {
  AttributeCheckpointError,
  AttributeInputError,
  attributeCheckpointStateDict,
  attributeLogits,
  checkUnitRange,
  loadAttributeClassifier,
} from '../../src/nn/models/attribute-classifier.js';
import {
  AttributeNet,
  attributeNetOptionsFromStateDict,
  attributeNetWidths,
  DIFFPURE_CELEBAHQ_CLASSIFIER,
} from '../../src/nn/models/attribute-net.js';
import { FIXTURES, fixtureArray, fixtureTensor, readMeta, relErr } from '../harness/fixtures.js';
import { countingBackend, onCountingBackend } from '../sde/helpers.js';
import { FIXTURE_TOL, outputAndGrad, WRN } from './fixture-helpers.js';

const DIR = join(FIXTURES, 'ddpm_celebahq');
const CKPT = join(DIR, 'classifier_net_best.pth');

interface ClassifierMeta {
  n_params: number;
  full_size_n_params: number;
  shrink: {
    fmap_base: number;
    fmap_max: number;
    resolution: number;
    full_size: { fmap_base: number; fmap_max: number };
  };
  state_dict_keys_shapes_dtypes: [string, number[], string][];
  checkpoint_layout: { top_level: string };
}
const meta = readMeta<{ classifier: ClassifierMeta }>(DIR).classifier;
const shrunk = { resolution: meta.shrink.resolution, fmap_base: meta.shrink.fmap_base, fmap_max: meta.shrink.fmap_max };

/** Logits and d/dx sum(w * logits) of the fixture's inputs; errors as the fixture states them. */
async function parity(forward: (x: T.Tensor) => T.Tensor, backend: string, rows?: { start: number; count: number }) {
  const r = await outputAndGrad(
    forward,
    fixtureTensor(DIR, 'clf_x', { backend, rows }),
    fixtureTensor(DIR, 'clf_vjp_weight', { backend, rows }),
  );
  return {
    out: r.out,
    logits: relErr(r.out, fixtureArray(DIR, 'clf_logits', rows).data),
    gradX: relErr(r.grad as Float64Array, fixtureArray(DIR, 'clf_grad_x_of_sum_w_logits', rows).data),
  };
}

describe('attribute classifier D: construction (shape-only)', () => {
  test('parameter counts: full size 23,038,017, the fixture 90,357', async () => {
    // meta.json classifier.full_size_n_params / n_params, counted by the official PyTorch module
    expect(meta.full_size_n_params).toBe(23_038_017);
    expect(meta.n_params).toBe(90_357);
    const full = await describeShapeOnly(() => new AttributeNet());
    expect(full.numParameters).toBe(meta.full_size_n_params);
    const fullByConfig = await describeShapeOnly(() => new AttributeNet({ ...meta.shrink.full_size, resolution: 256 }));
    expect(fullByConfig.numParameters).toBe(meta.full_size_n_params);
    const small = await describeShapeOnly(() => new AttributeNet(shrunk));
    expect(small.numParameters).toBe(meta.n_params);
  });

  test('state-dict names and shapes in order are the official ones, lod_in first', async () => {
    const small = await describeShapeOnly(() => new AttributeNet(shrunk));
    const want = meta.state_dict_keys_shapes_dtypes.map(([k, s]) => [k, s]);
    expect([...small.shapes].map(([k, s]) => [k, [...s]])).toEqual(want);
    expect(want[0]).toEqual(['lod_in', []]);
    // lod_in is a buffer, not a parameter (the counts above leave it out, as PyTorch's do)
    const built = await buildShapeOnly(() => new AttributeNet(shrunk));
    expect(built.namedParameters().map(([k]) => k)).toEqual(want.slice(1).map(([k]) => k));
  });

  test("widths come from a checkpoint's tensor shapes, full size or shrunk", async () => {
    const sd = attributeCheckpointStateDict(loadTorchCheckpoint(CKPT)).stateDict;
    const fromCkpt = attributeNetOptionsFromStateDict(sd);
    expect(fromCkpt.resolution).toBe(256);
    expect(fromCkpt.nf).toEqual(attributeNetWidths(8, meta.shrink.fmap_base, 1, meta.shrink.fmap_max));
    // meta.json shrink.channels_used: fromrgb 4, then 4,4,8 / 8,8,16 / 16,16,32 / 32 ...
    expect(fromCkpt.nf).toEqual([32, 32, 32, 32, 32, 16, 8, 4]);
    const full = await buildShapeOnly(() => new AttributeNet());
    const fromFull = attributeNetOptionsFromStateDict(full.stateDict());
    const fullNf = attributeNetWidths(8);
    expect(fromFull.nf).toEqual(fullNf);
    const rebuilt = await describeShapeOnly(() => new AttributeNet(fromFull));
    expect(rebuilt.numParameters).toBe(meta.full_size_n_params);
    expect(DIFFPURE_CELEBAHQ_CLASSIFIER.resolution).toBe(256);
  });
});

describe('attribute classifier: the fixture checkpoint and parity (cpu)', () => {
  test('net_best.pth loads: state_dict with the float64 lod_in, optimizer skipped, epoch and valacc kept', async () => {
    const obj = loadTorchCheckpoint(CKPT) as Map<string, unknown>;
    // meta.json checkpoint_layout.top_level: state_dict, optimizer, epoch 11, valacc 0.921875
    expect([...obj.keys()]).toEqual(['state_dict', 'optimizer', 'epoch', 'valacc']);
    const { stateDict } = attributeCheckpointStateDict(obj as never);
    expect(stateDict.get('lod_in')?.dtype).toBe('float64');
    const clf = await loadAttributeClassifier(CKPT);
    expect(clf.info).toEqual({ epoch: 11, valacc: 0.921875 });
    expect(clf.net.lodIn.value.dataSync()[0]).toBe(0);
    expect(clf.net.numParameters()).toBe(meta.n_params);
    expect(clf.net.training).toBe(false);
    clf.dispose();
  });

  test('a real-size Adam state (step, exp_avg, exp_avg_sq per parameter) is skipped', async () => {
    // real net_best.pth files carry full Adam moments (meta.json checkpoint_layout.real_files); the
    // fixture's are empty, so rebuild it with one moment pair per parameter and check it loads the same
    const { stateDict } = attributeCheckpointStateDict(loadTorchCheckpoint(CKPT));
    const params = [...stateDict].filter(([k]) => k !== 'lod_in');
    const state = new Map<string, TorchValue>(
      params.map(([, t], i) => [
        String(i),
        new Map<string, TorchValue>([
          ['step', { dtype: 'float32', shape: [], data: Float32Array.of(100) }],
          ['exp_avg', { ...t, data: Float32Array.from(t.data, () => 1e-3) }],
          ['exp_avg_sq', { ...t, data: Float32Array.from(t.data, () => 1e-6) }],
        ]),
      ]),
    );
    const optimizer = new Map<string, TorchValue>([
      ['state', state],
      ['param_groups', [{ lr: 0.001, params: params.map((_, i) => i) }]],
    ]);
    const bytes = encodeTorchCheckpoint(
      new Map<string, TorchValue>([
        ['state_dict', stateDict],
        ['optimizer', optimizer],
        ['epoch', 11],
        ['valacc', 0.921875],
      ]),
      'net_best',
    );
    const [a, b] = [await loadAttributeClassifier(bytes), await loadAttributeClassifier(CKPT)];
    expect(a.info).toEqual(b.info);
    for (const [k, t] of a.net.stateDict()) {
      expect(Array.from(t.dataSync()), k).toEqual(Array.from((b.net.stateDict().get(k) as T.Tensor).dataSync()));
    }
    a.dispose();
    b.dispose();
  });

  test('logits [l, -l] and the input gradient of sum(w * logits) match (1e-4 of max|ref|)', async () => {
    const clf = await loadAttributeClassifier(CKPT);
    const e = await parity((x) => clf.forward(x), 'cpu');
    console.log(
      `attribute classifier (cpu): logits err ${e.logits.toExponential(2)}, grad_x err ${e.gradX.toExponential(2)} (of max|ref|)`,
    );
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
    for (let b = 0; b < 2; b++) expect(e.out[2 * b + 1]).toBe(-(e.out[2 * b] as number));
    clf.dispose();
  });

  test("diffpure's model registry: loadNetwork('attribute') takes the widths from the checkpoint", async () => {
    const net = await loadNetwork('attribute', undefined, CKPT, 'cpu');
    expect(net.needsTime).toBe(false);
    const e = await parity((x) => net.forward(x), 'cpu');
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
    net.module.dispose();
  });

  test('images of 512 px are block-averaged down: a 2x nearest upsample gives the 256 px logits', async () => {
    const clf = await loadAttributeClassifier(CKPT);
    const [got, ref] = T.tidy(() => {
      const x = fixtureTensor(DIR, 'clf_x', { rows: { start: 0, count: 1 } });
      const big = T.upsampleNearest2d(x, { scaleFactor: 2 });
      return T.noGrad(() => [clf.forward(big), clf.forward(x)]);
    });
    expect(Array.from((got as T.Tensor).dataSync())).toEqual(Array.from((ref as T.Tensor).dataSync()));
    T.dispose([got as T.Tensor, ref as T.Tensor]);
    clf.dispose();
  });
});

describe('attribute classifier: bad inputs give named errors', () => {
  test('a checkpoint of the wrong layout', async () => {
    // a plain state dict (the UNet of the same fixture): no 'state_dict' entry
    const unet = loadAttributeClassifier(join(DIR, 'unet.pth'));
    await expect(unet).rejects.toThrow(AttributeCheckpointError);
    await expect(loadAttributeClassifier(join(DIR, 'unet.pth'))).rejects.toThrow(/missing key 'state_dict'/);
    // {'state_dict': ...} of another network (RobustBench's WRN): missing and unexpected keys listed
    const wrn = loadAttributeClassifier(join(WRN, 'model.pt'));
    await expect(wrn).rejects.toThrow(AttributeCheckpointError);
    await expect(loadAttributeClassifier(join(WRN, 'model.pt'))).rejects.toThrow(
      /Missing key\(s\) in state_dict: "lod_in", "fromrgb_lod0.conv.conv.weight"[\s\S]*Unexpected key\(s\) in state_dict: "module.conv1.weight"/,
    );
  });

  test('images of 128 px, non-multiples of 256, wrong channels', async () => {
    const clf = await loadAttributeClassifier(CKPT);
    T.tidy(() => {
      expect(() => clf.forward(T.zeros([1, 3, 128, 128]))).toThrow(AttributeInputError);
      expect(() => clf.forward(T.zeros([1, 3, 128, 128]))).toThrow(/128 x 128 px.*refuses smaller images/);
      expect(() => clf.forward(T.zeros([1, 3, 300, 300]))).toThrow(/integer multiple of 256/);
      expect(() => clf.forward(T.zeros([1, 3, 256, 512]))).toThrow(AttributeInputError);
      expect(() => clf.forward(T.zeros([1, 1, 256, 256]))).toThrow(/\[B, 3, H, W\]/);
      expect(() => attributeLogits(clf.net, T.zeros([3, 256, 256]))).toThrow(AttributeInputError);
    });
    clf.dispose();
  });

  test('values outside [0, 1] or NaN', async () => {
    const clf = await loadAttributeClassifier(CKPT);
    const x = fixtureTensor(DIR, 'clf_x');
    const over = T.mul(x, 1.5);
    const signed = T.affine(x, 2, -1);
    const nan = T.div(T.sub(x, x), T.sub(x, x));
    await expect(clf.classify(over)).rejects.toThrow(AttributeInputError);
    await expect(clf.classify(over)).rejects.toThrow(/outside \[0, 1\].*Divide 8-bit pixels by 255/);
    await expect(clf.classify(signed)).rejects.toThrow(/map \[-1, 1\] images by \(x \+ 1\) \/ 2/);
    await expect(checkUnitRange(nan)).rejects.toThrow(/NaN/);
    const ok = await clf.classify(x);
    expect(ok.shape).toEqual([2, 2]);
    T.dispose([x, over, signed, nan, ok]);
    clf.dispose();
  });
});

describe('attribute classifier: memory (counting cpu backend)', () => {
  onCountingBackend();

  test('loading, forward and gradient, then dispose: live bytes return to the baseline', async () => {
    const be = countingBackend();
    const before = be.live;
    const clf = await loadAttributeClassifier(CKPT, { backend: be.name });
    const loaded = be.live;
    // the parameters (90,357 floats) and lod_in, nothing else
    expect(loaded - before).toBe((meta.n_params + 1) * 4);
    const e = await parity((x) => clf.forward(x), be.name, { start: 1, count: 1 });
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
    expect(be.live).toBe(loaded); // graph, activations and gradients all freed
    // a no-grad forward frees its intermediates too
    const x = fixtureTensor(DIR, 'clf_x', { backend: be.name });
    const y = T.noGrad(() => clf.forward(x));
    T.dispose([x, y]);
    expect(be.live).toBe(loaded);
    clf.dispose();
    expect(be.live).toBe(before);
  });
});
