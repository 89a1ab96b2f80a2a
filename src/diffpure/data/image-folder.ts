// An image folder in ImageNet's val layout (val/n01440764/ILSVRC2012_val_00000293.JPEG, ...), read as DiffPure's
// ImageNet evaluation reads it: torchvision's ImageFolder (NVlabs/DiffPure, data/datasets.py, imagenet_lmdb_dataset)
// with the 'imval' transform Resize(256), CenterCrop(224), ToTensor, giving NCHW float32 images in [0, 1], and the
// subset np.random.RandomState(data_seed).choice(len(dataset), num_sub, replace=False) (imagenet_lmdb_dataset_sub).
//
// Listing (torchvision.datasets.folder, find_classes and make_dataset): the class folders are the sorted names of the
// root's subfolders, a label is its class folder's index among them; each class folder is walked recursively
// (sorted(os.walk(...)): directories in order of their path, files sorted by name) and a file is kept when its
// lower-cased name ends with one of IMG_EXTENSIONS. Names are compared by code point, as Python sorts str.
//
// Decoding: Image.open(path).convert('RGB'), as torchvision's default loader (and DiffPure's lmdb_loader) does.
// - PNG (pngjs): PIL's modes and .convert('RGB'): palette entries looked up, grey replicated (1, 2 and 4 bits scaled
//   to 0..255), alpha dropped without compositing, 16-bit samples cut to their high byte except 16-bit grey, which
//   PIL opens as mode I and clips to 0..255 (so mostly white, as in PIL). Transparency (tRNS) is ignored as PIL's
//   .convert('RGB') ignores it. Exact.
// - JPEG (jpeg-js for the entropy decoding and the IDCT, the rest as libjpeg-turbo with PIL's settings): the colour
//   space is guessed as libjpeg's default_decompress_parms does (JFIF or Adobe markers, component ids); subsampled
//   components are upsampled with libjpeg's "fancy" triangle filters (h2v1, h1v2, h2v2; replication otherwise) and
//   YCbCr goes to RGB with libjpeg's fixed-point tables (jdcolor.c). jpeg-js's IDCT is not libjpeg's islow IDCT, so
//   a few samples differ by a level or so; the measured differences are in test/diffpure/image-folder.test.ts.
//   CMYK and YCCK JPEGs, arithmetic-coded, lossless, hierarchical and 12-bit ones are refused with the file named
//   (ILSVRC2012's val set has none of them; its 22 CMYK files are in the training set).
// EXIF orientation is ignored, as PIL's Image.open does.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decode as decodeJpegJs } from 'jpeg-js';
import { PNG } from 'pngjs';
import { diffpureSubset } from './numpy-random.js';
import { centerCrop, type RgbImage, resizeShorter, toTensor } from './resize.js';

export type { RgbImage } from './resize.js';
export { centerCrop, resizePil, resizeShorter, toTensor } from './resize.js';

/** torchvision.datasets.folder.IMG_EXTENSIONS: the files ImageFolder lists (only JPEG and PNG can be decoded). */
export const IMG_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'] as const;

const LAYOUT_HINT =
  "put ImageNet's val set there in class folders (n01440764/ILSVRC2012_val_00000293.JPEG, ...), " +
  'e.g. with the valprep.sh script that sorts the 50,000 val images into their 1,000 synsets';

/** Python's str ordering: by code point (JS's default sort compares UTF-16 units, which differs past U+FFFF). */
const byCodePoint = (a: string, b: string): number => {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const d = (x.value.codePointAt(0) as number) - (y.value.codePointAt(0) as number);
    if (d !== 0) return d;
  }
};

/** Whether `p` is a directory, following symbolic links (os.DirEntry.is_dir(), os.walk(followlinks=True)). */
const isDir = (p: string): boolean => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

export interface ImageFolderListing {
  /** Sorted class folder names; a label indexes this list. */
  classes: string[];
  /** Image paths (root joined with the class folder and the file), in ImageFolder's sample order. */
  files: string[];
  labels: Int32Array;
}

/** torchvision's ImageFolder listing of `dir`: sorted classes, their files in sample order, and the labels. */
export function listImageFolder(dir: string): ImageFolderListing {
  if (!existsSync(dir)) throw new Error(`${dir}: image folder not found: ${LAYOUT_HINT}`);
  if (!isDir(dir)) throw new Error(`${dir}: not a directory: ${LAYOUT_HINT}`);
  const classes = readdirSync(dir)
    .filter((name) => isDir(join(dir, name)))
    .sort(byCodePoint);
  if (classes.length === 0) throw new Error(`${dir}: no class folders in this image folder: ${LAYOUT_HINT}`);
  const files: string[] = [];
  const labels: number[] = [];
  const empty: string[] = [];
  classes.forEach((cls, label) => {
    // sorted(os.walk(top)): every directory under the class folder in order of its path string, files sorted
    const dirs: { path: string; files: string[] }[] = [];
    const walk = (path: string, seen: ReadonlySet<string>) => {
      let entries: string[];
      try {
        entries = readdirSync(path);
      } catch {
        return; // os.walk skips a folder it cannot list
      }
      const sub: string[] = [];
      const here: string[] = [];
      for (const e of entries) (isDir(join(path, e)) ? sub : here).push(e);
      dirs.push({ path, files: here.sort(byCodePoint) });
      for (const s of sub) {
        const p = join(path, s);
        const st = statSync(p);
        const id = `${st.dev}:${st.ino}`;
        if (!seen.has(id)) walk(p, new Set([...seen, id])); // a link back up would loop forever
      }
    };
    const top = statSync(join(dir, cls));
    walk(join(dir, cls), new Set([`${top.dev}:${top.ino}`]));
    dirs.sort((a, b) => byCodePoint(a.path, b.path));
    const before = files.length;
    for (const d of dirs) {
      for (const f of d.files) {
        const lower = f.toLowerCase();
        if (IMG_EXTENSIONS.some((ext) => lower.endsWith(ext))) {
          files.push(join(d.path, f));
          labels.push(label);
        }
      }
    }
    if (files.length === before) empty.push(cls);
  });
  if (empty.length > 0) {
    throw new Error(
      `${dir}: found no image files in the class folder${empty.length > 1 ? 's' : ''} ${empty.join(', ')} ` +
        `(the extensions read are ${IMG_EXTENSIONS.join(', ')}): remove the empty folders or ${LAYOUT_HINT}`,
    );
  }
  return { classes, files, labels: Int32Array.from(labels) };
}

// ---- decoding -----------------------------------------------------------------------------------------------------

const startsWith = (b: Uint8Array, sig: readonly number[], at = 0): boolean =>
  b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);
const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));

/** The name of an image format that is recognised but not decoded here, from the file's first bytes. */
function otherFormat(b: Uint8Array): string | undefined {
  if (startsWith(b, ascii('GIF8'))) return 'GIF';
  if (startsWith(b, ascii('BM'))) return 'BMP';
  if (startsWith(b, ascii('RIFF')) && startsWith(b, ascii('WEBP'), 8)) return 'WebP';
  if (startsWith(b, [0x49, 0x49, 0x2a, 0]) || startsWith(b, [0x4d, 0x4d, 0, 0x2a])) return 'TIFF';
  if (b[0] === 0x50 && (b[1] as number) >= 0x31 && (b[1] as number) <= 0x36) return `PNM (P${(b[1] as number) - 0x30})`;
  return undefined;
}

/** Decodes a JPEG or PNG file's bytes to 8-bit RGB as PIL's Image.open(...).convert('RGB'); `path` names errors. */
export function decodeImage(bytes: Uint8Array, path = '<bytes>'): RgbImage {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return decodeJpeg(bytes, path);
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return decodePng(bytes, path);
  const other = otherFormat(bytes);
  if (other) {
    throw new Error(
      `${path}: ${other} images are not supported (only JPEG and PNG are decoded here): convert it, ` +
        'e.g. to PNG, keeping its name (ImageFolder lists it by its extension)',
    );
  }
  const head = Array.from(bytes.subarray(0, 8), (v) => v.toString(16).padStart(2, '0')).join(' ');
  throw new Error(
    `${path}: not a JPEG or PNG image (${bytes.length === 0 ? 'the file is empty' : `it starts with ${head}`}): ` +
      'the file is corrupt or of another kind; replace it or move it out of the image folder',
  );
}

/** Reads and decodes one image file (JPEG or PNG, told by its content, not its name) to 8-bit RGB. */
export function loadImage(path: string): RgbImage {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read the image file (${e instanceof Error ? e.message : e})`);
  }
  return decodeImage(bytes, path);
}

// ---- PNG ------------------------------------------------------------------------------------------------------------

/** The PNG without its tRNS chunks (pngjs would blank the colour of transparent pixels; PIL keeps it). */
function withoutTrns(b: Uint8Array): Uint8Array {
  const keep: Uint8Array[] = [b.subarray(0, 8)];
  let at = 8;
  let dropped = false;
  while (at + 12 <= b.length) {
    const len =
      ((b[at] as number) << 24) | ((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) | (b[at + 3] as number);
    const end = at + 12 + (len >>> 0);
    if (len < 0 || end > b.length) return b; // malformed: let pngjs report it
    if (startsWith(b, ascii('tRNS'), at + 4)) dropped = true;
    else keep.push(b.subarray(at, end));
    at = end;
  }
  if (!dropped) return b;
  const out = new Uint8Array(keep.reduce((a, k) => a + k.length, 0));
  let o = 0;
  for (const k of keep) {
    out.set(k, o);
    o += k.length;
  }
  return out;
}

export function decodePng(bytes: Uint8Array, path = '<bytes>'): RgbImage {
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(Buffer.from(withoutTrns(bytes)), { skipRescale: true });
  } catch (e) {
    throw new Error(
      `${path}: corrupt or truncated PNG (${e instanceof Error ? e.message : e}): replace the file or remove it`,
    );
  }
  const { width, height, depth, palette, color, alpha } = png;
  const src = png.data as unknown as ArrayLike<number>; // RGBA; Uint16Array for 16-bit samples
  const n = width * height;
  const data = new Uint8Array(n * 3);
  // PIL's mode for the PNG (PngImagePlugin._MODES), then .convert('RGB')
  let map: (v: number) => number;
  if (palette)
    map = (v) => v; // P: the palette's 8-bit entries
  else if (depth === 16 && !color && !alpha)
    map = (v) => Math.min(v, 255); // I: i2rgb clips
  else if (depth === 16)
    map = (v) => v >> 8; // RGB;16B, RGBA;16B, LA;16B: the high byte
  else if (depth < 8)
    map = (v) => (v * 255) / ((1 << depth) - 1); // 1: 0 or 255; L;2 and L;4: scaled
  else map = (v) => v;
  for (let i = 0; i < n; i++) {
    data[i * 3] = map(src[i * 4] as number);
    data[i * 3 + 1] = map(src[i * 4 + 1] as number);
    data[i * 3 + 2] = map(src[i * 4 + 2] as number);
  }
  return { data, width, height };
}

// ---- JPEG -----------------------------------------------------------------------------------------------------------

interface JpegHeader {
  width: number;
  height: number;
  precision: number;
  components: { id: number; h: number; v: number }[];
  jfif: boolean;
  /** Each Adobe APP14 marker's transform byte and its offset in the file (libjpeg goes by the last one). */
  adobe: { transform: number; at: number }[];
}

/** Frame types other than baseline (SOF0), extended (SOF1) and progressive (SOF2) Huffman ones: jpeg-js reads none. */
const OTHER_SOF = new Map<number, string>([
  [0xc3, 'lossless'],
  [0xc5, 'hierarchical'],
  [0xc6, 'hierarchical progressive'],
  [0xc7, 'hierarchical lossless'],
  [0xc9, 'arithmetic-coded'],
  [0xca, 'arithmetic-coded progressive'],
  [0xcb, 'arithmetic-coded lossless'],
  [0xcd, 'arithmetic-coded hierarchical'],
  [0xce, 'arithmetic-coded hierarchical progressive'],
  [0xcf, 'arithmetic-coded hierarchical lossless'],
]);

/** The markers before the first scan, as libjpeg's jdmarker.c reads what default_decompress_parms needs. */
function readJpegHeader(b: Uint8Array, path: string): JpegHeader {
  const bad = (why: string): never => {
    throw new Error(`${path}: corrupt or truncated JPEG (${why}): replace the file or remove it`);
  };
  const u16 = (at: number) => ((b[at] as number) << 8) | (b[at + 1] as number);
  let at = 2;
  let jfif = false;
  const adobe: { transform: number; at: number }[] = [];
  for (;;) {
    while (at < b.length && b[at] !== 0xff) at++; // libjpeg skips stray bytes before a marker (with a warning)
    while (at < b.length && b[at] === 0xff) at++;
    if (at + 2 >= b.length) bad('no frame header before the end of the file');
    const m = b[at++] as number;
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) continue;
    if (m === 0xd9 || m === 0xda) bad('a scan or the end of the image before the frame header');
    const len = u16(at);
    if (len < 2 || at + len > b.length) bad(`marker 0xff${m.toString(16)} runs past the end of the file`);
    const seg = at + 2;
    const dlen = len - 2;
    if (m === 0xe0 && dlen >= 14 && startsWith(b, [0x4a, 0x46, 0x49, 0x46, 0], seg)) jfif = true;
    if (m === 0xee && dlen >= 12 && startsWith(b, ascii('Adobe'), seg))
      adobe.push({ transform: b[seg + 11] as number, at: seg + 11 });
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      const name = OTHER_SOF.get(m);
      if (name) {
        throw new Error(
          `${path}: ${name} JPEGs are not supported (baseline and progressive ones are): re-encode it, e.g. to PNG`,
        );
      }
      if (dlen < 6) bad('short frame header');
      const nc = b[seg + 5] as number;
      if (dlen < 6 + 3 * nc) bad('short frame header');
      const components = Array.from({ length: nc }, (_, i) => ({
        id: b[seg + 6 + 3 * i] as number,
        h: (b[seg + 7 + 3 * i] as number) >> 4,
        v: (b[seg + 7 + 3 * i] as number) & 15,
      }));
      return {
        width: u16(seg + 3),
        height: u16(seg + 1),
        precision: b[seg] as number,
        components,
        jfif,
        adobe,
      };
    }
    at += len;
  }
}

type JpegColor = 'gray' | 'ycbcr' | 'rgb';

/** libjpeg's default_decompress_parms guess of the colour space (CMYK and YCCK refused). */
function jpegColorSpace(h: JpegHeader, path: string): JpegColor {
  const n = h.components.length;
  const adobe = h.adobe.at(-1);
  if (n === 1) return 'gray';
  if (n === 3) {
    if (h.jfif) return 'ycbcr';
    if (adobe) return adobe.transform === 0 ? 'rgb' : 'ycbcr';
    const [a, b, c] = h.components.map((x) => x.id);
    return a === 82 && b === 71 && c === 66 ? 'rgb' : 'ycbcr';
  }
  if (n === 4) {
    throw new Error(
      `${path}: CMYK/YCCK JPEGs are not supported: convert it to an RGB JPEG or a PNG ` +
        "(ImageNet's val set has none; the known CMYK files are in its training set)",
    );
  }
  throw new Error(`${path}: JPEG with ${n} components is not supported (1 or 3 are read)`);
}

// libjpeg-turbo's jdcolor.c tables (SCALEBITS 16)
const FIX = (x: number) => Math.trunc(x * 65536 + 0.5);
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (FIX(1.402) * x + 32768) >> 16;
  CB_B[i] = (FIX(1.772) * x + 32768) >> 16;
  CR_G[i] = -FIX(0.71414) * x;
  CB_G[i] = -FIX(0.34414) * x + 32768;
}
const clamp255 = (v: number) => Math.max(0, Math.min(v, 255));

/**
 * One component's samples at full size from its downsampled plane (pw x ph, the first pw of each row of `plane`),
 * as libjpeg-turbo's jdsample.c does with do_fancy_upsampling (PIL's setting): triangle filters for 2x1, 1x2 and 2x2
 * (the first two when the plane is wider than 2 samples), replication for other integral factors; edges replicate.
 */
function upsample(plane: Uint8Array, pw: number, ph: number, hx: number, vx: number, W: number, H: number): Uint8Array {
  if (hx === 1 && vx === 1) return plane; // full size: pw = W, ph = H
  const out = new Uint8Array(W * H);
  const at = (x: number, y: number) => plane[y * pw + x] as number;
  const put = (x: number, y: number, v: number) => {
    if (x < W && y < H) out[y * W + x] = v;
  };
  if (hx === 2 && vx === 1 && pw > 2) {
    for (let y = 0; y < ph; y++) {
      put(0, y, at(0, y));
      put(1, y, (at(0, y) * 3 + at(1, y) + 2) >> 2);
      for (let c = 1; c < pw - 1; c++) {
        const v = at(c, y) * 3;
        put(2 * c, y, (v + at(c - 1, y) + 1) >> 2);
        put(2 * c + 1, y, (v + at(c + 1, y) + 2) >> 2);
      }
      const last = at(pw - 1, y);
      put(2 * pw - 2, y, (last * 3 + at(pw - 2, y) + 1) >> 2);
      put(2 * pw - 1, y, last);
    }
    return out;
  }
  if (hx === 1 && vx === 2) {
    for (let r = 0; r < ph; r++) {
      const up = Math.max(r - 1, 0);
      const down = Math.min(r + 1, ph - 1);
      for (let c = 0; c < pw; c++) {
        put(c, 2 * r, (at(c, r) * 3 + at(c, up) + 1) >> 2);
        put(c, 2 * r + 1, (at(c, r) * 3 + at(c, down) + 2) >> 2);
      }
    }
    return out;
  }
  if (hx === 2 && vx === 2 && pw > 2) {
    const sums = new Int32Array(pw);
    for (let r = 0; r < ph; r++) {
      for (let v = 0; v < 2; v++) {
        const other = v === 0 ? Math.max(r - 1, 0) : Math.min(r + 1, ph - 1);
        for (let c = 0; c < pw; c++) sums[c] = at(c, r) * 3 + at(c, other);
        const y = 2 * r + v;
        put(0, y, (sums[0] * 4 + 8) >> 4);
        put(1, y, (sums[0] * 3 + sums[1] + 7) >> 4);
        for (let c = 1; c < pw - 1; c++) {
          put(2 * c, y, (sums[c] * 3 + sums[c - 1] + 8) >> 4);
          put(2 * c + 1, y, (sums[c] * 3 + sums[c + 1] + 7) >> 4);
        }
        put(2 * pw - 2, y, (sums[pw - 1] * 3 + sums[pw - 2] + 8) >> 4);
        put(2 * pw - 1, y, (sums[pw - 1] * 4 + 7) >> 4);
      }
    }
    return out;
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) out[y * W + x] = at(Math.floor(x / hx), Math.floor(y / vx));
  }
  return out;
}

export function decodeJpeg(bytes: Uint8Array, path = '<bytes>'): RgbImage {
  const head = readJpegHeader(bytes, path);
  if (head.precision !== 8) {
    throw new Error(`${path}: ${head.precision}-bit JPEGs are not supported (8-bit ones are): re-encode it`);
  }
  const color = jpegColorSpace(head, path);
  // jpeg-js converts YCbCr itself whenever an Adobe marker asks for a transform; zero that byte in a copy so that it
  // hands over the components as they are (the colour space is already decided above).
  let input = bytes;
  if (head.adobe.some((a) => a.transform !== 0)) {
    input = bytes.slice();
    for (const a of head.adobe) input[a.at] = 0;
  }
  let dec: { width: number; height: number; data: Uint8Array };
  try {
    dec = decodeJpegJs(input, {
      useTArray: true,
      formatAsRGBA: false,
      colorTransform: false,
      tolerantDecoding: false,
      maxMemoryUsageInMB: 2048,
    });
  } catch (e) {
    throw new Error(
      `${path}: corrupt or truncated JPEG (${e instanceof Error ? e.message : e}): replace the file or remove it`,
    );
  }
  const { width: W, height: H, data } = dec;
  const n = W * H;
  const comps = head.components;
  const maxH = Math.max(...comps.map((c) => c.h));
  const maxV = Math.max(...comps.map((c) => c.v));
  // jpeg-js hands out each component nearest-upsampled, sample (x, y) of component c being plane sample
  // (trunc(x * h / maxH), trunc(y * v / maxV)); take the planes back from there and upsample them as libjpeg does.
  const planes = comps.map((c, ci) => {
    if (maxH % c.h !== 0 || maxV % c.v !== 0) {
      throw new Error(
        `${path}: JPEG with fractional chroma sampling (${c.h}x${c.v} of ${maxH}x${maxV}) is not supported`,
      );
    }
    const pw = Math.ceil((W * c.h) / maxH);
    const ph = Math.ceil((H * c.v) / maxV);
    const firstAt = (count: number, size: number, f: number) => {
      const first = new Int32Array(count).fill(-1);
      for (let x = size - 1; x >= 0; x--) {
        const k = 0 | (x * f);
        if (k < count) first[k] = x;
      }
      if (first.includes(-1))
        throw new Error(`${path}: JPEG sampling factors ${c.h}x${c.v} of ${maxH}x${maxV} are not supported`);
      return first;
    };
    const xs = firstAt(pw, W, c.h / maxH);
    const ys = firstAt(ph, H, c.v / maxV);
    const plane = new Uint8Array(pw * ph);
    for (let r = 0; r < ph; r++) {
      const row = (ys[r] as number) * W;
      // 3 bytes a pixel, also for grey (jpeg-js writes Y, Y, Y)
      for (let q = 0; q < pw; q++) plane[r * pw + q] = data[(row + (xs[q] as number)) * 3 + ci] as number;
    }
    return upsample(plane, pw, ph, maxH / c.h, maxV / c.v, W, H);
  });
  const out = new Uint8Array(n * 3);
  if (color === 'gray') {
    const g = planes[0] as Uint8Array;
    for (let i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = g[i] as number;
  } else {
    const [p0, p1, p2] = planes as [Uint8Array, Uint8Array, Uint8Array];
    for (let i = 0; i < n; i++) {
      const y = p0[i] as number;
      const cb = p1[i] as number;
      const cr = p2[i] as number;
      if (color === 'rgb') {
        out[i * 3] = y;
        out[i * 3 + 1] = cb;
        out[i * 3 + 2] = cr;
      } else {
        out[i * 3] = clamp255(y + (CR_R[cr] as number));
        out[i * 3 + 1] = clamp255(y + (((CB_G[cb] as number) + (CR_G[cr] as number)) >> 16));
        out[i * 3 + 2] = clamp255(y + (CB_B[cb] as number));
      }
    }
  }
  return { data: out, width: W, height: H };
}

// ---- the data set ---------------------------------------------------------------------------------------------------

export interface ImageFolderOptions {
  /** Resize(resize): the shorter side's length before cropping (DiffPure: 256). */
  resize?: number;
  /** CenterCrop(crop): the square's side (DiffPure: 224). */
  crop?: number;
  /** The samples to read, by index into the listing, in this order (as torch's Subset). */
  indices?: readonly number[];
  /**
   * DiffPure's subset (imagenet_lmdb_dataset_sub): np.random.RandomState(dataSeed).choice(N, numSub, replace=False)
   * over the N listed samples, in that order. Ignored when numSub <= 0, as there; not with `indices`.
   */
  numSub?: number;
  dataSeed?: number;
  /** Keep only the first `limit` samples (after `indices` or the subset). */
  limit?: number;
}

export interface ImageFolderData {
  /** [N, 3, crop, crop], values k / 255. */
  images: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  classes: string[];
  /** The path of each image read. */
  files: string[];
  /** Each image's index in the full listing. */
  indices: number[];
}

/**
 * The images of an ImageNet-val-layout folder through DiffPure's 'imval' transform (Resize(256), CenterCrop(224),
 * ToTensor) with their labels, optionally DiffPure's random subset of them (numSub, dataSeed) or given indices.
 */
export function readImageFolder(dir: string, opts: ImageFolderOptions = {}): ImageFolderData {
  const { resize = 256, crop = 224, limit } = opts;
  const listing = listImageFolder(dir);
  const total = listing.files.length;
  let indices: number[];
  if (opts.indices !== undefined) {
    if (opts.numSub !== undefined) throw new Error('readImageFolder: give either indices or numSub, not both');
    indices = [...opts.indices];
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= total) {
        throw new Error(`readImageFolder: index ${i} is out of range for the ${total} images in ${dir}`);
      }
    }
  } else if (opts.numSub !== undefined && opts.numSub > 0) {
    if (opts.numSub > total) {
      throw new Error(`readImageFolder: numSub ${opts.numSub} is more than the ${total} images in ${dir}`);
    }
    indices = diffpureSubset(opts.dataSeed ?? 0, total, opts.numSub);
  } else {
    indices = Array.from({ length: total }, (_, i) => i);
  }
  if (limit !== undefined) {
    if (!Number.isInteger(limit) || limit < 0) throw new Error(`readImageFolder: limit must be a count, got ${limit}`);
    indices = indices.slice(0, limit);
  }
  const n = indices.length;
  const per = 3 * crop * crop;
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  const files: string[] = [];
  indices.forEach((idx, k) => {
    const file = listing.files[idx] as string;
    const img = centerCrop(resizeShorter(loadImage(file), resize), crop);
    toTensor(img, images, k * per);
    labels[k] = listing.labels[idx] as number;
    files.push(file);
  });
  return { images, shape: [n, 3, crop, crop], labels, classes: listing.classes, files, indices };
}
