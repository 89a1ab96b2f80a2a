// The networks the CLI and the purifier can build by name, each from its official config format,
// and how each kind's checkpoint maps onto it.

import { extractStateDict, loadTorchCheckpoint, readSafetensors, type StateDict } from '../nn/io/index.js';
import { buildShapeOnly, materialize } from '../nn/meta.js';
import {
  type AdmFlags,
  AttributeNet,
  type AttributeNetOptions,
  attributeCheckpointStateDict,
  attributeLogits,
  attributeNetOptionsFromStateDict,
  CELEBA_HQ_DDPM_CONFIG,
  createAdmModel,
  DDPMPP_CIFAR10_DEEP_CONTINUOUS,
  type DdpmConfigJson,
  DdpmUNet,
  DIFFPURE_CELEBAHQ_CLASSIFIER,
  DIFFPURE_IMAGENET_FLAGS,
  ddpmConfigFromJson,
  NCSNpp,
  ncsnppConfigFromJson,
  ResNet,
  type ResNetOptions,
  type ScoreSdeConfigJson,
  VisionTransformer,
  type VitOptions,
  WideResNet,
  type WideResNetOptions,
} from '../nn/models/index.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/index.js';

export const MODEL_KINDS = ['ddpmpp', 'adm', 'ddpm', 'wrn', 'resnet', 'vit', 'attribute'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

/** A network and its forward with the time input exactly as the PyTorch module receives it. */
export interface Network {
  readonly kind: ModelKind;
  readonly module: Module;
  /** ddpmpp: labels (999 t for the continuous VP-SDE); adm, ddpm: integer timesteps; classifiers: none. */
  forward(x: Tensor, t?: Tensor): Tensor;
  readonly needsTime: boolean;
}

/** torchvision architecture names for --model resnet (config {"arch": ..., "num_classes": ...}). */
const RESNETS: Record<string, Pick<ResNetOptions, 'block' | 'layers' | 'width_per_group'>> = {
  resnet18: { block: 'basic', layers: [2, 2, 2, 2] },
  resnet34: { block: 'basic', layers: [3, 4, 6, 3] },
  resnet50: { block: 'bottleneck', layers: [3, 4, 6, 3] },
  resnet101: { block: 'bottleneck', layers: [3, 4, 23, 3] },
  wide_resnet50_2: { block: 'bottleneck', layers: [3, 4, 6, 3], width_per_group: 128 },
  wide_resnet101_2: { block: 'bottleneck', layers: [3, 4, 23, 3], width_per_group: 128 },
};

/** Build a network module from its config (official field names); omitted config = DiffPure's own. */
export function buildModule(kind: ModelKind, config: unknown): Module {
  switch (kind) {
    case 'ddpmpp':
      return new NCSNpp((config as ScoreSdeConfigJson | undefined) ?? DDPMPP_CIFAR10_DEEP_CONTINUOUS);
    case 'adm':
      return createAdmModel((config as Partial<AdmFlags> | undefined) ?? DIFFPURE_IMAGENET_FLAGS);
    case 'ddpm':
      // SDEdit's DDPM UNet (DiffPure's celebahq-ddpm), config in celeba.yml's fields; omitted: the CelebA-HQ one
      return new DdpmUNet((config as DdpmConfigJson | undefined) ?? CELEBA_HQ_DDPM_CONFIG);
    case 'wrn':
      return new WideResNet(
        (config as WideResNetOptions | undefined) ?? { depth: 28, widen_factor: 10, num_classes: 10 },
      );
    case 'resnet': {
      const c = (config ?? {}) as { arch?: string; num_classes?: number };
      const arch = RESNETS[c.arch ?? 'resnet50'];
      if (!arch) throw new Error(`resnet: unknown arch '${c.arch}'; one of ${Object.keys(RESNETS).join(', ')}`);
      return new ResNet({ ...arch, num_classes: c.num_classes ?? 1000 });
    }
    case 'vit':
      // timm's VisionTransformer keyword arguments; omitted: deit_small_patch16_224 (DiffPure's DeiT-S)
      return new VisionTransformer((config as Partial<VitOptions> | undefined) ?? {});
    case 'attribute':
      // gan-ensembling's D keyword arguments; omitted: DiffPure's CelebA-HQ classifiers (256 px, full widths)
      return new AttributeNet((config as AttributeNetOptions | undefined) ?? DIFFPURE_CELEBAHQ_CLASSIFIER);
    default:
      throw new Error(`unknown model '${kind}'; one of ${MODEL_KINDS.join(', ')}`);
  }
}

/** A freshly initialised network (random weights from the init stream). */
export function buildNetwork(kind: ModelKind, config: unknown): Network {
  return wrapModule(kind, buildModule(kind, config));
}

function requireTime(kind: string, t: Tensor | undefined): Tensor {
  if (!t) throw new Error(`${kind}: the network needs a time input (--t t.npy)`);
  return t;
}

/** Validate a config object read from JSON (ddpmpp configs are checked field by field). */
export function checkConfig(kind: ModelKind, config: unknown): unknown {
  if (config === undefined) return undefined;
  if (typeof config !== 'object' || config === null) throw new Error(`--config for ${kind} must be a JSON object`);
  if (kind === 'ddpmpp') ncsnppConfigFromJson(config as ScoreSdeConfigJson);
  if (kind === 'ddpm') ddpmConfigFromJson(config as DdpmConfigJson);
  return config;
}

/** The state dict a checkpoint holds for this network (score_sde: EMA weights, as DiffPure uses). */
export function checkpointStateDict(kind: ModelKind, module: Module, path: string): StateDict {
  if (path.endsWith('.safetensors')) return readSafetensors(path).tensors;
  const ck = loadTorchCheckpoint(path);
  switch (kind) {
    case 'ddpmpp':
      return extractStateDict(ck, { kind: 'score_sde', parameterNames: (module as NCSNpp).emaParameterNames() });
    case 'wrn':
      return extractStateDict(ck, { kind: 'robustbench' });
    case 'attribute':
      return attributeCheckpointStateDict(ck).stateDict; // {state_dict, optimizer, epoch, valacc}; optimizer skipped
    default:
      return extractStateDict(ck, { kind: 'auto' });
  }
}

/** A checkpoint's state dict for a kind whose module shape depends on it (the attribute classifier's widths). */
function shapingStateDict(kind: ModelKind, path: string): StateDict {
  if (path.endsWith('.safetensors')) return readSafetensors(path).tensors;
  if (kind === 'attribute') return attributeCheckpointStateDict(loadTorchCheckpoint(path)).stateDict;
  throw new Error(`${kind}: its shape comes from --config, not from the checkpoint; give --config`);
}

/**
 * Build the network without allocating random weights (shape-only), then load the checkpoint
 * strictly onto `backend`: the way to open a full-size model quickly.
 */
export async function loadNetwork(
  kind: ModelKind,
  config: unknown,
  weights: string,
  backend = 'cpu',
): Promise<Network> {
  // the attribute classifier's widths vary between checkpoints and are read off its tensor shapes when no config is given
  const sd = kind === 'attribute' && config === undefined ? shapingStateDict(kind, weights) : undefined;
  const cfg = sd ? attributeNetOptionsFromStateDict(sd) : config;
  const net = wrapModule(kind, await buildShapeOnly(() => buildModule(kind, cfg)));
  materialize(net.module, sd ?? checkpointStateDict(kind, net.module, weights), { backend });
  net.module.eval();
  return net;
}

function wrapModule(kind: ModelKind, m: Module): Network {
  const f = (m as unknown as { forward: (x: Tensor, t?: Tensor) => Tensor }).forward.bind(m);
  const needsTime = kind === 'ddpmpp' || kind === 'adm' || kind === 'ddpm';
  if (kind === 'attribute')
    // DiffPure's ClassifierWrapper: [0, 1] images -> logits [l, -l] (class 1, 'attribute present', when l < 0)
    return { kind, module: m, needsTime, forward: (x) => attributeLogits(m as AttributeNet, x) };
  return { kind, module: m, needsTime, forward: (x, t) => (needsTime ? f(x, requireTime(kind, t)) : f(x)) };
}
