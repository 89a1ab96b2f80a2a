// Bad inputs raise errors whose messages name the op, the offending shapes or values, and the
// argument, so a user can find the mistake without a debugger. Each regex below matches the key
// parts of the message (op name first), not its exact wording.

import { describe, expect, test } from 'vitest';
import * as T from '../src/index.js';

const f32 = (shape: number[], fill = 0) => T.full(shape, fill);
const f64 = (shape: number[], fill = 0) => T.full(shape, fill, { dtype: 'float64' });
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('shape mismatch', () => {
  test('matmul: inner dimensions', () => {
    expect(() => T.matmul(f32([2, 3]), f32([4, 5]))).toThrow(
      /^matmul: inner dimensions differ: a \[2, 3\] has 3 columns, b \[4, 5\] has 4 rows/,
    );
    expect(() => T.matmul(f32([7, 2, 3]), f32([2]))).toThrow(
      /^matmul: .*a \[7, 2, 3\] has 3 columns, b \[2\] has 2 rows/,
    );
  });

  test('matmul: batch dimensions that do not broadcast', () => {
    expect(() => T.matmul(f32([2, 3, 4]), f32([5, 4, 6]))).toThrow(
      /^matmul: shapes \[2\] and \[5\] are not broadcastable/,
    );
  });

  test('matmul: rank-0 operand', () => {
    expect(() => T.matmul(f32([]), f32([3]))).toThrow(/^matmul: operands must be at least 1-D, got \[\] and \[3\]/);
  });

  test('conv2d: input channels differ from the weight', () => {
    expect(() => T.conv2d(f32([1, 3, 5, 5]), f32([4, 2, 3, 3]))).toThrow(
      /^conv2d: input \[1, 3, 5, 5\] and weight \[4, 2, 3, 3\] do not match groups=1/,
    );
  });

  test('conv2d: options passed where the bias goes, or a bias of the wrong size', () => {
    const opts = { padding: 1 } as unknown as T.Tensor;
    expect(() => T.conv2d(f32([1, 3, 5, 5]), f32([4, 3, 3, 3]), opts)).toThrow(
      /^conv2d: bias must be a Tensor \[4\] or undefined, got object \(options go fourth/,
    );
    expect(() => T.conv2d(f32([1, 3, 5, 5]), f32([4, 3, 3, 3]), f32([3]))).toThrow(/^conv2d: bias \[3\] must be \[4\]/);
  });

  test('the fused normalisations: rank, the cotangent, eps, empty statistics', () => {
    expect(() => T.normalizeChannels(f32([4]))).toThrow(/^normalizeChannels: x must be \[N, C, \.\.\.\], got \[4\]/);
    expect(() => T.normalizeChannels(f32([2, 3]), -1)).toThrow(/^normalizeChannels: eps must be a finite number >= 0/);
    expect(() => T.normalizeChannelsGrad(f32([2, 3, 4]), f32([2, 3]))).toThrow(
      /^normalizeChannelsGrad: g must have x's shape \[2, 3, 4\], got \[2, 3\]/,
    );
    expect(() => T.normalizeChannelsGrad(f32([2, 3]), f64([2, 3]))).toThrow(
      /^normalizeChannelsGrad: x is float32 but g is float64; cast one with astype\(\)/,
    );
    expect(() => T.normalizeLastAxisGrad(f32([]), f32([]))).toThrow(
      /^normalizeLastAxisGrad: x must have at least one axis/,
    );
    expect(() => T.normalizeLastAxisGrad(f32([2, 5]), f32([5, 2]))).toThrow(
      /^normalizeLastAxisGrad: g must have x's shape \[2, 5\], got \[5, 2\]/,
    );
    expect(() => T.channelMoments(f32([0, 3, 2]))).toThrow(/^channelMoments: x \[0, 3, 2\] has no elements/);
  });

  test('conv2d: channels not divisible by groups', () => {
    expect(() => T.conv2d(f32([1, 6, 5, 5]), f32([4, 3, 3, 3]), undefined, { groups: 4 })).toThrow(
      /^conv2d: input \[1, 6, 5, 5\] and weight \[4, 3, 3, 3\] do not match groups=4/,
    );
    expect(() => T.conv2d(f32([1, 6, 5, 5]), f32([3, 3, 3, 3]), undefined, { groups: 2 })).toThrow(
      /^conv2d: .*groups=2 \(need weight\[1\] \* groups = C and O divisible by groups\)/,
    );
    expect(() => T.conv2d(f32([1, 6, 5, 5]), f32([4, 3, 3, 3]), undefined, { groups: 0 })).toThrow(
      /^conv2d: groups must be a positive integer, got 0/,
    );
  });

  test('conv2d: bad rank, bias shape, kernel larger than the padded input', () => {
    expect(() => T.conv2d(f32([3, 5, 5]), f32([4, 3, 3, 3]))).toThrow(
      /^conv2d: input x must be \[N, C, H, W\], got \[3, 5, 5\]/,
    );
    expect(() => T.conv2d(f32([1, 3, 5, 5]), f32([4, 3, 3, 3]), f32([3]))).toThrow(/^conv2d: bias \[3\] must be \[4\]/);
    expect(() => T.conv2d(f32([1, 3, 2, 5]), f32([4, 3, 3, 3]))).toThrow(
      /^conv2d: input size 2 with kernel 3, padding 0, dilation 1 gives no output/,
    );
  });

  test('concat: inputs differing off the concat axis', () => {
    expect(() => T.concat([f32([3, 3]), f32([2, 4])], 0)).toThrow(
      /^concat: xs\[1\] has shape \[2, 4\], incompatible with xs\[0\] \[3, 3\] along axis 0/,
    );
    expect(() => T.concat([f32([2, 3]), f32([2, 3]), f32([2, 3, 1])], -1)).toThrow(
      /^concat: xs\[2\] has shape \[2, 3, 1\], incompatible with xs\[0\] \[2, 3\] along axis 1/,
    );
    expect(() => T.concat([])).toThrow(/^concat: needs at least one tensor/);
  });

  test('stack: inputs of different shapes', () => {
    expect(() => T.stack([f32([2, 3]), f32([3, 2])])).toThrow(
      /^stack: xs\[1\] has shape \[3, 2\] but xs\[0\] has \[2, 3\]/,
    );
  });

  test('gather / scatterAdd: index shape', () => {
    expect(() => T.gather(f32([2, 3]), 1, f32([3, 1]))).toThrow(
      /^gather: index \[3, 1\] must have the rank of \[2, 3\] and no larger size on axes other than 1/,
    );
    expect(() => T.scatterAdd([2, 3], 0, f32([2, 3]), f32([2, 2]))).toThrow(
      /^scatterAdd: index \[2, 3\] and src \[2, 2\] must have the same shape/,
    );
  });

  test('normalisations: parameter shapes and groups', () => {
    expect(() => T.layerNorm(f32([2, 3]), [2])).toThrow(
      /^layerNorm: normalizedShape \[2\] does not match the trailing axes of x \[2, 3\]/,
    );
    expect(() => T.layerNorm(f32([2, 3]), [3], f32([2]))).toThrow(/^layerNorm: weight has shape \[2\], expected \[3\]/);
    expect(() => T.groupNorm(f32([2, 6, 4]), 4)).toThrow(
      /^groupNorm: 6 channels of x \[2, 6, 4\] cannot be split into 4 groups/,
    );
    expect(() => T.batchNorm(f32([2, 3]), f32([3]), f32([2]))).toThrow(
      /^batchNorm: runningVar has shape \[2\], expected \[3\]/,
    );
    expect(() => T.gridSample(f32([1, 1, 4, 4]), f32([1, 2, 2, 3]))).toThrow(
      /^gridSample: grid must be \[1, OH, OW, 2\] for x \[1, 1, 4, 4\], got \[1, 2, 2, 3\]/,
    );
  });
});

describe('non-broadcastable shapes', () => {
  test('add', () => {
    expect(() => T.add(f32([2, 3]), f32([4]))).toThrow(
      /^add: shapes \[2, 3\] and \[4\] are not broadcastable \(dimension -1 is 3 vs 4\)/,
    );
    expect(() => T.add(f32([2, 1, 5]), f32([3, 3, 1]))).toThrow(
      /^add: shapes \[2, 1, 5\] and \[3, 3, 1\] .*dimension -3 is 2 vs 3/,
    );
  });

  test('mul, where, expand', () => {
    expect(() => T.mul(f32([3]), f32([2]))).toThrow(/^mul: shapes \[3\] and \[2\] are not broadcastable/);
    expect(() => T.where(f32([2]), f32([3]), 0)).toThrow(
      /^where: shapes \[2\] and \[3\] and \[\] are not broadcastable/,
    );
    expect(() => T.expand(f32([2, 3]), [2, 4])).toThrow(/^expand: shapes \[2, 3\] and \[2, 4\] are not broadcastable/);
    expect(() => T.expand(f32([2, 1]), [3])).toThrow(/^expand: \[2, 1\] cannot be expanded to \[3\]/);
  });
});

describe('out-of-range axes', () => {
  test('sum and other reductions', () => {
    expect(() => T.sum(f32([2, 3]), 2)).toThrow(
      /^sum: axis 2 is out of range for a tensor of rank 2 \(valid: -2\.\.1\)/,
    );
    expect(() => T.sum(f32([2, 3]), [0, -3])).toThrow(/^sum: axis -3 is out of range for a tensor of rank 2/);
    expect(() => T.max(f32([2, 3]), 1.5)).toThrow(/^max: axis 1.5 is out of range/);
    expect(() => T.mean(f32([2]), 1)).toThrow(/^mean: axis 1 is out of range for a tensor of rank 1/);
    expect(() => T.sum(f32([2, 3]), [1, -1])).toThrow(/^sum: axes \[1, -1\] contain duplicates/);
  });

  test('softmax family', () => {
    expect(() => T.softmax(f32([2, 3]), 2)).toThrow(
      /^softmax: axis 2 is out of range for a tensor of rank 2 \(valid: -2\.\.1\)/,
    );
    expect(() => T.logSoftmax(f32([4]), -2)).toThrow(/^logSoftmax: axis -2 is out of range for a tensor of rank 1/);
    expect(() => T.logsumexp(f32([4, 1]), 3)).toThrow(/^logsumexp: axis 3 is out of range for a tensor of rank 2/);
  });

  test('permute', () => {
    expect(() => T.permute(f32([2, 3, 4]), [0, 3, 1])).toThrow(
      /^permute: perm entry 3 is out of range for a tensor of rank 3 \(valid: -3\.\.2\)/,
    );
    expect(() => T.permute(f32([2, 3, 4]), [0, 1])).toThrow(
      /^permute: perm \[0, 1\] is not a permutation of the 3 axes of \[2, 3, 4\]/,
    );
    expect(() => T.permute(f32([2, 3, 4]), [0, 1, -3])).toThrow(/^permute: perm \[0, 1, -3\] is not a permutation/);
  });

  test('transpose', () => {
    expect(() => T.transpose(f32([2, 3]), 0, 2)).toThrow(/^transpose: axis 2 is out of range for a tensor of rank 2/);
    expect(() => T.transpose(f32([5]))).toThrow(/^transpose: axis -2 is out of range for a tensor of rank 1/);
  });

  test('other shape ops', () => {
    expect(() => T.unsqueeze(f32([2]), 2)).toThrow(/^unsqueeze: axis 2 is out of range for a tensor of rank 2/);
    expect(() => T.squeeze(f32([2, 1]), 0)).toThrow(/^squeeze: axis 0 of \[2, 1\] has size 2, not 1/);
    expect(() => T.flip(f32([2, 1]), 2)).toThrow(/^flip: axis 2 is out of range/);
    expect(() => T.concat([f32([2]), f32([2])], 1)).toThrow(/^concat: axis 1 is out of range for a tensor of rank 1/);
    expect(() => T.stack([f32([2]), f32([2])], 2)).toThrow(/^stack: axis 2 is out of range for a tensor of rank 2/);
    expect(() => T.gather(f32([2, 3]), -3, f32([2, 3]))).toThrow(/^gather: axis -3 is out of range/);
    expect(() => T.variance(f32([2, 3]), 5)).toThrow(/^variance: axis 5 is out of range/);
  });
});

describe('wrong dtype', () => {
  // float64 on a backend without it (webgpu) is not testable on cpu, which has both
  test('adding a float32 and a float64 tensor', () => {
    expect(() => T.add(f32([2]), f64([2]))).toThrow(
      /^add: a \[2\] is float32 but b \[2\] is float64; cast with astype\(\)/,
    );
    expect(() => T.matmul(f64([2, 2]), f32([2, 2]))).toThrow(
      /^matmul: input 1 \[2, 2\] is float32 but input 0 \[2, 2\] is float64; cast with astype\(\)/,
    );
    expect(() => T.concat([f32([2]), f64([2])])).toThrow(
      /^concat: input 1 \[2\] is float64 but input 0 \[2\] is float32/,
    );
  });

  test('astype to an unknown dtype', () => {
    expect(() => T.astype(f32([2]), 'int32' as never)).toThrow(/^astype: unknown dtype 'int32' \(float32 or float64\)/);
  });
});

describe('NaN and invalid values where forbidden', () => {
  test('clamp with NaN bounds or lo > hi', () => {
    expect(() => T.clamp(f32([2]), Number.NaN, 1)).toThrow(/^clamp: lower bound lo is NaN/);
    expect(() => T.clamp(f32([2]), 0, Number.NaN)).toThrow(/^clamp: upper bound hi is NaN/);
    expect(() => T.clamp(f32([2]), 2, 1)).toThrow(/^clamp: lo 2 is greater than hi 1/);
  });

  test('gather with a NaN, fractional or out-of-range index value', () => {
    const x = T.fromArray(range(6), [2, 3]);
    expect(() => T.gather(x, 1, T.fromArray([0, Number.NaN], [1, 2]))).toThrow(
      /^gather: index value NaN is out of range for axis 1 of size 3/,
    );
    expect(() => T.gather(x, 1, T.fromArray([3], [1, 1]))).toThrow(
      /^gather: index value 3 is out of range for axis 1 of size 3/,
    );
    expect(() => T.gather(x, 0, T.fromArray([-1], [1, 1]))).toThrow(
      /^gather: index value -1 is out of range for axis 0 of size 2/,
    );
    expect(() => T.gather(x, 0, T.fromArray([0.5], [1, 1]))).toThrow(/^gather: index value 0.5 is out of range/);
  });

  test('scatterAdd and indexSelect with out-of-range indices', () => {
    expect(() => T.scatterAdd([2, 3], 1, T.fromArray([1, 5], [1, 2]), f32([1, 2]))).toThrow(
      /^scatterAdd: index value 5 is out of range for axis 1 of size 3/,
    );
    expect(() => T.indexSelect(f32([2, 3]), 1, [0, 3])).toThrow(
      /^indexSelect: index 3 is out of range for axis 1 of size 3/,
    );
    expect(() => T.indexSelect(f32([2, 3]), 0, [-3])).toThrow(
      /^indexSelect: index -3 is out of range for axis 0 of size 2/,
    );
    expect(() => T.indexSelect(f32([2, 3]), 0, T.fromArray([Number.NaN]))).toThrow(
      /^gather: index value NaN is out of range for axis 0 of size 2/,
    );
    expect(() => T.indexSelect(f32([2, 3]), 0, f32([1, 1]))).toThrow(/^indexSelect: indices must be 1-D, got \[1, 1\]/);
  });

  test('fromArray with the wrong number of elements or an invalid shape', () => {
    expect(() => T.fromArray([1, 2, 3, 4, 5], [2, 3])).toThrow(
      /^fromArray: data has 5 elements but shape \[2, 3\] needs 6/,
    );
    expect(() => T.fromArray([1, 2], [2, -1])).toThrow(
      /^fromArray: shape has invalid shape \[2, -1\]; dimensions must be non-negative integers/,
    );
    expect(() => T.full([2.5], 0)).toThrow(/^fill: shape has invalid shape \[2.5\]/);
  });

  test('variance without degrees of freedom', () => {
    expect(() => T.variance(f32([1, 3]), 0)).toThrow(
      /^variance: 1 elements with correction 1 leave no degrees of freedom/,
    );
  });
});

describe('using a disposed tensor', () => {
  test('as an op input and when reading', () => {
    const x = T.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    x.dispose();
    expect(x.isDisposed).toBe(true);
    // the message names the tensor (id, shape, dtype) but not the op; see the report
    expect(() => T.add(x, 1)).toThrow(/^affine: input 0 \[2, 3\] was disposed and cannot be used/);
    expect(() => T.matmul(x, f32([3, 2]))).toThrow(/^matmul: input 0 \[2, 3\] was disposed/);
    expect(() => x.dataSync()).toThrow(/Tensor #\d+ \[2, 3\] float32 was disposed/);
  });

  test('after its tidy() scope ended', () => {
    let inner: T.Tensor | undefined;
    T.tidy(() => {
      inner = T.full([4], 1);
    });
    expect(() => T.sum(inner as T.Tensor)).toThrow(/^sum: input 0 \[4\] was disposed/);
  });
});

describe('autograd misuse', () => {
  test('grad of a non-scalar function', () => {
    const x = T.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(() => T.grad((a: T.Tensor) => T.mul(a, 2))(x)).toThrow(
      /^grad: the function must return a scalar \(one element\), got shape \[2, 3\]/,
    );
    expect(() => T.valueAndGrad((a: T.Tensor) => T.sum(a, 0))(x)).toThrow(
      /^valueAndGrad: the function must return a scalar .* got shape \[3\]/,
    );
  });

  test('argnums out of range, grad inside noGrad, non-Tensor results', () => {
    const x = T.fromArray([1, 2]);
    expect(() => T.grad((a: T.Tensor) => T.sum(a), { argnums: 1 })(x)).toThrow(
      /^grad: argnums 1 is out of range for 1 arguments/,
    );
    expect(() => T.noGrad(() => T.grad((a: T.Tensor) => T.sum(a))(x))).toThrow(/^grad: called inside noGrad\(\)/);
    expect(() => T.vjp(() => 3 as unknown as T.Tensor, x)).toThrow(
      /^vjp: the function must return a Tensor, got number/,
    );
  });

  test('vjp with a cotangent of the wrong shape', () => {
    const x = T.fromArray([1, 2, 3]);
    const { vjpFn, release } = T.vjp((a) => T.mul(a, a), x);
    expect(() => vjpFn(f32([2]))).toThrow(/^autograd: cotangent 0 has shape \[2\] but the output has shape \[3\]/);
    release();
  });
});

describe('reshape to an incompatible size', () => {
  test('explicit shape', () => {
    expect(() => T.reshape(f32([2, 3]), [4, 2])).toThrow(
      /^reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4, 2\]/,
    );
    expect(() => T.reshape(f32([2, 3]), [6, 0.5])).toThrow(
      /^reshape: cannot reshape \[2, 3\] \(6 elements\) to \[6, 0.5\]/,
    );
  });

  test('with -1', () => {
    expect(() => T.reshape(f32([2, 3]), [4, -1])).toThrow(/^reshape: cannot reshape \[2, 3\] to \[4, -1\]/);
    expect(() => T.reshape(f32([2, 3]), [-1, -1])).toThrow(/^reshape: cannot reshape \[2, 3\] to \[-1, -1\]/);
  });
});

describe('slice out of range', () => {
  test('start, end, step, too many specs', () => {
    const x = f32([3, 4]);
    expect(() => T.slice(x, [[5, null]])).toThrow(
      /^slice: start 5 on axis 0 is out of range for size 3 \(valid: -3\.\.3\)/,
    );
    expect(() => T.slice(x, [null, [0, -5]])).toThrow(
      /^slice: end -5 on axis 1 is out of range for size 4 \(valid: -4\.\.4\)/,
    );
    expect(() => T.slice(x, [[0, 2, 0]])).toThrow(/^slice: step 0 on axis 0 must be a non-zero integer/);
    expect(() => T.slice(x, [[0, 2, 1.5]])).toThrow(/^slice: step 1.5 on axis 0 must be a non-zero integer/);
    expect(() => T.slice(x, [null, null, null])).toThrow(/^slice: 3 specs for a tensor of rank 2/);
  });

  test('narrow and pad', () => {
    expect(() => T.narrow(f32([3, 4]), 1, 2, 3)).toThrow(/^narrow: \[2, 5\) is outside axis 1 of size 4 in \[3, 4\]/);
    expect(() => T.narrow(f32([3, 4]), 0, -1, 1)).toThrow(/^narrow: \[-1, 0\) is outside axis 0 of size 3/);
    expect(() => T.pad(f32([3]), [[1, -1]])).toThrow(/^pad: pads\[0\] = \[1, -1\] must be two non-negative integers/);
    expect(() =>
      T.pad(f32([3]), [
        [1, 1],
        [0, 0],
      ]),
    ).toThrow(/^pad: 2 pad pairs for a tensor of rank 1/);
  });
});
