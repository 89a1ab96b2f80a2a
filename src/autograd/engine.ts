// Reverse-mode autodiff: a topological walk of the graph recorded by apply(), in reverse,
// calling each primitive's VJP (defined beside its forward in src/tensor/prims).
// First order only: VJPs run with recording off, so gradients are not themselves differentiable.

import { zerosLike } from '../tensor/prims/creation.js';
import { add } from '../tensor/prims/elementwise.js';
import { isGradEnabled, withGradMode } from '../tensor/runtime.js';
import { fmt, shapesEqual } from '../tensor/shape.js';
import { adoptIntoScope, Tensor, tidy } from '../tensor/tensor.js';

/** Run fn without recording operations for autograd. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

export { isGradEnabled };

/** A tensor sharing x's storage, cut off from the graph. */
export function detach(x: Tensor): Tensor {
  const s = x.storage;
  s.retain();
  return new Tensor(s, x.shape, x.dtype);
}

/** Nodes reachable from `root`, in topological order (inputs before outputs). */
function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // iterative DFS: deep graphs (long SDE solves) would overflow the JS stack recursively
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop() as [Tensor, boolean];
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t)) continue;
    seen.add(t);
    stack.push([t, true]);
    for (const inp of t.node?.inputs ?? []) if (inp.requiresGrad && !seen.has(inp)) stack.push([inp, false]);
  }
  return order;
}

/**
 * Cotangents of `wrt` given `outputs` and their cotangents. Intermediate cotangents are disposed
 * as soon as they have been passed on, so memory peaks at one frontier of the graph.
 */
export function backward(outputs: readonly Tensor[], cotangents: readonly Tensor[], wrt: readonly Tensor[]): Tensor[] {
  const grads = new Map<Tensor, Tensor>();
  const accumulate = (t: Tensor, g: Tensor) => {
    if (!shapesEqual(g.shape, t.shape)) {
      throw new Error(`autograd: a VJP returned shape ${fmt(g.shape)} for an input of shape ${fmt(t.shape)}`);
    }
    const prev = grads.get(t);
    if (!prev) grads.set(t, g);
    else {
      grads.set(t, add(prev, g));
      prev.dispose();
      g.dispose();
    }
  };
  const wanted = new Set(wrt);
  return noGrad(() => {
    outputs.forEach((o, i) => {
      const c = cotangents[i] as Tensor;
      if (!shapesEqual(c.shape, o.shape)) {
        throw new Error(`autograd: cotangent ${i} has shape ${fmt(c.shape)} but the output has shape ${fmt(o.shape)}`);
      }
      // copy, so disposing intermediate cotangents never frees the caller's tensor
      accumulate(o, add(c, 0));
    });
    const order = new Set<Tensor>();
    for (const o of outputs) for (const t of topoOrder(o)) order.add(t);
    const nodes = [...order].reverse();
    for (const t of nodes) {
      const g = grads.get(t);
      const node = t.node;
      const vjp = node?.prim.vjp;
      if (!g || !node || !vjp) continue;
      const gs = tidy(() => vjp(g, { inputs: node.inputs, output: t, attrs: node.attrs }));
      // a VJP may return g itself or one tensor for several inputs: copy those, since
      // each accumulated cotangent is owned (and later disposed) by exactly one input
      const handed = new Set<Tensor>([g]);
      node.inputs.forEach((inp, i) => {
        const gi = gs[i];
        if (!gi || !inp.requiresGrad) return;
        accumulate(inp, handed.has(gi) ? add(gi, 0) : gi);
        handed.add(gi);
      });
      for (const gi of gs) if (gi && !handed.has(gi)) gi.dispose();
      if (!wanted.has(t)) {
        grads.delete(t);
        g.dispose();
      }
    }
    return wrt.map((w) => {
      const g = grads.get(w) ?? zerosLike(w);
      adoptIntoScope(g);
      return g;
    });
  });
}

/** A graph leaf sharing x's storage, marked for gradient recording. */
function leaf(x: Tensor, what: string): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${what}: every argument must be a Tensor, got ${typeof x}`);
  const t = detach(x);
  t.requiresGrad = true;
  return t;
}

function checkScalar(op: string, y: unknown): Tensor {
  if (!(y instanceof Tensor)) throw new Error(`${op}: the function must return a Tensor, got ${typeof y}`);
  if (y.size !== 1)
    throw new Error(`${op}: the function must return a scalar (one element), got shape ${fmt(y.shape)}`);
  return y;
}

export interface GradOptions<N extends number | readonly number[]> {
  /** Which arguments to differentiate: an index (default 0) or a list. */
  argnums?: N;
}

type GradResult<N> = N extends number ? Tensor : Tensor[];

/**
 * valueAndGrad(f)(...xs): f's scalar value and its gradient with respect to the chosen arguments
 * (a Tensor for one index, a list for several), as jax.value_and_grad.
 */
export function valueAndGrad<N extends number | readonly number[] = 0>(
  f: (...xs: Tensor[]) => Tensor,
  opts: GradOptions<N> = {},
): (...xs: Tensor[]) => { value: Tensor; grad: GradResult<N> } {
  return valueAndGradNamed('valueAndGrad', f, opts);
}

function valueAndGradNamed<N extends number | readonly number[]>(
  op: string,
  f: (...xs: Tensor[]) => Tensor,
  opts: GradOptions<N>,
): (...xs: Tensor[]) => { value: Tensor; grad: GradResult<N> } {
  const argnums = opts.argnums ?? 0;
  const list = typeof argnums === 'number' ? [argnums] : [...(argnums as readonly number[])];
  return (...xs) => {
    for (const i of list) {
      if (!Number.isInteger(i) || i < 0 || i >= xs.length)
        throw new Error(`${op}: argnums ${i} is out of range for ${xs.length} arguments`);
    }
    if (!isGradEnabled()) throw new Error(`${op}: called inside noGrad(); gradients cannot be recorded there`);
    const leaves = xs.map((x, i) => (list.includes(i) ? leaf(x, op) : x));
    const { value, gs } = tidy(() => {
      const y = checkScalar(op, f(...leaves));
      const one = zerosLike(y);
      const seed = add(one, 1);
      const gs = backward(
        [y],
        [seed],
        list.map((i) => leaves[i] as Tensor),
      );
      return { value: detach(y), gs };
    });
    for (const i of list) (leaves[i] as Tensor).dispose();
    const grad = (typeof argnums === 'number' ? gs[0] : gs) as GradResult<N>;
    return { value, grad };
  };
}

/** grad(f)(...xs): the gradient of scalar f with respect to argument 0 (or `argnums`). */
export function grad<N extends number | readonly number[] = 0>(
  f: (...xs: Tensor[]) => Tensor,
  opts: GradOptions<N> = {},
): (...xs: Tensor[]) => GradResult<N> {
  const vg = valueAndGradNamed('grad', f, opts);
  return (...xs) => {
    const { value, grad } = vg(...xs);
    value.dispose();
    return grad;
  };
}

/**
 * vjp(f, ...primals): f's output and a function mapping an output cotangent to the cotangents of
 * all primals (as jax.vjp). Call `release()` when done to free the recorded graph.
 */
export function vjp(
  f: (...xs: Tensor[]) => Tensor,
  ...primals: Tensor[]
): { out: Tensor; vjpFn: (cotangent: Tensor) => Tensor[]; release: () => void } {
  if (!isGradEnabled()) throw new Error('vjp: called inside noGrad(); gradients cannot be recorded there');
  const leaves = primals.map((x) => leaf(x, 'vjp'));
  const y = f(...leaves);
  if (!(y instanceof Tensor)) throw new Error(`vjp: the function must return a Tensor, got ${typeof y}`);
  return {
    out: y,
    vjpFn: (c) => {
      if (!y.requiresGrad) return leaves.map((l) => zerosLike(l));
      return backward([y], [c], leaves);
    },
    release: () => {
      for (const l of leaves) l.dispose();
      y.dispose();
    },
  };
}
