// Pictures for people: PNG files (encoded by pngjs), image grids and a loss curve. No text rendering beyond a tiny
// built-in digit font, enough to label a curve's range.

import { writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';

/** Writes RGBA bytes (w x h) as a PNG. */
export function writePng(path: string, rgba: Uint8Array, w: number, h: number): void {
  const png = new PNG({ width: w, height: h });
  png.data = Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength);
  writeFileSync(path, PNG.sync.write(png));
}

/**
 * A grid of images [N, C, H, W] (C = 1 or 3, values in [0, 1]; values outside are clipped for display only), `cols`
 * per row, each pixel drawn `scale` x `scale`, with a 2-pixel gray gutter. Returns RGBA bytes and the size.
 */
export function imageGrid(
  images: Float32Array,
  shape: readonly number[],
  cols: number,
  scale = 2,
): { rgba: Uint8Array; w: number; h: number } {
  const [n, c, h, w] = shape as [number, number, number, number];
  if (c !== 1 && c !== 3) throw new Error(`imageGrid: expected 1 or 3 channels, got ${c}`);
  const rows = Math.ceil(n / cols);
  const gut = 2;
  const W = cols * (w * scale + gut) + gut;
  const H = rows * (h * scale + gut) + gut;
  const rgba = new Uint8Array(W * H * 4).fill(128);
  for (let i = 0; i < W * H; i++) rgba[4 * i + 3] = 255;
  for (let k = 0; k < n; k++) {
    const ox = gut + (k % cols) * (w * scale + gut);
    const oy = gut + Math.floor(k / cols) * (h * scale + gut);
    for (let y = 0; y < h * scale; y++) {
      for (let x = 0; x < w * scale; x++) {
        const sy = Math.floor(y / scale);
        const sx = Math.floor(x / scale);
        const p = 4 * ((oy + y) * W + ox + x);
        for (let ch = 0; ch < 3; ch++) {
          const v = images[((k * c + (c === 1 ? 0 : ch)) * h + sy) * w + sx] as number;
          rgba[p + ch] = Math.round(255 * Math.min(1, Math.max(0, v)));
        }
      }
    }
  }
  return { rgba, w: W, h: H };
}

// 3x5 digits and '.', '-', 'e' for axis labels
const GLYPHS: Record<string, string> = {
  '0': '111101101101111',
  '1': '010110010010111',
  '2': '111001111100111',
  '3': '111001111001111',
  '4': '101101111001001',
  '5': '111100111001111',
  '6': '111100111101111',
  '7': '111001001001001',
  '8': '111101111101111',
  '9': '111101111001111',
  '.': '000000000000010',
  '-': '000000111000000',
  e: '000111101110011',
};

function text(rgba: Uint8Array, W: number, s: string, x0: number, y0: number, px = 2): void {
  let x = x0;
  for (const ch of s) {
    const g = GLYPHS[ch];
    if (g) {
      for (let r = 0; r < 5; r++) {
        for (let c = 0; c < 3; c++) {
          if (g[r * 3 + c] !== '1') continue;
          for (let dy = 0; dy < px; dy++) {
            for (let dx = 0; dx < px; dx++) {
              const p = 4 * ((y0 + r * px + dy) * W + x + c * px + dx);
              rgba[p] = rgba[p + 1] = rgba[p + 2] = 0;
            }
          }
        }
      }
    }
    x += 4 * px;
  }
}

/**
 * A loss curve: the values against their index on a log-scaled y axis (losses span decades), the raw values in light
 * blue and a moving average over `smooth` points in dark blue, with the y range labelled. RGBA bytes.
 */
export function lossCurve(
  values: readonly number[],
  w = 640,
  h = 360,
  smooth = 25,
): { rgba: Uint8Array; w: number; h: number } {
  const rgba = new Uint8Array(w * h * 4).fill(255);
  const finite = values.filter((v) => Number.isFinite(v) && v > 0);
  if (finite.length === 0) return { rgba, w, h };
  const lo = Math.log10(Math.min(...finite));
  const hi = Math.log10(Math.max(...finite));
  const span = Math.max(hi - lo, 1e-6);
  const left = 56;
  const top = 12;
  const pw = w - left - 12;
  const ph = h - top - 24;
  const X = (i: number) => left + (values.length > 1 ? (i / (values.length - 1)) * pw : 0);
  const Y = (v: number) => top + (1 - (Math.log10(v) - lo) / span) * ph;
  const dot = (x: number, y: number, col: readonly number[]) => {
    const xi = Math.round(x);
    const yi = Math.round(y);
    if (xi < 0 || yi < 0 || xi >= w || yi >= h) return;
    rgba.set(col, 4 * (yi * w + xi));
  };
  const line = (x0: number, y0: number, x1: number, y1: number, col: readonly number[]) => {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let k = 0; k <= n; k++) dot(x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n, col);
  };
  line(left, top, left, top + ph, [0, 0, 0, 255]);
  line(left, top + ph, left + pw, top + ph, [0, 0, 0, 255]);
  const avg: number[] = [];
  let acc = 0;
  const win: number[] = [];
  for (const v of values) {
    const lv = Number.isFinite(v) && v > 0 ? Math.log10(v) : Number.NaN;
    win.push(lv);
    if (!Number.isNaN(lv)) acc += lv;
    if (win.length > smooth) {
      const out = win.shift() as number;
      if (!Number.isNaN(out)) acc -= out;
    }
    const cnt = win.filter((x) => !Number.isNaN(x)).length;
    avg.push(cnt ? 10 ** (acc / cnt) : Number.NaN);
  }
  for (const [series, col] of [
    [values, [160, 190, 235, 255]],
    [avg, [20, 60, 160, 255]],
  ] as const) {
    for (let i = 1; i < series.length; i++) {
      const a = series[i - 1] as number;
      const b = series[i] as number;
      if (a > 0 && b > 0 && Number.isFinite(a) && Number.isFinite(b)) line(X(i - 1), Y(a), X(i), Y(b), col);
    }
  }
  text(rgba, w, (10 ** hi).toPrecision(3), 2, top);
  text(rgba, w, (10 ** lo).toPrecision(3), 2, top + ph - 10);
  text(rgba, w, String(values.length), left + pw - 40, top + ph + 8);
  return { rgba, w, h };
}
