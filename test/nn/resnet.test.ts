// torchvision's ImageNet ResNets: state-dict keys, shapes and parameter counts of resnet18,
// resnet50 and wide_resnet50_2 as torchvision 0.14 builds them, and logits and input gradients of
// reduced-depth bottleneck and basic-block ResNets against torchvision's own forward on weights
// from an integer hash (test/nn/fixtures/classifiers, see make_refs.py there). Max pooling
// against a direct loop, with PyTorch's routing of the gradient to the first maximum.

import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { readNpy } from '../../src/nn/io/npy.js';
import { maxPool2d } from '../../src/nn/layers/pooling.js';
import { buildShapeOnly, describeShapeOnly, materialize } from '../../src/nn/meta.js';
import {
  IMAGENET_MEAN,
  IMAGENET_STD,
  ImageNetClassifier,
  ResNet,
  type ResNetOptions,
  resnet18,
  resnet50,
  wideResnet50x2,
} from '../../src/nn/models/resnet.js';
import { relErr } from '../harness/fixtures.js';
import {
  CLASSIFIER_REFS,
  classifierRefs,
  hashedCotangent,
  hashedInput,
  hashedStateDict,
  type RefModel,
} from './resnet_hashed_weights.js';

const REFS = CLASSIFIER_REFS;
const refs = classifierRefs;

describe('torchvision ResNet structure', () => {
  const cases: [string, () => ResNet, number][] = [
    ['resnet18', () => resnet18(), 11_689_512],
    ['resnet50', () => resnet50(), 25_557_032],
    ['wide_resnet50_2', () => wideResnet50x2(), 68_883_240],
  ];
  for (const [name, build, official] of cases) {
    test(`${name}: keys, shapes and parameter count equal torchvision's (built shape-only)`, async () => {
      // official: torchvision's documented counts, equal to what torchvision 0.14 builds (meta.json)
      const ref = refs.full_size[name] as { n_params: number; state_dict_shapes: Record<string, number[]> };
      const d = await describeShapeOnly(build);
      expect(d.numParameters).toBe(official);
      expect(d.numParameters).toBe(ref.n_params);
      expect([...d.shapes.keys()]).toEqual(Object.keys(ref.state_dict_shapes));
      expect(Object.fromEntries(d.shapes)).toEqual(ref.state_dict_shapes);
    });
  }

  test("DiffPure's ImageNet wrapper keeps torchvision's keys under 'resnet.'", async () => {
    const d = await describeShapeOnly(() => new ImageNetClassifier(resnet50()));
    const keys = Object.keys((refs.full_size.resnet50 as { state_dict_shapes: object }).state_dict_shapes);
    expect([...d.shapes.keys()]).toEqual(keys.map((k) => `resnet.${k}`));
  });
});

describe('torchvision ResNet forward and input gradient (hashed weights, cpu)', () => {
  const cases: [string, ResNetOptions][] = [
    ['resnet_bottleneck_1111', { block: 'bottleneck', layers: [1, 1, 1, 1], num_classes: 10 }],
    ['resnet_basic_1111', { block: 'basic', layers: [1, 1, 1, 1], num_classes: 10 }],
  ];
  for (const [name, opts] of cases) {
    test(`${name}: logits and grad of sum(w * logits) match torchvision (tolerance 1e-4 max|ref|)`, async () => {
      const ref = refs.models[name] as RefModel;
      // built shape-only and given the weights directly: no random init to pay for
      const m = await buildShapeOnly(() => new ResNet(opts).eval());
      expect([...m.stateDict().keys()]).toEqual(ref.state_dict_keys);
      expect(m.numParameters()).toBe(ref.n_params);
      materialize(m, hashedStateDict(m));
      T.tidy(() => {
        const x = hashedInput(ref);
        const w = hashedCotangent(ref);
        const { out, vjpFn, release } = T.vjp((xx) => m.forward(xx), x);
        const [g] = vjpFn(w);
        const errY = relErr(out.dataSync(), ref.logits.flat());
        const errG = relErr((g as T.Tensor).dataSync(), readNpy(`${REFS}/${ref.grad_x_file}`).data);
        release();
        console.log(`${name}: logits err ${errY.toExponential(2)}, grad_x err ${errG.toExponential(2)} (of max|ref|)`);
        expect(errY).toBeLessThan(1e-4);
        expect(errG).toBeLessThan(1e-4);
      });
      m.dispose();
    });
  }

  test('the ImageNet wrapper normalises with the ImageNet mean and std', async () => {
    const net = await buildShapeOnly(() => new ResNet({ block: 'basic', layers: [1, 1, 1, 1], num_classes: 5 }));
    materialize(net.eval(), hashedStateDict(net));
    T.tidy(() => {
      const wrapped = new ImageNetClassifier(net).eval();
      const x = T.randomUniform([1, 3, 32, 32], { seed: 4 });
      const norm = T.div(T.sub(x, T.fromArray(IMAGENET_MEAN, [3, 1, 1])), T.fromArray(IMAGENET_STD, [3, 1, 1]));
      expect(relErr(wrapped.forward(x).dataSync(), net.forward(norm).dataSync())).toBeLessThan(1e-6);
    });
  });
});

describe('maxPool2d', () => {
  /** Direct loop over windows with -inf padding; the first maximum in row-major window order. */
  function naive(x: Float64Array, [n, c, h, w]: number[], k: number, s: number, p: number) {
    const oh = Math.floor((h + 2 * p - k) / s) + 1;
    const ow = Math.floor((w + 2 * p - k) / s) + 1;
    const y = new Float64Array(n * c * oh * ow);
    const arg = new Int32Array(y.length);
    for (let b = 0; b < n * c; b++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let best = -Infinity;
          let at = -1;
          for (let di = 0; di < k; di++)
            for (let dj = 0; dj < k; dj++) {
              const r = i * s - p + di;
              const q = j * s - p + dj;
              if (r < 0 || r >= h || q < 0 || q >= w) continue;
              const v = x[(b * h + r) * w + q] as number;
              if (v > best) {
                best = v;
                at = (b * h + r) * w + q;
              }
            }
          y[(b * oh + i) * ow + j] = best;
          arg[(b * oh + i) * ow + j] = at;
        }
    return { y, arg, shape: [n, c, oh, ow] };
  }

  const configs: [number[], number, number, number][] = [
    [[2, 3, 9, 8], 3, 2, 1], // torchvision's stem pooling on odd sizes
    [[1, 2, 7, 7], 2, 2, 0],
    [[1, 1, 5, 6], 3, 1, 1],
  ];
  for (const [shape, k, s, p] of configs) {
    test(`kernel ${k}, stride ${s}, padding ${p} on [${shape}]: values and gradient routing`, () => {
      T.tidy(() => {
        // values rounded to a coarse grid so windows hold ties: the gradient must go to the first
        const raw = T.randomNormal(shape, { seed: 6, dtype: 'float64' }).dataSync();
        const x = Float64Array.from(raw, (v) => Math.round(v * 2) / 2 - 3);
        const ref = naive(x, shape, k, s, p);
        const xt = T.fromArray(x, shape, { dtype: 'float64' });
        const gy = T.randomNormal(ref.shape, { seed: 7, dtype: 'float64' });
        const { out, vjpFn, release } = T.vjp((xx) => maxPool2d(xx, k, { stride: s, padding: p }), xt);
        expect(out.shape).toEqual(ref.shape);
        expect(Array.from(out.dataSync())).toEqual(Array.from(ref.y));
        const g = (vjpFn(gy)[0] as T.Tensor).dataSync();
        const expected = new Float64Array(x.length);
        const gyd = gy.dataSync();
        ref.arg.forEach((at, o) => {
          expected[at] = (expected[at] as number) + (gyd[o] as number);
        });
        expect(relErr(g, expected)).toBeLessThan(1e-15);
        release();
      });
    });
  }

  test('padding above half the kernel is refused, as PyTorch does', () => {
    expect(() => maxPool2d(T.zeros([1, 1, 4, 4]), 2, { padding: 2 })).toThrow(/at most half the kernel/);
  });
});
