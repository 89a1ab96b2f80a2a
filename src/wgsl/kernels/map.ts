// The strided map: out[i] = expr(in0[o0(i)], in1[o1(i)], ...) over an iteration shape, where each
// operand (and optionally the output) is read at base + sum_d idx_d * stride_d. Elementwise ops,
// broadcasting, permute, expand, slice, embed and concat are all this one shader family.

import { stridesOf } from '../../tensor/shape.js';
import {
  bindingsWgsl,
  collapse,
  grid1d,
  i32bits,
  linearMain,
  MAX_RANK,
  PARAMS_WGSL,
  type Program,
} from '../program.js';

export interface Operand {
  /** Element offset of index 0. */
  readonly base: number;
  /** Element stride per axis of the iteration shape (0 = broadcast, negative = reversed). */
  readonly strides: readonly number[];
}

/** Parameter words 1..4 are free for the expression (PF(1)...PF(4)). */
export const EXTRA_PARAMS = 4;

export interface MapSpec {
  /** Identifies `expr` and `prelude` in the pipeline key. */
  readonly name: string;
  /** WGSL f32 expression of v0, v1, ... (the operands' elements). */
  readonly expr: string;
  /** WGSL helper functions the expression calls. */
  readonly prelude?: string;
  readonly shape: readonly number[];
  readonly ins: readonly Operand[];
  /** Where element i is written; default contiguous. */
  readonly out?: Operand;
  /** Up to EXTRA_PARAMS words (u32 bits) the expression reads as P(1).. / PF(1).. */
  readonly extra?: readonly number[];
}

/** The operand reading a contiguous tensor of `shape` at the iteration shape (broadcast dims 0). */
export const contiguous = (shape: readonly number[]): Operand => ({ base: 0, strides: stridesOf(shape) });

export function mapProgram(s: MapSpec): Program {
  const n = s.shape.reduce((a, b) => a * b, 1);
  const k = s.ins.length;
  const outOp = s.out ?? contiguous(s.shape);
  const [shape, strides] = collapse(s.shape, [...s.ins.map((o) => o.strides), outOp.strides]);
  const rank = shape.length;
  if (rank > MAX_RANK) throw new Error(`webgpu: ${s.name} over rank ${rank} (after merging axes) exceeds ${MAX_RANK}`);
  const bases = [...s.ins.map((o) => o.base), outOp.base];
  const flat = rank === 1 && strides.every((st) => st[0] === 1) && bases.every((b) => b === 0);
  const extra = s.extra ?? [];
  // words: 0 n | 1..4 extra | 5 rank | 6.. bases (k+1) | shape (rank) | strides (k+1 lists of rank)
  const params = [n, ...extra, ...new Array(EXTRA_PARAMS - extra.length).fill(0), rank];
  for (const b of bases) params.push(i32bits(b));
  params.push(...shape);
  for (const st of strides) for (const v of st) params.push(i32bits(v));
  const key = `map:${s.name}:${k}:${flat ? 'flat' : `r${rank}`}`;
  return {
    key,
    nInputs: k,
    grid: grid1d(n),
    params,
    code: () => (flat ? flatCode(s, k) : stridedCode(s, k, rank)),
  };
}

function loads(k: number, idx: (j: number) => string): string {
  let c = '';
  for (let j = 0; j < k; j++) c += `  let v${j} = in${j}[${idx(j)}];\n`;
  return c;
}

function flatCode(s: MapSpec, k: number): string {
  return `${PARAMS_WGSL}${bindingsWgsl(k)}${s.prelude ?? ''}
${linearMain()}
  if (gi >= P(0u)) { return; }
${loads(k, () => 'gi')}  out[gi] = ${s.expr};
}
`;
}

function stridedCode(s: MapSpec, k: number, rank: number): string {
  const SHAPE = 6 + k + 1;
  const STR = SHAPE + rank;
  let c = `${PARAMS_WGSL}${bindingsWgsl(k)}${s.prelude ?? ''}
${linearMain()}
  if (gi >= P(0u)) { return; }
  var rem = gi;
`;
  for (let j = 0; j <= k; j++) c += `  var o${j} = PI(${6 + j}u);\n`;
  // innermost axis first: peel one coordinate per axis off the linear index
  for (let d = rank - 1; d >= 0; d--) {
    c += d > 0 ? `  { let sz = P(${SHAPE + d}u); let x = i32(rem % sz); rem = rem / sz;\n` : '  { let x = i32(rem);\n';
    for (let j = 0; j <= k; j++) c += `    o${j} += x * PI(${STR + j * rank + d}u);\n`;
    c += '  }\n';
  }
  c += loads(k, (j) => `u32(o${j})`);
  c += `  out[u32(o${k})] = ${s.expr};\n}\n`;
  return c;
}
