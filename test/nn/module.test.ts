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
