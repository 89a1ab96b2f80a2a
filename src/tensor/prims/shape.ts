// Shape primitives: reshape (a view), permute, expand, slice (any step, negative included),
// embed (slice's adjoint: place a tensor into zeros), concat; and composites built on them.

import { apply, applyView } from '../runtime.js';
import { broadcastShapes, fmt, normAxes, normAxis, type Shape, shapesEqual, sizeOf } from '../shape.js';
import { type Prim, Tensor } from '../tensor.js';
import { fromArray } from './creation.js';
import { sumTo } from './reduce.js';

function checkTensor(op: string, arg: string, x: unknown): asserts x is Tensor {
  if (!(x instanceof Tensor)) throw new Error(`${op}: argument ${arg} must be a Tensor`);
}

// ---- reshape --------------------------------------------------------------------------------

export const reshapePrim: Prim<undefined> = {
  name: 'reshape',
  vjp: (g, { inputs }) => [reshape(g, (inputs[0] as Tensor).shape)],
};

/** Same elements, new shape (one entry may be -1). Shares storage; no copy. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  checkTensor('reshape', 'x', x);
  const s = [...shape];
  const unknown = s.indexOf(-1);
  if (unknown >= 0) {
    const known = s.reduce((a, d, i) => (i === unknown ? a : a * d), 1);
    if (s.lastIndexOf(-1) !== unknown || known === 0 || x.size % known !== 0) {
      throw new Error(`reshape: cannot reshape ${fmt(x.shape)} to ${fmt(shape)}`);
    }
    s[unknown] = x.size / known;
  }
  if (s.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(s) !== x.size) {
    throw new Error(`reshape: cannot reshape ${fmt(x.shape)} (${x.size} elements) to ${fmt(shape)}`);
  }
  if (shapesEqual(s, x.shape)) return x;
  return applyView(reshapePrim, x, undefined, s);
}

export const flatten = (x: Tensor) => reshape(x, [x.size]);

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis('unsqueeze', axis, x.rank + 1);
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return reshape(x, s);
}

/** Drop size-1 axes (the given ones, or all). */
export function squeeze(x: Tensor, axes?: number | readonly number[]): Tensor {
  const ax = axes === undefined ? x.shape.flatMap((d, i) => (d === 1 ? [i] : [])) : normAxes('squeeze', axes, x.rank);
  for (const a of ax) {
    if (x.shape[a] !== 1) throw new Error(`squeeze: axis ${a} of ${fmt(x.shape)} has size ${x.shape[a]}, not 1`);
  }
  return reshape(
    x,
    x.shape.filter((_, i) => !ax.includes(i)),
  );
}

// ---- permute --------------------------------------------------------------------------------

export const permutePrim: Prim<{ perm: readonly number[] }> = {
  name: 'permute',
  vjp: (g, { attrs }) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => {
      inv[p] = i;
    });
    return [permute(g, inv)];
  },
};

/** Output axis i is input axis perm[i] (a contiguous copy). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  checkTensor('permute', 'x', x);
  const p = perm.map((a) => normAxis('permute', a, x.rank, 'perm entry'));
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new Error(`permute: perm [${perm.join(', ')}] is not a permutation of the ${x.rank} axes of ${fmt(x.shape)}`);
  }
  if (p.every((a, i) => a === i)) return x;
  return apply(
    permutePrim,
    [x],
    { perm: p },
    p.map((a) => x.shape[a] as number),
  );
}

/** Swap two axes (default: the last two). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const i = normAxis('transpose', a, x.rank);
  const j = normAxis('transpose', b, x.rank);
  const perm = x.shape.map((_, k) => k);
  perm[i] = j;
  perm[j] = i;
  return permute(x, perm);
}

// ---- expand ---------------------------------------------------------------------------------

export const expandPrim: Prim<undefined> = {
  name: 'expand',
  vjp: (g, { inputs }) => [sumTo(g, (inputs[0] as Tensor).shape)],
};

/** Broadcast to `shape` (NumPy rules), materialised. */
export function expand(x: Tensor, shape: Shape): Tensor {
  checkTensor('expand', 'x', x);
  const out = broadcastShapes('expand', x.shape, shape);
  if (!shapesEqual(out, shape)) {
    throw new Error(`expand: ${fmt(x.shape)} cannot be expanded to ${fmt(shape)}`);
  }
  if (shapesEqual(x.shape, shape)) return x;
  return apply(expandPrim, [x], undefined, [...shape]);
}

// ---- slice / embed --------------------------------------------------------------------------

/** Along each axis: element i of the slice is element begin + i*step of the full tensor. */
export interface StridedAttrs {
  readonly begin: readonly number[];
  readonly step: readonly number[];
}

export const slicePrim: Prim<StridedAttrs> = {
  name: 'slice',
  vjp: (g, { inputs, attrs }) => [embed(g, (inputs[0] as Tensor).shape, attrs)],
};

export const embedPrim: Prim<StridedAttrs> = {
  name: 'embed',
  vjp: (g, { inputs, attrs }) => [stridedSlice(g, attrs, (inputs[0] as Tensor).shape)],
};

function stridedSlice(x: Tensor, attrs: StridedAttrs, outShape: Shape): Tensor {
  return apply(slicePrim, [x], attrs, outShape);
}

/** Zeros of `shape` with x placed at begin + i*step (the adjoint of slice). */
export function embed(x: Tensor, shape: Shape, attrs: StridedAttrs): Tensor {
  return apply(embedPrim, [x], attrs, [...shape]);
}

/** [start, end, step] with Python semantics for negatives; end is exclusive; omitted = whole axis. */
export type SliceSpec = readonly [start?: number | null, end?: number | null, step?: number] | null | undefined;

/**
 * x[s0, s1, ...] as NumPy slicing with one spec per leading axis. Bounds beyond the axis are
 * an error rather than clamped, so a wrong index never silently selects less.
 */
export function slice(x: Tensor, specs: readonly SliceSpec[]): Tensor {
  checkTensor('slice', 'x', x);
  if (specs.length > x.rank) throw new Error(`slice: ${specs.length} specs for a tensor of rank ${x.rank}`);
  const begin: number[] = [];
  const step: number[] = [];
  const shape: number[] = [];
  x.shape.forEach((n, a) => {
    const [s0, e0, st = 1] = specs[a] ?? [];
    if (!Number.isInteger(st) || st === 0) throw new Error(`slice: step ${st} on axis ${a} must be a non-zero integer`);
    const norm = (v: number, what: string) => {
      if (!Number.isInteger(v) || v < -n || v > n) {
        throw new Error(`slice: ${what} ${v} on axis ${a} is out of range for size ${n} (valid: ${-n}..${n})`);
      }
      return v < 0 ? v + n : v;
    };
    let b: number;
    let e: number;
    if (st > 0) {
      b = s0 == null ? 0 : norm(s0, 'start');
      e = e0 == null ? n : norm(e0, 'end');
    } else {
      b = s0 == null ? n - 1 : Math.min(norm(s0, 'start'), n - 1);
      e = e0 == null ? -1 : norm(e0, 'end');
    }
    const len = Math.max(0, Math.ceil((e - b) / st));
    begin.push(len > 0 ? b : 0);
    step.push(st);
    shape.push(len);
  });
  if (shapesEqual(shape, x.shape) && step.every((s) => s === 1)) return x;
  return stridedSlice(x, { begin, step }, shape);
}

/** `length` elements of `axis` from `start`. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis('narrow', axis, x.rank);
  const n = x.shape[a] as number;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > n) {
    throw new Error(`narrow: [${start}, ${start + length}) is outside axis ${a} of size ${n} in ${fmt(x.shape)}`);
  }
  const specs: SliceSpec[] = x.shape.map(() => null);
  specs[a] = [start, start + length];
  return slice(x, specs);
}

/** Reverse the order of elements along `axes`. */
export function flip(x: Tensor, axes: number | readonly number[]): Tensor {
  const ax = normAxes('flip', axes, x.rank);
  const specs: SliceSpec[] = x.shape.map((_, i) => (ax.includes(i) ? [null, null, -1] : null));
  return slice(x, specs);
}

// ---- concat / stack / pad -------------------------------------------------------------------

export const concatPrim: Prim<{ axis: number }> = {
  name: 'concat',
  vjp: (g, { inputs, attrs }) => {
    let start = 0;
    return inputs.map((t) => {
      const n = t.shape[attrs.axis] as number;
      const part = narrow(g, attrs.axis, start, n);
      start += n;
      return part;
    });
  },
};

export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('concat: needs at least one tensor');
  for (const [i, t] of xs.entries()) checkTensor('concat', `xs[${i}]`, t);
  const first = xs[0] as Tensor;
  if (first.rank === 0) throw new Error('concat: zero-dimensional tensors cannot be concatenated; use stack');
  const a = normAxis('concat', axis, first.rank);
  let total = 0;
  for (const [i, t] of xs.entries()) {
    if (t.rank !== first.rank || t.shape.some((d, k) => k !== a && d !== first.shape[k])) {
      throw new Error(
        `concat: xs[${i}] has shape ${fmt(t.shape)}, incompatible with xs[0] ${fmt(first.shape)} along axis ${a}`,
      );
    }
    total += t.shape[a] as number;
  }
  if (xs.length === 1) return first;
  const shape = [...first.shape];
  shape[a] = total;
  return apply(concatPrim, xs, { axis: a }, shape);
}

export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: needs at least one tensor');
  const a = normAxis('stack', axis, (xs[0] as Tensor).rank + 1);
  for (const [i, t] of xs.entries()) {
    if (!shapesEqual(t.shape, (xs[0] as Tensor).shape)) {
      throw new Error(`stack: xs[${i}] has shape ${fmt(t.shape)} but xs[0] has ${fmt((xs[0] as Tensor).shape)}`);
    }
  }
  return concat(
    xs.map((t) => unsqueeze(t, a)),
    a,
  );
}

export type PadMode = 'zero' | 'replicate';

/**
 * Pad with `pads` = [[before, after], ...] for the last pads.length axes (outermost first).
 * 'zero' fills with 0; 'replicate' repeats the edge element (needs a non-empty axis).
 */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], mode: PadMode = 'zero'): Tensor {
  checkTensor('pad', 'x', x);
  if (pads.length > x.rank) throw new Error(`pad: ${pads.length} pad pairs for a tensor of rank ${x.rank}`);
  const off = x.rank - pads.length;
  for (const [i, p] of pads.entries()) {
    if (p.length !== 2 || !p.every((v) => Number.isInteger(v) && v >= 0)) {
      throw new Error(`pad: pads[${i}] = [${p.join(', ')}] must be two non-negative integers`);
    }
  }
  if (mode === 'zero') {
    const shape = x.shape.map((d, a) => (a < off ? d : d + pads[a - off][0] + pads[a - off][1]));
    const begin = x.shape.map((_, a) => (a < off ? 0 : pads[a - off][0]));
    return embed(x, shape, { begin, step: x.shape.map(() => 1) });
  }
  if (mode !== 'replicate') throw new Error(`pad: unknown mode '${mode}' (zero or replicate)`);
  // Replicate: per axis, concat expanded copies of the edge slices (differentiable via concat/expand).
  let y = x;
  for (const [i, [before, after]] of pads.entries()) {
    const a = off + i;
    const n = y.shape[a] as number;
    if (before + after === 0) continue;
    if (n === 0) throw new Error(`pad: replicate padding needs a non-empty axis ${a} in ${fmt(x.shape)}`);
    const parts: Tensor[] = [];
    const edge = (start: number, count: number) => {
      const s = [...y.shape];
      s[a] = count;
      return expand(narrow(y, a, start, 1), s);
    };
    if (before > 0) parts.push(edge(0, before));
    parts.push(y);
    if (after > 0) parts.push(edge(n - 1, after));
    y = concat(parts, a);
  }
  return y;
}

// ---- gather / scatterAdd --------------------------------------------------------------------

export const gatherPrim: Prim<{ axis: number }> = {
  name: 'gather',
  vjp: (g, { inputs, attrs }) => {
    const [x, index] = inputs as [Tensor, Tensor];
    return [scatterAdd(x.shape, attrs.axis, index, g), null];
  },
};

export const scatterAddPrim: Prim<{ axis: number }> = {
  name: 'scatterAdd',
  vjp: (g, { inputs, attrs }) => [null, gather(g, attrs.axis, inputs[0] as Tensor)],
};

function checkIndex(op: string, x: Shape, axis: number, index: Tensor): void {
  if (index.rank !== x.length || index.shape.some((d, k) => k !== axis && d > (x[k] as number))) {
    throw new Error(
      `${op}: index ${fmt(index.shape)} must have the rank of ${fmt(x)} and no larger size on axes other than ${axis}`,
    );
  }
}

/**
 * torch.gather: out[..., j, ...] = x[..., index[..., j, ...], ...] along `axis`. Index values are
 * integers stored in a float tensor of x's dtype (exact below 2^24 in float32).
 */
export function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  checkTensor('gather', 'x', x);
  checkTensor('gather', 'index', index);
  if (x.rank === 0) throw new Error('gather: x must have at least one axis, got a zero-dimensional tensor');
  const a = normAxis('gather', axis, x.rank);
  checkIndex('gather', x.shape, a, index);
  return apply(gatherPrim, [x, index], { axis: a }, index.shape);
}

/** Zeros of `shape` plus src added at the positions `index` names along `axis` (torch.scatter_add). */
export function scatterAdd(shape: Shape, axis: number, index: Tensor, src: Tensor): Tensor {
  const a = normAxis('scatterAdd', axis, shape.length);
  checkIndex('scatterAdd', shape, a, index);
  if (!shapesEqual(index.shape, src.shape)) {
    throw new Error(`scatterAdd: index ${fmt(index.shape)} and src ${fmt(src.shape)} must have the same shape`);
  }
  return apply(scatterAddPrim, [index, src], { axis: a }, [...shape]);
}

/** Rows of x along `axis` in the order of `indices` (a 1-D tensor or integer list). */
export function indexSelect(x: Tensor, axis: number, indices: Tensor | readonly number[]): Tensor {
  const a = normAxis('indexSelect', axis, x.rank);
  const n = x.shape[a] as number;
  let idx: Tensor;
  if (indices instanceof Tensor) {
    if (indices.rank !== 1) throw new Error(`indexSelect: indices must be 1-D, got ${fmt(indices.shape)}`);
    idx = indices;
  } else {
    for (const v of indices) {
      if (!Number.isInteger(v) || v < -n || v >= n)
        throw new Error(`indexSelect: index ${v} is out of range for axis ${a} of size ${n}`);
    }
    idx = fromIndexList(
      indices.map((v) => (v < 0 ? v + n : v)),
      x,
    );
  }
  const viewShape = x.shape.map((_, k) => (k === a ? idx.size : 1));
  const outShape = x.shape.map((d, k) => (k === a ? idx.size : d));
  return gather(x, a, expand(reshape(idx, viewShape), outShape));
}

function fromIndexList(v: readonly number[], like: Tensor): Tensor {
  return fromArray(v, [v.length], { dtype: like.dtype, backend: like.backend.name });
}
