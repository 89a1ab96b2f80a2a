// Pooling and resampling as composites: avg_pool2d as a depthwise conv, nearest upsampling as
// index selection, bilinear as two small interpolation matrices, grid_sample from gather.

import { conv2d } from '../prims/conv.js';
import { fromArray, full } from '../prims/creation.js';
import { add, floor, ge, lt, maximum, minimum, mul, sub } from '../prims/elementwise.js';
import { matmul } from '../prims/matmul.js';
import { expand, gather, indexSelect, narrow, reshape, transpose } from '../prims/shape.js';
import { fmt } from '../shape.js';
import type { Tensor } from '../tensor.js';

function check4d(op: string, x: Tensor): [number, number, number, number] {
  if (x.rank !== 4) throw new Error(`${op}: x must be [N, C, H, W], got ${fmt(x.shape)}`);
  return x.shape as [number, number, number, number];
}

/** torch avg_pool2d with count_include_pad=True and ceil_mode=False (its defaults). */
export function avgPool2d(
  x: Tensor,
  kernel: number | [number, number],
  stride?: number | [number, number],
  padding: number | [number, number] = 0,
): Tensor {
  const [n, c, h, w] = check4d('avgPool2d', x);
  const k = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const kw = full([1, 1, k[0], k[1]], 1 / (k[0] * k[1]), { dtype: x.dtype, backend: x.backend.name });
  const y = conv2d(reshape(x, [n * c, 1, h, w]), kw, undefined, { stride: stride ?? (k as [number, number]), padding });
  return reshape(y, [n, c, y.shape[2] as number, y.shape[3] as number]);
}

interface SizeOpts {
  size?: [number, number];
  scaleFactor?: number;
}

/**
 * Output size and the input-per-output step: PyTorch uses in/out for `size` but 1/scaleFactor
 * when a scale factor is given (recompute_scale_factor unset), which differ when in*scale is fractional.
 */
function outSize(op: string, h: number, w: number, o: SizeOpts): { oh: number; ow: number; sh: number; sw: number } {
  if (o.size) {
    const [oh, ow] = o.size;
    if (!(Number.isInteger(oh) && Number.isInteger(ow) && oh > 0 && ow > 0))
      throw new Error(`${op}: size [${o.size}] must be positive integers`);
    return { oh, ow, sh: h / oh, sw: w / ow };
  }
  if (o.scaleFactor && o.scaleFactor > 0) {
    const oh = Math.floor(h * o.scaleFactor);
    const ow = Math.floor(w * o.scaleFactor);
    if (oh < 1 || ow < 1) throw new Error(`${op}: scaleFactor ${o.scaleFactor} gives an empty output for ${h}x${w}`);
    return { oh, ow, sh: 1 / o.scaleFactor, sw: 1 / o.scaleFactor };
  }
  throw new Error(`${op}: give size or a positive scaleFactor`);
}

/** F.interpolate(mode='nearest'): source index floor(dst * step). */
export function upsampleNearest2d(x: Tensor, opts: SizeOpts): Tensor {
  const [, , h, w] = check4d('upsampleNearest2d', x);
  const { oh, ow, sh, sw } = outSize('upsampleNearest2d', h, w, opts);
  const idx = (n: number, on: number, step: number) =>
    Array.from({ length: on }, (_, i) => Math.min(Math.floor(i * step), n - 1));
  return indexSelect(indexSelect(x, 2, idx(h, oh, sh)), 3, idx(w, ow, sw));
}

/** Row i maps output i to inputs under F.interpolate(mode='bilinear', align_corners=False). */
function interpMatrix(n: number, on: number, scale: number, like: Tensor): Tensor {
  const m = new Float64Array(on * n);
  for (let i = 0; i < on; i++) {
    const src = Math.max((i + 0.5) * scale - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    const l = src - i0;
    m[i * n + i0] += 1 - l;
    m[i * n + i1] += l;
  }
  return fromArray(m, [on, n], { dtype: like.dtype, backend: like.backend.name });
}

/** F.interpolate(mode='bilinear', align_corners=False) as A_h @ x @ A_w^T. */
export function upsampleBilinear2d(x: Tensor, opts: SizeOpts): Tensor {
  const [, , h, w] = check4d('upsampleBilinear2d', x);
  const { oh, ow, sh, sw } = outSize('upsampleBilinear2d', h, w, opts);
  return matmul(interpMatrix(h, oh, sh, x), matmul(x, transpose(interpMatrix(w, ow, sw, x))));
}

/**
 * F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False).
 * x: [N, C, H, W]; grid: [N, OH, OW, 2] holding (x, y) in [-1, 1]. Built from gather over the
 * four neighbours with bilinear weights, so gradients reach both x (scatter-add) and grid
 * (through the weights; the integer corners carry none, as in PyTorch).
 */
export function gridSample(x: Tensor, grid: Tensor): Tensor {
  const [n, c, h, w] = check4d('gridSample', x);
  if (grid.rank !== 4 || grid.shape[0] !== n || grid.shape[3] !== 2) {
    throw new Error(`gridSample: grid must be [${n}, OH, OW, 2] for x ${fmt(x.shape)}, got ${fmt(grid.shape)}`);
  }
  const [, oh, ow] = grid.shape as [number, number, number, number];
  const p = oh * ow;
  // unnormalise (align_corners=False): pixel centres sit at (i + 0.5) / size * 2 - 1
  const gx = reshape(narrow(grid, 3, 0, 1), [n, 1, p]);
  const gy = reshape(narrow(grid, 3, 1, 1), [n, 1, p]);
  const ix = mul(sub(mul(add(gx, 1), w), 1), 0.5);
  const iy = mul(sub(mul(add(gy, 1), h), 1), 0.5);
  const x0 = floor(ix);
  const y0 = floor(iy);
  const fx = sub(ix, x0);
  const fy = sub(iy, y0);
  const flat = reshape(x, [n, c, h * w]);
  let out: Tensor | null = null;
  for (const [dy, wy] of [
    [0, sub(1, fy)],
    [1, fy],
  ] as const) {
    for (const [dx, wx] of [
      [0, sub(1, fx)],
      [1, fx],
    ] as const) {
      const cx = add(x0, dx);
      const cy = add(y0, dy);
      // zero padding: corners outside the image contribute nothing
      const inside = mul(mul(ge(cx, 0), lt(cx, w)), mul(ge(cy, 0), lt(cy, h)));
      const idx = add(mul(minimum(maximum(cy, 0), h - 1), w), minimum(maximum(cx, 0), w - 1));
      const v = gather(flat, 2, expand(idx, [n, c, p]));
      const term = mul(v, mul(mul(wx, wy), inside));
      out = out ? add(out, term) : term;
    }
  }
  return reshape(out as Tensor, [n, c, oh, ow]);
}
