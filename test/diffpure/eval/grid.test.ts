// The eval picture (src/diffpure/eval/grid.ts) and its font (src/diffpure/font.ts): sizes follow the samples and
// columns, frames are green for a right prediction and red for a wrong one, the perturbation column maps 0 to gray
// and +-eps to white / black, text inks pixels and clips at the border, and bad input is refused by name.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, test } from 'vitest';
import { evalGrid, type GridCell, type GridSample, writeEvalGrid } from '../../../src/diffpure/eval/grid.js';
import { FASHION_MNIST_CLASSES } from '../../../src/diffpure/eval/load.js';
import { CHAR_ADVANCE, drawText, TEXT_HEIGHT, textWidth } from '../../../src/diffpure/font.js';

const dir = mkdtempSync(join(tmpdir(), 'grid-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FMNIST = FASHION_MNIST_CLASSES;

function sample(n: number, label: number, extra: Partial<GridSample> = {}): GridSample {
  const clean = new Float32Array(n).fill(0.5);
  return { index: 7, label, clean, adv: clean.slice(), pred: { clean: label, adv: label }, ...extra };
}

const px = (g: { rgba: Uint8Array; w: number }, x: number, y: number) =>
  Array.from(g.rgba.subarray(4 * (y * g.w + x), 4 * (y * g.w + x) + 3));
const cell = (cells: GridCell[], row: number, column: GridCell['column']) => {
  const c = cells.find((k) => k.row === row && k.column === column);
  if (!c) throw new Error(`no ${column} cell in row ${row}`);
  return c;
};
const isGreen = ([r, g, b]: number[]) => (g as number) > (r as number) + 60 && (g as number) > (b as number) + 30;
const isRed = ([r, g, b]: number[]) => (r as number) > (g as number) + 60 && (r as number) > (b as number) + 60;

describe('evalGrid', () => {
  test('size: images upscaled to >= 84 px by default, columns and rows add up', () => {
    const n = 28 * 28;
    const one = evalGrid([sample(n, 1)], { shape: [1, 28, 28], eps: 0.1, norm: 'Linf' });
    const two = evalGrid([sample(n, 1), sample(n, 2)], { shape: [1, 28, 28], eps: 0.1, norm: 'Linf' });
    const three = evalGrid([sample(n, 1), sample(n, 2), sample(n, 3)], { shape: [1, 28, 28], eps: 0.1, norm: 'Linf' });
    expect(two.rgba.length).toBe(two.w * two.h * 4);
    expect(two.cells.map((c) => [c.column, c.w, c.h])).toEqual(
      [0, 1].flatMap(() => [
        ['clean', 84, 84],
        ['adv', 84, 84],
        ['perturbation', 84, 84],
      ]),
    );
    expect(two.w).toBe(one.w);
    expect(two.h - one.h).toBe(three.h - two.h); // every row is as tall
    expect(two.h - one.h).toBeGreaterThan(84);
    // purified columns appear when given, and widen the picture by at least an image each
    const pur = evalGrid([sample(n, 1, { purifiedClean: new Float32Array(n), purifiedAdv: new Float32Array(n) })], {
      shape: [1, 28, 28],
      eps: 0.1,
      norm: 'Linf',
      scale: 2,
    });
    expect(pur.cells.map((c) => c.column)).toEqual(['clean', 'adv', 'perturbation', 'purifiedClean', 'purifiedAdv']);
    expect(pur.cells.every((c) => c.w === 56 && c.h === 56)).toBe(true);
    const plain2 = evalGrid([sample(n, 1)], { shape: [1, 28, 28], eps: 0.1, norm: 'Linf', scale: 2 });
    expect(pur.w - plain2.w).toBeGreaterThanOrEqual(2 * 56);
    // cells lie inside the picture and do not overlap within a row
    for (const c of pur.cells) expect(c.x + c.w <= pur.w && c.y + c.h <= pur.h && c.x > 0 && c.y > 0).toBe(true);
    const xs = pur.cells.map((c) => c.x);
    for (let i = 1; i < xs.length; i++) expect(xs[i] as number).toBeGreaterThan((xs[i - 1] as number) + 56);
  });

  test('frames: green for a right prediction, red for a wrong one, none around the perturbation', () => {
    const n = 16;
    const s = sample(n, 3, {
      purifiedClean: new Float32Array(n).fill(0.5),
      purifiedAdv: new Float32Array(n).fill(0.5),
      pred: { clean: 3, adv: 5, purifiedClean: 0, purifiedAdv: 3 },
    });
    const g = evalGrid([s], { shape: [1, 4, 4], eps: 0.1, norm: 'Linf', classNames: FMNIST, scale: 10 });
    const frameAt = (c: GridCell) => [px(g, c.x - 1, c.y - 1), px(g, c.x - 2, c.y + 20), px(g, c.x + 20, c.y + c.h)];
    const expectColour = (column: GridCell['column'], is: (p: number[]) => boolean) => {
      for (const p of frameAt(cell(g.cells, 0, column))) expect(is(p), `${column} frame ${p}`).toBe(true);
    };
    expectColour('clean', isGreen);
    expectColour('adv', isRed);
    expectColour('purifiedClean', isRed);
    expectColour('purifiedAdv', isGreen);
    const bg = px(g, 0, 0);
    for (const p of frameAt(cell(g.cells, 0, 'perturbation'))) expect(p).toEqual(bg);
    // the image itself is inside the frame, not painted over by it
    const c = cell(g.cells, 0, 'clean');
    expect(px(g, c.x, c.y)).toEqual([128, 128, 128]);
  });

  test('perturbation, Linf: gray where adv == clean, white at +eps, black at -eps, eps/2 three quarters', () => {
    const n = 4 * 4;
    const s = sample(n, 0);
    s.adv[0] = 0.5 + 0.2; // pixel (0, 0): +eps
    s.adv[1] = 0.5 - 0.2; // pixel (0, 1): -eps
    s.adv[4] = 0.5 + 0.1; // pixel (1, 0): +eps/2
    const g = evalGrid([s], { shape: [1, 4, 4], eps: 0.2, norm: 'Linf', scale: 3 });
    const c = cell(g.cells, 0, 'perturbation');
    const at = (i: number, j: number) => px(g, c.x + 3 * j + 1, c.y + 3 * i + 1);
    expect(at(0, 0)).toEqual([255, 255, 255]);
    expect(at(0, 1)).toEqual([0, 0, 0]);
    expect(at(1, 0)).toEqual([191, 191, 191]);
    expect(at(2, 2)).toEqual([128, 128, 128]);
    expect(at(3, 3)).toEqual([128, 128, 128]);
  });

  test('perturbation, L2: scaled by the largest |d| of the image, per channel for colour images', () => {
    const n = 3 * 2 * 2;
    const s = sample(n, 0);
    s.adv[0] = 0.5 + 0.3; // red channel, pixel (0, 0): the largest |d| -> white
    s.adv[4 + 1] = 0.5 - 0.15; // green channel, pixel (0, 1): -max/2 -> 0.25
    const g = evalGrid([s], { shape: [3, 2, 2], eps: 0.5, norm: 'L2', scale: 2 });
    const c = cell(g.cells, 0, 'perturbation');
    expect(px(g, c.x, c.y)).toEqual([255, 128, 128]);
    expect(px(g, c.x + 2, c.y)).toEqual([128, 64, 128]);
    expect(px(g, c.x + 2, c.y + 2)).toEqual([128, 128, 128]);
    // an unperturbed image stays gray instead of dividing by zero
    const still = evalGrid([sample(n, 0)], { shape: [3, 2, 2], eps: 0.5, norm: 'L2', scale: 2 });
    const d = cell(still.cells, 0, 'perturbation');
    expect(px(still, d.x + 1, d.y + 1)).toEqual([128, 128, 128]);
  });

  test('colour images keep their channels; values outside [0, 1] clip for display', () => {
    const s = sample(3, 0, { clean: Float32Array.from([1.4, 0.25, -0.2]) });
    s.adv = s.clean.slice();
    const g = evalGrid([s], { shape: [3, 1, 1], eps: 0.1, norm: 'Linf', scale: 5 });
    const c = cell(g.cells, 0, 'clean');
    expect(px(g, c.x + 2, c.y + 2)).toEqual([255, 64, 0]);
  });

  test('text: captions and labels ink pixels, and the caption follows the predicted class', () => {
    const n = 16;
    const draw = (adv: number) =>
      evalGrid([sample(n, 1, { pred: { clean: 1, adv } })], {
        shape: [1, 4, 4],
        eps: 0.1,
        norm: 'Linf',
        classNames: FMNIST,
        scale: 5, // text at 1 image pixel per font pixel
      });
    const a = draw(4); // "Coat"
    const b = draw(9); // "Ankle boot"
    const dark = (g: ReturnType<typeof draw>, x0: number, y0: number, x1: number, y1: number) => {
      let k = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (px(g, x, y).every((v) => v < 80)) k++;
      return k;
    };
    const c = cell(a.cells, 0, 'adv');
    // the strip of captions under the images (below the frames, 4 px at scale 5), across the whole picture
    const strip = (g: ReturnType<typeof draw>) => dark(g, 0, c.y + c.h + 4, g.w, c.y + c.h + 4 + TEXT_HEIGHT + 2);
    expect(dark(a, c.x - 10, c.y + c.h + 4, c.x + c.w + 10, c.y + c.h + 4 + TEXT_HEIGHT + 2)).toBeGreaterThan(20);
    expect(strip(b)).toBeGreaterThan(strip(a) + 20); // "Ankle boot" has more ink than "Coat"
    const left = cell(a.cells, 0, 'clean').x - 8; // left of the first image and its frame
    expect(dark(a, 0, c.y, left, c.y + 30)).toBeGreaterThan(20); // "#7 Trouser" at the start of the row
    // a title adds a line of text at the top
    const t = evalGrid([sample(n, 1)], { shape: [1, 4, 4], eps: 0.1, norm: 'Linf', title: 'run · seed 0', scale: 5 });
    const u = evalGrid([sample(n, 1)], { shape: [1, 4, 4], eps: 0.1, norm: 'Linf', scale: 5 });
    expect(t.h).toBeGreaterThan(u.h);
    expect(dark(t, 0, 0, t.w, 8 + TEXT_HEIGHT)).toBeGreaterThan(20);
    expect(dark(u, 0, 0, u.w, 8)).toBe(0);
  });

  test('bad input is refused, naming what is wrong', () => {
    const o = { shape: [1, 4, 4] as const, eps: 0.1, norm: 'Linf' as const };
    expect(() => evalGrid([], o)).toThrow(/samples is empty/);
    expect(() => evalGrid([sample(32, 0)], { ...o, shape: [2, 4, 4] })).toThrow(/C = 2; C must be 1 or 3/);
    const short = sample(16, 0);
    short.adv = new Float32Array(15);
    expect(() => evalGrid([sample(16, 0), short], o)).toThrow(/samples\[1\]\.adv has 15 values, expected .*16/);
    expect(() => evalGrid([sample(16, 0, { purifiedAdv: new Float32Array(48) })], o)).toThrow(
      /samples\[0\]\.purifiedAdv has 48 values/,
    );
    expect(() => evalGrid([sample(16, 0, { clean: new Float32Array(17) })], o)).toThrow(/samples\[0\]\.clean/);
    expect(() => evalGrid([sample(16, 0)], { ...o, eps: 0 })).toThrow(/eps 0/);
    expect(() => evalGrid([sample(16, 0)], { ...o, scale: 1.5 })).toThrow(/scale 1.5/);
  });

  test('writeEvalGrid writes a PNG of the same picture', () => {
    const s = [sample(16, 0, { pred: { clean: 0, adv: 1 } })];
    const o = { shape: [1, 4, 4] as const, eps: 0.1, norm: 'Linf' as const };
    const path = join(dir, 'grid.png');
    writeEvalGrid(path, s, o);
    const png = PNG.sync.read(readFileSync(path));
    const g = evalGrid(s, o);
    expect([png.width, png.height]).toEqual([g.w, g.h]);
    expect(Buffer.from(png.data).equals(Buffer.from(g.rgba))).toBe(true);
  });
});

describe('font', () => {
  test("a glyph inks exactly its bits, in the requested colour and scale ('A' has 18)", () => {
    const W = 12;
    const H = 20;
    const count = (px: number) => {
      const rgba = new Uint8Array(W * H * 4);
      drawText(rgba, W, H, 'A', 1, 1, { px, color: [10, 200, 30] });
      let k = 0;
      for (let i = 0; i < W * H; i++) {
        if (rgba[4 * i + 3] === 255) {
          expect(Array.from(rgba.subarray(4 * i, 4 * i + 3))).toEqual([10, 200, 30]);
          k++;
        }
      }
      return k;
    };
    expect(count(1)).toBe(18);
    expect(count(2)).toBe(4 * 18);
    expect(textWidth('AB', 1)).toBe(2 * CHAR_ADVANCE - 1);
    expect(textWidth('AB', 3)).toBe(3 * (2 * CHAR_ADVANCE - 1));
    expect(textWidth('abc\nA', 1)).toBe(3 * CHAR_ADVANCE - 1);
    expect(textWidth('', 2)).toBe(0);
  });

  test('every printable ASCII character draws something but the space, and different characters differ', () => {
    const seen = new Set<string>();
    for (let code = 33; code < 127; code++) {
      const rgba = new Uint8Array(8 * 12 * 4);
      drawText(rgba, 8, 12, String.fromCharCode(code), 0, 0);
      const bits = Array.from({ length: 8 * 12 }, (_, i) => (rgba[4 * i + 3] ? '1' : '0')).join('');
      expect(bits.includes('1'), String.fromCharCode(code)).toBe(true);
      seen.add(bits);
    }
    expect(seen.size).toBe(126 - 33 + 1);
    const blank = new Uint8Array(8 * 12 * 4);
    drawText(blank, 8, 12, ' ', 0, 0);
    expect(blank.every((v) => v === 0)).toBe(true);
  });

  test('text clips at the border: no wrap into the next row, the visible part as drawn unclipped', () => {
    // Reference: the same text well inside a big canvas; the small canvas must show exactly the matching window.
    const s = 'W%|g';
    const big = 80;
    const ref = new Uint8Array(big * big * 4);
    drawText(ref, big, big, s, 10, 10, { px: 2 });
    for (const [x0, y0] of [
      [-3, -4],
      [5, 7],
      [-20, 2],
    ] as const) {
      const W = 9;
      const H = 10;
      const rgba = new Uint8Array(W * H * 4);
      drawText(rgba, W, H, s, x0, y0, { px: 2 });
      let inked = 0;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const want = ref[4 * ((y - y0 + 10) * big + (x - x0 + 10)) + 3];
          expect(rgba[4 * (y * W + x) + 3], `(${x}, ${y}) drawn from (${x0}, ${y0})`).toBe(want);
          if (want) inked++;
        }
      }
      expect(inked).toBeGreaterThan(0);
    }
    // fully outside: nothing drawn, nothing thrown
    const none = new Uint8Array(4 * 4 * 4);
    drawText(none, 4, 4, 'Hello', 4, 0);
    drawText(none, 4, 4, 'Hello', 0, -20);
    expect(none.every((v) => v === 0)).toBe(true);
  });
});
