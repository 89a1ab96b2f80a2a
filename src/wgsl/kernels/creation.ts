// Creation kernels: fill, arange, and Philox4x32-10 random numbers with the same bits as
// src/tensor/philox.ts (the 32x32->64 multiply in 16-bit halves, as WGSL has no 64-bit ints).

import { bindingsWgsl, f32bits, grid1d, linearMain, PARAMS_WGSL, type Program } from '../program.js';
import type { WgslKernel } from './kernel.js';

function simple(key: string, body: string, n: number, params: number[]): Program {
  return {
    key,
    nInputs: 0,
    grid: grid1d(n),
    params: [n, ...params],
    code: () => `${PARAMS_WGSL}${bindingsWgsl(0)}
${linearMain()}
  if (gi >= P(0u)) { return; }
  ${body}
}
`,
  };
}

const fill: WgslKernel = (ctx, _ins, attrs: { value: number }, outShape, out) => {
  const n = outShape.reduce((a, b) => a * b, 1);
  ctx.dispatch(simple('fill', 'out[gi] = PF(1u);', n, [f32bits(attrs.value)]), [], out);
};

const arange: WgslKernel = (ctx, _ins, attrs: { start: number; step: number }, outShape, out) => {
  const n = outShape[0] as number;
  ctx.dispatch(
    simple('arange', 'out[gi] = fma(f32(gi), PF(2u), PF(1u));', n, [f32bits(attrs.start), f32bits(attrs.step)]),
    [],
    out,
  );
};

export const PHILOX_WGSL = /* wgsl */ `
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let aL = a & 0xffffu;
  let aH = a >> 16u;
  let bL = b & 0xffffu;
  let bH = b >> 16u;
  let ll = aL * bL;
  let lh = aL * bH;
  let hl = aH * bL;
  let hh = aH * bH;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return vec2<u32>(hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0; r < 10; r++) {
    let p0 = mulhilo(0xd2511f53u, c.x);
    let p1 = mulhilo(0xcd9e8d57u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2<u32>(0x9e3779b9u, 0xbb67ae85u);
  }
  return c;
}
`;

const random: WgslKernel = (
  ctx,
  _ins,
  attrs: { dist: 'uniform' | 'normal'; seed: number; stream: number },
  outShape,
  out,
) => {
  const n = outShape.reduce((a, b) => a * b, 1);
  const hi = (v: number) => Math.floor(v / 2 ** 32) >>> 0;
  const params = [attrs.seed >>> 0, hi(attrs.seed), attrs.stream >>> 0, hi(attrs.stream)];
  // counter (i, stream lo, stream hi, 0), key (seed lo, seed hi), as philoxWords
  const words = 'let w = philox(vec4<u32>(gi, P(3u), P(4u), 0u), vec2<u32>(P(1u), P(2u)));';
  const body =
    attrs.dist === 'uniform'
      ? `${words}\n  out[gi] = f32(w.x >> 8u) * 5.9604644775390625e-8;`
      : // Box-Muller; the angle reduced to [-1/2, 1/2] turns so cos sees |arg| <= pi
        `${words}
  let u1 = f32((w.x >> 8u) + 1u) * 5.9604644775390625e-8;
  let u2 = f32(w.y >> 8u) * 5.9604644775390625e-8;
  let t = u2 - round(u2);
  out[gi] = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * t);`;
  const p = simple(`random.${attrs.dist}`, body, n, params);
  ctx.dispatch({ ...p, code: () => p.code().replace('@compute', `${PHILOX_WGSL}\n@compute`) }, [], out);
};

export const creationKernels: Record<string, WgslKernel> = { fill, arange, random };
