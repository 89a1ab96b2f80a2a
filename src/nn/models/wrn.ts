// CIFAR-10 WideResNets as DiffPure uses them, with the module trees of their PyTorch sources so
// the checkpoints load key for key:
//
// - WideResNet: RobustBench's robustbench/model_zoo/architectures/wide_resnet.py (from TRADES),
//   keys conv1, block{1,2,3}.layer.i.{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc. DiffPure's
//   'cifar10-wideresnet-28-10' is RobustBench's 'Standard' = WideResNet(depth 28, widen 10), fed
//   [0,1] pixels directly. DiffPure's own 'wrn-70-16-dropout' (classifiers/cifar10_resnet.py) is
//   the same network at depth 70, widen 16, dropRate 0.3, with the CIFAR-10 mean/std normalisation
//   inside forward as plain attributes (not in the state dict): the `normalize` option.
// - DMWideResNet: RobustBench's dm_wide_resnet.py (DeepMind's, Gowal et al.), keys init_conv,
//   layer.g.block.i.{batchnorm_0,conv_0,batchnorm_1,conv_1,shortcut}, batchnorm, logits, and the
//   'mean'/'std' buffers [3, 1, 1] of the normalisation it applies inside. DiffPure's
//   'wideresnet-70-16' is DMWideResNet(depth 70, width 16, Swish) with the 'module.0.' prefix
//   stripped from its checkpoint.
//
// Both take images in [0, 1], NCHW, and return logits.

import * as T from '../../tensor/index.js';
import { nextRandom } from '../init.js';
import { ReLU, SiLU } from '../layers/activation.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, Sequential } from '../layers/basic.js';
import { normalizeChannels } from '../layers/normalize.js';
import { Module, type Parameter } from '../module.js';

export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465] as const;
export const CIFAR10_STD = [0.2471, 0.2435, 0.2616] as const;

/** The official initialisation of both WideResNets: conv weights N(0, sqrt(2 / (k*k*out))). */
function heNormalFanOut(conv: Conv2d): Conv2d {
  const [o, , kh, kw] = conv.weight.value.shape as [number, number, number, number];
  const old = conv.weight.value;
  const noise = T.randomNormal(old.shape, { ...nextRandom(), dtype: old.dtype, backend: old.backend.name });
  conv.weight.value = T.keep(T.mul(noise, Math.sqrt(2 / (kh * kw * o))));
  old.dispose();
  return conv;
}

// ---- RobustBench / TRADES WideResNet --------------------------------------------------------

export interface WideResNetOptions {
  depth?: number;
  widen_factor?: number;
  num_classes?: number;
  dropRate?: number;
  /** RobustBench's extra parallel first group (unused by DiffPure). */
  sub_block1?: boolean;
  bias_last?: boolean;
  /**
   * Normalise inputs with this mean/std per channel before conv1, as DiffPure's
   * classifiers/cifar10_resnet.py WideResNet does. Not part of the state dict.
   */
  normalize?: { mean: readonly number[]; std: readonly number[] };
  /** Input channels (default 3; 1 for Fashion-MNIST). RobustBench's class has 3 fixed. */
  in_channels?: number;
}

/** Pre-activation basic block with RobustBench's quirk for channel changes (see forward). */
export class WideBasicBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;
  readonly dropout: Dropout;
  readonly equalInOut: boolean;

  constructor(inPlanes: number, outPlanes: number, stride: number, dropRate = 0) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule(
      'conv1',
      heNormalFanOut(new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false })),
    );
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outPlanes));
    this.conv2 = this.registerModule(
      'conv2',
      heNormalFanOut(new Conv2d(outPlanes, outPlanes, 3, { padding: 1, bias: false })),
    );
    this.equalInOut = inPlanes === outPlanes;
    this.convShortcut = this.equalInOut
      ? null
      : this.registerModule(
          'convShortcut',
          heNormalFanOut(new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false })),
        );
    // F.dropout in the original, so not a registered submodule; it follows this block's mode
    this.dropout = new Dropout(dropRate);
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      // With a channel change, relu(bn1(x)) feeds both conv1 and the shortcut; otherwise the
      // residual adds the raw x.
      const act = T.relu(this.bn1.forward(x));
      let out = T.relu(this.bn2.forward(this.conv1.forward(act)));
      this.dropout.training = this.training;
      out = this.conv2.forward(this.dropout.forward(out));
      return T.add(this.convShortcut ? this.convShortcut.forward(act) : x, out);
    });
  }
}

/** A group of blocks; the first may change channels and stride. Key: 'layer' (a Sequential). */
export class NetworkBlock extends Module {
  readonly layer: Sequential;
  constructor(nbLayers: number, inPlanes: number, outPlanes: number, stride: number, dropRate = 0) {
    super();
    const blocks = Array.from(
      { length: nbLayers },
      (_, i) => new WideBasicBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, dropRate),
    );
    this.layer = this.registerModule('layer', new Sequential(blocks));
  }
  forward(x: T.Tensor): T.Tensor {
    return this.layer.forward(x);
  }
}

export class WideResNet extends Module {
  readonly conv1: Conv2d;
  readonly block1: NetworkBlock;
  readonly subBlock1: NetworkBlock | null;
  readonly block2: NetworkBlock;
  readonly block3: NetworkBlock;
  readonly bn1: BatchNorm2d;
  readonly fc: Linear;
  readonly nChannels: number;

  constructor(readonly options: WideResNetOptions = {}) {
    super();
    const depth = options.depth ?? 28;
    const widen = options.widen_factor ?? 10;
    const dropRate = options.dropRate ?? 0;
    if ((depth - 4) % 6) throw new Error(`WideResNet: depth ${depth} must be 6n + 4`);
    const n = (depth - 4) / 6;
    const ch = [16, 16 * widen, 32 * widen, 64 * widen] as const;
    this.conv1 = this.registerModule(
      'conv1',
      heNormalFanOut(new Conv2d(options.in_channels ?? 3, ch[0], 3, { padding: 1, bias: false })),
    );
    this.block1 = this.registerModule('block1', new NetworkBlock(n, ch[0], ch[1], 1, dropRate));
    this.subBlock1 = options.sub_block1
      ? this.registerModule('sub_block1', new NetworkBlock(n, ch[0], ch[1], 1, dropRate))
      : null;
    this.block2 = this.registerModule('block2', new NetworkBlock(n, ch[1], ch[2], 2, dropRate));
    this.block3 = this.registerModule('block3', new NetworkBlock(n, ch[2], ch[3], 2, dropRate));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(ch[3]));
    this.fc = this.registerModule(
      'fc',
      new Linear(ch[3], options.num_classes ?? 10, { bias: options.bias_last ?? true }),
    );
    if (this.fc.bias) zeroParameter(this.fc.bias);
    this.nChannels = ch[3];
  }

  /** x [N, 3, 32, 32] in [0, 1] -> logits [N, num_classes]. */
  forward(x: T.Tensor): T.Tensor {
    const norm = this.options.normalize;
    let out = norm ? normalizeChannels(x, norm.mean, norm.std) : x;
    out = this.conv1.forward(out);
    out = this.block1.forward(out);
    out = this.block2.forward(out);
    out = this.block3.forward(out);
    out = T.relu(this.bn1.forward(out));
    // RobustBench: F.avg_pool2d(out, 8), the whole 8x8 map of a 32x32 input; other sizes (28x28 -> 7x7) pool their
    // whole map too, where avg_pool2d(8) would fail
    out = T.avgPool2d(out, [out.shape[2] as number, out.shape[3] as number]);
    return this.fc.forward(T.reshape(out, [-1, this.nChannels]));
  }
}

// ---- DeepMind WideResNet (dm_wide_resnet.py) ------------------------------------------------

export interface DMWideResNetOptions {
  num_classes?: number;
  depth?: number;
  width?: number;
  /** nn.ReLU (default) or robustbench's Swish (x * sigmoid(x)). */
  activation_fn?: 'relu' | 'swish';
  mean?: readonly number[];
  std?: readonly number[];
  /** Zero padding applied to the input before normalising. */
  padding?: number;
}

type Act = ReLU | SiLU;
const makeAct = (kind: 'relu' | 'swish'): Act => (kind === 'swish' ? new SiLU() : new ReLU());

/** DeepMind's block: TF-style 'SAME' padding done by hand before the 3x3 conv_0. */
export class DMBlock extends Module {
  readonly batchnorm0: BatchNorm2d;
  readonly conv0: Conv2d;
  readonly batchnorm1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly shortcut: Conv2d | null;
  private readonly act: Act;

  constructor(
    inPlanes: number,
    outPlanes: number,
    readonly stride: number,
    activation: 'relu' | 'swish',
  ) {
    super();
    if (stride !== 1 && stride !== 2) throw new Error(`DMBlock: unsupported stride ${stride}`);
    this.act = makeAct(activation);
    this.batchnorm0 = this.registerModule('batchnorm_0', new BatchNorm2d(inPlanes));
    this.conv0 = this.registerModule('conv_0', new Conv2d(inPlanes, outPlanes, 3, { stride, bias: false }));
    this.batchnorm1 = this.registerModule('batchnorm_1', new BatchNorm2d(outPlanes));
    this.conv1 = this.registerModule('conv_1', new Conv2d(outPlanes, outPlanes, 3, { padding: 1, bias: false }));
    this.shortcut =
      inPlanes !== outPlanes
        ? this.registerModule('shortcut', new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false }))
        : null;
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      // as in RobustBench's WideResNet: with a shortcut, the activation feeds both branches
      const act = this.act.forward(this.batchnorm0.forward(x));
      const padded =
        this.stride === 1
          ? T.pad(act, [
              [1, 1],
              [1, 1],
            ])
          : T.pad(act, [
              [0, 1],
              [0, 1],
            ]);
      let out = this.conv0.forward(padded);
      out = this.conv1.forward(this.act.forward(this.batchnorm1.forward(out)));
      return T.add(this.shortcut ? this.shortcut.forward(act) : x, out);
    });
  }
}

/** Key: 'block' (a Sequential of DMBlocks). */
export class DMBlockGroup extends Module {
  readonly block: Sequential;
  constructor(numBlocks: number, inPlanes: number, outPlanes: number, stride: number, activation: 'relu' | 'swish') {
    super();
    this.block = this.registerModule(
      'block',
      new Sequential(
        Array.from(
          { length: numBlocks },
          (_, i) => new DMBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, activation),
        ),
      ),
    );
  }
  forward(x: T.Tensor): T.Tensor {
    return this.block.forward(x);
  }
}

export class DMWideResNet extends Module {
  readonly initConv: Conv2d;
  readonly layer: Sequential;
  readonly batchnorm: BatchNorm2d;
  readonly logits: Linear;
  readonly numChannels: number;
  private readonly act: Act;
  private readonly mean: Parameter;
  private readonly std: Parameter;

  constructor(readonly options: DMWideResNetOptions = {}) {
    super();
    const depth = options.depth ?? 28;
    const width = options.width ?? 10;
    const activation = options.activation_fn ?? 'relu';
    if ((depth - 4) % 6) throw new Error(`DMWideResNet: depth ${depth} must be 6n + 4`);
    const n = (depth - 4) / 6;
    const mean = options.mean ?? CIFAR10_MEAN;
    const std = options.std ?? CIFAR10_STD;
    if (mean.length !== 3 || std.length !== 3) throw new Error('DMWideResNet: mean and std need 3 values');
    this.mean = this.registerBuffer('mean', T.fromArray(mean, [3, 1, 1]));
    this.std = this.registerBuffer('std', T.fromArray(std, [3, 1, 1]));
    const ch = [16, 16 * width, 32 * width, 64 * width] as const;
    this.initConv = this.registerModule('init_conv', new Conv2d(3, ch[0], 3, { padding: 1, bias: false }));
    this.layer = this.registerModule(
      'layer',
      new Sequential([
        new DMBlockGroup(n, ch[0], ch[1], 1, activation),
        new DMBlockGroup(n, ch[1], ch[2], 2, activation),
        new DMBlockGroup(n, ch[2], ch[3], 2, activation),
      ]),
    );
    this.batchnorm = this.registerModule('batchnorm', new BatchNorm2d(ch[3]));
    this.act = makeAct(activation);
    this.logits = this.registerModule('logits', new Linear(ch[3], options.num_classes ?? 10));
    this.numChannels = ch[3];
  }

  /** x [N, 3, 32, 32] in [0, 1] -> logits [N, num_classes]. */
  forward(x: T.Tensor): T.Tensor {
    const p = this.options.padding ?? 0;
    const xp =
      p > 0
        ? T.pad(x, [
            [p, p],
            [p, p],
          ])
        : x;
    let out = normalizeChannels(xp, this.mean.value, this.std.value);
    out = this.layer.forward(this.initConv.forward(out));
    out = this.act.forward(this.batchnorm.forward(out));
    out = T.avgPool2d(out, 8);
    return this.logits.forward(T.reshape(out, [-1, this.numChannels]));
  }
}

// ---- presets and checkpoint keys ------------------------------------------------------------

/** RobustBench 'Standard' (cifar10, Linf): DiffPure's 'cifar10-wideresnet-28-10'. */
export const wideResNet28x10 = () => new WideResNet({ depth: 28, widen_factor: 10, num_classes: 10 });

/** DiffPure's 'wrn-70-16-dropout' (classifiers/cifar10_resnet.py WideResNet_70_16_dropout). */
export const wideResNet70x16Dropout = () =>
  new WideResNet({
    depth: 70,
    widen_factor: 16,
    dropRate: 0.3,
    normalize: { mean: CIFAR10_MEAN, std: CIFAR10_STD },
  });

/** DiffPure's 'wideresnet-70-16': DMWideResNet(num_classes 10, depth 70, width 16, Swish). */
export const dmWideResNet70x16 = () =>
  new DMWideResNet({ num_classes: 10, depth: 70, width: 16, activation_fn: 'swish' });

/**
 * DiffPure's utils.update_state_dict: every key loses its first `idxStart` characters (9 removes
 * the 'module.0.' of the DataParallel-wrapped DMWideResNet checkpoint, whose weights sit under
 * 'model_state_dict'; 7 removes 'module.'). Loading a checkpoint file needs no such step:
 * extractStateDict cuts 'module.0.' from a 'model_state_dict' entry, and RobustBench's
 * 'module.' / 'model.' prefixes.
 */
export function updateStateDict<V>(sd: ReadonlyMap<string, V>, idxStart = 9): Map<string, V> {
  const out = new Map<string, V>();
  for (const [k, v] of sd) {
    const key = k.slice(idxStart);
    if (out.has(key)) throw new Error(`updateStateDict: two entries map to '${key}'`);
    out.set(key, v);
  }
  return out;
}

// ---- helpers ----------------------------------------------------------------------------------

function zeroParameter(p: { value: T.Tensor }): void {
  const old = p.value;
  p.value = T.keep(T.zeros(old.shape, { dtype: old.dtype, backend: old.backend.name }));
  old.dispose();
}
