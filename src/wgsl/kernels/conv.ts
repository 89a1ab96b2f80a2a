// The three convolution primitives as implicit GEMMs (gemm.ts), one grid layer per group. Rows
// come from an implicit, bounds-checked gather (no im2col buffer); columns from a small dense
// operand copied once into [group, k, n] order, read as vec4 like a matmul's B:
//   conv2d       y^T[(b,oy,ox), o]   = im2col(x)[(b,oy,ox), (c,i,j)] . w^T[(c,i,j), o]
//   conv2dInput  gx^T[(b,y,x), c]    = gather(gy)[(b,y,x), (o,i,j)]  . w[(o,i,j), c]   (conv_transpose2d)
//   conv2dWeight gw^T[(c,i,j), o]    = im2col(x)^T[(c,i,j), (b,oy,ox)] . gy^T[(b,oy,ox), o]
// The k loop runs as nested (channel, tap row, tap column) or (image, row, column) loops so no
// integer division happens per k (CPU drivers scalarise it per SIMD lane), and each row's image
// row is resolved once per middle-loop step. Rows are the side with bounds checks because a
// register block loads RM row values and RN column values per k, and the columns get vec4.

import type { ConvGeom, ConvInputAttrs, ConvWeightAttrs } from '../../tensor/prims/conv.js';
import type { Shape } from '../../tensor/shape.js';
import type { GpuBuf } from '../pool.js';
import { type GemmTile, gemmProgram } from './gemm.js';
import { bufOf, type KernelContext, type WgslKernel } from './kernel.js';
import { mapProgram } from './map.js';
import { pickTile } from './matmul.js';

interface Geo {
  nb: number;
  c: number;
  h: number;
  w: number;
  o: number;
  oh: number;
  ow: number;
  kh: number;
  kw: number;
  g: ConvGeom;
}

function geo(x: Shape, w: Shape, y: Shape, g: ConvGeom): Geo {
  const [nb, c, h, wd] = x as [number, number, number, number];
  const [o, , kh, kw] = w as [number, number, number, number];
  const [, , oh, ow] = y as [number, number, number, number];
  return { nb, c, h, w: wd, o, oh, ow, kh, kw, g };
}

/** Geometry words 4..20, read in WGSL through GEO_WGSL. */
function geoParams(d: Geo): number[] {
  const { g } = d;
  return [
    d.nb,
    d.c,
    d.h,
    d.w,
    d.o,
    d.oh,
    d.ow,
    d.kh,
    d.kw,
    g.stride[0],
    g.stride[1],
    g.padding[0],
    g.padding[1],
    g.dilation[0],
    g.dilation[1],
    d.c / g.groups,
    d.o / g.groups,
  ];
}

const GEO_WGSL = `  let C = P(5u); let H = P(6u); let W = P(7u); let O = P(8u); let OH = P(9u); let OW = P(10u);
  let KH = P(11u); let KW = P(12u); let SH = i32(P(13u)); let SW = i32(P(14u)); let PH = i32(P(15u));
  let PW = i32(P(16u)); let DH = i32(P(17u)); let DW = i32(P(18u)); let CG = P(19u); let OG = P(20u);
  let HW = H * W; let OHW = OH * OW; let KK = KH * KW;
`;

/** body(0) + body(1) + ... + body(n - 1): one line per register-block row or column. */
function unroll(n: number, body: (j: number) => string): string {
  let s = '';
  for (let j = 0; j < n; j++) s += body(j);
  return s;
}

/**
 * y = conv2d(x, w). Inputs [x, w]. Rows are output pixels (b, oy, ox) and columns output
 * channels: the im2col side then needs only RM bounds-checked loads per k, and the weights,
 * copied once to [group, k, o] order, are read as vec4 rows like a matmul's B.
 */
const conv2d: WgslKernel = (ctx, ins, attrs: ConvGeom, outShape, out) => {
  const [x, w] = [ins[0]!, ins[1]!];
  const d = geo(x.shape, w.shape, outShape, attrs);
  const G = attrs.groups;
  const cg = d.c / G;
  const og = d.o / G;
  const m = d.nb * d.oh * d.ow;
  const n = og;
  const k = cg * d.kh * d.kw;
  // wT[g, k, o] = w[g * og + o, k]
  const wT = ctx.alloc(G * k * og * 4);
  ctx.dispatch(
    mapProgram({ name: 'copy', expr: 'v0', shape: [G, k, og], ins: [{ base: 0, strides: [og * k, 1, k] }] }),
    [bufOf(w)],
    wT,
  );
  const pointwise =
    d.kh === 1 && d.kw === 1 && attrs.stride.every((v) => v === 1) && attrs.padding.every((v) => v === 0);
  if (pointwise) {
    // 1x1, stride 1, no padding: a plain matmul, rows read straight from x[b, c, p]
    convGemm(
      ctx,
      'conv2d.1x1',
      d,
      { m, n, k },
      (t) => unroll(t.rm, (i) => `  let xp${i} = (r${i} / OHW * C + g * CG) * HW + r${i} % OHW;\n`),
      () => '  for (var k = 0u; k < K; k++) {\n',
      '  }\n',
      (i) => `in0[xp${i} + k * HW]`,
      'let bi = m / OHW; let pi = m % OHW; out[(bi * O + g * OG + n) * OHW + pi] = v;',
      [bufOf(x), wT],
      out,
    );
    ctx.release(wT);
    return;
  }
  convGemm(
    ctx,
    'conv2d',
    d,
    { m, n, k },
    (t) =>
      unroll(
        t.rm,
        (i) => `  let xb${i} = (r${i} / OHW * C + g * CG) * HW;
  let iy${i} = i32(r${i} % OHW / OW) * SH - PH;
  let ix${i} = i32(r${i} % OW) * SW - PW;
`,
      ),
    // k = (ci, ti, tj) as nested loops; each row's image row is resolved once per (ci, ti)
    (t) => `  var k = 0u;
  for (var ci = 0u; ci < CG; ci++) {
    let co = ci * HW;
    for (var ti = 0u; ti < KH; ti++) {
      let dy = i32(ti) * DH;
${unroll(t.rm, (i) => `      let y${i} = iy${i} + dy; let yok${i} = y${i} >= 0 && y${i} < i32(H);\n      let yb${i} = xb${i} + co + u32(select(0, y${i}, yok${i})) * W;\n`)}      for (var tj = 0u; tj < KW; tj++) {
        let dx = i32(tj) * DW;
`,
    '        k++;\n      }\n    }\n  }\n',
    (i) => `xrow(yb${i}, yok${i}, ix${i} + dx, W)`,
    'let bi = m / OHW; let pi = m % OHW; out[(bi * O + g * OG + n) * OHW + pi] = v;',
    [bufOf(x), wT],
    out,
  );
  ctx.release(wT);
};

/**
 * The GEMM of all three convolutions: rows from an implicit (bounds-checked) gather `a`, columns
 * from a dense [group, k, N] matrix `dense` read as vec4 rows where N % 4 == 0.
 */
function convGemm(
  ctx: KernelContext,
  key: string,
  d: Geo,
  dims: { m: number; n: number; k: number },
  rowSetup: (tile: GemmTile) => string,
  open: (tile: GemmTile) => string,
  close: string,
  a: (i: number) => string,
  store: string,
  inputs: [GpuBuf, GpuBuf],
  out: GpuBuf,
): void {
  const tile = pickTile(dims.m, dims.n);
  const v4 = dims.n % 4 === 0;
  let setup = `${GEO_WGSL}  let g = z; let NB = P(4u);\n`;
  setup += v4
    ? `  let nq = N / 4u;\n${unroll(tile.rn / 4, (j) => `  let bq${j} = (g * K * N + min(col0 + ${4 * j}u, N - 4u)) / 4u;\n`)}`
    : '  let wb = g * K * N;\n';
  const p = gemmProgram({
    key: `${key}${v4 ? '.v4' : ''}`,
    tile,
    ...dims,
    batch: d.g.groups,
    params: geoParams(d),
    nInputs: 2,
    decls: `@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<${v4 ? 'vec4<f32>' : 'f32'}>;
${CONV_HELPERS}`,
    setup: setup + rowSetup(tile),
    loop: { open: open(tile), close },
    a,
    b: (j) => `in1[wb + k * N + c${j}]`,
    b4: v4 ? (j) => `in1[bq${j} + k * nq]` : undefined,
    store,
  });
  ctx.dispatch(p, inputs, out);
}

/**
 * gx = conv2dInput(gy, w) (= conv_transpose2d). Inputs [gy, w]. Rows are input pixels
 * (b, y, x), columns input channels; k = (o, ti, tj) over w copied to [group, (o, ti, tj), c].
 */
const conv2dInput: WgslKernel = (ctx, ins, attrs: ConvInputAttrs, outShape, out) => {
  const [gy, w] = [ins[0]!, ins[1]!];
  const d = geo(outShape, w.shape, gy.shape, attrs);
  const G = attrs.groups;
  const cg = d.c / G;
  const og = d.o / G;
  const kk = d.kh * d.kw;
  const wP = ctx.alloc(G * og * kk * cg * 4);
  ctx.dispatch(
    mapProgram({
      name: 'copy',
      expr: 'v0',
      shape: [G, og, kk, cg],
      ins: [{ base: 0, strides: [og * cg * kk, cg * kk, 1, kk] }],
    }),
    [bufOf(w)],
    wP,
  );
  // stride 1 needs no division to find the output position a tap reads from
  const s1 = attrs.stride[0] === 1 && attrs.stride[1] === 1;
  const rowOf = (i: number) =>
    s1
      ? `      let oy${i} = ty${i} - dy; let yok${i} = oy${i} >= 0 && oy${i} < i32(OH);\n`
      : `      let t${i} = ty${i} - dy; let oy${i} = t${i} / SH;\n      let yok${i} = t${i} >= 0 && oy${i} * SH == t${i} && oy${i} < i32(OH);\n`;
  convGemm(
    ctx,
    `conv2dInput${s1 ? '.s1' : ''}`,
    d,
    { m: d.nb * d.h * d.w, n: cg, k: og * kk },
    (t) =>
      unroll(
        t.rm,
        (i) => `  let gb${i} = r${i} / HW * O * OHW;
  let ty${i} = i32(r${i} % HW / W) + PH;
  let tx${i} = i32(r${i} % W) + PW;
`,
      ),
    // tap (ti, tj) of output channel oc reaches input (y, x) from output ((y+p-ti*d)/s, (x+p-tj*d)/s)
    (t) => `  var k = 0u;
  for (var oo = 0u; oo < OG; oo++) {
    let gc = (g * OG + oo) * OHW;
    for (var ti = 0u; ti < KH; ti++) {
      let dy = i32(ti) * DH;
${unroll(t.rm, (i) => `${rowOf(i)}      let yb${i} = gb${i} + gc + u32(select(0, oy${i}, yok${i})) * OW;\n`)}      for (var tj = 0u; tj < KW; tj++) {
        let dx = i32(tj) * DW;
`,
    '        k++;\n      }\n    }\n  }\n',
    (i) => (s1 ? `xrow(yb${i}, yok${i}, tx${i} - dx, OW)` : `gyrow(yb${i}, yok${i}, tx${i} - dx, SW, OW)`),
    'let bi = m / HW; let pi = m % HW; out[(bi * C + g * CG + n) * HW + pi] = v;',
    [bufOf(gy), wP],
    out,
  );
  ctx.release(wP);
};

/**
 * gw = conv2dWeight(x, gy). Inputs [x, gy]. Rows are weight positions (c, ti, tj), columns
 * output channels; k = (b, oy, ox) over gy copied to [group, (b, oy, ox), o].
 */
const conv2dWeight: WgslKernel = (ctx, ins, attrs: ConvWeightAttrs, outShape, out) => {
  const [x, gy] = [ins[0]!, ins[1]!];
  const d = geo(x.shape, outShape, gy.shape, attrs);
  const G = attrs.groups;
  const cg = d.c / G;
  const og = d.o / G;
  const ohw = d.oh * d.ow;
  const gyT = ctx.alloc(G * d.nb * ohw * og * 4);
  ctx.dispatch(
    mapProgram({
      name: 'copy',
      expr: 'v0',
      shape: [G, d.nb, ohw, og],
      ins: [{ base: 0, strides: [og * ohw, d.o * ohw, 1, ohw] }],
    }),
    [bufOf(gy)],
    gyT,
  );
  convGemm(
    ctx,
    'conv2dWeight',
    d,
    { m: cg * d.kh * d.kw, n: og, k: d.nb * ohw },
    (t) =>
      unroll(
        t.rm,
        (i) => `  let tap${i} = r${i} % KK;
  let xc${i} = (g * CG + r${i} / KK) * HW;
  let oy${i} = i32(tap${i} / KW) * DH - PH;
  let ox${i} = i32(tap${i} % KW) * DW - PW;
`,
      ),
    // k = (image, output row, output column) as nested loops
    (t) => `  var k = 0u;
  for (var bi = 0u; bi < NB; bi++) {
    let xb = bi * C * HW;
    for (var yo = 0u; yo < OH; yo++) {
      let iy = i32(yo) * SH;
${unroll(t.rm, (i) => `      let y${i} = iy + oy${i}; let yok${i} = y${i} >= 0 && y${i} < i32(H);\n      let yb${i} = xb + xc${i} + u32(select(0, y${i}, yok${i})) * W;\n`)}      for (var xo = 0u; xo < OW; xo++) {
        let ix = i32(xo) * SW;
`,
    '        k++;\n      }\n    }\n  }\n',
    (i) => `xrow(yb${i}, yok${i}, ix + ox${i}, W)`,
    'out[(g * OG + n) * M + m] = v;',
    [bufOf(x), gyT],
    out,
  );
  ctx.release(gyT);
};

/** Zero-padded reads within one image row (row validity and base resolved by the caller). */
export const CONV_HELPERS = /* wgsl */ `
fn xrow(base: u32, rowOk: bool, x: i32, W: u32) -> f32 {
  let ok = rowOk && x >= 0 && u32(x) < W;
  return select(0.0, in0[select(0u, base + u32(x), ok)], ok);
}
fn gyrow(base: u32, rowOk: bool, t: i32, S: i32, OW: u32) -> f32 {
  let o = t / S;
  let ok = rowOk && t >= 0 && o * S == t && u32(o) < OW;
  return select(0.0, in0[select(0u, base + u32(o), ok)], ok);
}
`;

export const convKernels: Record<string, WgslKernel> = { conv2d, conv2dInput, conv2dWeight };
