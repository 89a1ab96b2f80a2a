// Data movement: permute, expand, slice, embed and concat are strided copies (map.ts);
// gather and scatterAdd index with a float tensor. scatterAdd uses no atomics (WGSL has no
// float atomics): each output element loops over the index axis and adds its matches in order,
// which is also the cpu kernel's order, so results agree bit for bit.

import type { StridedAttrs } from '../../tensor/prims/shape.js';
import { broadcastStrides, type Shape, sizeOf, stridesOf } from '../../tensor/shape.js';
import { bindingsWgsl, grid1d, i32bits, linearMain, MAX_RANK, PARAMS_WGSL, type Program } from '../program.js';
import { MATH_WGSL } from './elementwise.js';
import { bufOf, type WgslKernel } from './kernel.js';
import { contiguous, mapProgram, type Operand } from './map.js';

const copy = (shape: Shape, src: Operand, dst?: Operand): Program =>
  mapProgram({ name: 'copy', expr: 'v0', shape, ins: [src], out: dst });

const permute: WgslKernel = (ctx, ins, attrs: { perm: readonly number[] }, outShape, out) => {
  const st = stridesOf(ins[0]!.shape);
  ctx.dispatch(copy(outShape, { base: 0, strides: attrs.perm.map((p) => st[p] as number) }), [bufOf(ins[0]!)], out);
};

const expand: WgslKernel = (ctx, ins, _attrs, outShape, out) => {
  ctx.dispatch(copy(outShape, { base: 0, strides: broadcastStrides(ins[0]!.shape, outShape) }), [bufOf(ins[0]!)], out);
};

/** The strided sub-grid begin + i*step of a contiguous tensor of shape `full`. */
function stridedView(full: Shape, a: StridedAttrs): Operand {
  const st = stridesOf(full);
  let base = 0;
  a.begin.forEach((b, k) => {
    base += b * (st[k] as number);
  });
  return { base, strides: a.step.map((s, k) => s * (st[k] as number)) };
}

const slice: WgslKernel = (ctx, ins, attrs: StridedAttrs, outShape, out) => {
  ctx.dispatch(copy(outShape, stridedView(ins[0]!.shape, attrs)), [bufOf(ins[0]!)], out);
};

const fillZero = (n: number): Program => ({
  key: 'zero',
  nInputs: 0,
  grid: grid1d(n),
  params: [n],
  code: () => `${PARAMS_WGSL}${bindingsWgsl(0)}\n${linearMain()}\n  if (gi < P(0u)) { out[gi] = 0.0; }\n}\n`,
});

/** Zeros, then x written at the strided positions (a second dispatch in the same pass). */
const embed: WgslKernel = (ctx, ins, attrs: StridedAttrs, outShape, out) => {
  const x = ins[0]!;
  ctx.dispatch(fillZero(sizeOf(outShape)), [], out);
  if (sizeOf(x.shape) > 0)
    ctx.dispatch(copy(x.shape, contiguous(x.shape), stridedView(outShape, attrs)), [bufOf(x)], out);
};

/** One copy per input into its column range of the [outer, outRow] view of the output. */
const concat: WgslKernel = (ctx, ins, attrs: { axis: number }, outShape, out) => {
  const outer = sizeOf(outShape.slice(0, attrs.axis));
  const outRow = sizeOf(outShape.slice(attrs.axis));
  let col = 0;
  for (const x of ins) {
    const row = sizeOf(x.shape.slice(attrs.axis));
    if (row > 0 && outer > 0) {
      ctx.dispatch(copy([outer, row], contiguous([outer, row]), { base: col, strides: [outRow, 1] }), [bufOf(x)], out);
    }
    col += row;
  }
};

function checkRank(op: string, r: number): void {
  if (r > MAX_RANK) throw new Error(`webgpu: ${op} supports rank <= ${MAX_RANK}, got ${r}`);
}

/** out[i] = x[offset of i's coordinates with axis coordinate replaced by index[i]]; NaN for a bad index. */
const gather: WgslKernel = (ctx, ins, attrs: { axis: number }, _outShape, out) => {
  const [x, index] = [ins[0]!, ins[1]!];
  const r = index.shape.length;
  checkRank('gather', r);
  const xs = stridesOf(x.shape);
  const n = sizeOf(index.shape);
  // words: 0 n | 1 axis size | 2 axis stride | 3.. index shape (r) | x strides without the axis (r)
  const params = [n, x.shape[attrs.axis] as number, xs[attrs.axis] as number, ...index.shape];
  params.push(...xs.map((s, k) => (k === attrs.axis ? 0 : s)));
  let body = '  var rem = gi;\n  var off = 0u;\n';
  for (let d = r - 1; d >= 0; d--) {
    body += `  { let sz = P(${3 + d}u); off += (rem % sz) * P(${3 + r + d}u); rem = rem / sz; }\n`;
  }
  ctx.dispatch(
    {
      key: `gather:r${r}`,
      nInputs: 2,
      grid: grid1d(n),
      params,
      code: () => `${PARAMS_WGSL}${bindingsWgsl(2)}${MATH_WGSL}
${linearMain()}
  if (gi >= P(0u)) { return; }
${body}  let v = in1[gi];
  if (isnan_f(v) || v != floor(v) || v < 0.0 || v >= f32(P(1u))) { out[gi] = nan_f(); return; }
  out[gi] = in0[off + u32(v) * P(2u)];
}
`,
    },
    [bufOf(x), bufOf(index)],
    out,
  );
};

/**
 * out[c] = sum over j < index.shape[axis] of src[p] where p = c with axis coordinate j and
 * index[p] == c[axis]; zero where c lies outside index's extent on the other axes.
 */
const scatterAdd: WgslKernel = (ctx, ins, attrs: { axis: number }, outShape, out) => {
  const [index, src] = [ins[0]!, ins[1]!];
  const r = outShape.length;
  checkRank('scatterAdd', r);
  const n = sizeOf(outShape);
  const is = stridesOf(index.shape);
  const a = attrs.axis;
  // words: 0 n | 1 J | 2 index axis stride | 3.. out shape (r) | index shape (r) | index strides (r)
  const params = [n, index.shape[a] as number, is[a] as number, ...outShape, ...index.shape, ...is];
  let body = '  var rem = gi;\n  var base = 0u;\n  var inside = true;\n  var tgt = 0u;\n';
  for (let d = r - 1; d >= 0; d--) {
    body += `  { let sz = P(${3 + d}u); let c = rem % sz; rem = rem / sz;\n`;
    body +=
      d === a
        ? '    tgt = c; }\n'
        : `    inside = inside && c < P(${3 + r + d}u); base += c * P(${3 + 2 * r + d}u); }\n`;
  }
  ctx.dispatch(
    {
      key: `scatterAdd:r${r}:a${a}`,
      nInputs: 2,
      grid: grid1d(n),
      params: params.map(i32bits),
      code: () => `${PARAMS_WGSL}${bindingsWgsl(2)}
${linearMain()}
  if (gi >= P(0u)) { return; }
${body}  var acc = 0.0;
  if (inside) {
    let t = f32(tgt);
    for (var j = 0u; j < P(1u); j++) {
      let p = base + j * P(2u);
      if (in0[p] == t) { acc += in1[p]; }
    }
  }
  out[gi] = acc;
}
`,
    },
    [bufOf(index), bufOf(src)],
    out,
  );
};

export const shapeKernels: Record<string, WgslKernel> = {
  permute,
  expand,
  slice,
  embed,
  concat,
  gather,
  scatterAdd,
};
