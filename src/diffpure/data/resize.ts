// The image transforms of DiffPure's ImageNet evaluation ('imval': Resize(256), CenterCrop(224), ToTensor), done as
// torchvision does them on a PIL image, so that the tensors match PIL's to the bit.
//
// - Resize(size) with an int: the shorter side becomes `size`, the other int(size * long / short) (truncated), and
//   PIL's Image.resize(..., BILINEAR) does the resampling (torchvision 0.8-0.17, functional_pil.resize).
// - PIL's resampling (libImaging/Resample.c, ImagingResample, unchanged in substance from Pillow 7 to 11): separable,
//   a horizontal pass into an 8-bit intermediate image, then a vertical pass. For each output sample the filter
//   (triangle for BILINEAR) is stretched by the downscale factor (never shrunk below 1) so downscaling antialiases;
//   the weights over the taps [trunc(center - support + 0.5), trunc(center + support + 0.5)) are normalised to sum 1,
//   turned into fixed point with 22 fractional bits (rounded half away from zero), summed in integers from 2^21
//   (the rounding half) and shifted back, clamped to 0..255. A pass whose size does not change is skipped.
// - CenterCrop(size): pads with zeros first when the image is smaller; top = int(round((h - size) / 2.0)) with
//   Python's round (half to even), left likewise.
// - ToTensor: HWC uint8 to CHW float32, x / 255.
// Checked against Pillow 9.4's own output (test/diffpure/image-folder.test.ts, fixtures/imagefolder/make.py).

/** An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B (HWC). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ResampleFilter = 'bilinear' | 'bicubic' | 'lanczos' | 'box' | 'hamming';

const sinc = (x: number): number => {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
};

// Resample.c's filters and their supports. HAMMING's 0.54f and 0.46f are C floats, widened to double.
const FILTERS: Record<ResampleFilter, { support: number; f: (x: number) => number }> = {
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    f: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  hamming: {
    support: 1,
    f: (x) => {
      const a = Math.abs(x);
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const px = a * Math.PI;
      return (Math.sin(px) / px) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(px));
    },
  },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = Math.abs(x);
      if (a < 1) return (1.5 * a - 2.5) * a * a + 1;
      if (a < 2) return (((a - 5) * a + 8) * a - 4) * -0.5;
      return 0;
    },
  },
  lanczos: { support: 3, f: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;

interface Coeffs {
  ksize: number;
  /** Per output sample: the first input sample and the number of taps. */
  bounds: Int32Array;
  /** outSize x ksize fixed-point weights. */
  kk: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc for resampling inSize samples to outSize (box 0..inSize). */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coeffs {
  const { support: baseSupport, f } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = baseSupport * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inv = 1 / filterscale;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = f((x + xmin - center + 0.5) * inv);
      ww += w[x] as number;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? (w[x] as number) / ww : (w[x] as number);
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

const clip8 = (ss: number): number => {
  const v = ss >> PRECISION_BITS;
  return Math.max(0, Math.min(v, 255));
};

function horizontal(img: RgbImage, outW: number, c: Coeffs): RgbImage {
  const { data, width, height } = img;
  const out = new Uint8Array(outW * height * 3);
  const { ksize, bounds, kk } = c;
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2] as number;
      const n = bounds[xx * 2 + 1] as number;
      const k0 = xx * ksize;
      let s0 = 1 << (PRECISION_BITS - 1);
      let s1 = s0;
      let s2 = s0;
      for (let x = 0; x < n; x++) {
        const k = kk[k0 + x] as number;
        const p = row + (xmin + x) * 3;
        s0 += (data[p] as number) * k;
        s1 += (data[p + 1] as number) * k;
        s2 += (data[p + 2] as number) * k;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: outW, height };
}

function vertical(img: RgbImage, outH: number, c: Coeffs): RgbImage {
  const { data, width } = img;
  const out = new Uint8Array(width * outH * 3);
  const { ksize, bounds, kk } = c;
  const stride = width * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] as number;
    const n = bounds[yy * 2 + 1] as number;
    const k0 = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let s = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < n; y++) s += (data[(ymin + y) * stride + i] as number) * (kk[k0 + y] as number);
      out[yy * stride + i] = clip8(s);
    }
  }
  return { data: out, width, height: outH };
}

/** PIL's Image.resize((width, height), filter) of an RGB image (the whole image as the source box). */
export function resizePil(img: RgbImage, width: number, height: number, filter: ResampleFilter = 'bilinear'): RgbImage {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`resize: ${name} must be a positive integer, got ${v}`);
  }
  if (!FILTERS[filter]) throw new Error(`resize: unknown filter '${filter}' (${Object.keys(FILTERS).join(', ')})`);
  let out = img;
  // ImagingResampleInner: horizontal pass first, then vertical; a pass is skipped when its size is unchanged.
  if (width !== img.width) out = horizontal(out, width, coefficients(img.width, width, filter));
  if (height !== img.height) out = vertical(out, height, coefficients(img.height, height, filter));
  return out === img ? { data: img.data.slice(), width: img.width, height: img.height } : out;
}

/** The output size of torchvision's Resize(size) (an int): [width, height]. */
export function shorterSideSize(width: number, height: number, size: number): [number, number] {
  if (!Number.isInteger(size) || size < 1) throw new Error(`resize: size must be a positive integer, got ${size}`);
  return width <= height ? [size, Math.trunc((size * height) / width)] : [Math.trunc((size * width) / height), size];
}

/** torchvision's Resize(size) on a PIL image: the shorter side to `size`, keeping the aspect ratio, BILINEAR. */
export function resizeShorter(img: RgbImage, size: number, filter: ResampleFilter = 'bilinear'): RgbImage {
  const [w, h] = shorterSideSize(img.width, img.height, size);
  if (w === img.width && h === img.height) return img;
  return resizePil(img, w, h, filter);
}

/** Python 3's round() of k / 2 for an integer k: halves go to the even neighbour. */
const roundHalfEven2 = (k: number): number => {
  const lo = Math.floor(k / 2);
  return k % 2 === 0 || lo % 2 === 0 ? lo : lo + 1;
};

/** torchvision's CenterCrop(size) (square), zero-padding an image smaller than `size` first as it does. */
export function centerCrop(img: RgbImage, size: number): RgbImage {
  if (!Number.isInteger(size) || size < 1) throw new Error(`centerCrop: size must be a positive integer, got ${size}`);
  let src = img;
  if (size > img.width || size > img.height) {
    const padL = size > img.width ? Math.floor((size - img.width) / 2) : 0;
    const padT = size > img.height ? Math.floor((size - img.height) / 2) : 0;
    const w = Math.max(size, img.width);
    const h = Math.max(size, img.height);
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < img.height; y++) {
      data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y + padT) * w + padL) * 3);
    }
    src = { data, width: w, height: h };
    if (w === size && h === size) return src;
  }
  const top = roundHalfEven2(src.height - size);
  const left = roundHalfEven2(src.width - size);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const from = ((top + y) * src.width + left) * 3;
    out.set(src.data.subarray(from, from + size * 3), y * size * 3);
  }
  return { data: out, width: size, height: size };
}

/** torchvision's ToTensor: CHW float32 x / 255, written into `out` at `offset` (or a new array). */
export function toTensor(img: RgbImage, out?: Float32Array, offset = 0): Float32Array {
  const { data, width, height } = img;
  const plane = width * height;
  const t = out ?? new Float32Array(3 * plane);
  if (offset + 3 * plane > t.length) throw new Error(`toTensor: ${3 * plane} values do not fit at offset ${offset}`);
  for (let i = 0; i < plane; i++) {
    t[offset + i] = (data[i * 3] as number) / 255;
    t[offset + plane + i] = (data[i * 3 + 1] as number) / 255;
    t[offset + 2 * plane + i] = (data[i * 3 + 2] as number) / 255;
  }
  return t;
}
