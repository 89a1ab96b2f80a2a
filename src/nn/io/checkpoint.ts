// State dicts out of the checkpoint layouts DiffPure uses:
//
//  - score_sde (yang-song/score_sde_pytorch utils.save_checkpoint): a dict {optimizer, model, ema,
//    step}. `model` is the nn.DataParallel state dict ('module.' keys, the float64 `sigmas` buffer
//    first). `ema` is {decay, num_updates, shadow_params}: a bare list of tensors in the order of
//    model.parameters() -- no names. DiffPure loads the model with strict=False onto an unwrapped
//    model (so every 'module.' key is ignored) and then copies the EMA list onto the parameters in
//    order; so the EMA weights are what runs, and we pick them by default.
//  - RobustBench (robustbench/utils.py load_model): a state dict, bare or under 'state_dict', whose
//    keys may start with 'module.' and/or 'model.'; both prefixes are removed.
//  - guided-diffusion (openai): a plain state dict, names as in the model.
//  - facebookresearch/deit releases (deit_small_patch16_224-cd65a155.pth): {'model': state dict},
//    which timm's checkpoint_filter_fn and DeiT's own loader unwrap. (DeiT's training checkpoints
//    also pickle an argparse.Namespace under 'args', a global the unpickler refuses by name.)

import { isDict, type PyValue, pyTypeName } from './pickle.js';
import { type HostTensor, isHostTensor, type StateDict } from './types.js';

export type CheckpointKind = 'score_sde' | 'robustbench' | 'guided_diffusion' | 'deit' | 'plain' | 'auto';

export interface ExtractOptions {
  /**
   * Layout of the checkpoint; 'auto' (default) recognises score_sde, RobustBench and DeiT, and
   * reads anything else as a plain state dict (guided-diffusion's is one).
   */
  kind?: CheckpointKind;
  /** score_sde: the EMA weights (default, what DiffPure runs) or the raw 'model' entry. */
  weights?: 'ema' | 'model';
  /**
   * score_sde EMA: the model's parameter names in model.parameters() order, without the
   * 'module.' prefix (a Module's namedParameters() keys). Default: the keys of the 'model' entry
   * minus its buffers (see `bufferNames`), which is that order for a DataParallel state dict.
   */
  parameterNames?: readonly string[];
  /**
   * score_sde: last name components that mark a buffer rather than a parameter in the 'model'
   * entry. Default: sigmas (NCSN++), running_mean / running_var / num_batches_tracked (BatchNorm).
   */
  bufferNames?: readonly string[];
  /**
   * score_sde EMA: also return the buffers of the 'model' entry (e.g. sigmas; keys matched by
   * `bufferNames`). Default true. Other 'model' keys (the raw parameters) are never mixed in.
   */
  includeBuffers?: boolean;
}

const DEFAULT_BUFFERS = ['sigmas', 'running_mean', 'running_var', 'num_batches_tracked'];

function fail(why: string): never {
  throw new Error(`checkpoint: ${why}`);
}

function stripPrefix(key: string, prefix: string): string {
  return key.startsWith(prefix) ? key.slice(prefix.length) : key;
}

/** A dict of name -> tensor as a StateDict, with keys renamed by `rename`. */
function tensorDict(d: PyValue, what: string, rename: (k: string) => string = (k) => k): StateDict {
  if (!isDict(d)) fail(`${what} should be a dict of tensors, got ${pyTypeName(d)}`);
  const out: StateDict = new Map();
  for (const [k, v] of d as Map<PyValue, PyValue>) {
    if (typeof k !== 'string') fail(`${what} has a non-string key ${String(k)} (${pyTypeName(k)})`);
    if (!isHostTensor(v)) fail(`${what}['${k}'] is a ${pyTypeName(v)}, not a tensor`);
    const name = rename(k as string);
    if (out.has(name)) fail(`${what}: two keys become '${name}' once prefixes are removed`);
    out.set(name, v as HostTensor);
  }
  return out;
}

function get(d: PyValue, key: string): PyValue | undefined {
  return isDict(d) ? (d as Map<PyValue, PyValue>).get(key) : undefined;
}

/** Which layout a loaded checkpoint has ('plain' when it is just a dict of tensors). */
export function detectCheckpointKind(obj: PyValue): Exclude<CheckpointKind, 'auto'> {
  if (!isDict(obj)) fail(`a checkpoint should be a dict, got ${pyTypeName(obj)}`);
  const d = obj as Map<PyValue, PyValue>;
  if (d.has('model') && d.has('ema')) return 'score_sde';
  if (d.has('model') && isDict(d.get('model') as PyValue)) return 'deit';
  if (d.has('state_dict') || d.has('model_state_dict')) return 'robustbench';
  if ([...d.keys()].some((k) => typeof k === 'string' && (k.startsWith('module.') || k.startsWith('model.'))))
    return 'robustbench';
  return 'plain';
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);
const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

function scoreSde(obj: PyValue, opts: ExtractOptions): StateDict {
  if (!isDict(obj)) fail(`a score_sde checkpoint should be a dict, got ${pyTypeName(obj)}`);
  const modelEntry = get(obj, 'model');
  if (modelEntry === undefined) fail("score_sde checkpoint has no 'model' entry");
  const model = tensorDict(modelEntry as PyValue, "score_sde 'model'", (k) => stripPrefix(k, 'module.'));
  if ((opts.weights ?? 'ema') === 'model') return model;

  const ema = get(obj, 'ema');
  const shadow = get(ema ?? null, 'shadow_params');
  if (!Array.isArray(shadow)) fail("score_sde checkpoint has no 'ema' entry with a 'shadow_params' list");
  const params = shadow as PyValue[];
  const buffers = new Set(opts.bufferNames ?? DEFAULT_BUFFERS);
  const isBuffer = (k: string) => buffers.has(k.slice(k.lastIndexOf('.') + 1));
  const names = opts.parameterNames ? [...opts.parameterNames] : [...model.keys()].filter((k) => !isBuffer(k));
  if (names.length !== params.length) {
    fail(
      `the EMA list has ${params.length} tensors but ${names.length} parameter names were ` +
        `${opts.parameterNames ? 'given' : "found in the 'model' entry (minus its buffers)"}; ` +
        'pass parameterNames (the model parameters in order) or bufferNames',
    );
  }
  const emaByName: StateDict = new Map();
  names.forEach((name, i) => {
    const t = params[i];
    if (!isHostTensor(t)) fail(`EMA entry ${i} (${name}) is a ${pyTypeName(t)}, not a tensor`);
    const ref = model.get(name);
    if (ref && !sameShape(ref.shape, (t as HostTensor).shape)) {
      fail(
        `EMA entry ${i} has shape ${fmt((t as HostTensor).shape)} but the parameter it maps to, '${name}', ` +
          `has shape ${fmt(ref.shape)} in the 'model' entry: the parameter order does not match`,
      );
    }
    if (emaByName.has(name)) fail(`parameter name '${name}' is given twice`);
    const { requiresGrad: _drop, ...plain } = t as HostTensor;
    emaByName.set(name, plain);
  });
  // state-dict order of the model entry; buffers from the model entry, parameters from the EMA
  const includeBuffers = opts.includeBuffers ?? true;
  const out: StateDict = new Map();
  for (const [k, v] of model) {
    const e = emaByName.get(k);
    if (e) out.set(k, e);
    else if (includeBuffers && isBuffer(k)) out.set(k, v);
  }
  for (const [k, v] of emaByName) if (!out.has(k)) out.set(k, v);
  return out;
}

/**
 * The state dict a model should load from a checkpoint read by loadTorchCheckpoint (or a
 * safetensors file), with keys as in the unwrapped PyTorch model.
 */
export function extractStateDict(obj: PyValue, opts: ExtractOptions = {}): StateDict {
  const kind = !opts.kind || opts.kind === 'auto' ? detectCheckpointKind(obj) : opts.kind;
  switch (kind) {
    case 'score_sde':
      return scoreSde(obj, opts);
    case 'robustbench': {
      // DiffPure's own WRN-70-16 checkpoint keeps its weights under 'model_state_dict', saved from
      // DataParallel(Sequential(model, ...)): every key starts 'module.0.', which DiffPure's
      // update_state_dict(sd, idx_start=9) cuts off. RobustBench's keep 'state_dict' or none.
      const diffpure = get(obj, 'model_state_dict');
      if (diffpure !== undefined) {
        const keys = isDict(diffpure) ? [...(diffpure as Map<PyValue, PyValue>).keys()] : [];
        const all = keys.length > 0 && keys.every((k) => typeof k === 'string' && k.startsWith('module.0.'));
        return tensorDict(diffpure, "DiffPure 'model_state_dict'", (k) =>
          all ? k.slice('module.0.'.length) : stripPrefix(stripPrefix(k, 'module.'), 'model.'),
        );
      }
      const inner = get(obj, 'state_dict') ?? obj;
      return tensorDict(inner, 'RobustBench state dict', (k) => stripPrefix(stripPrefix(k, 'module.'), 'model.'));
    }
    case 'deit': {
      const inner = get(obj, 'model');
      if (inner === undefined)
        fail("a DeiT checkpoint keeps its weights under 'model', and this one has no such entry");
      return tensorDict(inner, "DeiT 'model'");
    }
    case 'guided_diffusion':
    case 'plain':
      return tensorDict(obj, 'state dict');
    default:
      return fail(`unknown checkpoint kind '${String(kind)}'`);
  }
}

/** Number of elements over the tensors of a state dict (optionally only the keys kept by `filter`). */
export function countElements(
  sd: ReadonlyMap<string, HostTensor>,
  filter: (key: string) => boolean = () => true,
): number {
  let n = 0;
  for (const [k, t] of sd) if (filter(k)) n += t.data.length;
  return n;
}
