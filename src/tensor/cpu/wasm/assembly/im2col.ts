// im2col / col2im for the wasm convolutions (AssemblyScript; see gemm.ts for the conventions). Same definition as
// the JS reference (src/tensor/cpu/im2col.ts): for one image of `c` channels at x,
//   col[(ci*kh + i)*kw + j, oy*ow + ox] (row stride ld) = x[ci, oy*sh - ph + i*dh, ox*sw - pw + j*dw], 0 outside.
// Rows of a stride-1 convolution are copied with memory.copy and padded with memory.fill; col2im adds with f32x4.

// The output columns [ox0, ox1) whose input column ox*sw + shift lies in [0, w), clipped to [0, ow).
// @ts-ignore: decorator
@inline
function firstValid(shift: i32, sw: i32, ow: i32): i32 {
  return min(ow, shift >= 0 ? 0 : (-shift + sw - 1) / sw);
}

// @ts-ignore: decorator
@inline
function endValid(shift: i32, sw: i32, w: i32, ow: i32, ox0: i32): i32 {
  return max(ox0, min(ow, w - shift <= 0 ? 0 : (w - shift + sw - 1) / sw));
}

export function im2col(
  x: usize,
  c: i32,
  h: i32,
  w: i32,
  kh: i32,
  kw: i32,
  sh: i32,
  sw: i32,
  ph: i32,
  pw: i32,
  dh: i32,
  dw: i32,
  oh: i32,
  ow: i32,
  col: usize,
  ld: i32,
): void {
  let r = 0;
  for (let ci = 0; ci < c; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const shift = j * dw - pw;
        const ox0 = firstValid(shift, sw, ow);
        const ox1 = endValid(shift, sw, w, ow, ox0);
        const row = col + ((<usize>r * ld) << 2);
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          const dst = row + ((<usize>oy * ow) << 2);
          if (iy < 0 || iy >= h) {
            memory.fill(dst, 0, <usize>ow << 2);
            continue;
          }
          const src = x + ((<usize>(ci * h + iy) * w) << 2) + (<isize>shift << 2);
          if (ox0 > 0) memory.fill(dst, 0, <usize>ox0 << 2);
          if (sw == 1) {
            memory.copy(dst + (<usize>ox0 << 2), src + (<usize>ox0 << 2), <usize>(ox1 - ox0) << 2);
          } else {
            for (let ox = ox0; ox < ox1; ox++) store<f32>(dst + (<usize>ox << 2), load<f32>(src + (<usize>(ox * sw) << 2)));
          }
          if (ox1 < ow) memory.fill(dst + (<usize>ox1 << 2), 0, <usize>(ow - ox1) << 2);
        }
      }
    }
  }
}

/** The adjoint of im2col: x[ci, iy, ix] += every col entry that was read from it. */
export function col2im(
  col: usize,
  ld: i32,
  c: i32,
  h: i32,
  w: i32,
  kh: i32,
  kw: i32,
  sh: i32,
  sw: i32,
  ph: i32,
  pw: i32,
  dh: i32,
  dw: i32,
  oh: i32,
  ow: i32,
  x: usize,
): void {
  let r = 0;
  for (let ci = 0; ci < c; ci++) {
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++, r++) {
        const shift = j * dw - pw;
        const ox0 = firstValid(shift, sw, ow);
        const ox1 = endValid(shift, sw, w, ow, ox0);
        const row = col + ((<usize>r * ld) << 2);
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * sh - ph + i * dh;
          if (iy < 0 || iy >= h) continue;
          const dst = x + ((<usize>(ci * h + iy) * w) << 2) + (<isize>shift << 2);
          const src = row + ((<usize>oy * ow) << 2);
          if (sw == 1) {
            let ox = ox0;
            for (; ox + 4 <= ox1; ox += 4) {
              const o = <usize>ox << 2;
              v128.store(dst + o, f32x4.add(v128.load(dst + o), v128.load(src + o)));
            }
            for (; ox < ox1; ox++) {
              const o = <usize>ox << 2;
              store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o));
            }
          } else {
            for (let ox = ox0; ox < ox1; ox++) {
              const d = dst + (<usize>(ox * sw) << 2);
              store<f32>(d, load<f32>(d) + load<f32>(src + (<usize>ox << 2)));
            }
          }
        }
      }
    }
  }
}

/** im2col for `count` images: image b at x + b*xStep (bytes) into columns starting at col + b*colStep (bytes). */
export function im2colImages(
  x: usize,
  xStep: usize,
  count: i32,
  c: i32,
  h: i32,
  w: i32,
  kh: i32,
  kw: i32,
  sh: i32,
  sw: i32,
  ph: i32,
  pw: i32,
  dh: i32,
  dw: i32,
  oh: i32,
  ow: i32,
  col: usize,
  colStep: usize,
  ld: i32,
): void {
  for (let b = 0; b < count; b++) {
    im2col(x + <usize>b * xStep, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col + <usize>b * colStep, ld);
  }
}

/** col2im for `count` images (the adjoint of im2colImages; each image's gradient is its own, so threads may split). */
export function col2imImages(
  col: usize,
  colStep: usize,
  ld: i32,
  count: i32,
  c: i32,
  h: i32,
  w: i32,
  kh: i32,
  kw: i32,
  sh: i32,
  sw: i32,
  ph: i32,
  pw: i32,
  dh: i32,
  dw: i32,
  oh: i32,
  ow: i32,
  x: usize,
  xStep: usize,
): void {
  for (let b = 0; b < count; b++) {
    col2im(col + <usize>b * colStep, ld, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x + <usize>b * xStep);
  }
}
