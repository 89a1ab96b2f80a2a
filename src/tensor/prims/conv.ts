// 2-D convolution (cross-correlation, as PyTorch), its input gradient (= conv_transpose2d)
// and its weight gradient: three primitives whose VJPs are each other.

import { apply } from '../runtime.js';
import { fmt, type Shape } from '../shape.js';
import type { Prim, Tensor } from '../tensor.js';
import { add } from './elementwise.js';
import { reshape, slice } from './shape.js';

/** Geometry shared by the three conv primitives. x: [N, C, H, W]; w: [O, C/groups, KH, KW]; y: [N, O, OH, OW]. */
export interface ConvGeom {
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly dilation: readonly [number, number];
  readonly groups: number;
}
/** conv2dInput needs the input's spatial size (several sizes map to one output size). */
export interface ConvInputAttrs extends ConvGeom {
  readonly inShape: Shape;
}
export interface ConvWeightAttrs extends ConvGeom {
  readonly wShape: Shape;
}

export const conv2dPrim: Prim<ConvGeom> = {
  name: 'conv2d',
  vjp: (g, { inputs, attrs }) => {
    const [x, w] = inputs as [Tensor, Tensor];
    return [
      x.requiresGrad ? conv2dInput(g, w, { ...attrs, inShape: x.shape }) : null,
      w.requiresGrad ? conv2dWeight(x, g, { ...attrs, wShape: w.shape }) : null,
    ];
  },
};

/** dL/dx of conv2d given dL/dy `g` and weight w; also conv_transpose2d's forward. */
export const conv2dInputPrim: Prim<ConvInputAttrs> = {
  name: 'conv2dInput',
  vjp: (gx, { inputs, attrs }) => {
    const [gy, w] = inputs as [Tensor, Tensor];
    return [
      gy.requiresGrad ? cropTo(conv2dRaw(gx, w, attrs), gy.shape) : null,
      w.requiresGrad ? conv2dWeight(gx, gy, { ...attrs, wShape: w.shape }) : null,
    ];
  },
};

/** dL/dw of conv2d given input x and dL/dy `gy`. Bilinear in (x, gy). */
export const conv2dWeightPrim: Prim<ConvWeightAttrs> = {
  name: 'conv2dWeight',
  vjp: (gw, { inputs, attrs }) => {
    const [x, gy] = inputs as [Tensor, Tensor];
    return [
      x.requiresGrad ? conv2dInput(gy, gw, { ...attrs, inShape: x.shape }) : null,
      gy.requiresGrad ? cropTo(conv2dRaw(x, gw, attrs), gy.shape) : null,
    ];
  },
};

/**
 * An input larger than the output needs (conv_transpose2d's output padding, or rows a stride
 * skips) can give conv2d extra output positions that no gradient flows from: crop them.
 */
function cropTo(y: Tensor, shape: Shape): Tensor {
  if (y.shape[2] === shape[2] && y.shape[3] === shape[3]) return y;
  return slice(y, [null, null, [0, shape[2] as number], [0, shape[3] as number]]);
}

export function convOutSize(op: string, inSize: number, k: number, stride: number, pad: number, dil: number): number {
  const o = Math.floor((inSize + 2 * pad - dil * (k - 1) - 1) / stride) + 1;
  if (o < 1)
    throw new Error(`${op}: input size ${inSize} with kernel ${k}, padding ${pad}, dilation ${dil} gives no output`);
  return o;
}

function pair(op: string, name: string, v: number | readonly [number, number], min: number): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  if (!p.every((e) => Number.isInteger(e) && e >= min))
    throw new Error(`${op}: ${name} must be integers >= ${min}, got ${p}`);
  return p;
}

function conv2dRaw(x: Tensor, w: Tensor, g: ConvGeom): Tensor {
  const [n, , h, wd] = x.shape as [number, number, number, number];
  const [o, , kh, kw] = w.shape as [number, number, number, number];
  const oh = convOutSize('conv2d', h, kh, g.stride[0], g.padding[0], g.dilation[0]);
  const ow = convOutSize('conv2d', wd, kw, g.stride[1], g.padding[1], g.dilation[1]);
  return apply(conv2dPrim, [x, w], { stride: g.stride, padding: g.padding, dilation: g.dilation, groups: g.groups }, [
    n,
    o,
    oh,
    ow,
  ]);
}

/** dL/dx of conv2d (torch.nn.grad.conv2d_input): gy [N, O, OH, OW], w [O, C/g, KH, KW] -> inShape. */
export function conv2dInput(gy: Tensor, w: Tensor, a: ConvInputAttrs): Tensor {
  return apply(conv2dInputPrim, [gy, w], a, a.inShape);
}

/** dL/dw of conv2d (torch.nn.grad.conv2d_weight): x [N, C, H, W], gy [N, O, OH, OW] -> wShape. */
export function conv2dWeight(x: Tensor, gy: Tensor, a: ConvWeightAttrs): Tensor {
  return apply(conv2dWeightPrim, [x, gy], a, a.wShape);
}

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  dilation?: number | readonly [number, number];
  groups?: number;
}

function geom(op: string, o: Conv2dOptions): ConvGeom {
  const groups = o.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1)
    throw new Error(`${op}: groups must be a positive integer, got ${groups}`);
  return {
    stride: pair(op, 'stride', o.stride ?? 1, 1),
    padding: pair(op, 'padding', o.padding ?? 0, 0),
    dilation: pair(op, 'dilation', o.dilation ?? 1, 1),
    groups,
  };
}

/** The bias is checked before any work is queued; an options object in its place is named. */
function checkBias(op: string, bias: Tensor | undefined, c: number): void {
  if (bias === undefined) return;
  const t = bias as Partial<Tensor> | null;
  if (t === null || typeof t !== 'object' || typeof t.rank !== 'number' || !Array.isArray(t.shape)) {
    throw new Error(
      `${op}: bias must be a Tensor [${c}] or undefined, got ${t === null ? 'null' : typeof t} (options go fourth: ${op}(x, w, bias, opts))`,
    );
  }
  if (bias.rank !== 1 || bias.size !== c) throw new Error(`${op}: bias ${fmt(bias.shape)} must be [${c}]`);
}

function addBias(y: Tensor, bias: Tensor | undefined): Tensor {
  return bias ? add(y, reshape(bias, [y.shape[1] as number, 1, 1])) : y;
}

/** torch.nn.functional.conv2d. x: [N, C, H, W], w: [O, C/groups, KH, KW], bias: [O]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = geom('conv2d', opts);
  if (x.rank !== 4) throw new Error(`conv2d: input x must be [N, C, H, W], got ${fmt(x.shape)}`);
  if (w.rank !== 4) throw new Error(`conv2d: weight must be [O, C/groups, KH, KW], got ${fmt(w.shape)}`);
  const c = x.shape[1] as number;
  const o = w.shape[0] as number;
  if (c % g.groups || o % g.groups || (w.shape[1] as number) * g.groups !== c) {
    throw new Error(
      `conv2d: input ${fmt(x.shape)} and weight ${fmt(w.shape)} do not match groups=${g.groups} (need weight[1] * groups = C and O divisible by groups)`,
    );
  }
  checkBias('conv2d', bias, o);
  return addBias(conv2dRaw(x, w, g), bias);
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  outputPadding?: number | readonly [number, number];
}

/** torch.nn.functional.conv_transpose2d. x: [N, Cin, H, W], w: [Cin, Cout/groups, KH, KW], bias: [Cout]. */
export function convTranspose2d(x: Tensor, w: Tensor, bias?: Tensor, opts: ConvTranspose2dOptions = {}): Tensor {
  const g = geom('convTranspose2d', opts);
  const op = pair('convTranspose2d', 'outputPadding', opts.outputPadding ?? 0, 0);
  if (x.rank !== 4) throw new Error(`convTranspose2d: input x must be [N, Cin, H, W], got ${fmt(x.shape)}`);
  if (w.rank !== 4) throw new Error(`convTranspose2d: weight must be [Cin, Cout/groups, KH, KW], got ${fmt(w.shape)}`);
  const [n, cin, h, wd] = x.shape as [number, number, number, number];
  const [wcin, coutg, kh, kw] = w.shape as [number, number, number, number];
  if (wcin !== cin || cin % g.groups) {
    throw new Error(
      `convTranspose2d: input ${fmt(x.shape)} and weight ${fmt(w.shape)} do not match groups=${g.groups}`,
    );
  }
  for (const i of [0, 1] as const) {
    if (op[i] >= Math.max(g.stride[i], g.dilation[i])) {
      throw new Error(`convTranspose2d: outputPadding ${op[i]} must be smaller than stride or dilation`);
    }
  }
  const oh = (h - 1) * g.stride[0] - 2 * g.padding[0] + g.dilation[0] * (kh - 1) + op[0] + 1;
  const ow = (wd - 1) * g.stride[1] - 2 * g.padding[1] + g.dilation[1] * (kw - 1) + op[1] + 1;
  if (oh < 1 || ow < 1) throw new Error(`convTranspose2d: input ${fmt(x.shape)} gives an empty output`);
  checkBias('convTranspose2d', bias, coutg * g.groups);
  return addBias(conv2dInput(x, w, { ...g, inShape: [n, coutg * g.groups, oh, ow] }), bias);
}
