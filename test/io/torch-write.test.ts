// The torch.save-format writer (src/nn/io/torch-write.ts), read back by our own restricted reader: tensors of each
// dtype with their shapes and values, int64 written as real int64, and the plain values around them. (PyTorch 1.13
// loading such a file with weights_only=True and a strict load_state_dict into RobustBench's class: see the closing
// note of the session that added it; tests here need no Python.)

import { describe, expect, test } from 'vitest';
import type { HostTensor } from '../../src/nn/io/index.js';
import { listTensors, loadTorchCheckpoint } from '../../src/nn/io/torch.js';
import { encodeTorchCheckpoint } from '../../src/nn/io/torch-write.js';

describe('encodeTorchCheckpoint', () => {
  test('tensors and values round-trip through the reader', () => {
    const sd = new Map<string, HostTensor>([
      [
        'conv.weight',
        { dtype: 'float32', shape: [2, 1, 3, 3], data: Float32Array.from({ length: 18 }, (_, i) => i / 7) },
      ],
      ['bn.num_batches_tracked', { dtype: 'int64', shape: [], data: Float64Array.from([2 ** 40 + 3]) }],
      ['w64', { dtype: 'float64', shape: [2], data: Float64Array.from([Math.PI, -1e-300]) }],
      ['empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) }],
    ]);
    const bytes = encodeTorchCheckpoint({
      state_dict: sd,
      epoch: 300,
      big: 2 ** 40,
      neg: -5,
      ok: true,
      none: null,
      tags: ['a', 'b'],
    } as never);
    const obj = loadTorchCheckpoint(bytes) as Map<string, unknown>;
    const got = new Map(listTensors(obj));
    expect([...got.keys()]).toEqual([
      'state_dict/conv.weight',
      'state_dict/bn.num_batches_tracked',
      'state_dict/w64',
      'state_dict/empty',
    ]);
    for (const [k, t] of sd) {
      const g = got.get(`state_dict/${k}`) as HostTensor;
      expect([g.dtype, g.shape]).toEqual([t.dtype, t.shape]);
      expect(Array.from(g.data as ArrayLike<number>)).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    expect(obj.get('epoch')).toBe(300);
    expect(obj.get('big')).toBe(2 ** 40);
    expect(obj.get('neg')).toBe(-5);
    expect(obj.get('ok')).toBe(true);
    expect(obj.get('none')).toBe(null);
    expect(obj.get('tags')).toEqual(['a', 'b']);
  });
});
