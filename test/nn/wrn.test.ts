// CIFAR-10 WideResNets. RobustBench's WideResNet against the wrn fixture (../shared/fixtures/wrn:
// WRN-16-2 made by RobustBench's own code, saved as {'state_dict': 'module.'-prefixed}): keys,
// parameter counts, logits and the input gradient in eval mode from the real checkpoint file.
// The DeepMind layout (DMWideResNet, DiffPure's 'wideresnet-70-16') against outputs of
// RobustBench's dm_wide_resnet.py on weights from an integer hash (test/nn/fixtures/classifiers,
// see make_refs.py there). Full-size parameter counts of the three classifiers DiffPure uses.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { extractStateDict } from '../../src/nn/io/checkpoint.js';
import { readNpy } from '../../src/nn/io/npy.js';
import { loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { describeShapeOnly } from '../../src/nn/meta.js';
import {
  CIFAR10_MEAN,
  CIFAR10_STD,
  DMWideResNet,
  type DMWideResNetOptions,
  dmWideResNet70x16,
  updateStateDict,
  WideResNet,
  wideResNet28x10,
  wideResNet70x16Dropout,
} from '../../src/nn/models/wrn.js';
import { relErr } from '../harness/fixtures.js';
import { FIXTURE_TOL, wrnErrors } from './fixture-helpers.js';
import {
  CLASSIFIER_REFS,
  COTANGENT_KEY,
  classifierRefs,
  hashedStateDict,
  hashedUniform,
  type RefModel,
} from './resnet_hashed_weights.js';

const FIXTURE = '../shared/fixtures/wrn';
const REFS = CLASSIFIER_REFS;

interface WrnMeta {
  architecture: string;
  n_params: number;
  full_size_reference: { depth: number; widen_factor: number; n_params: number };
  state_dict_keys: string[];
  state_dict_shapes: Record<string, number[]>;
}
const meta: WrnMeta = JSON.parse(readFileSync(`${FIXTURE}/meta.json`, 'utf8'));

const refs = classifierRefs;

/** Logits and the gradient of sum(w * logits) wrt x. */
function logitsAndGrad(f: (x: T.Tensor) => T.Tensor, x: T.Tensor, w: T.Tensor): { y: Float32Array; g: Float32Array } {
  const { out, vjpFn, release } = T.vjp(f, x);
  const [g] = vjpFn(w);
  const res = { y: Float32Array.from(out.dataSync()), g: Float32Array.from((g as T.Tensor).dataSync()) };
  release();
  return res;
}

describe('RobustBench WideResNet (wrn fixture, cpu)', () => {
  test('keys (with the checkpoint prefix), shapes and parameter count match the fixture', () => {
    const m = new WideResNet({ depth: 16, widen_factor: 2, num_classes: 10 });
    const sd = m.stateDict();
    expect([...sd.keys()].map((k) => `module.${k}`)).toEqual(meta.state_dict_keys);
    for (const [k, t] of sd) expect(t.shape, k).toEqual(meta.state_dict_shapes[`module.${k}`]);
    expect(m.numParameters()).toBe(meta.n_params); // 691,674
    m.dispose();
  });

  test('model.pt loads strictly; logits and input gradient match in eval mode (tolerance 1e-4 max|ref|)', async () => {
    const m = new WideResNet({ depth: 16, widen_factor: 2, num_classes: 10 }).eval();
    // {'state_dict': {'module.conv1.weight': ...}}: the RobustBench layout; extractStateDict unwraps
    m.loadStateDict(extractStateDict(loadTorchCheckpoint(`${FIXTURE}/model.pt`)));
    const e = await wrnErrors((x) => m.forward(x), { backend: 'cpu' });
    console.log(
      `wrn-16-2: logits err ${e.logits.toExponential(2)}, grad_x err ${e.gradX.toExponential(2)} (of max|ref|)`,
    );
    expect(e.logits).toBeLessThan(FIXTURE_TOL);
    expect(e.gradX).toBeLessThan(FIXTURE_TOL);
    m.dispose();
  });

  test('train mode uses batch statistics and updates the running ones; eval does not', () => {
    const m = new WideResNet({ depth: 10, widen_factor: 1 });
    const x = T.randomUniform([4, 3, 32, 32], { seed: 9 });
    const before = Float32Array.from(m.bn1.runningMean.value.dataSync());
    T.tidy(() => m.eval().forward(x));
    expect(Float32Array.from(m.bn1.runningMean.value.dataSync())).toEqual(before);
    T.tidy(() => m.train().forward(x));
    expect(Float32Array.from(m.bn1.runningMean.value.dataSync())).not.toEqual(before);
    expect(m.bn1.numBatchesTracked.value.dataSync()[0]).toBe(1);
    // a BatchNorm inside a block (whose forward runs in its own tidy scope) keeps its updated
    // statistics across two training forwards
    const inner = m.stateDict();
    const key = 'block1.layer.0.bn2.running_mean';
    const innerBefore = Float32Array.from((inner.get(key) as T.Tensor).dataSync());
    T.tidy(() => m.forward(x));
    T.tidy(() => m.forward(x));
    const after = m.stateDict();
    expect(Float32Array.from((after.get(key) as T.Tensor).dataSync())).not.toEqual(innerBefore);
    expect((after.get('block1.layer.0.bn2.num_batches_tracked') as T.Tensor).dataSync()[0]).toBe(3);
    x.dispose();
    m.dispose();
  });

  test("DiffPure's normalising WideResNet equals the plain one on (x - mean) / std", () => {
    T.tidy(() => {
      const plain = new WideResNet({ depth: 10, widen_factor: 1 }).eval();
      const norm = new WideResNet({ depth: 10, widen_factor: 1, normalize: { mean: CIFAR10_MEAN, std: CIFAR10_STD } });
      norm.eval().loadStateDict(plain.stateDict());
      // the statistics are plain attributes in DiffPure's code: no extra state-dict keys
      expect([...norm.stateDict().keys()]).toEqual([...plain.stateDict().keys()]);
      const x = T.randomUniform([2, 3, 32, 32], { seed: 2 });
      const mean = T.fromArray(CIFAR10_MEAN, [3, 1, 1]);
      const std = T.fromArray(CIFAR10_STD, [3, 1, 1]);
      const ref = plain.forward(T.div(T.sub(x, mean), std)).dataSync();
      expect(relErr(norm.forward(x).dataSync(), ref)).toBeLessThan(1e-6);
    });
  });

  test('full-size parameter counts', async () => {
    // WRN-28-10 (RobustBench 'Standard'): 36,479,194, the fixture's full_size_reference
    const std = await describeShapeOnly(wideResNet28x10);
    expect(std.numParameters).toBe(meta.full_size_reference.n_params);
    // DiffPure's wrn-70-16-dropout: same layout as DMWideResNet-70-16 minus the 2 mean/std buffers,
    // so the same 266,796,506 parameters (counted with dm_wide_resnet.py, see below)
    const wrn70 = await describeShapeOnly(wideResNet70x16Dropout);
    expect(wrn70.numParameters).toBe(refs.full_size.DMWideResNet_70_16?.n_params);
    expect(wrn70.shapes.size).toBe(1 + 3 * 11 * 12 + 3 + 5 + 2);
  });
});

describe("DeepMind WideResNet (RobustBench dm_wide_resnet.py, DiffPure's wideresnet-70-16)", () => {
  const cases: [string, DMWideResNetOptions][] = [
    ['dm_wrn_16_2_swish', { num_classes: 10, depth: 16, width: 2, activation_fn: 'swish' }],
    ['dm_wrn_16_2_relu_pad2', { num_classes: 10, depth: 16, width: 2, padding: 2 }],
  ];
  for (const [name, opts] of cases) {
    test(`${name}: keys, logits and input gradient match RobustBench's code`, () => {
      const ref = refs.models[name] as RefModel;
      const m = new DMWideResNet(opts).eval();
      expect([...m.stateDict().keys()]).toEqual(ref.state_dict_keys);
      expect(m.numParameters()).toBe(ref.n_params);
      m.loadStateDict(hashedStateDict(m), { strict: false });
      T.tidy(() => {
        const shape = ref.input_shape;
        const n = shape.reduce((a, b) => a * b, 1);
        const x = T.fromArray(hashedUniform(ref.input_key, n), shape, { dtype: 'float32' });
        const nOut = ref.logits.length * (ref.logits[0] as number[]).length;
        const w = T.fromArray(
          Float64Array.from(hashedUniform(COTANGENT_KEY, nOut), (u) => 2 * u - 1),
          [ref.logits.length, nOut / ref.logits.length],
          { dtype: 'float32' },
        );
        const { y, g } = logitsAndGrad((xx) => m.forward(xx), x, w);
        const errY = relErr(y, ref.logits.flat());
        const errG = relErr(g, readNpy(`${REFS}/${ref.grad_x_file}`).data);
        console.log(`${name}: logits err ${errY.toExponential(2)}, grad_x err ${errG.toExponential(2)} (of max|ref|)`);
        expect(errY).toBeLessThan(1e-4);
        expect(errG).toBeLessThan(1e-4);
      });
      m.dispose();
    });
  }

  test('the 70-16 Swish model has the keys and parameter count of dm_wide_resnet.py', async () => {
    const full = refs.full_size.DMWideResNet_70_16 as { n_params: number; state_dict_shapes: Record<string, number[]> };
    const d = await describeShapeOnly(dmWideResNet70x16);
    expect(d.numParameters).toBe(full.n_params); // 266,796,506
    expect(Object.fromEntries(d.shapes)).toEqual(full.state_dict_shapes);
  });

  test("DiffPure's update_state_dict drops the 'module.0.' of the checkpoint keys", () => {
    const sd = new Map([
      ['module.0.init_conv.weight', 1],
      ['module.0.logits.bias', 2],
    ]);
    expect([...updateStateDict(sd).keys()]).toEqual(['init_conv.weight', 'logits.bias']);
    expect([...updateStateDict(new Map([['module.fc.weight', 0]]), 7).keys()]).toEqual(['fc.weight']);
  });
});
