// Winograd F(2x2, 3x3) transforms for the wasm convolutions (AssemblyScript; see gemm.ts for the conventions).
// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): a 3x3, stride-1 convolution computes each
// 2x2 output tile from a 4x4 input tile d as Y = A^T [(G g G^T) . (B^T d B)] A, so per tile and channel pair it does 16
// multiplies instead of 36. Summed over input channels, the 16 elementwise products become 16 gemms
//   M[xi] (K x P) = U[xi] (K x C) @ V[xi] (C x P),   xi = 4*i + j, P = images x tiles,
// and the 2.25x fewer multiply-adds are the whole gain. This file holds the input transform V = B^T d B, the output
// transform Y = A^T M A, and a batch of gemms; the filter transform U = G g G^T is done once per call in JS
// (src/tensor/cpu/wasm/winograd.ts), in float64.
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],   A^T = [1 1 1 0; 0 1 -1 -1]
//
// Layout: V[xi][ci][col] at v + 4*(xi*xiStride + ci*ld + col), col = b*tH*tW + ty*tW + tx; M likewise with output
// channels. Both transforms run four tiles of a tile row at once in f32x4 lanes: input rows are split into their even
// and odd columns (E[t] = d[2t], O[t] = d[2t + 1]), so tile tx's four columns are E[tx], O[tx], E[tx+1], O[tx+1].

import { sgemm } from './gemm';

/** Floats per even/odd row buffer for tW tiles: tW + 1 entries, room for unaligned loads at tx + 1, 4-aligned. */
// @ts-ignore: decorator
@inline
function rowFloats(tW: i32): i32 {
  return (tW + 8) & ~3;
}

/** Bytes of scratch winogradInputImages needs per thread for tW tiles per row. */
export function winogradScratchBytes(tW: i32): i32 {
  return 16 * rowFloats(tW) * 4;
}

/**
 * V for `count` images of `c` channels (h x w, zero padding ph / pw): image b at x + b*xStep bytes, its channel ci at
 * + 4*ci*h*w; its tiles at columns b*tH*tW.. of V. `scratch` is winogradScratchBytes(tW) of this thread's memory.
 */
export function winogradInputImages(
  x: usize,
  xStep: i32,
  count: i32,
  c: i32,
  h: i32,
  w: i32,
  ph: i32,
  pw: i32,
  tH: i32,
  tW: i32,
  v: usize,
  ld: i32,
  xiStride: i32,
  scratch: usize,
): void {
  const L = <usize>rowFloats(tW) << 2; // bytes per row buffer
  // scratch: rows R0E R0O R1E R1O R2E R2O R3E R3O, then T0E T0O .. T3E T3O
  const tb = scratch + 8 * L;
  const plane = <usize>xiStride << 2;
  for (let b = 0; b < count; b++) {
    const img = x + <usize>b * <usize>xStep;
    const col0 = b * tH * tW;
    for (let ci = 0; ci < c; ci++) {
      const chan = img + ((<usize>ci * h * w) << 2);
      for (let ty = 0; ty < tH; ty++) {
        // the tile row's four input rows, split into even and odd columns, zero outside the image
        for (let r = 0; r < 4; r++) {
          const e = scratch + <usize>(2 * r) * L;
          const o = e + L;
          const iy = 2 * ty - ph + r;
          if (iy < 0 || iy >= h) {
            memory.fill(e, 0, 2 * L);
            continue;
          }
          const src = chan + ((<usize>iy * w) << 2);
          for (let t = 0; t <= tW; t++) {
            const ce = 2 * t - pw;
            const co = ce + 1;
            store<f32>(e + (<usize>t << 2), ce >= 0 && ce < w ? load<f32>(src + (<usize>ce << 2)) : 0);
            store<f32>(o + (<usize>t << 2), co >= 0 && co < w ? load<f32>(src + (<usize>co << 2)) : 0);
          }
        }
        // B^T d down the columns, four tiles at a time: T0 = R0 - R2, T1 = R1 + R2, T2 = R2 - R1, T3 = R1 - R3
        for (let off: usize = 0; off < 2 * L; off += 16) {
          const r0 = v128.load(scratch + off);
          const r1 = v128.load(scratch + 2 * L + off);
          const r2 = v128.load(scratch + 4 * L + off);
          const r3 = v128.load(scratch + 6 * L + off);
          v128.store(tb + off, f32x4.sub(r0, r2));
          v128.store(tb + 2 * L + off, f32x4.add(r1, r2));
          v128.store(tb + 4 * L + off, f32x4.sub(r2, r1));
          v128.store(tb + 6 * L + off, f32x4.sub(r1, r3));
        }
        // (B^T d) B along the rows: with c0..c3 = E[tx], O[tx], E[tx+1], O[tx+1]:
        //   j = 0: c0 - c2, 1: c1 + c2, 2: c2 - c1, 3: c1 - c3
        const rowCol = <usize>(ci * ld + col0 + ty * tW);
        for (let i = 0; i < 4; i++) {
          const e = tb + <usize>(2 * i) * L;
          const o = e + L;
          const dst = v + ((<usize>(4 * i) * <usize>xiStride + rowCol) << 2);
          for (let tx = 0; tx < tW; tx += 4) {
            const t4 = <usize>tx << 2;
            const e0 = v128.load(e + t4);
            const e1 = v128.load(e + t4 + 4);
            const o0 = v128.load(o + t4);
            const o1 = v128.load(o + t4 + 4);
            const v0 = f32x4.sub(e0, e1);
            const v1 = f32x4.add(o0, e1);
            const v2 = f32x4.sub(e1, o0);
            const v3 = f32x4.sub(o0, o1);
            const p = dst + t4;
            if (tx + 4 <= tW) {
              v128.store(p, v0);
              v128.store(p + plane, v1);
              v128.store(p + 2 * plane, v2);
              v128.store(p + 3 * plane, v3);
            } else {
              // the row's last tiles: only tW - tx lanes belong to this row
              const n = tW - tx;
              storeLanes(p, v0, n);
              storeLanes(p + plane, v1, n);
              storeLanes(p + 2 * plane, v2, n);
              storeLanes(p + 3 * plane, v3, n);
            }
          }
        }
      }
    }
  }
}

/** The first n (1..3) lanes of a at p. */
// @ts-ignore: decorator
@inline
function storeLanes(p: usize, a: v128, n: i32): void {
  store<f32>(p, f32x4.extract_lane(a, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(a, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(a, 2), 8);
}

/**
 * Y = A^T M A for `count` images of `k` output channels: M's tiles of image b at columns b*tH*tW.. (channel ki at row
 * ki of each plane), written to y + b*yStep bytes, channel ki at + 4*ki*oh*ow, clipped to oh x ow. M must be readable
 * 3 floats past its last column (the caller pads it).
 */
export function winogradOutputImages(
  m: usize,
  ld: i32,
  xiStride: i32,
  count: i32,
  k: i32,
  oh: i32,
  ow: i32,
  tH: i32,
  tW: i32,
  y: usize,
  yStep: i32,
): void {
  const plane = <usize>xiStride << 2;
  for (let b = 0; b < count; b++) {
    const img = y + <usize>b * <usize>yStep;
    const col0 = b * tH * tW;
    for (let ki = 0; ki < k; ki++) {
      const chan = img + ((<usize>ki * oh * ow) << 2);
      for (let ty = 0; ty < tH; ty++) {
        const src0 = m + ((<usize>(ki * ld + col0 + ty * tW)) << 2);
        const oy = 2 * ty;
        const row0 = chan + ((<usize>oy * ow) << 2);
        const row1 = row0 + ((<usize>ow) << 2);
        const second = oy + 1 < oh;
        for (let tx = 0; tx < tW; tx += 4) {
          const s = src0 + (<usize>tx << 2);
          // S[i][0] = M_i0 + M_i1 + M_i2, S[i][1] = M_i1 - M_i2 - M_i3, row by row of the 4x4 tile
          let m0 = v128.load(s);
          let m1 = v128.load(s + plane);
          let m2 = v128.load(s + 2 * plane);
          let m3 = v128.load(s + 3 * plane);
          const s00 = f32x4.add(f32x4.add(m0, m1), m2);
          const s01 = f32x4.sub(f32x4.sub(m1, m2), m3);
          m0 = v128.load(s + 4 * plane);
          m1 = v128.load(s + 5 * plane);
          m2 = v128.load(s + 6 * plane);
          m3 = v128.load(s + 7 * plane);
          const s10 = f32x4.add(f32x4.add(m0, m1), m2);
          const s11 = f32x4.sub(f32x4.sub(m1, m2), m3);
          m0 = v128.load(s + 8 * plane);
          m1 = v128.load(s + 9 * plane);
          m2 = v128.load(s + 10 * plane);
          m3 = v128.load(s + 11 * plane);
          const s20 = f32x4.add(f32x4.add(m0, m1), m2);
          const s21 = f32x4.sub(f32x4.sub(m1, m2), m3);
          m0 = v128.load(s + 12 * plane);
          m1 = v128.load(s + 13 * plane);
          m2 = v128.load(s + 14 * plane);
          m3 = v128.load(s + 15 * plane);
          const s30 = f32x4.add(f32x4.add(m0, m1), m2);
          const s31 = f32x4.sub(f32x4.sub(m1, m2), m3);
          // Y[0][b] = S0b + S1b + S2b, Y[1][b] = S1b - S2b - S3b
          const y00 = f32x4.add(f32x4.add(s00, s10), s20);
          const y01 = f32x4.add(f32x4.add(s01, s11), s21);
          const y10 = f32x4.sub(f32x4.sub(s10, s20), s30);
          const y11 = f32x4.sub(f32x4.sub(s11, s21), s31);
          // interleave the tiles' two columns: output columns 2tx .. 2tx + 7
          const a0 = v128.shuffle<f32>(y00, y01, 0, 4, 1, 5);
          const a1 = v128.shuffle<f32>(y00, y01, 2, 6, 3, 7);
          const ox = 2 * tx;
          const d0 = row0 + (<usize>ox << 2);
          if (ox + 8 <= ow) {
            v128.store(d0, a0);
            v128.store(d0, a1, 16);
            if (second) {
              const d1 = row1 + (<usize>ox << 2);
              v128.store(d1, v128.shuffle<f32>(y10, y11, 0, 4, 1, 5));
              v128.store(d1, v128.shuffle<f32>(y10, y11, 2, 6, 3, 7), 16);
            }
          } else {
            const n = ow - ox; // 1..7 columns left in this row
            storeRow(d0, a0, a1, n);
            if (second) {
              storeRow(
                row1 + (<usize>ox << 2),
                v128.shuffle<f32>(y10, y11, 0, 4, 1, 5),
                v128.shuffle<f32>(y10, y11, 2, 6, 3, 7),
                n,
              );
            }
          }
        }
      }
    }
  }
}

/** The first n (1..7) of the 8 floats a0 ++ a1 at p. */
function storeRow(p: usize, a0: v128, a1: v128, n: i32): void {
  store<f32>(p, f32x4.extract_lane(a0, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(a0, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(a0, 2), 8);
  if (n > 3) store<f32>(p, f32x4.extract_lane(a0, 3), 12);
  if (n > 4) store<f32>(p, f32x4.extract_lane(a1, 0), 16);
  if (n > 5) store<f32>(p, f32x4.extract_lane(a1, 1), 20);
  if (n > 6) store<f32>(p, f32x4.extract_lane(a1, 2), 24);
}

/**
 * `count` independent gemms C_q (+)= A_q op(B_q) (q = 0..count-1, operands `aStep`, `bStep`, `cStep` bytes apart) on
 * one thread: the 16 products of a Winograd convolution, shared out among threads by q. B_q is transposed when
 * `transB` (the weight gradient's M V^T); C_q is added to when `accumulate`.
 */
export function sgemmBatch(
  count: i32,
  m: i32,
  n: i32,
  k: i32,
  a: usize,
  aStep: i32,
  lda: i32,
  b: usize,
  bStep: i32,
  ldb: i32,
  transB: bool,
  c: usize,
  cStep: i32,
  ldc: i32,
  accumulate: bool,
  work: usize,
): void {
  for (let q = 0; q < count; q++) {
    const o = <usize>q;
    const aq = a + o * <usize>aStep;
    const bq = b + o * <usize>bStep;
    sgemm(m, n, k, aq, lda, false, bq, ldb, transB, c + o * <usize>cStep, ldc, accumulate, work);
  }
}

/**
 * The weight gradient's transform of the output gradient: Mg = A dY A^T for every 2x2 tile dY of `count` images of
 * `k` channels (oh x ow, zero past the edge), A = [1 0; 1 1; 1 -1; 0 -1], into Mg[xi][ki][col] laid out as V. Then
 * dU[xi] = sum over tiles of Mg[xi] V[xi]^T and the filter gradient is G^T dU G (done in JS).
 * `scratch`: 4 * rowFloats(tW) floats of this thread's memory.
 */
export function winogradGradOutputImages(
  gy: usize,
  gyStep: i32,
  count: i32,
  k: i32,
  oh: i32,
  ow: i32,
  tH: i32,
  tW: i32,
  mg: usize,
  ld: i32,
  xiStride: i32,
  scratch: usize,
): void {
  const L = <usize>rowFloats(tW) << 2;
  const plane = <usize>xiStride << 2;
  for (let b = 0; b < count; b++) {
    const img = gy + <usize>b * <usize>gyStep;
    const col0 = b * tH * tW;
    for (let ki = 0; ki < k; ki++) {
      const chan = img + ((<usize>ki * oh * ow) << 2);
      for (let ty = 0; ty < tH; ty++) {
        // the tile row's two output rows, split into even and odd columns: E0 O0 E1 O1, zero past the edge
        for (let r = 0; r < 2; r++) {
          const e = scratch + <usize>(2 * r) * L;
          const o = e + L;
          const oy = 2 * ty + r;
          if (oy >= oh) {
            memory.fill(e, 0, 2 * L);
            continue;
          }
          const src = chan + ((<usize>oy * ow) << 2);
          for (let t = 0; t < tW; t++) {
            const ce = 2 * t;
            store<f32>(e + (<usize>t << 2), load<f32>(src + (<usize>ce << 2)));
            store<f32>(o + (<usize>t << 2), ce + 1 < ow ? load<f32>(src + (<usize>(ce + 1) << 2)) : 0);
          }
        }
        const dst = mg + ((<usize>(ki * ld + col0 + ty * tW)) << 2);
        for (let tx = 0; tx < tW; tx += 4) {
          const t4 = <usize>tx << 2;
          const e0 = v128.load(scratch + t4);
          const o0 = v128.load(scratch + L + t4);
          const e1 = v128.load(scratch + 2 * L + t4);
          const o1 = v128.load(scratch + 3 * L + t4);
          // A dY down the rows: t0 = r0, t1 = r0 + r1, t2 = r0 - r1, t3 = -r1 (even and odd columns alike)
          const zero = f32x4.splat(0);
          const te1 = f32x4.add(e0, e1);
          const to1 = f32x4.add(o0, o1);
          const te2 = f32x4.sub(e0, e1);
          const to2 = f32x4.sub(o0, o1);
          const te3 = f32x4.sub(zero, e1);
          const to3 = f32x4.sub(zero, o1);
          // (A dY) A^T along the columns: j = 0: e, 1: e + o, 2: e - o, 3: -o
          const p = dst + t4;
          const n = min(4, tW - tx);
          tileRow(p, plane, 0, e0, o0, n);
          tileRow(p, plane, 4, te1, to1, n);
          tileRow(p, plane, 8, te2, to2, n);
          tileRow(p, plane, 12, te3, to3, n);
        }
      }
    }
  }
}

/** Planes xi0 .. xi0 + 3 of one row i of A dY A^T from its even (e) and odd (o) columns: e, e + o, e - o, -o. */
// @ts-ignore: decorator
@inline
function tileRow(p: usize, plane: usize, xi0: i32, e: v128, o: v128, n: i32): void {
  const q = p + <usize>xi0 * plane;
  const v1 = f32x4.add(e, o);
  const v2 = f32x4.sub(e, o);
  const v3 = f32x4.sub(f32x4.splat(0), o);
  if (n == 4) {
    v128.store(q, e);
    v128.store(q + plane, v1);
    v128.store(q + 2 * plane, v2);
    v128.store(q + 3 * plane, v3);
  } else {
    storeLanes(q, e, n);
    storeLanes(q + plane, v1, n);
    storeLanes(q + 2 * plane, v2, n);
    storeLanes(q + 3 * plane, v3, n);
  }
}
