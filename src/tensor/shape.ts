// Shapes, strides, broadcasting and axis normalisation, with errors that name the op and argument.

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (C-contiguous) strides, in elements. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i] as number;
  }
  return s;
}

export function fmt(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function checkShape(op: string, arg: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(`${op}: ${arg} has invalid shape ${fmt(shape)}; dimensions must be non-negative integers`);
    }
  }
}

/** NumPy broadcasting of any number of shapes. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = rank - s.length + i;
      const d = s[i] as number;
      const o = out[j] as number;
      if (d === o || d === 1) continue;
      if (o === 1) out[j] = d;
      else
        throw new Error(
          `${op}: shapes ${shapes.map(fmt).join(' and ')} are not broadcastable (dimension ${j - rank} is ${o} vs ${d})`,
        );
    }
  }
  return out;
}

/**
 * Strides that read an input of `inShape` as if it had been broadcast to `outShape`
 * (0 on broadcast dimensions), aligned to outShape's rank.
 */
export function broadcastStrides(inShape: Shape, outShape: Shape): number[] {
  const st = stridesOf(inShape);
  const res = new Array<number>(outShape.length).fill(0);
  const off = outShape.length - inShape.length;
  for (let i = 0; i < inShape.length; i++) res[off + i] = inShape[i] === 1 ? 0 : (st[i] as number);
  return res;
}

export function normAxis(op: string, axis: number, rank: number, arg = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new Error(
      `${op}: ${arg} ${axis} is out of range for a tensor of rank ${rank} (valid: ${-rank}..${rank - 1})`,
    );
  }
  return axis < 0 ? axis + rank : axis;
}

/** Sorted unique axes; undefined means all axes. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  const res = [...new Set(list.map((a) => normAxis(op, a, rank)))].sort((a, b) => a - b);
  if (res.length !== list.length) throw new Error(`${op}: axes [${list.join(', ')}] contain duplicates`);
  return res;
}

/** Shape after reducing `axes` (sorted), keeping them as size 1 or dropping them. */
export function reducedShape(shape: Shape, axes: readonly number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}
