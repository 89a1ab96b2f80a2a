// The picture of one `diffpure eval` run: per sample, the clean and adversarial images, the perturbation made
// visible, and (when purified) what the purifier made of each, every image framed green or red by whether the
// classifier got it right. A person should see at a glance where the attack wins and whether purification undoes it.

import { drawText, TEXT_HEIGHT, textWidth } from '../font.js';
import { writePng } from '../png.js';

export interface GridSample {
  /** index of the image in the data set, and its true label */
  index: number;
  label: number;
  /** one image, C*H*W, values in [0,1] */
  clean: Float32Array;
  /** the adversarial image, C*H*W in [0,1] */
  adv: Float32Array;
  /** C*H*W, may lie a little outside [0,1] (clipped for display only) */
  purifiedClean?: Float32Array;
  purifiedAdv?: Float32Array;
  /** predicted classes */
  pred: { clean: number; adv: number; purifiedClean?: number; purifiedAdv?: number };
}

export interface GridOptions {
  /** C (1 or 3), H, W */
  shape: readonly [number, number, number];
  /** e.g. Fashion-MNIST's; default: the class number */
  classNames?: readonly string[];
  /** the attack radius, for the perturbation column */
  eps: number;
  norm: 'Linf' | 'L2';
  /** one line at the top, e.g. "fmnist-quick · APGD-CE Linf eps 0.1 · t* 0.1 · seed 0" */
  title?: string;
  /** pixel upscaling (default: so that an image is at least ~84 px wide) */
  scale?: number;
}

export type GridColumn = 'clean' | 'adv' | 'perturbation' | 'purifiedClean' | 'purifiedAdv';

/** Where one image landed (inside its frame), for callers that annotate the picture further. */
export interface GridCell {
  row: number;
  column: GridColumn;
  x: number;
  y: number;
  w: number;
  h: number;
}

const BG: [number, number, number] = [236, 236, 232];
const INK: [number, number, number] = [28, 28, 28];
const RIGHT: [number, number, number] = [30, 150, 60];
const WRONG: [number, number, number] = [215, 35, 35];
/** Frame of an image whose prediction is not known. */
const UNKNOWN: [number, number, number] = [150, 150, 150];

const MARGIN = 8;
const GAP_X = 10;
const GAP_Y = 8;

/** Short number for captions: 3 significant digits, no trailing zeros. */
function fmt(v: number): string {
  if (v === 0) return '0';
  return String(Number(v.toPrecision(3)));
}

/**
 * Draws the grid (see the file comment) and returns RGBA bytes, the size, and where each image lies. Throws, naming
 * the input, on no samples, a shape whose C is not 1 or 3, or an image array of the wrong length.
 */
export function evalGrid(
  samples: readonly GridSample[],
  o: GridOptions,
): { rgba: Uint8Array; w: number; h: number; cells: GridCell[] } {
  if (samples.length === 0) throw new Error('evalGrid: samples is empty; nothing to draw');
  const [C, H, W] = o.shape;
  if (C !== 1 && C !== 3) throw new Error(`evalGrid: shape [${o.shape}] has C = ${C}; C must be 1 or 3`);
  if (!(Number.isInteger(H) && H > 0 && Number.isInteger(W) && W > 0)) {
    throw new Error(`evalGrid: shape [${o.shape}] needs positive integer H and W`);
  }
  if (o.norm !== 'Linf' && o.norm !== 'L2') throw new Error(`evalGrid: norm '${o.norm}' is not 'Linf' or 'L2'`);
  if (o.norm === 'Linf' && !(o.eps > 0 && Number.isFinite(o.eps))) {
    throw new Error(`evalGrid: eps ${o.eps} must be a positive number (it scales the Linf perturbation column)`);
  }
  const scale = o.scale ?? Math.max(1, Math.ceil(84 / W));
  if (!(Number.isInteger(scale) && scale >= 1)) throw new Error(`evalGrid: scale ${o.scale} must be an integer >= 1`);
  const n = C * H * W;
  const hasPC = samples.some((s) => s.purifiedClean !== undefined);
  const hasPA = samples.some((s) => s.purifiedAdv !== undefined);
  samples.forEach((s, i) => {
    for (const key of ['clean', 'adv', 'purifiedClean', 'purifiedAdv'] as const) {
      const a = s[key];
      if (a === undefined && (key === 'clean' || key === 'adv')) {
        throw new Error(`evalGrid: samples[${i}].${key} is missing`);
      }
      if (a !== undefined && a.length !== n) {
        throw new Error(
          `evalGrid: samples[${i}].${key} has ${a.length} values, expected C*H*W = ${C}*${H}*${W} = ${n} (shape [${o.shape}])`,
        );
      }
    }
  });

  const name = (k: number | undefined) => (k === undefined ? '?' : (o.classNames?.[k] ?? String(k)));
  const columns: GridColumn[] = ['clean', 'adv', 'perturbation'];
  if (hasPC) columns.push('purifiedClean');
  if (hasPA) columns.push('purifiedAdv');
  const header: Record<GridColumn, string> = {
    clean: 'clean',
    adv: 'adversarial',
    perturbation:
      o.norm === 'Linf' ? `perturbation\nx1/eps (eps ${fmt(o.eps)})` : 'perturbation\nx1/max|d| (per image)',
    purifiedClean: 'purified\nclean',
    purifiedAdv: 'purified\nadv.',
  };

  // Each cell's picture (display values) and caption, computed first so column widths can fit the text.
  type Cell = { img?: Float32Array; caption: string; frame?: [number, number, number] };
  const frameOf = (pred: number | undefined, label: number) =>
    pred === undefined ? UNKNOWN : pred === label ? RIGHT : WRONG;
  const table: Cell[][] = samples.map((s) =>
    columns.map((col): Cell => {
      if (col === 'perturbation') {
        // Gray 0.5 where nothing changed; Linf: +-eps -> white / black; L2: the largest |d| of the image -> white /
        // black, since an L2 attack spreads eps over many pixels and would otherwise be invisible.
        const d = new Float32Array(n);
        let maxAbs = 0;
        let sq = 0;
        for (let k = 0; k < n; k++) {
          const v = (s.adv[k] as number) - (s.clean[k] as number);
          d[k] = v;
          maxAbs = Math.max(maxAbs, Math.abs(v));
          sq += v * v;
        }
        const div = o.norm === 'Linf' ? o.eps : maxAbs;
        for (let k = 0; k < n; k++) d[k] = div > 0 ? 0.5 + (0.5 * (d[k] as number)) / div : 0.5;
        return { img: d, caption: o.norm === 'Linf' ? `Linf ${fmt(maxAbs)}` : `L2 ${fmt(Math.sqrt(sq))}` };
      }
      const img = s[col];
      const pred = s.pred[col];
      if (img === undefined) return { caption: '' }; // this sample was not purified: an empty cell
      return { img, caption: name(pred), frame: frameOf(pred, s.label) };
    }),
  );
  const rowLabels = samples.map((s) => `#${s.index}\n${name(s.label)}`);

  // Geometry. Text is 1 font pixel per image pixel up to scale 5, then grows with the images.
  const tpx = Math.max(1, Math.floor(scale / 5));
  const lineH = (TEXT_HEIGHT + 2) * tpx;
  const frame = Math.min(4, Math.max(2, scale));
  const iw = W * scale;
  const ih = H * scale;
  const boxW = iw + 2 * frame;
  const boxH = ih + 2 * frame;
  const labelW = Math.max(textWidth('sample\nlabel', tpx), ...rowLabels.map((t) => textWidth(t, tpx)));
  const colW = columns.map((col, c) =>
    Math.max(boxW, textWidth(header[col], tpx), ...table.map((row) => textWidth((row[c] as Cell).caption, tpx))),
  );
  const titleH = o.title ? lineH + 6 * tpx : 0;
  const headerH = 2 * lineH + 2;
  const rowH = boxH + 2 + lineH + GAP_Y;
  const gridW = MARGIN + labelW + GAP_X + colW.reduce((a, b) => a + b + GAP_X, -GAP_X) + MARGIN;
  const outW = Math.max(gridW, o.title ? 2 * MARGIN + textWidth(o.title, tpx) : 0);
  const outH = MARGIN + titleH + headerH + samples.length * rowH - GAP_Y + MARGIN;

  const rgba = new Uint8Array(outW * outH * 4);
  for (let i = 0; i < outW * outH; i++) rgba.set([...BG, 255], 4 * i);
  const text = (s: string, x: number, y: number) => drawText(rgba, outW, outH, s, x, y, { px: tpx, color: INK });
  const centred = (s: string, x: number, w: number, y: number) => {
    // each line centred on its own
    s.split('\n').forEach((line, k) => {
      text(line, x + Math.floor((w - textWidth(line, tpx)) / 2), y + k * lineH);
    });
  };
  const fill = (x: number, y: number, w: number, h: number, rgb: readonly number[]) => {
    for (let yy = y; yy < y + h; yy++) for (let xx = x; xx < x + w; xx++) rgba.set(rgb, 4 * (yy * outW + xx));
  };
  const blit = (img: Float32Array, x0: number, y0: number) => {
    for (let y = 0; y < ih; y++) {
      const sy = Math.floor(y / scale);
      for (let x = 0; x < iw; x++) {
        const sx = Math.floor(x / scale);
        const p = 4 * ((y0 + y) * outW + x0 + x);
        for (let ch = 0; ch < 3; ch++) {
          const v = img[((C === 1 ? 0 : ch) * H + sy) * W + sx] as number;
          rgba[p + ch] = Math.round(255 * Math.min(1, Math.max(0, v))); // NaN stores as 0
        }
      }
    }
  };

  if (o.title) text(o.title, MARGIN, MARGIN);
  const top = MARGIN + titleH;
  const colX: number[] = [];
  let x = MARGIN + labelW + GAP_X;
  for (const w of colW) {
    colX.push(x);
    x += w + GAP_X;
  }
  text('sample\nlabel', MARGIN, top);
  columns.forEach((col, c) => {
    centred(header[col], colX[c] as number, colW[c] as number, top);
  });

  const cells: GridCell[] = [];
  table.forEach((row, r) => {
    const y = top + headerH + r * rowH;
    text(rowLabels[r] as string, MARGIN, y + frame);
    row.forEach((cell, c) => {
      const bx = (colX[c] as number) + Math.floor(((colW[c] as number) - boxW) / 2);
      if (cell.frame) fill(bx, y, boxW, boxH, cell.frame);
      if (cell.img) {
        blit(cell.img, bx + frame, y + frame);
        cells.push({ row: r, column: columns[c] as GridColumn, x: bx + frame, y: y + frame, w: iw, h: ih });
      } else {
        centred('(none)', colX[c] as number, colW[c] as number, y + Math.floor((boxH - lineH) / 2));
      }
      centred(cell.caption, colX[c] as number, colW[c] as number, y + boxH + 2);
    });
  });
  return { rgba, w: outW, h: outH, cells };
}

/** Draws the grid and writes it as a PNG at `path`. */
export function writeEvalGrid(path: string, samples: readonly GridSample[], o: GridOptions): void {
  const g = evalGrid(samples, o);
  writePng(path, g.rgba, g.w, g.h);
}
