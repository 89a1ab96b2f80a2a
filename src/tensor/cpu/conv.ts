// Convolution on cpu as im2col + gemm (and col2im for the input gradient), per image and group.

import type { TypedArray } from '../backend.js';
import type { ConvGeom, ConvInputAttrs, ConvWeightAttrs } from '../prims/conv.js';
import type { Shape } from '../shape.js';
import { gemm } from './gemm.js';
import type { CpuArg, CpuKernel } from './kernel.js';

interface Dims {
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

function dims(x: Shape, w: Shape, y: Shape, g: ConvGeom): Dims {
  const [n, c, h, wd] = x as [number, number, number, number];
  const [o, , kh, kw] = w as [number, number, number, number];
  const [, , oh, ow] = y as [number, number, number, number];
  return { n, c, h, w: wd, o, kh, kw, oh, ow, cg: c / g.groups, og: o / g.groups, g };
}

/** col[(ci*kh + i)*kw + j, oy*ow + ox] = x[ci, oy*s - p + i*d, ox*s - p + j*d] (0 outside) for one image/group. */
function im2col(x: TypedArray, xOff: number, d: Dims, col: TypedArray): void {
  const { h, w, kh, kw, oh, ow, cg, g } = d;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw] = g.dilation;
  let r = 0;
  for (let ci = 0; ci < cg; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const row = r * oh * ow;
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          const dst = row + oy * ow;
          if (iy < 0 || iy >= h) {
            col.fill(0, dst, dst + ow);
            continue;
          }
          const src = xOff + (ci * h + iy) * w;
          for (let ox = 0; ox < ow; ox++) {
            const ix = ox * sw - pw + j * dw;
            col[dst + ox] = ix >= 0 && ix < w ? (x[src + ix] as number) : 0;
          }
        }
      }
    }
  }
}

/** The adjoint of im2col: add each column entry back into the image position it came from. */
function col2im(col: TypedArray, d: Dims, x: TypedArray, xOff: number): void {
  const { h, w, kh, kw, oh, ow, cg, g } = d;
  const [sh, sw] = g.stride;
  const [ph, pw] = g.padding;
  const [dh, dw] = g.dilation;
  let r = 0;
  for (let ci = 0; ci < cg; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const row = r * oh * ow;
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          if (iy < 0 || iy >= h) continue;
          const dst = xOff + (ci * h + iy) * w;
          for (let ox = 0; ox < ow; ox++) {
            const ix = ox * sw - pw + j * dw;
            if (ix >= 0 && ix < w) x[dst + ix] += col[row + oy * ow + ox] as number;
          }
        }
      }
    }
  }
}

function newLike(a: TypedArray, n: number): TypedArray {
  return a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/** Per (image, group): y[og, oh*ow] = W[og, cg*kh*kw] @ col. */
const conv2d: CpuKernel = (ins, attrs: ConvGeom, out, outShape) => {
  const [x, w] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, w.shape, outShape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      im2col(x.data, (b * d.c + gi * d.cg) * d.h * d.w, d, col);
      gemm({
        m: d.og,
        n: p,
        k: kk,
        a: w.data,
        aOff: gi * d.og * kk,
        lda: kk,
        b: col,
        bOff: 0,
        ldb: p,
        c: out,
        cOff: (b * d.o + gi * d.og) * p,
        ldc: p,
      });
    }
  }
};

/** Per (image, group): col = W^T @ gy, then col2im. Inputs: [gy, w]. */
const conv2dInput: CpuKernel = (ins, attrs: ConvInputAttrs, out, outShape) => {
  const [gy, w] = ins as [CpuArg, CpuArg];
  const d = dims(outShape, w.shape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      gemm({
        m: kk,
        n: p,
        k: d.og,
        a: w.data,
        aOff: gi * d.og * kk,
        lda: kk,
        transA: true,
        b: gy.data,
        bOff: (b * d.o + gi * d.og) * p,
        ldb: p,
        c: col,
        cOff: 0,
        ldc: p,
      });
      col2im(col, d, out, (b * d.c + gi * d.cg) * d.h * d.w);
    }
  }
};

/** Per (image, group): gW[og, kk] += gy[og, p] @ col^T. Inputs: [x, gy]. */
const conv2dWeight: CpuKernel = (ins, attrs: ConvWeightAttrs, out) => {
  const [x, gy] = ins as [CpuArg, CpuArg];
  const d = dims(x.shape, attrs.wShape, gy.shape, attrs);
  const kk = d.cg * d.kh * d.kw;
  const p = d.oh * d.ow;
  const col = newLike(out, kk * p);
  for (let b = 0; b < d.n; b++) {
    for (let gi = 0; gi < attrs.groups; gi++) {
      im2col(x.data, (b * d.c + gi * d.cg) * d.h * d.w, d, col);
      gemm({
        m: d.og,
        n: kk,
        k: p,
        a: gy.data,
        aOff: (b * d.o + gi * d.og) * p,
        lda: p,
        b: col,
        bOff: 0,
        ldb: p,
        transB: true,
        c: out,
        cOff: gi * d.og * kk,
        ldc: kk,
        accumulate: true,
      });
    }
  }
};

export const convKernels: Record<string, CpuKernel> = { conv2d, conv2dInput, conv2dWeight };
