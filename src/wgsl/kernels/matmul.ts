// Batched matmul with broadcast batch dims: the GEMM template with row-major loads.
// B is read as vec4 rows when N % 4 == 0 (the common case), scalar otherwise.

import { broadcastStrides, type Shape, sizeOf } from '../../tensor/shape.js';
import { collapse, MAX_RANK } from '../program.js';
import { type GemmTile, gemmProgram } from './gemm.js';
import { bufOf, type WgslKernel } from './kernel.js';

/**
 * Register block and workgroup shape (bench/webgpu.ts BENCH_TILE measures alternatives). On
 * lavapipe every storage load is scalarised per SIMD lane and costs ~1 ns while FMAs are nearly
 * free, so the block maximises FMAs per loaded element: 8x16 per invocation (24 loads per 128
 * FMAs) measured 5-15% above 8x8 and 16x16 (whose accumulators spill) per CPU-second.
 */
export const matmulTiles: { big: GemmTile; small: GemmTile } = {
  big: { tx: 8, ty: 8, rm: 8, rn: 16 },
  small: { tx: 16, ty: 4, rm: 4, rn: 4 },
};

/** Word offset of the batch decomposition within the gemm parameters (after M, N, K, pad). */
const B0 = 4;

export function pickTile(m: number, n: number): GemmTile {
  const t = matmulTiles.big;
  return m * n >= t.tx * t.ty * t.rm * t.rn * 4 ? t : matmulTiles.small;
}

const matmul: WgslKernel = (ctx, ins, _attrs, outShape: Shape, out) => {
  const [a, b] = [ins[0]!, ins[1]!];
  const m = a.shape[a.shape.length - 2] as number;
  const k = a.shape[a.shape.length - 1] as number;
  const n = b.shape[b.shape.length - 1] as number;
  const batch = outShape.slice(0, -2);
  const [bs, [sa, sb]] = collapse(batch, [
    broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * m * k),
    broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * k * n),
  ]);
  const rb = bs.length;
  if (rb > MAX_RANK) throw new Error(`webgpu: matmul batch rank ${rb} exceeds ${MAX_RANK}`);
  const v4 = n % 4 === 0;
  // words from 4: rb | batch shape | a batch strides | b batch strides
  const SH = B0 + 1;
  const SA = SH + rb;
  const SB = SA + rb;
  let setup = '  var rem = z;\n  var ab = 0u;\n  var bb = 0u;\n';
  for (let d = rb - 1; d >= 0; d--) {
    setup += `  { let sz = P(${SH + d}u); let x = rem % sz; rem = rem / sz; ab += x * P(${SA + d}u); bb += x * P(${SB + d}u); }\n`;
  }
  const tile = pickTile(m, n);
  for (let i = 0; i < tile.rm; i++) setup += `  let ar${i} = ab + r${i} * K;\n`;
  if (v4) {
    // vec4 column groups clamped to the last full group, so no load leaves the matrix
    setup += '  let nq = N / 4u;\n';
    for (let q = 0; q < tile.rn / 4; q++) setup += `  let bq${q} = (bb + min(col0 + ${4 * q}u, N - 4u)) / 4u;\n`;
  }
  const p = gemmProgram({
    key: `matmul:b${rb}`,
    tile,
    m,
    n,
    k,
    batch: sizeOf(batch),
    params: [rb, ...bs, ...(sa as number[]), ...(sb as number[])],
    nInputs: 2,
    decls: `@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<${v4 ? 'vec4<f32>' : 'f32'}>;`,
    setup,
    a: (i) => `A[ar${i} + k]`,
    b: (j) => `B[bb + k * N + c${j}]`,
    b4: v4 ? (q) => `B[bq${q} + k * nq]` : undefined,
    store: 'out[(z * M + m) * N + n] = v;',
  });
  ctx.dispatch(p, [bufOf(a), bufOf(b)], out);
};

export const matmulKernels: Record<string, WgslKernel> = { matmul };
