// im2col / col2im and the convolution geometry shared by the cpu conv kernels (JS in conv.ts, wasm in wasm/conv.ts).

import type { TypedArray } from '../backend.js';
import type { ConvGeom } from '../prims/conv.js';
import type { Shape } from '../shape.js';

export interface Dims {
  n: number;
  c: number;
  h: number;
  w: number; // input
  o: number;
  kh: number;
  kw: number; // weight
  oh: number;
  ow: number; // output
  cg: number;
  og: number; // channels per group
  g: ConvGeom;
}

export function dims(x: Shape, w: Shape, y: Shape, g: ConvGeom): Dims {
  const [n, c, h, wd] = x as [number, number, number, number];
  const [o, , kh, kw] = w as [number, number, number, number];
  const [, , oh, ow] = y as [number, number, number, number];
  return { n, c, h, w: wd, o, kh, kw, oh, ow, cg: c / g.groups, og: o / g.groups, g };
}

/** The output columns [ox0, ox1) whose input column ox*s + shift lies in [0, w), clipped to [0, ow). */
function validRange(ow: number, s: number, shift: number, w: number): [number, number] {
  const ox0 = Math.min(ow, Math.max(0, Math.ceil(-shift / s)));
  const ox1 = Math.max(ox0, Math.min(ow, Math.ceil((w - shift) / s)));
  return [ox0, ox1];
}

/**
 * col[colOff + ((ci*kh + i)*kw + j) * ld + oy*ow + ox] = x[ci, oy*s - p + i*d, ox*s - p + j*d] (0 outside) for one
 * image/group; ld (default oh*ow) lets several images sit side by side in one matrix.
 */
export function im2col(x: TypedArray, xOff: number, d: Dims, col: TypedArray, colOff = 0, ld = d.oh * d.ow): void {
  const { h, w, kh, kw, oh, ow, cg, g } = d;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw] = g.dilation;
  let r = 0;
  for (let ci = 0; ci < cg; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const row = colOff + r * ld;
        const [ox0, ox1] = validRange(ow, sw, j * dw - pw, w);
        const shift = j * dw - pw;
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          const dst = row + oy * ow;
          if (iy < 0 || iy >= h) {
            col.fill(0, dst, dst + ow);
            continue;
          }
          const src = xOff + (ci * h + iy) * w + shift;
          if (ox0 > 0) col.fill(0, dst, dst + ox0);
          if (sw === 1) for (let ox = ox0; ox < ox1; ox++) col[dst + ox] = x[src + ox] as number;
          else for (let ox = ox0; ox < ox1; ox++) col[dst + ox] = x[src + ox * sw] as number;
          if (ox1 < ow) col.fill(0, dst + ox1, dst + ow);
        }
      }
    }
  }
}

/** The adjoint of im2col: add each column entry back into the image position it came from. */
export function col2im(col: TypedArray, d: Dims, x: TypedArray, xOff: number, colOff = 0, ld = d.oh * d.ow): void {
  const { h, w, kh, kw, oh, ow, cg, g } = d;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw] = g.dilation;
  let r = 0;
  for (let ci = 0; ci < cg; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const row = colOff + r * ld;
        const [ox0, ox1] = validRange(ow, sw, j * dw - pw, w);
        const shift = j * dw - pw;
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          if (iy < 0 || iy >= h) continue;
          const dst = xOff + (ci * h + iy) * w + shift;
          const src = row + oy * ow;
          if (sw === 1) for (let ox = ox0; ox < ox1; ox++) x[dst + ox] += col[src + ox] as number;
          else for (let ox = ox0; ox < ox1; ox++) x[dst + ox * sw] += col[src + ox] as number;
        }
      }
    }
  }
}
