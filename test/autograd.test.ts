// The autograd API: grad / valueAndGrad / vjp / noGrad / detach / customOp, gradient
// accumulation over shared subexpressions, and that scopes free what they should.

import { describe, expect, test } from 'vitest';
import * as T from '../src/index.js';

const f64 = (v: number[], shape?: number[]) => T.fromArray(v, shape, { dtype: 'float64' });
const near = (a: ArrayLike<number>, b: number[], tol = 1e-12) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < b.length; i++) expect(Math.abs((a[i] as number) - (b[i] as number))).toBeLessThan(tol);
};

describe('autograd', () => {
  test('grad of sum(x^2 * sin(x)) is 2x sin x + x^2 cos x', () => {
    const x = f64([0.3, -1.2, 2]);
    const g = T.grad((x) => T.sum(T.mul(T.square(x), T.sin(x))))(x);
    near(
      g.dataSync(),
      [0.3, -1.2, 2].map((v) => 2 * v * Math.sin(v) + v * v * Math.cos(v)),
    );
  });

  test('a tensor used twice accumulates both paths: d/dx sum(x * x) = 2x', () => {
    const x = f64([1, -2]);
    near(T.grad((x) => T.sum(T.mul(x, x)))(x).dataSync(), [2, -4]);
  });

  test('valueAndGrad with argnums returns the value and one gradient per argument', () => {
    const a = f64([1, 2]);
    const b = f64([3, 4]);
    const { value, grad } = T.valueAndGrad((a, b) => T.sum(T.mul(a, b)), { argnums: [0, 1] })(a, b);
    expect(value.dataSync()[0]).toBe(11);
    near(grad[0]!.dataSync(), [3, 4]);
    near(grad[1]!.dataSync(), [1, 2]);
  });

  test('grad with respect to an argument the function ignores is zero', () => {
    const a = f64([1, 2]);
    const b = f64([3]);
    near(T.grad((_a, b) => T.sum(b), { argnums: 0 })(a, b).dataSync(), [0, 0]);
  });

  test('vjp gives the cotangents of all primals and can be called twice', () => {
    const a = f64([1, 2, 3], [3]);
    const { out, vjpFn, release } = T.vjp((a) => T.mul(a, 2), a);
    near(out.dataSync(), [2, 4, 6]);
    near(vjpFn(f64([1, 0, 1]))[0]!.dataSync(), [2, 0, 2]);
    near(vjpFn(f64([0, 1, 0]))[0]!.dataSync(), [0, 2, 0]);
    release();
    expect(out.isDisposed).toBe(true);
  });

  test('detach and noGrad stop gradients', () => {
    const x = f64([1.5]);
    near(T.grad((x) => T.sum(T.mul(x, T.detach(x))))(x).dataSync(), [1.5]);
    near(
      T.grad((x) =>
        T.sum(
          T.add(
            x,
            T.noGrad(() => T.mul(x, 10)),
          ),
        ),
      )(x).dataSync(),
      [1],
    );
    expect(T.noGrad(() => T.mul(f64([1]), 2).node)).toBeNull();
  });

  test('customOp: autograd uses its vjp, and its forward runs without recording', () => {
    let recording: boolean | null = null;
    const cube = T.customOp({
      name: 'cube',
      forward: (x) => {
        recording = T.isGradEnabled();
        return T.powScalar(x, 3);
      },
      vjp: (g, [x]) => [T.mul(g, T.mul(T.square(x as T.Tensor), 3))],
    });
    const g = T.grad((x) => T.sum(cube(x)))(f64([2, -1]));
    expect(recording).toBe(false);
    near(g.dataSync(), [12, 3]);
  });

  test('grad of a non-scalar function is an error naming the shape', () => {
    expect(() => T.grad((x) => T.mul(x, 2))(f64([1, 2]))).toThrow(/must return a scalar.*\[2\]/);
  });
});

describe('memory scopes', () => {
  test('tidy disposes intermediates and keeps the result', () => {
    let inner: T.Tensor | null = null;
    const y = T.tidy(() => {
      inner = T.mul(f64([1, 2]), 3);
      return T.add(inner, 1);
    });
    expect((inner as unknown as T.Tensor).isDisposed).toBe(true);
    expect(y.isDisposed).toBe(false);
    near(y.dataSync(), [4, 7]);
  });

  test('tensors a recorded graph needs survive tidy until the graph is released', () => {
    const x = f64([0.5]);
    const g = T.tidy(() => T.grad((x) => T.tidy(() => T.sum(T.exp(T.mul(x, 2)))))(x));
    near(g.dataSync(), [2 * Math.exp(1)]);
  });

  test('grad leaves no tensor of its graph alive', () => {
    const x = f64([0.1, 0.2]);
    const seen: T.Tensor[] = [];
    const g = T.grad((x) => {
      const a = T.tanh(x);
      const b = T.mul(a, a);
      seen.push(a, b);
      return T.sum(b);
    })(x);
    expect(g.isDisposed).toBe(false);
    for (const t of seen) expect(t.isDisposed).toBe(true);
    expect(x.isDisposed).toBe(false);
  });

  test('a disposed tensor cannot be used, and dispose is idempotent', () => {
    const t = f64([1]);
    t.dispose();
    t.dispose();
    expect(() => T.add(t, 1)).toThrow(/was disposed/);
  });

  test('keep() exempts a tensor from the enclosing tidy', () => {
    let k: T.Tensor | null = null;
    T.tidy(() => {
      k = T.keep(T.ones([2]));
    });
    expect((k as unknown as T.Tensor).isDisposed).toBe(false);
  });
});

describe('deep graphs', () => {
  test('a 20000-op chain differentiates and frees without overflowing the stack', () => {
    const x = f64([0.5]);
    const g = T.grad((x) => {
      let h = x;
      for (let i = 0; i < 20000; i++) h = T.mul(h, 1.00001);
      return T.sum(h);
    })(x);
    near(g.dataSync(), [1.00001 ** 20000], 1e-9);
  });
});
