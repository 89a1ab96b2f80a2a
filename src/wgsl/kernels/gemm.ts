// The register-blocked GEMM template behind matmul and the three convolutions (implicit GEMM).
// C[z][m, n] = sum_k A[z][m, k] B[z][k, n]; each invocation owns an RM x RN block of C in registers
// and streams A and B straight from storage. No workgroup-memory tiling: on lavapipe (the CI
// device) shared-memory tiles measured 1-2 GFLOPS against 11+ for big register blocks, since its
// "shared memory" is ordinary memory plus barriers that split the SIMD loop.
//
// The caller supplies the loads as WGSL expressions, so a convolution reads its im2col matrix
// implicitly (no im2col buffer). Rows and columns past M and N are clamped for loading and skipped
// for storing, so only the K loop needs exact bounds.

import type { Program } from '../program.js';
import { PARAMS_WGSL } from '../program.js';

export interface GemmTile {
  /** Invocations per workgroup along n and m. */
  readonly tx: number;
  readonly ty: number;
  /** Outputs per invocation along m and n (rn a multiple of 4). */
  readonly rm: number;
  readonly rn: number;
}

export interface GemmSpec {
  /** Identifies the loads and stores (and any other compile-time choice) in the pipeline key. */
  readonly key: string;
  readonly tile: GemmTile;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** Grid z: batch entries (loads see `z`). */
  readonly batch: number;
  /** Loader-specific parameter words, from word 4 on (0..2: M, N, K). */
  readonly params: readonly number[];
  /** Storage declarations of the inputs (bindings 2..) and helper functions. */
  readonly decls: string;
  readonly nInputs: number;
  /** Per-invocation setup; sees z, row indices r0.. (clamped) and column indices c0.. (clamped). */
  readonly setup?: string;
  /** Per-k code (k is uniform across the workgroup). */
  readonly kStep?: string;
  /**
   * The K loop's header and footer, replacing `for (var k = 0u; k < K; k++) {` / `}`: convolutions
   * walk k as nested (channel, tap row, tap column) loops, since integer division is scalarised
   * per SIMD lane on CPU drivers. The body must see `k`.
   */
  readonly loop?: { readonly open: string; readonly close: string };
  /** A[r_i, k] as f32. */
  readonly a: (i: number) => string;
  /** B[k, c_j] as f32. */
  readonly b: (j: number) => string;
  /** If set, B[k, c_{4q}..c_{4q+3}] as one vec4 (columns contiguous and N % 4 == 0). */
  readonly b4?: (q: number) => string;
  /** Store `v` at (m, n) of batch entry z; m < M and n < N hold. */
  readonly store: string;
}

export function gemmProgram(s: GemmSpec): Program {
  const { tx, ty, rm, rn } = s.tile;
  const tileM = ty * rm;
  const tileN = tx * rn;
  const gx = Math.ceil(s.n / tileN);
  const gy = Math.ceil(s.m / tileM);
  if (gx > 65535 || gy > 65535 || s.batch > 65535) throw new Error(`webgpu: ${s.key} grid too large`);
  const q = rn / 4;
  return {
    key: `gemm:${s.key}:${tx}x${ty}:${rm}x${rn}${s.b4 ? ':v4' : ''}`,
    nInputs: s.nInputs,
    grid: [gx, gy, s.batch],
    params: [s.m, s.n, s.k, 0, ...s.params],
    code: () => {
      let c = `${PARAMS_WGSL}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${s.decls}
@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = P(0u);
  let N = P(1u);
  let K = P(2u);
  let z = wid.z;
  let row0 = (wid.y * ${ty}u + lid.y) * ${rm}u;
  let col0 = (wid.x * ${tx}u + lid.x) * ${rn}u;
`;
      for (let i = 0; i < rm; i++) c += `  let r${i} = min(row0 + ${i}u, M - 1u);\n`;
      for (let j = 0; j < rn; j++) c += `  let c${j} = min(col0 + ${j}u, N - 1u);\n`;
      c += `${s.setup ?? ''}\n  var acc: array<vec4<f32>, ${rm * q}>;\n`;
      c += s.loop ? s.loop.open : '  for (var k = 0u; k < K; k++) {\n';
      c += s.kStep ?? '';
      for (let i = 0; i < rm; i++) c += `    let a${i} = ${s.a(i)};\n`;
      for (let j = 0; j < q; j++) {
        c += s.b4
          ? `    let b${j} = ${s.b4(j)};\n`
          : `    let b${j} = vec4<f32>(${[0, 1, 2, 3].map((t) => s.b(4 * j + t)).join(', ')});\n`;
      }
      for (let i = 0; i < rm; i++) {
        for (let j = 0; j < q; j++) c += `    acc[${i * q + j}] = fma(vec4<f32>(a${i}), b${j}, acc[${i * q + j}]);\n`;
      }
      c += s.loop ? s.loop.close : '  }\n';
      for (let i = 0; i < rm; i++) {
        c += `  if (row0 + ${i}u < M) {\n    let m = row0 + ${i}u;\n`;
        for (let j = 0; j < rn; j++) {
          c += `    if (col0 + ${j}u < N) { let n = col0 + ${j}u; let v = acc[${i * q + (j >> 2)}][${j & 3}]; ${s.store} }\n`;
        }
        c += '  }\n';
      }
      return `${c}}\n`;
    },
  };
}
