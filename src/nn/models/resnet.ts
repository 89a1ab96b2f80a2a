// torchvision's ImageNet ResNets (torchvision/models/resnet.py), with its module tree so the
// torchvision checkpoints load key for key: conv1, bn1, layer{1..4}.i.{conv1,bn1,conv2,bn2,
// [conv3,bn3], downsample.{0,1}}, fc. Bottleneck puts the stride on the 3x3 conv (ResNet v1.5),
// as torchvision does; wide_resnet50_2 doubles the bottleneck width (width_per_group 128).
//
// DiffPure's ImageNet classifiers ('imagenet-resnet50', 'imagenet-wideresnet-50-2') wrap the
// torchvision model in _Wrapper_ResNet, which normalises [0,1] images with the ImageNet mean and
// std first: ImageNetClassifier below, whose child 'resnet' holds the torchvision keys.

import * as T from '../../tensor/index.js';
import { nextRandom } from '../init.js';
import { BatchNorm2d, Conv2d, Linear, Sequential } from '../layers/basic.js';
import { normalizeChannels } from '../layers/normalize.js';
import { globalAvgPool2d, maxPool2d } from '../layers/pooling.js';
import { Module } from '../module.js';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** torchvision's init: kaiming_normal_(mode='fan_out', nonlinearity='relu'), i.e. N(0, 2 / (out k k)). */
function kaimingFanOut(conv: Conv2d): Conv2d {
  const old = conv.weight.value;
  const [o, , kh, kw] = old.shape as [number, number, number, number];
  const noise = T.randomNormal(old.shape, { ...nextRandom(), dtype: old.dtype, backend: old.backend.name });
  conv.weight.value = T.keep(T.mul(noise, Math.sqrt(2 / (o * kh * kw))));
  old.dispose();
  return conv;
}

const conv3x3 = (inPlanes: number, outPlanes: number, stride = 1, groups = 1, dilation = 1) =>
  kaimingFanOut(new Conv2d(inPlanes, outPlanes, 3, { stride, padding: dilation, groups, dilation, bias: false }));
const conv1x1 = (inPlanes: number, outPlanes: number, stride = 1) =>
  kaimingFanOut(new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false }));

/** conv1x1 + BatchNorm2d (keys downsample.0, downsample.1). */
class Downsample extends Sequential {}

interface BlockArgs {
  stride: number;
  downsample: Downsample | null;
  groups: number;
  baseWidth: number;
  dilation: number;
}

export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Downsample | null;

  constructor(inplanes: number, planes: number, a: BlockArgs) {
    super();
    if (a.groups !== 1 || a.baseWidth !== 64) throw new Error('BasicBlock only supports groups=1 and base_width=64');
    if (a.dilation > 1) throw new Error('Dilation > 1 not supported in BasicBlock');
    this.conv1 = this.registerModule('conv1', conv3x3(inplanes, planes, a.stride));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.downsample = a.downsample ? this.registerModule('downsample', a.downsample) : null;
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let out = T.relu(this.bn1.forward(this.conv1.forward(x)));
      out = this.bn2.forward(this.conv2.forward(out));
      return T.relu(T.add(out, this.downsample ? this.downsample.forward(x) : x));
    });
  }
}

export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Downsample | null;

  constructor(inplanes: number, planes: number, a: BlockArgs) {
    super();
    const width = Math.trunc(planes * (a.baseWidth / 64)) * a.groups;
    this.conv1 = this.registerModule('conv1', conv1x1(inplanes, width));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', conv3x3(width, width, a.stride, a.groups, a.dilation));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.conv3 = this.registerModule('conv3', conv1x1(width, planes * Bottleneck.expansion));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(planes * Bottleneck.expansion));
    this.downsample = a.downsample ? this.registerModule('downsample', a.downsample) : null;
  }

  forward(x: T.Tensor): T.Tensor {
    return T.tidy(() => {
      let out = T.relu(this.bn1.forward(this.conv1.forward(x)));
      out = T.relu(this.bn2.forward(this.conv2.forward(out)));
      out = this.bn3.forward(this.conv3.forward(out));
      return T.relu(T.add(out, this.downsample ? this.downsample.forward(x) : x));
    });
  }
}

export interface ResNetOptions {
  block: 'basic' | 'bottleneck';
  /** Blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50. */
  layers: readonly [number, number, number, number];
  num_classes?: number;
  groups?: number;
  width_per_group?: number;
  replace_stride_with_dilation?: readonly [boolean, boolean, boolean];
}

export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly fc: Linear;

  constructor(readonly options: ResNetOptions) {
    super();
    const Block = options.block === 'basic' ? BasicBlock : Bottleneck;
    const groups = options.groups ?? 1;
    const baseWidth = options.width_per_group ?? 64;
    const dil = options.replace_stride_with_dilation ?? [false, false, false];
    let inplanes = 64;
    let dilation = 1;
    this.conv1 = this.registerModule(
      'conv1',
      kaimingFanOut(new Conv2d(3, inplanes, 7, { stride: 2, padding: 3, bias: false })),
    );
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inplanes));

    const makeLayer = (planes: number, blocks: number, stride: number, dilate: boolean): Sequential => {
      const previousDilation = dilation;
      if (dilate) {
        dilation *= stride;
        stride = 1;
      }
      const outPlanes = planes * Block.expansion;
      const downsample =
        stride !== 1 || inplanes !== outPlanes
          ? new Downsample([conv1x1(inplanes, outPlanes, stride), new BatchNorm2d(outPlanes)])
          : null;
      const list: Module[] = [
        new Block(inplanes, planes, { stride, downsample, groups, baseWidth, dilation: previousDilation }),
      ];
      inplanes = outPlanes;
      for (let i = 1; i < blocks; i++) {
        list.push(new Block(inplanes, planes, { stride: 1, downsample: null, groups, baseWidth, dilation }));
      }
      return new Sequential(list as (BasicBlock | Bottleneck)[]);
    };
    const [n1, n2, n3, n4] = options.layers;
    this.layer1 = this.registerModule('layer1', makeLayer(64, n1, 1, false));
    this.layer2 = this.registerModule('layer2', makeLayer(128, n2, 2, dil[0]));
    this.layer3 = this.registerModule('layer3', makeLayer(256, n3, 2, dil[1]));
    this.layer4 = this.registerModule('layer4', makeLayer(512, n4, 2, dil[2]));
    this.fc = this.registerModule('fc', new Linear(512 * Block.expansion, options.num_classes ?? 1000));
  }

  /** x [N, 3, H, W] (normalised as torchvision expects) -> logits [N, num_classes]. */
  forward(x: T.Tensor): T.Tensor {
    let h = T.relu(this.bn1.forward(this.conv1.forward(x)));
    h = maxPool2d(h, 3, { stride: 2, padding: 1 });
    h = this.layer4.forward(this.layer3.forward(this.layer2.forward(this.layer1.forward(h))));
    return this.fc.forward(globalAvgPool2d(h));
  }
}

export const resnet18 = (numClasses = 1000) =>
  new ResNet({ block: 'basic', layers: [2, 2, 2, 2], num_classes: numClasses });
export const resnet34 = (numClasses = 1000) =>
  new ResNet({ block: 'basic', layers: [3, 4, 6, 3], num_classes: numClasses });
export const resnet50 = (numClasses = 1000) =>
  new ResNet({ block: 'bottleneck', layers: [3, 4, 6, 3], num_classes: numClasses });
export const resnet101 = (numClasses = 1000) =>
  new ResNet({ block: 'bottleneck', layers: [3, 4, 23, 3], num_classes: numClasses });
export const wideResnet50x2 = (numClasses = 1000) =>
  new ResNet({ block: 'bottleneck', layers: [3, 4, 6, 3], width_per_group: 128, num_classes: numClasses });
export const wideResnet101x2 = (numClasses = 1000) =>
  new ResNet({ block: 'bottleneck', layers: [3, 4, 23, 3], width_per_group: 128, num_classes: numClasses });

/**
 * DiffPure's _Wrapper_ResNet: (x - mean) / std with the ImageNet statistics, then the network.
 * The statistics are plain attributes there, so the state dict is the network's under 'resnet.';
 * load a torchvision checkpoint into `.resnet`.
 */
export class ImageNetClassifier<M extends Module & { forward(x: T.Tensor): T.Tensor }> extends Module {
  readonly resnet: M;
  constructor(
    net: M,
    readonly mean: readonly number[] = IMAGENET_MEAN,
    readonly std: readonly number[] = IMAGENET_STD,
  ) {
    super();
    this.resnet = this.registerModule('resnet', net);
  }
  /** x [N, 3, H, W] in [0, 1] -> logits. */
  forward(x: T.Tensor): T.Tensor {
    return this.resnet.forward(normalizeChannels(x, this.mean, this.std));
  }
}
