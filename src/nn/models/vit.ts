// timm's VisionTransformer (timm 0.4-0.5, vision_transformer.py) as facebookresearch/deit builds
// deit_small_patch16_224, DiffPure's third ImageNet classifier ('imagenet-deit-s', loaded through
// torch.hub and wrapped in _Wrapper_ResNet's mean/std normalisation: ImageNetClassifier). Keys,
// in timm's state-dict order:
//   cls_token [1, 1, D], pos_embed [1, 1 + P, D] (the class token's slot included),
//   patch_embed.proj (Conv2d 3 -> D, kernel = stride = patch),
//   blocks.i.{norm1, attn.qkv (D -> 3D), attn.proj, norm2, mlp.fc1 (D -> 4D), mlp.fc2},
//   norm, head (D -> classes).
// Pre-norm blocks, x + attn(norm1(x)) then x + mlp(norm2(x)); LayerNorm eps 1e-6; exact (erf)
// GELU; attention softmax(q k^T * hd^-0.5) v with heads as contiguous hd-slices of q, k and v;
// the class token after the final norm feeds the head. The official checkpoint
// (deit_small_patch16_224-cd65a155.pth) is {'model': state dict}.

import * as T from '../../tensor/index.js';
import { uniformInit } from '../init.js';
import { Conv2d, LayerNorm, Linear, Sequential } from '../layers/basic.js';
import { Module, type Parameter } from '../module.js';

/** timm's VisionTransformer keyword arguments (the ones DeiT sets), with timm's names. */
export interface VitOptions {
  img_size: number;
  patch_size: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  num_classes: number;
}

/** deit_small_patch16_224 (facebookresearch/deit models.py). */
export const DEIT_SMALL_PATCH16_224: VitOptions = {
  img_size: 224,
  patch_size: 16,
  embed_dim: 384,
  depth: 12,
  num_heads: 6,
  mlp_ratio: 4,
  qkv_bias: true,
  num_classes: 1000,
};

const LN_EPS = 1e-6;
// timm draws cls_token and pos_embed from trunc_normal(std 0.02); a uniform of the same standard
// deviation stands in (random weights only matter for benches and shapes). Linear layers keep
// PyTorch's default init.
const TOKEN_BOUND = 0.02 * Math.sqrt(3);

export class VitAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
    qkvBias: boolean,
  ) {
    super();
    if (dim % numHeads) throw new Error(`VitAttention: embed_dim ${dim} is not divisible by num_heads ${numHeads}`);
    this.qkv = this.registerModule('qkv', new Linear(dim, 3 * dim, { bias: qkvBias }));
    this.proj = this.registerModule('proj', new Linear(dim, dim));
  }
  /** x [B, N, D] -> [B, N, D]. */
  forward(x: T.Tensor): T.Tensor {
    const [b, n, d] = x.shape as [number, number, number];
    const h = this.numHeads;
    const hd = d / h;
    // qkv(x) [B, N, 3D] read as [B, N, 3, H, hd] -> [3, B, H, N, hd]
    const qkv = T.permute(T.reshape(this.qkv.forward(x), [b, n, 3, h, hd]), [2, 0, 3, 1, 4]);
    const part = (i: number) => T.reshape(T.narrow(qkv, 0, i, 1), [b, h, n, hd]);
    const [q, k, v] = [part(0), part(1), part(2)];
    const attn = T.softmax(T.mul(T.matmul(q, T.transpose(k)), hd ** -0.5), -1);
    // [B, H, N, hd] -> [B, N, H, hd] -> [B, N, D]
    const y = T.reshape(T.permute(T.matmul(attn, v), [0, 2, 1, 3]), [b, n, d]);
    return this.proj.forward(y);
  }
}

export class VitMlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(dim, hidden));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, dim));
  }
  forward(x: T.Tensor): T.Tensor {
    return this.fc2.forward(T.gelu(this.fc1.forward(x)));
  }
}

export class VitBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: VitAttention;
  readonly norm2: LayerNorm;
  readonly mlp: VitMlp;
  constructor(dim: number, numHeads: number, mlpRatio: number, qkvBias: boolean) {
    super();
    this.norm1 = this.registerModule('norm1', new LayerNorm([dim], LN_EPS));
    this.attn = this.registerModule('attn', new VitAttention(dim, numHeads, qkvBias));
    this.norm2 = this.registerModule('norm2', new LayerNorm([dim], LN_EPS));
    this.mlp = this.registerModule('mlp', new VitMlp(dim, Math.trunc(dim * mlpRatio)));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      const h = T.add(x, this.attn.forward(this.norm1.forward(x)));
      return T.add(h, this.mlp.forward(this.norm2.forward(h)));
    });
  }
}

class PatchEmbed extends Module {
  readonly proj: Conv2d;
  constructor(patch: number, dim: number) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(3, dim, patch, { stride: patch }));
  }
  /** [B, 3, H, W] -> [B, (H/p)(W/p), D], patches in row-major order. */
  forward(x: T.Tensor): T.Tensor {
    const y = this.proj.forward(x);
    const [b, d, gh, gw] = y.shape as [number, number, number, number];
    return T.transpose(T.reshape(y, [b, d, gh * gw]));
  }
}

export class VisionTransformer extends Module {
  readonly clsToken: Parameter;
  readonly posEmbed: Parameter;
  readonly patchEmbed: PatchEmbed;
  readonly blocks: Sequential;
  readonly norm: LayerNorm;
  readonly head: Linear;
  readonly opts: VitOptions;

  constructor(opts: Partial<VitOptions> = {}) {
    super();
    const unknown = Object.keys(opts).filter((k) => !(k in DEIT_SMALL_PATCH16_224));
    if (unknown.length) {
      throw new Error(
        `VisionTransformer: unknown option(s) ${unknown.join(', ')}; timm's names: ${Object.keys(DEIT_SMALL_PATCH16_224).join(', ')}`,
      );
    }
    const o = { ...DEIT_SMALL_PATCH16_224, ...opts };
    if (typeof o.qkv_bias !== 'boolean')
      throw new Error(`VisionTransformer: qkv_bias must be true or false, got ${JSON.stringify(o.qkv_bias)}`);
    for (const k of ['img_size', 'patch_size', 'embed_dim', 'depth', 'num_heads', 'num_classes'] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1)
        throw new Error(`VisionTransformer: ${k} must be a positive integer, got ${o[k]}`);
    }
    if (!(o.mlp_ratio > 0)) throw new Error(`VisionTransformer: mlp_ratio must be positive, got ${o.mlp_ratio}`);
    if (o.img_size % o.patch_size) {
      throw new Error(`VisionTransformer: img_size ${o.img_size} is not a multiple of patch_size ${o.patch_size}`);
    }
    this.opts = o;
    const d = o.embed_dim;
    const patches = (o.img_size / o.patch_size) ** 2;
    this.clsToken = this.registerParameter('cls_token', uniformInit([1, 1, d], TOKEN_BOUND));
    this.posEmbed = this.registerParameter('pos_embed', uniformInit([1, patches + 1, d], TOKEN_BOUND));
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(o.patch_size, d));
    // Sequential: keys blocks.0, blocks.1, ... (timm's nn.Sequential) and each block's input freed once consumed
    this.blocks = this.registerModule('blocks', new Sequential());
    for (let i = 0; i < o.depth; i++) this.blocks.push(new VitBlock(d, o.num_heads, o.mlp_ratio, o.qkv_bias));
    this.norm = this.registerModule('norm', new LayerNorm([d], LN_EPS));
    this.head = this.registerModule('head', new Linear(d, o.num_classes));
  }

  /** Images [B, 3, img_size, img_size] (already normalised) -> logits [B, num_classes]. */
  forward(x: T.Tensor): T.Tensor {
    const s = this.opts.img_size;
    if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== s || x.shape[3] !== s) {
      throw new Error(
        `VisionTransformer: input must be [B, 3, ${s}, ${s}], got [${x.shape.join(', ')}] (DiffPure resizes ImageNet images to ${s} first)`,
      );
    }
    const b = x.shape[0] as number;
    const d = this.opts.embed_dim;
    const h0 = T.tidy(() => {
      const tokens = this.patchEmbed.forward(x);
      const cls = T.expand(this.clsToken.value, [b, 1, d]);
      return T.add(T.concat([cls, tokens], 1), this.posEmbed.value);
    });
    const h = this.blocks.forward(h0);
    if (h !== h0) h0.dispose(); // Sequential frees what it consumed, never its own input
    const logits = T.tidy(() => {
      const cls = T.reshape(T.narrow(this.norm.forward(h), 1, 0, 1), [b, d]);
      return this.head.forward(cls);
    });
    h.dispose();
    return logits;
  }
}

/** deit_small_patch16_224: 22,050,664 parameters. */
export const deitSmall = (numClasses = 1000) => new VisionTransformer({ num_classes: numClasses });
