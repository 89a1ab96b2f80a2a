// Module bookkeeping: PyTorch's state-dict key order, strict loading errors, train/eval.

import { describe, expect, test } from 'vitest';
import * as T from '../../src/index.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, Module, Sequential } from '../../src/nn/index.js';

class Net extends Module {
  readonly conv = this.registerModule('conv', new Conv2d(3, 4, 3, { padding: 1 }));
  readonly bn = this.registerModule('bn', new BatchNorm2d(4));
  readonly head = this.registerModule('head', new Sequential([new Dropout(0.5), new Linear(4, 2)]));
  forward(x: T.Tensor): T.Tensor {
    const h = T.relu(this.bn.forward(this.conv.forward(x)));
    return this.head.forward(T.mean(h, [2, 3]));
  }
}

describe('Module', () => {
  test('state-dict keys follow PyTorch: params, then buffers, then children in order', () => {
    const keys = [...new Net().stateDict().keys()];
    // the order torch gives for the same nn.Module layout
    expect(keys).toEqual([
      'conv.weight',
      'conv.bias',
      'bn.weight',
      'bn.bias',
      'bn.running_mean',
      'bn.running_var',
      'bn.num_batches_tracked',
      'head.1.weight',
      'head.1.bias',
    ]);
    expect(new Net().numParameters()).toBe(4 * 3 * 9 + 4 + 4 + 4 + 2 * 4 + 2);
  });

  test('strict loading lists missing keys, unexpected keys and shape mismatches', () => {
    const net = new Net();
    const sd = new Map([...net.stateDict()].filter(([k]) => k !== 'conv.bias'));
    sd.set('extra.weight', T.zeros([1]));
    expect(() => net.loadStateDict(sd)).toThrow(
      /Missing key\(s\) in state_dict: "conv.bias"[\s\S]*Unexpected key\(s\) in state_dict: "extra.weight"/,
    );
    const bad = new Map(net.stateDict());
    bad.set('head.1.weight', T.zeros([3, 4]));
    expect(() => net.loadStateDict(bad)).toThrow(
      /size mismatch for head.1.weight: copying a param with shape \[3, 4\], the shape in the current model is \[2, 4\]/,
    );
    const res = new Net().loadStateDict(sd, { strict: false });
    expect(res).toEqual({ missingKeys: ['conv.bias'], unexpectedKeys: ['extra.weight'] });
  });

  test('loading host data replaces the weights', async () => {
    const net = new Net();
    const w = { shape: [2, 4], data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]) };
    net.loadStateDict(new Map([['head.1.weight', w]]), { strict: false });
    expect(await net.stateDict().get('head.1.weight')?.toArray()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(() =>
      net.loadStateDict(new Map([['head.1.bias', { shape: [2], data: [Number.NaN, 0] }]]), { strict: false }),
    ).toThrow(/head.1.bias contains NaN/);
  });

  test("BatchNorm2d in training equals PyTorch's: output, running buffers and gradients (float64)", async () => {
    // expected values printed by Debian's PyTorch 1.13: torch.nn.BatchNorm2d(3).double(), weight [1.5, -0.5, 2],
    // bias [0.1, 0.2, -0.3] (float64), x[i] = sin(0.7 i) (1 + i % 3) as [2, 3, 2, 2], loss sum(y * cos(0.3 i)), one step
    const bn = new BatchNorm2d(3);
    bn.weight.value = T.fromArray([1.5, -0.5, 2], [3], { dtype: 'float64' });
    bn.bias.value = T.fromArray([0.1, 0.2, -0.3], [3], { dtype: 'float64' });
    bn.runningMean.value = T.zeros([3], { dtype: 'float64' });
    bn.runningVar.value = T.ones([3], { dtype: 'float64' });
    bn.train();
    const xs = Array.from({ length: 24 }, (_, i) => Math.sin(0.7 * i) * (1 + (i % 3)));
    const x = T.fromArray(xs, [2, 3, 2, 2], { dtype: 'float64' });
    const w = T.fromArray(
      Array.from({ length: 24 }, (_, i) => Math.cos(0.3 * i)),
      [2, 3, 2, 2],
      { dtype: 'float64' },
    );
    const { out, vjpFn, release } = T.vjp(
      (a, g, b) => {
        bn.weight.value = g;
        bn.bias.value = b;
        return bn.forward(a);
      },
      x,
      bn.weight.value,
      bn.bias.value,
    );
    const [gx, gw, gb] = vjpFn(w) as [T.Tensor, T.Tensor, T.Tensor];
    // the values were printed to 12 decimals
    const close = (got: ArrayLike<number>, want: number[]) => {
      for (const [i, v] of want.entries()) {
        expect(Math.abs((got[i] as number) - v), `${i}: ${got[i]} vs ${v}`).toBeLessThan(1e-11);
      }
    };
    close(
      out.dataSync(),
      [
        -0.619776697426, 0.985510541921, 3.063597512661, 0.455713007854, -0.380929231353, 0.345510239034,
        0.269263753071, 0.730406229199, -3.491456804475, -1.149529609068, 0.440458180138, 2.4635905306, 0.44498506641,
        0.17536528536, -1.989587588984, -1.715807127796, 0.7276436806, 0.683802321086, -0.112529332254, -0.663167659383,
        2.472559761863, -0.13346840447, -0.427046967528, -2.57510668706,
      ],
    );
    close(
      gx.dataSync(),
      [
        1.269082988879, 0.787157616569, 0.073358469792, 0.512046929476, 0.077188104126, 0.020402507708, 0.164936854735,
        0.167913979095, -0.857740616165, -1.107922844803, -1.244386191872, -1.280938063286, -1.376869650843,
        -1.092437445711, -0.223914261221, 0.051575353059, -0.081240540903, -0.192907941537, -0.104102551869,
        -0.052190411356, 1.106210455942, 1.205908673781, 1.150830761026, 1.028037825378,
      ],
    );
    close(gw.dataSync(), [2.557593498295741, 2.3470880792946134, 0.2557051083643861]);
    close(gb.dataSync(), [1.078534731000182, 1.6359291437856525, 0.10704849105005154]);
    close(bn.runningMean.value.dataSync(), [0.05777070520186465, -0.07073573254773378, 0.07098854057628626]);
    close(bn.runningVar.value.dataSync(), [1.0656499243870208, 1.0606056080619104, 1.2042631479880874]);
    release();
  });

  test('eval disables dropout and uses running statistics; train updates them', async () => {
    const net = new Net();
    const x = T.randomNormal([2, 3, 5, 5], { seed: 3 });
    net.eval();
    const a = await net.forward(x).toArray();
    const b = await net.forward(x).toArray();
    expect(a).toEqual(b);
    net.train();
    T.tidy(() => net.forward(x));
    expect(await net.bn.numBatchesTracked.value.item()).toBe(1);
    expect(await net.bn.runningMean.value.toArray()).not.toEqual([0, 0, 0, 0]);
  });
});
