// What a kernel hands the runtime: a shader (by key), its inputs, its parameters and its grid.
// Shared WGSL snippets and the host-side helpers every kernel family uses live here too.

/** Bytes of parameters one dispatch may use (one dynamic-offset slot of the uniform arena). */
export const PARAM_BYTES = 256;
/** WGSL view of the parameter slot: 64 words, read with P(i) (u32), PI(i) (i32) or PF(i) (f32). */
export const PARAM_WORDS = PARAM_BYTES / 4;

/** Default workgroup size of the elementwise and data-movement kernels (lavapipe likes 256). */
export const WG = 256;

export interface Program {
  /** Identifies the shader source; pipelines are cached by it. */
  readonly key: string;
  /** The WGSL source (called only when the key is not cached yet). */
  readonly code: () => string;
  /** Number of read-only storage inputs (bindings 2..), after the output at binding 1. */
  readonly nInputs: number;
  /** Workgroups in x, y, z (each at most 65535; use grid1d for linear work). */
  readonly grid: readonly [number, number, number];
  /** Parameter words as u32 bit patterns (use f32bits / i32bits); at most PARAM_WORDS. */
  readonly params: readonly number[];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bit pattern of float32(x), for a float parameter. */
export function f32bits(x: number): number {
  f32[0] = x;
  return u32[0] as number;
}

/** The bit pattern of a (possibly negative) 32-bit integer. */
export function i32bits(x: number): number {
  return x >>> 0;
}

export const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Workgroups for `n` independent items at `wg` items per workgroup, folded into 2-D when more than
 * 65535 are needed. Kernels recover the linear index with LINEAR_INDEX.
 */
export function grid1d(n: number, wg = WG): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  if (y > MAX_WORKGROUPS_PER_DIM) throw new Error(`webgpu: ${n} items need more than 65535^2 workgroups`);
  return [Math.ceil(groups / y), y, 1];
}

/** The uniform parameter slot and its accessors. */
export const PARAMS_WGSL = /* wgsl */ `
struct Params { v: array<vec4<u32>, ${PARAM_WORDS / 4}> }
@group(0) @binding(0) var<uniform> params: Params;
fn P(i: u32) -> u32 { return params.v[i / 4u][i % 4u]; }
fn PI(i: u32) -> i32 { return bitcast<i32>(P(i)); }
fn PF(i: u32) -> f32 { return bitcast<f32>(P(i)); }
`;

/** Bindings: output at 1 (read_write), inputs at 2.. (read). */
export function bindingsWgsl(nInputs: number, elem = 'f32'): string {
  let s = `@group(0) @binding(1) var<storage, read_write> out: array<${elem}>;\n`;
  for (let i = 0; i < nInputs; i++) s += `@group(0) @binding(${i + 2}) var<storage, read> in${i}: array<${elem}>;\n`;
  return s;
}

/** Entry point header for linear kernels; defines `gi`, the linear item index (2-D grids folded). */
export function linearMain(wg = WG): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let gi = (wid.y * nwg.x + wid.x) * ${wg}u + lid;`;
}

/**
 * Merge adjacent axes that every operand walks contiguously (stride[i] == stride[i+1] * shape[i+1])
 * and drop size-1 axes, so index arithmetic in the shader runs over as few axes as possible.
 * Returns the reduced shape and one stride list per operand (at least one axis).
 */
export function collapse(shape: readonly number[], strides: readonly (readonly number[])[]): [number[], number[][]] {
  const s: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let a = 0; a < shape.length; a++) {
    const d = shape[a] as number;
    if (d === 1) continue;
    const last = s.length - 1;
    if (last >= 0 && strides.every((sv, j) => (st[j]?.[last] as number) === (sv[a] as number) * d)) {
      s[last] = (s[last] as number) * d;
      strides.forEach((sv, j) => {
        (st[j] as number[])[last] = sv[a] as number;
      });
      continue;
    }
    s.push(d);
    strides.forEach((sv, j) => {
      (st[j] as number[]).push(sv[a] as number);
    });
  }
  if (s.length === 0) {
    s.push(1);
    for (const x of st) x.push(0);
  }
  return [s, st];
}

/** Largest rank the strided kernels take after collapse (their parameter slot holds this many). */
export const MAX_RANK = 8;
