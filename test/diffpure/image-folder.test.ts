// The ImageNet-val-layout reader (src/diffpure/data/image-folder.ts, resize.ts) against PIL 9.4 and NumPy, on the
// small folder that fixtures/imagefolder/make.py writes: torchvision ImageFolder's listing, DiffPure's 'imval'
// transform (Resize(256), CenterCrop(224), ToTensor), PNG and JPEG decoding, the RandomState subset, and the errors.
//
// PNG through the whole transform, and PIL's resampling on its own, must match PIL to the bit. JPEGs are decoded by
// jpeg-js, whose IDCT is not libjpeg-turbo's islow one (PIL's), so samples can differ by a level in Y, Cb and Cr;
// through libjpeg's YCbCr->RGB (|dR| <= 1 + 1.402, |dB| <= 1 + 1.772, rounded) that makes at most 3 levels, and
// the resize (normalised non-negative weights) does not widen it. Upsampling and colour conversion are libjpeg's.
// Measured against PIL 9.4 / libjpeg-turbo 2.1.5, in levels of 1/255 (max, share of samples that differ):
//   these fixtures after the transform: RGB 4:4:4 q95 3 (1.2%), grey 1 (0.8%), RGB 4:2:0 q90 3 (2.0%);
//   extra/ decoded: 4:2:2 3 (16%), progressive 4:2:0 3 (12%), Adobe YCbCr 2, Adobe RGB 1, 3-pixel-wide 4:2:0 1;
//   44 photo-like 301x263..640x427 JPEGs (q75/90/95; 4:4:4, 4:2:2, 4:2:0, progressive, grey) decoded: colour 3
//   (11-12%, mean 0.15), grey 1 (6%); after the transform 3 (mean <= 0.15); cjpeg's 1x2, 4x1, 4x2, restart-marker
//   and RGB JPEGs 3, 3, 3, 3, 1. jpeg-js's own nearest chroma and colour conversion would give up to 84 (mean 1.5).
// So JPEG results are held to max 3 levels and a small mean.

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, test } from 'vitest';
import {
  centerCrop,
  decodeImage,
  listImageFolder,
  loadImage,
  type RgbImage,
  readImageFolder,
  resizePil,
  resizeShorter,
} from '../../src/diffpure/data/image-folder.js';
import { diffpureSubset } from '../../src/diffpure/data/numpy-random.js';
import type { ResampleFilter } from '../../src/diffpure/data/resize.js';

const FIX = new URL('./fixtures/imagefolder/', import.meta.url).pathname;
const VAL = join(FIX, 'val');

interface Expected {
  classes: string[];
  files: string[];
  labels: number[];
  transform_sha256: Record<string, string>;
  final: Record<string, string>;
  resample: { source: [number, number]; size: [number, number]; filter: ResampleFilter; sha256: string }[];
  extra: Record<string, { mode: string; width: number; height: number; rgb: string }>;
  subsets: { seed: number; numSub: number; indices: number[] }[];
}
const expected: Expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8'));

const JPEG_MAX = 3;
const JPEG_MEAN = 0.3;

const tmp = mkdtempSync(join(tmpdir(), 'imagefolder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** HWC RGB to CHW bytes (ToTensor's layout times 255). */
const chw = (img: RgbImage): Uint8Array => {
  const n = img.width * img.height;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = img.data[i * 3 + c] as number;
  return out;
};
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const transform = (img: RgbImage) => centerCrop(resizeShorter(img, 256), 224);

function diff(a: ArrayLike<number>, b: ArrayLike<number>) {
  expect(a.length).toBe(b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

/** An 8-bit RGB PNG (PIL's output, written by make.py) as HWC bytes. */
function readRgbPng(path: string): RgbImage {
  const png = PNG.sync.read(readFileSync(path));
  const data = new Uint8Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) data.set(png.data.subarray(i * 4, i * 4 + 3), i * 3);
  return { data, width: png.width, height: png.height };
}

describe('listing, as torchvision ImageFolder', () => {
  test('sorted class folders, files walked in order, extensions case-insensitive, non-images skipped', () => {
    const l = listImageFolder(VAL);
    expect(l.classes).toEqual(expected.classes);
    expect(l.files.map((f) => relative(VAL, f))).toEqual(expected.files);
    expect([...l.labels]).toEqual(expected.labels);
    expect(l.files.some((f) => f.endsWith('.txt'))).toBe(false);
  });

  test('nested folders come in order of their path, as sorted(os.walk(...)); names compare by code point', () => {
    const root = join(tmp, 'walk');
    const names = ['b/x.png', 'b/a/z.png', 'b/a b/y.png', 'b/a-b/w.JPG', 'b/a/c/q.png', 'b/a0/v.jpeg'];
    for (const p of [...names, 'a/\u{1F600}.png', 'a/\uFFFF.png']) {
      mkdirSync(join(root, p, '..'), { recursive: true });
      writeFileSync(join(root, p), '');
    }
    writeFileSync(join(root, 'b', 'notes.md'), '');
    symlinkSync(join(root, 'b', 'a'), join(root, 'b', 'link')); // followed, as os.walk(followlinks=True)
    const l = listImageFolder(root);
    expect(l.classes).toEqual(['a', 'b']);
    // as Python 3.11 listed this tree: str sorts by code point, so U+FFFF comes before U+1F600 (UTF-16 order would
    // put the surrogate pair first), and folder b/a/c after b/a b and b/a-b (' ' and '-' sort before '/')
    expect(l.files.map((f) => relative(root, f))).toEqual([
      'a/\uFFFF.png',
      'a/\u{1F600}.png',
      'b/x.png',
      'b/a/z.png',
      'b/a b/y.png',
      'b/a-b/w.JPG',
      'b/a/c/q.png',
      'b/a0/v.jpeg',
      'b/link/z.png',
      'b/link/c/q.png',
    ]);
    expect([...l.labels]).toEqual([0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
  });
});

describe("PIL's resampling and torchvision's Resize / CenterCrop", () => {
  /** make.py's pattern(): R a wrapping diagonal ramp, G an 8-pixel checkerboard, B a wrapping zone plate. */
  const pattern = (w: number, h: number): RgbImage => {
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        data[o] = (x * 7 + y * 3) & 255;
        data[o + 1] = ((x >> 3) ^ (y >> 3)) & 1 ? 230 : 20;
        data[o + 2] = ((x * x + y * y) >> 5) & 255;
      }
    }
    return { data, width: w, height: h };
  };

  test.each(expected.resample)('pattern $source -> $size with $filter is PIL to the bit', (c) => {
    const out = resizePil(pattern(...c.source), c.size[0], c.size[1], c.filter);
    expect([out.width, out.height]).toEqual(c.size);
    expect(sha256(out.data)).toBe(c.sha256);
  });

  test('Resize(256) sizes, and CenterCrop offsets with round-half-even and zero padding', () => {
    const img = (w: number, h: number): RgbImage => ({ data: new Uint8Array(w * h * 3).fill(9), width: w, height: h });
    const size = (i: RgbImage) => [i.width, i.height];
    expect(size(resizeShorter(img(500, 375), 256))).toEqual([341, 256]);
    expect(size(resizeShorter(img(375, 500), 256))).toEqual([256, 341]);
    expect(size(resizeShorter(img(300, 257), 256))).toEqual([298, 256]);
    expect(size(resizeShorter(img(256, 256), 256))).toEqual([256, 256]);
    // a 5-wide ramp cropped to 2: (5 - 2) / 2 = 1.5 rounds to 2 (Python's round), so columns 2 and 3
    const ramp: RgbImage = { data: Uint8Array.from({ length: 15 }, (_, i) => Math.floor(i / 3)), width: 5, height: 1 };
    const wide = { ...ramp, data: new Uint8Array(5 * 4 * 3) };
    for (let y = 0; y < 4; y++) wide.data.set(ramp.data, y * 15);
    const c = centerCrop({ ...wide, height: 4 }, 2);
    expect([...c.data.subarray(0, 6)]).toEqual([2, 2, 2, 3, 3, 3]);
    // (7 - 2) / 2 = 2.5 rounds to 2
    const c7 = centerCrop(
      { data: Uint8Array.from({ length: 21 * 2 }, (_, i) => Math.floor(i / 3) % 7), width: 7, height: 2 },
      2,
    );
    expect([...c7.data.subarray(0, 6)]).toEqual([2, 2, 2, 3, 3, 3]);
    // smaller than the crop: zero padding, left (4 - 1) // 2 = 1, top (4 - 3) // 2 = 0
    const p = centerCrop({ data: new Uint8Array(9).fill(7), width: 1, height: 3 }, 4);
    expect([p.width, p.height]).toEqual([4, 4]);
    expect(Array.from({ length: 16 }, (_, i) => p.data[i * 3])).toEqual([
      0, 7, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0,
    ]);
  });
});

describe('decoding as Image.open(...).convert("RGB")', () => {
  const pngs = expected.files.filter((f) => !(f in expected.final));
  const jpegs = expected.files.filter((f) => f in expected.final);

  test.each(pngs)('%s: PNG through Resize(256), CenterCrop(224) is PIL to the bit', (f) => {
    expect(sha256(chw(transform(loadImage(join(VAL, f)))))).toBe(expected.transform_sha256[f]);
  });

  test.each(jpegs)(`%s: JPEG through the transform is within ${JPEG_MAX} levels of PIL`, (f) => {
    const want = readRgbPng(join(FIX, 'final', expected.final[f] as string));
    expect(sha256(chw(want))).toBe(expected.transform_sha256[f]); // the fixture is PIL's output
    const d = diff(transform(loadImage(join(VAL, f))).data, want.data);
    expect(d.max).toBeLessThanOrEqual(JPEG_MAX);
    expect(d.mean).toBeLessThanOrEqual(JPEG_MEAN);
  });

  const extra = Object.entries(expected.extra).map(([name, e]) => [name, e.mode, e] as const);
  test.each(extra)('extra/%s (PIL mode %s)', (name, _mode, e) => {
    const img = loadImage(join(FIX, 'extra', name));
    expect([img.width, img.height]).toEqual([e.width, e.height]);
    const want = Buffer.from(e.rgb, 'base64');
    if (name.endsWith('.png')) expect(Buffer.from(img.data).equals(want)).toBe(true);
    else {
      const d = diff(img.data, want);
      expect(d.max).toBeLessThanOrEqual(JPEG_MAX);
      expect(d.mean).toBeLessThanOrEqual(JPEG_MEAN * 2); // tiny, busy pictures: most samples are edges
    }
  });

  test('unsupported and broken files name the file and the fix', () => {
    const cmyk = join(FIX, 'extra', 'cmyk.jpg');
    expect(() => loadImage(cmyk)).toThrow(/cmyk\.jpg: CMYK\/YCCK JPEGs are not supported: convert it/);
    const jpeg = readFileSync(join(VAL, expected.files[0] as string));
    const cut = join(tmp, 'cut.JPEG');
    writeFileSync(cut, jpeg.subarray(0, Math.floor(jpeg.length / 2)));
    expect(() => loadImage(cut)).toThrow(/cut\.JPEG: corrupt or truncated JPEG .*replace the file or remove it/);
    const png = readFileSync(join(FIX, 'extra', 'rgb16.png'));
    expect(() => decodeImage(png.subarray(0, png.length - 30), 'x.png')).toThrow(/x\.png: corrupt or truncated PNG/);
    expect(() => decodeImage(Buffer.from('GIF89a\x01\x00\x01\x00'), 'g.png')).toThrow(
      /g\.png: GIF images are not supported \(only JPEG and PNG are decoded here\): convert it/,
    );
    expect(() => decodeImage(Buffer.from('BM\0\0\0\0'), 'b.jpg')).toThrow(/b\.jpg: BMP images are not supported/);
    expect(() => decodeImage(Buffer.from('hello world'), 'h.jpg')).toThrow(
      /h\.jpg: not a JPEG or PNG image \(it starts with 68 65 6c 6c 6f 20 77 6f\)/,
    );
    expect(() => decodeImage(new Uint8Array(0), 'e.png')).toThrow(
      /e\.png: not a JPEG or PNG image \(the file is empty\)/,
    );
    expect(() => loadImage(join(tmp, 'absent.png'))).toThrow(/absent\.png: cannot read the image file/);
  });
});

describe('readImageFolder', () => {
  test('NCHW float32 x / 255 with labels, classes and files, in ImageFolder order', () => {
    const r = readImageFolder(VAL);
    const n = expected.files.length;
    expect(r.shape).toEqual([n, 3, 224, 224]);
    expect(r.images.length).toBe(n * 3 * 224 * 224);
    expect(r.classes).toEqual(expected.classes);
    expect([...r.labels]).toEqual(expected.labels);
    expect(r.files.map((f) => relative(VAL, f))).toEqual(expected.files);
    expect(r.indices).toEqual(Array.from({ length: n }, (_, i) => i));
    const per = 3 * 224 * 224;
    expected.files.forEach((f, k) => {
      const want = chw(transform(loadImage(join(VAL, f))));
      const got = r.images.subarray(k * per, (k + 1) * per);
      for (let i = 0; i < per; i += 97) expect(got[i]).toBe(Math.fround((want[i] as number) / 255));
      expect(sha256(Uint8Array.from(got, (v) => Math.round(v * 255)))).toBe(sha256(want));
    });
  });

  test.each(expected.subsets)("DiffPure's subset: RandomState($seed).choice(N, $numSub) as NumPy draws it", (s) => {
    expect(diffpureSubset(s.seed, expected.files.length, s.numSub)).toEqual(s.indices);
    const r = readImageFolder(VAL, { numSub: s.numSub, dataSeed: s.seed, resize: 32, crop: 16 });
    expect(r.indices).toEqual(s.indices);
    expect([...r.labels]).toEqual(s.indices.map((i) => expected.labels[i]));
    expect(r.files.map((f) => relative(VAL, f))).toEqual(s.indices.map((i) => expected.files[i]));
    const byIndex = readImageFolder(VAL, { indices: s.indices, resize: 32, crop: 16 });
    expect(byIndex.images).toEqual(r.images);
  });

  test('indices, limit, and other resize / crop sizes', () => {
    const r = readImageFolder(VAL, { indices: [4, 0], limit: 1, resize: 64, crop: 56 });
    expect(r.shape).toEqual([1, 3, 56, 56]);
    expect(r.indices).toEqual([4]);
    expect(r.labels[0]).toBe(expected.labels[4]);
    expect(readImageFolder(VAL, { limit: 0 }).shape).toEqual([0, 3, 224, 224]);
    expect(readImageFolder(VAL, { numSub: 0, limit: 2, resize: 8, crop: 8 }).indices).toEqual([0, 1]);
  });

  test('missing, empty and odd folders, and bad options, say what to do', () => {
    expect(() => readImageFolder(join(tmp, 'nowhere'))).toThrow(
      /nowhere: image folder not found: put ImageNet's val set there in class folders \(n01440764\//,
    );
    const file = join(tmp, 'a-file');
    writeFileSync(file, '');
    expect(() => listImageFolder(file)).toThrow(/a-file: not a directory/);
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'x.JPEG'), '');
    expect(() => listImageFolder(empty)).toThrow(/empty: no class folders in this image folder: put ImageNet's val/);
    const hollow = join(tmp, 'hollow');
    mkdirSync(join(hollow, 'n01440764'), { recursive: true });
    mkdirSync(join(hollow, 'n01443537'));
    writeFileSync(join(hollow, 'n01440764', 'a.png'), '');
    writeFileSync(join(hollow, 'n01443537', 'a.txt'), '');
    expect(() => listImageFolder(hollow)).toThrow(
      /found no image files in the class folder n01443537 \(the extensions/,
    );
    expect(() => readImageFolder(VAL, { indices: [0, 99] })).toThrow(/index 99 is out of range for the 7 images/);
    expect(() => readImageFolder(VAL, { numSub: 8 })).toThrow(/numSub 8 is more than the 7 images/);
    expect(() => readImageFolder(VAL, { numSub: 2, indices: [1] })).toThrow(/either indices or numSub/);
    const broken = join(tmp, 'broken');
    mkdirSync(join(broken, 'n01440764'), { recursive: true });
    writeFileSync(join(broken, 'n01440764', 'ILSVRC2012_val_00000001.JPEG'), 'not a jpeg');
    expect(() => readImageFolder(broken)).toThrow(/ILSVRC2012_val_00000001\.JPEG: not a JPEG or PNG image/);
  });
});
