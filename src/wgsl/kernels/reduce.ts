// Reductions: sum/max/min over any axes, argmax/argmin along one axis.
// The input is seen as kept axes x reduced axes (each merged where contiguous). Two layouts:
// - one invocation per output, looping over the reduced elements (many outputs, or short rows);
// - one workgroup per output, each invocation striding over the row, then a tree in
//   workgroup memory (few long rows, e.g. a sum over batch and space).
// Sums accumulate with Kahan compensation, so a float32 sum of K terms carries about one rounding
// rather than K of them (the cpu reference accumulates in float64).

import type { ArgAttrs, ReduceAttrs } from '../../tensor/prims/reduce.js';
import { sizeOf, stridesOf } from '../../tensor/shape.js';
import { bindingsWgsl, collapse, grid1d, linearMain, MAX_RANK, PARAMS_WGSL } from '../program.js';
import { NAN_WGSL } from './elementwise.js';
import { bufOf, type WgslKernel } from './kernel.js';

const RWG = 256;

/** Accumulator state, its update with value v, and the merge of another partial (a2, c2). */
function accum(op: ReduceAttrs['op']): { init: string; add: string; merge: string } {
  if (op === 'sum') {
    return {
      init: 'var acc = 0.0;\n  var comp = 0.0;',
      add: '{ let y = v - comp; let t = acc + y; comp = (t - acc) - y; acc = t; }',
      merge: 'acc = acc + a2;',
    };
  }
  // NaN propagates, as in the cpu kernel and PyTorch
  const cmp = op === 'max' ? '>' : '<';
  return {
    init: `var acc = ${op === 'max' ? '-' : ''}inf_f();\n  var comp = 0.0;`,
    add: `if (isnan_f(v) || v ${cmp} acc) { acc = v; }`,
    merge: `if (isnan_f(a2) || a2 ${cmp} acc) { acc = a2; }`,
  };
}

const reduce: WgslKernel = (ctx, ins, attrs: ReduceAttrs, outShape, out) => {
  const x = ins[0]!;
  const xs = stridesOf(x.shape);
  const keptAx = x.shape.map((_, i) => i).filter((i) => !attrs.axes.includes(i));
  const [ks, [kst]] = collapse(
    keptAx.map((i) => x.shape[i] as number),
    [keptAx.map((i) => xs[i] as number)],
  );
  const [rs, [rst]] = collapse(
    attrs.axes.map((i) => x.shape[i] as number),
    [attrs.axes.map((i) => xs[i] as number)],
  );
  const nOut = sizeOf(outShape);
  const k = sizeOf(attrs.axes.map((i) => x.shape[i] as number));
  if (ks.length > MAX_RANK || rs.length > MAX_RANK) throw new Error('webgpu: reduce over too many axes');
  const rk = ks.length;
  const rr = rs.length;
  // words: 0 nOut | 1 K | kept shape (rk) | kept strides | reduced shape (rr) | reduced strides
  const KS = 2;
  const KST = KS + rk;
  const RS = KST + rk;
  const RST = RS + rr;
  const params = [nOut, k, ...ks, ...(kst as number[]), ...rs, ...(rst as number[])];
  const a = accum(attrs.op);
  const decompose = (v: string, dst: string, S: number, ST: number, r: number) => {
    let c = `  var rem_${dst} = ${v};\n  var ${dst} = 0u;\n`;
    for (let d = r - 1; d >= 0; d--) {
      c += `  { let sz = P(${S + d}u); ${dst} += (rem_${dst} % sz) * P(${ST + d}u); rem_${dst} = rem_${dst} / sz; }\n`;
    }
    return c;
  };
  const head = `${PARAMS_WGSL}${bindingsWgsl(1)}
fn inf_f() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
${NAN_WGSL}`;
  const perThread = nOut >= 2048 || k <= 512;
  if (perThread) {
    // nested loops over the reduced axes: no division per element
    let loops = '';
    let close = '';
    for (let d = 0; d < rr; d++) {
      const ind = '  '.repeat(d + 1);
      loops += `${ind}for (var i${d} = 0u; i${d} < P(${RS + d}u); i${d}++) {\n${ind}  let o${d + 1} = o${d} + i${d} * P(${RST + d}u);\n`;
      close = `${ind}}\n${close}`;
    }
    const code = () => `${head}
${linearMain()}
  if (gi >= P(0u)) { return; }
${decompose('gi', 'o0', KS, KST, rk)}  ${a.init}
${loops}${'  '.repeat(rr + 1)}let v = in0[o${rr}];
${'  '.repeat(rr + 1)}${a.add}
${close}  out[gi] = acc - comp;
}
`;
    ctx.dispatch(
      { key: `reduce.${attrs.op}:thread:k${rk}:r${rr}`, nInputs: 1, grid: grid1d(nOut), params, code },
      [bufOf(x)],
      out,
    );
    return;
  }
  const code = () => `${head}
var<workgroup> part: array<f32, ${RWG}>;
@compute @workgroup_size(${RWG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let og = wid.y * nwg.x + wid.x;
  if (og >= P(0u)) { return; }
${decompose('og', 'base', KS, KST, rk)}  ${a.init}
  for (var r = lid; r < P(1u); r += ${RWG}u) {
  ${decompose('r', 'off', RS, RST, rr)}    let v = in0[base + off];
    ${a.add}
  }
  part[lid] = acc - comp;
  workgroupBarrier();
  for (var s = ${RWG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      acc = part[lid];
      let a2 = part[lid + s];
      ${a.merge}
      part[lid] = acc;
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[og] = part[0]; }
}
`;
  ctx.dispatch(
    { key: `reduce.${attrs.op}:group:k${rk}:r${rr}`, nInputs: 1, grid: grid1d(nOut, 1), params, code },
    [bufOf(x)],
    out,
  );
};

/** One invocation per output; the first extremum wins, a NaN wins at once (as the cpu kernel). */
const argreduce: WgslKernel = (ctx, ins, attrs: ArgAttrs, outShape, out) => {
  const x = ins[0]!;
  const ax = attrs.axis;
  const n = ax === null ? sizeOf(x.shape) : (x.shape[ax] as number);
  const inner = ax === null ? 1 : sizeOf(x.shape.slice(ax + 1));
  const nOut = sizeOf(outShape);
  const cmp = attrs.op === 'argmax' ? '>' : '<';
  const code = () => `${PARAMS_WGSL}${bindingsWgsl(1)}${NAN_WGSL}
${linearMain()}
  if (gi >= P(0u)) { return; }
  let inner = P(2u);
  let base = (gi / inner) * P(1u) * inner + gi % inner;
  var best = 0u;
  var bv = in0[base];
  for (var k = 1u; k < P(1u) && !isnan_f(bv); k++) {
    let v = in0[base + k * inner];
    if (isnan_f(v) || v ${cmp} bv) { best = k; bv = v; }
  }
  out[gi] = f32(best);
}
`;
  ctx.dispatch(
    { key: `argreduce.${attrs.op}`, nInputs: 1, grid: grid1d(nOut), params: [nOut, n, inner], code },
    [bufOf(x)],
    out,
  );
};

export const reduceKernels: Record<string, WgslKernel> = { reduce, argreduce };
