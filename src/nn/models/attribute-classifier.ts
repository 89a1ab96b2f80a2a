// DiffPure's CelebA-HQ attribute classifiers (classifiers/attribute_classifier.py at 985703f):
// ClassifierWrapper around gan-ensembling's D (attribute-net.ts), and the loader of its
// checkpoints, gan-ensembling's net_best.pth: {'state_dict', 'optimizer', 'epoch', 'valacc'}.
//
// Label convention (gan-ensembling trains with BCEWithLogitsLoss(l, 1 - label)): the wrapper
// returns logits [l, -l], so class 1, "attribute present" (e.g. smiling, eyeglasses), wins when
// l < 0, and DiffPure's softmaxed score softmax([l, -l])[:, 1] = sigmoid(-2 l) is the probability
// that the attribute is present.

import { noGrad } from '../../autograd/index.js';
import * as T from '../../tensor/index.js';
import {
  extractStateDict,
  isDict,
  loadTorchCheckpoint,
  type PyValue,
  readSafetensors,
  type StateDict,
} from '../io/index.js';
import { pyTypeName } from '../io/pickle.js';
import { buildShapeOnly, materialize } from '../meta.js';
import { AttributeNet, type AttributeNetOptions, attributeNetOptionsFromStateDict } from './attribute-net.js';

/** Images the classifier cannot take: wrong shape, values outside [0, 1], NaN. */
export class AttributeInputError extends Error {
  override readonly name = 'AttributeInputError';
}

/** A checkpoint that is not gan-ensembling's attribute-classifier layout or whose keys are not D's. */
export class AttributeCheckpointError extends Error {
  override readonly name = 'AttributeCheckpointError';
}

/**
 * ClassifierWrapper's preprocessing: [0, 1] -> [-1, 1], then images larger than the network's
 * resolution (256) block-averaged down by their integer factor (DiffPure's downsample(): a view
 * to [B, C, H/f, f, W/f, f] and a mean over the two f axes, after StyleGAN's linear_separability
 * metric). Smaller images, and sizes that are not an integer multiple, are refused (DiffPure
 * asserts).
 */
export function attributePreprocess(x: T.Tensor, resolution = 256, channels = 3): T.Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if (x.rank !== 4 || c !== channels) {
    throw new AttributeInputError(
      `attribute classifier: images must be [B, ${channels}, H, W] in [0, 1], got [${x.shape.join(', ')}]`,
    );
  }
  if (h !== w || h < resolution || h % resolution) {
    throw new AttributeInputError(
      `attribute classifier: images of ${h} x ${w} px; the CelebA-HQ attribute classifiers take square ` +
        `${resolution} x ${resolution} images, or larger ones whose side is an integer multiple of ${resolution} ` +
        `(block-averaged down, as DiffPure does). Resize to ${resolution} x ${resolution} first` +
        (h < resolution ? ' (DiffPure refuses smaller images: it only downsamples)' : ''),
    );
  }
  const scaled = T.affine(x, 2, -1); // (x - 0.5) / 0.5
  const f = h / resolution;
  if (f === 1) return scaled;
  return T.mean(T.reshape(scaled, [b, c, resolution, f, resolution, f]), [3, 5]);
}

/**
 * DiffPure's ClassifierWrapper.forward: x [B, 3, H, W] in [0, 1] (H = W = 256, or an integer
 * multiple) -> logits [B, 2] = [l, -l] with l = D(2 x - 1). Class 1 ("attribute present") wins
 * when l < 0.
 */
export function attributeLogits(net: AttributeNet, x: T.Tensor): T.Tensor {
  return T.tidy(() => {
    const l = net.forward(attributePreprocess(x, net.resolution, net.numChannels));
    return T.concat([l, T.neg(l)], 1);
  });
}

/**
 * Check that images lie in [0, 1] with no NaN, with one small readback (min, max and the NaN
 * count are reduced on the tensor's backend). Throws AttributeInputError saying how to fix it.
 */
export async function checkUnitRange(x: T.Tensor, what = 'attribute classifier'): Promise<void> {
  const stats = noGrad(() => T.tidy(() => T.stack([T.min(x), T.max(x), T.sum(T.ne(x, x))])));
  const [lo, hi, nans] = Array.from(await stats.data());
  stats.dispose();
  if (nans) {
    throw new AttributeInputError(
      `${what}: the images hold ${nans} NaN value(s); DiffPure's classifiers take finite images in [0, 1] ` +
        '(check the data loader or the attack step that produced them)',
    );
  }
  if ((lo as number) < 0 || (hi as number) > 1) {
    throw new AttributeInputError(
      `${what}: image values span [${lo}, ${hi}], outside [0, 1]; DiffPure's ClassifierWrapper takes images in ` +
        '[0, 1] and maps them to [-1, 1] itself. Divide 8-bit pixels by 255, map [-1, 1] images by (x + 1) / 2, ' +
        'or clamp to [0, 1]',
    );
  }
}

/** A loaded CelebA-HQ attribute classifier: D and DiffPure's wrapper, with the checkpoint's record. */
export class AttributeClassifier {
  constructor(
    readonly net: AttributeNet,
    /** The checkpoint's 'epoch' and 'valacc' (what DiffPure prints when it loads one), when present. */
    readonly info: { epoch?: number; valacc?: number } = {},
  ) {
    net.eval();
  }

  /**
   * x [B, 3, 256, 256] in [0, 1] -> logits [B, 2] = [l, -l]; "attribute present" (class 1) wins
   * when l < 0. Synchronous and differentiable; the value range is not checked here (that needs a
   * readback): see classify.
   */
  forward(x: T.Tensor): T.Tensor {
    return attributeLogits(this.net, x);
  }

  /** forward after checkUnitRange: for images from outside (files, user input). */
  async classify(x: T.Tensor): Promise<T.Tensor> {
    await checkUnitRange(x);
    return this.forward(x);
  }

  dispose(): void {
    this.net.dispose();
  }
}

const LAYOUT = "gan-ensembling's attribute-classifier checkpoint {'state_dict', 'optimizer', 'epoch', 'valacc'}";

/**
 * The state dict, epoch and valacc of a loaded net_best.pth (loadTorchCheckpoint's value). The
 * optimizer entry (Adam moments in real files) is left alone; the float64 lod_in comes with the
 * rest. A file without a 'state_dict' entry gives AttributeCheckpointError naming the keys found.
 */
export function attributeCheckpointStateDict(obj: PyValue): {
  stateDict: StateDict;
  epoch?: number;
  valacc?: number;
} {
  if (!isDict(obj)) throw new AttributeCheckpointError(`expected ${LAYOUT}, got a ${pyTypeName(obj)}`);
  const inner = obj.get('state_dict');
  if (inner === undefined) {
    const keys = [...obj.keys()].map(String);
    const shown = keys.slice(0, 8).map((k) => `'${k}'`);
    throw new AttributeCheckpointError(
      `expected ${LAYOUT}; this one has no 'state_dict' entry (missing key 'state_dict'; its keys: ` +
        `${shown.join(', ')}${keys.length > 8 ? `, ... ${keys.length} in all` : ''})`,
    );
  }
  let stateDict: StateDict;
  try {
    stateDict = extractStateDict(inner, { kind: 'plain' });
  } catch (e) {
    throw new AttributeCheckpointError(`${LAYOUT}: ${(e as Error).message}`);
  }
  const num = (v: PyValue | undefined) => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined);
  return { stateDict, epoch: num(obj.get('epoch')), valacc: num(obj.get('valacc')) };
}

export interface LoadAttributeClassifierOptions {
  /** Where the weights go ('cpu' by default). */
  backend?: string;
  /** D's options; by default taken from the checkpoint's tensor shapes (any widths, any resolution). */
  config?: AttributeNetOptions;
}

/**
 * DiffPure's load_attribute_classifier + ClassifierWrapper: read a net_best.pth (or a
 * .safetensors file holding D's state dict, e.g. from `diffpure convert`), build D with the
 * checkpoint's widths and load it strictly. Keys that are not D's give AttributeCheckpointError
 * listing the missing and unexpected keys, as PyTorch's load_state_dict does.
 */
export async function loadAttributeClassifier(
  src: string | Uint8Array,
  opts: LoadAttributeClassifierOptions = {},
): Promise<AttributeClassifier> {
  const fromSafetensors = typeof src === 'string' && src.endsWith('.safetensors');
  const { stateDict, epoch, valacc } = fromSafetensors
    ? { stateDict: readSafetensors(src).tensors, epoch: undefined, valacc: undefined }
    : attributeCheckpointStateDict(loadTorchCheckpoint(src));
  let config = opts.config;
  if (!config) {
    try {
      config = attributeNetOptionsFromStateDict(stateDict);
    } catch {
      // not D's keys: build the full-size D so the strict load below lists what is missing and unexpected
      config = {};
    }
  }
  const net = await buildShapeOnly(() => new AttributeNet(config));
  try {
    materialize(net, stateDict, { backend: opts.backend ?? 'cpu' });
  } catch (e) {
    net.dispose();
    throw new AttributeCheckpointError(`${LAYOUT}: ${(e as Error).message}`);
  }
  const info: { epoch?: number; valacc?: number } = {};
  if (epoch !== undefined) info.epoch = epoch;
  if (valacc !== undefined) info.valacc = valacc;
  return new AttributeClassifier(net, info);
}
