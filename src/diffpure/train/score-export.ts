// A `diffpure train score` run as score_sde_pytorch's checkpoint, the file utils.save_checkpoint writes and
// utils.restore_checkpoint (and DiffPure's copy of it, runners/diffpure_sde.py) loads unchanged:
//
//   torch.save({'optimizer': optimizer.state_dict(), 'model': model.state_dict(), 'ema': ema.state_dict(),
//               'step': step}, path)
//
//  - 'model': the state dict of the DataParallel-wrapped NCSNpp (models/utils.create_model), so every key starts
//    'module.'; first the float64 buffer 'module.sigmas' (torch.tensor(np.exp(np.linspace(...))), computed here as
//    NumPy does), then the float32 parameters in PyTorch's state-dict order. These are the raw (non-EMA) weights.
//  - 'ema': models/ema.py ExponentialMovingAverage.state_dict(), a dict {'decay': float, 'num_updates': int,
//    'shadow_params': [float32 tensors]}: the EMA of every parameter with requires_grad, in model.parameters() order
//    (no names). GaussianFourierProjection.W is requires_grad=False in score_sde, so it has no entry there.
//  - 'optimizer': torch.optim.Adam(...).state_dict() as PyTorch 1.13 writes it: {'state': {i: {'step': float32
//    scalar tensor, 'exp_avg', 'exp_avg_sq'}}, 'param_groups': [{'lr', 'betas': (b1, b2), 'eps', 'weight_decay',
//    'amsgrad', 'maximize', 'foreach', 'capturable', 'differentiable', 'fused', 'params': [0 .. P-1]}]}; the
//    integer keys index model.parameters() (all of them, W included; W never had a gradient so it has no state).
//    lr is the value of the last step (score_sde sets it before each step), as a Python float (score_sde's warm-up
//    leaves a numpy.float64 there; a float loads the same and needs no numpy global).
//  - 'step': the number of training steps (an int), as are the Adam and EMA counters.
//
// Floats outside tensors (decay, lr, betas, eps) are pickled as BINFLOAT, which PyTorch 1.13's
// torch.load(weights_only=True) refuses (its restricted unpickler has no float opcode): the file loads with plain
// torch.load, which is what restore_checkpoint calls. Even a checkpoint torch.save wrote has those floats, so no
// encoding of 'decay' alone would change that.
//
// The pickle is written here rather than by nn/io/torch-write.ts because the optimizer's state dict has integer
// keys and tuples, which that writer does not emit; the zip around it is the same (torch.save's layout, protocol 2).

import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { zipSync } from 'fflate';
import { type HostTensor, readSafetensors } from '../../nn/io/index.js';
import { GaussianFourierProjection } from '../../nn/layers/layerspp.js';
import { NCSNpp, ncsnppConfigFromJson, type ScoreSdeConfigJson } from '../../nn/models/ncsnpp.js';
import type { Module } from '../../nn/module.js';
import { lrAt } from '../../nn/optim/index.js';

/** A Python float (BINFLOAT), also for integral values (1.0). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: readonly PyOut[]) {}
}

/** A dict with str or int keys, in insertion order; `ordered` makes it a collections.OrderedDict. */
export class PyDict {
  constructor(
    readonly entries: readonly (readonly [string | number, PyOut])[],
    readonly ordered = false,
  ) {}
}

/** What the writer pickles: numbers are ints (they must be safe integers; wrap floats in PyFloat), arrays lists. */
export type PyOut = null | boolean | number | string | HostTensor | PyFloat | PyTuple | PyDict | readonly PyOut[];

const STORAGE: Partial<Record<HostTensor['dtype'], string>> = {
  float32: 'FloatStorage',
  float64: 'DoubleStorage',
  int64: 'LongStorage',
};

/** Protocol-2 pickle of `root` with tensors as torch.save writes them; storages are returned in key order. */
function pickle(root: PyOut): { pkl: Uint8Array; storages: Uint8Array[] } {
  const out: number[] = [];
  const storages: Uint8Array[] = [];
  const enc = new TextEncoder();
  const bytes = (b: ArrayLike<number>) => {
    for (let i = 0; i < b.length; i++) out.push(b[i] as number);
  };
  const u32 = (n: number) => bytes([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]);
  const str = (s: string) => {
    const b = enc.encode(s);
    out.push(0x58); // BINUNICODE
    u32(b.length);
    bytes(b);
  };
  const global = (module: string, name: string) => {
    out.push(0x63); // GLOBAL
    bytes(enc.encode(`${module}\n${name}\n`));
  };
  const int = (n: number) => {
    if (!Number.isSafeInteger(n)) throw new Error(`score export: ${n} is not an integer (wrap floats in PyFloat)`);
    if (n >= 0 && n < 256)
      out.push(0x4b, n); // BININT1
    else if (n >= -(2 ** 31) && n < 2 ** 31) {
      out.push(0x4a); // BININT
      u32(n >>> 0);
    } else {
      out.push(0x8a, 8); // LONG1, 8 bytes little-endian two's complement
      let v = BigInt(n);
      for (let i = 0; i < 8; i++, v >>= 8n) out.push(Number(v & 0xffn));
    }
  };
  const tuple = (items: (() => void)[]) => {
    if (items.length === 0) {
      out.push(0x29); // EMPTY_TUPLE
      return;
    }
    out.push(0x28); // MARK
    for (const f of items) f();
    out.push(0x74); // TUPLE
  };
  const tensor = (t: HostTensor) => {
    const storage = STORAGE[t.dtype];
    if (!storage) throw new Error(`score export: cannot write a ${t.dtype} tensor`);
    const d = (
      t.dtype === 'int64' ? BigInt64Array.from(t.data as Float64Array, (v) => BigInt(v)) : t.data
    ) as ArrayBufferView;
    const key = String(storages.length);
    storages.push(new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength)));
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    global('torch._utils', '_rebuild_tensor_v2');
    tuple([
      () => {
        tuple([
          () => str('storage'),
          () => global('torch', storage),
          () => str(key),
          () => str('cpu'),
          () => int(t.data.length),
        ]);
        out.push(0x51); // BINPERSID
      },
      () => int(0),
      () => tuple(t.shape.map((s) => () => int(s))),
      () => tuple(strides.map((s) => () => int(s))),
      () => out.push(0x89), // requires_grad False
      () => {
        global('collections', 'OrderedDict');
        out.push(0x29, 0x52); // (), REDUCE: no backward hooks
      },
    ]);
    out.push(0x52); // REDUCE
  };
  const value = (v: PyOut): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (typeof v === 'number') int(v);
    else if (typeof v === 'string') str(v);
    else if (v instanceof PyFloat) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v.value, false); // BINFLOAT is big-endian
      out.push(0x47);
      bytes(b);
    } else if (v instanceof PyTuple) tuple(v.items.map((x) => () => value(x)));
    else if (Array.isArray(v)) {
      out.push(0x5d); // EMPTY_LIST
      if (v.length) {
        out.push(0x28);
        for (const x of v) value(x);
        out.push(0x65); // APPENDS
      }
    } else if (v instanceof PyDict) {
      if (v.ordered) {
        global('collections', 'OrderedDict');
        out.push(0x29, 0x52);
      } else out.push(0x7d); // EMPTY_DICT
      if (v.entries.length) {
        out.push(0x28);
        for (const [k, x] of v.entries) {
          value(k);
          value(x);
        }
        out.push(0x75); // SETITEMS
      }
    } else tensor(v as HostTensor);
  };
  out.push(0x80, 2); // PROTO 2
  value(root);
  out.push(0x2e); // STOP
  return { pkl: Uint8Array.from(out), storages };
}

/** torch.save's zip: <name>/data.pkl, <name>/data/<k>, <name>/version, uncompressed. */
export function encodeTorchSave(root: PyOut, name = 'archive'): Uint8Array {
  const { pkl, storages } = pickle(root);
  const files: Record<string, [Uint8Array, { level: 0 }]> = { [`${name}/data.pkl`]: [pkl, { level: 0 }] };
  storages.forEach((s, i) => {
    files[`${name}/data/${i}`] = [s, { level: 0 }];
  });
  files[`${name}/version`] = [new TextEncoder().encode('3\n'), { level: 0 }];
  return zipSync(files);
}

/** NCSNpp's 'sigmas' buffer as score_sde makes it: np.exp(np.linspace(log sigma_max, log sigma_min, num_scales)). */
export function scoreSdeSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  const start = Math.log(sigmaMax);
  const stop = Math.log(sigmaMin);
  const step = (stop - start) / (n - 1); // NumPy: arange(n) * step + start, the last one set to stop
  return Float64Array.from({ length: n }, (_, i) => Math.exp(n > 1 && i === n - 1 ? stop : i * step + start));
}

/** The parameter keys that score_sde creates with requires_grad=False (GaussianFourierProjection.W). */
function frozenParameterKeys(m: Module, prefix = ''): string[] {
  const out: string[] = [];
  if (m instanceof GaussianFourierProjection) out.push(`${prefix}W`);
  for (const [name, c] of m.namedChildren()) out.push(...frozenParameterKeys(c, `${prefix}${name}.`));
  return out;
}

/** The Adam of trainScore: torch.optim.Adam's defaults, which are also score_sde's optim config (beta1 0.9, eps 1e-8). */
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export interface ScoreExportSummary {
  step: number;
  /** Entries of 'model' (sigmas included), of 'ema'.shadow_params, of 'optimizer'.state. */
  modelTensors: number;
  emaTensors: number;
  optimizerStates: number;
  parameters: number;
  bytes: number;
  /** Things the official code will see differently from `loadScoreRun(out, 'ema')`. */
  notes: string[];
}

interface RunJson {
  config: ScoreSdeConfigJson;
  lr: number;
  warmup: number;
}

/** The checkpoint object of a score run folder (see the top of this file), and what it holds. */
export function scoreSdeCheckpoint(out: string): { root: PyOut; summary: Omit<ScoreExportSummary, 'bytes'> } {
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunJson;
  const ckptPath = join(out, 'checkpoint.safetensors');
  const f = readSafetensors(ckptPath);
  const step = Number(f.metadata.step);
  if (!Number.isSafeInteger(step) || step < 1) throw new Error(`${ckptPath}: no step count in its metadata`);
  const cfg = ncsnppConfigFromJson(run.config);
  const net = new NCSNpp(cfg); // for the key order and which parameters are frozen in score_sde; weights come from f
  const slots = net.namedSlots().filter(([, p]) => p.persistent);
  const frozen = new Set(frozenParameterKeys(net));
  net.dispose();
  const tensor = (name: string): HostTensor => {
    const t = f.tensors.get(name);
    if (!t) throw new Error(`${ckptPath}: no tensor '${name}' (is it a 'diffpure train score' checkpoint?)`);
    return { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.data) };
  };
  const notes: string[] = [];

  const model: [string, PyOut][] = [];
  const shadow: HostTensor[] = [];
  const state: [number, PyOut][] = [];
  const params: number[] = [];
  let i = 0; // index into model.parameters(), the official optimizer's numbering
  let j = 0; // index of our ema.<j> / adam_m.<j>: the trained parameters, in the same order
  for (const [key, p] of slots) {
    if (p.isBuffer) {
      const data =
        key === 'sigmas' ? scoreSdeSigmas(cfg.sigmaMin, cfg.sigmaMax, cfg.numScales) : tensor(`model.${key}`).data;
      model.push([
        `module.${key}`,
        { dtype: key === 'sigmas' ? 'float64' : 'float32', shape: [...p.value.shape], data },
      ]);
      continue;
    }
    const raw = tensor(`model.${key}`);
    model.push([`module.${key}`, raw]);
    params.push(i);
    if (!frozen.has(key)) {
      // our checkpoint numbers the trained parameters only (trainScore skips the frozen Fourier W), the official
      // optimizer state numbers every parameter
      shadow.push(tensor(`ema.${j}`));
      state.push([
        i,
        new PyDict([
          ['step', { dtype: 'float32', shape: [], data: Float32Array.of(step) }],
          ['exp_avg', tensor(`adam_m.${j}`)],
          ['exp_avg_sq', tensor(`adam_v.${j}`)],
        ]),
      ]);
      j++;
    }
    i++;
  }
  const lastLr = lrAt(run.lr, step - 1, { kind: 'constant', warmup: run.warmup });
  const group = new PyDict([
    ['lr', new PyFloat(lastLr)],
    ['betas', new PyTuple([new PyFloat(ADAM.beta1), new PyFloat(ADAM.beta2)])],
    ['eps', new PyFloat(ADAM.eps)],
    ['weight_decay', ADAM.weightDecay], // score_sde's configs say 0, an int
    ['amsgrad', false],
    ['maximize', false],
    ['foreach', null],
    ['capturable', false],
    ['differentiable', false],
    ['fused', false],
    ['params', params],
  ]);
  const root = new PyDict([
    [
      'optimizer',
      new PyDict([
        ['state', new PyDict(state)],
        ['param_groups', [group]],
      ]),
    ],
    ['model', new PyDict(model, true)],
    [
      'ema',
      new PyDict([
        ['decay', new PyFloat(Number(run.config.model.ema_rate ?? 0.9999))],
        ['num_updates', step],
        ['shadow_params', shadow],
      ]),
    ],
    ['step', step],
  ]);
  return {
    root,
    summary: {
      step,
      modelTensors: model.length,
      emaTensors: shadow.length,
      optimizerStates: state.length,
      parameters: params.length,
      notes,
    },
  };
}

/** Writes a score run folder as a score_sde checkpoint (.pth) at `path`; see the top of this file. */
export function exportScoreRun(out: string, path: string): ScoreExportSummary {
  const { root, summary } = scoreSdeCheckpoint(out);
  const stem = basename(path).replace(/\.[^.]*$/, '') || 'archive';
  const bytes = encodeTorchSave(root, stem);
  writeFileSync(path, bytes);
  return { ...summary, bytes: bytes.length };
}

/**
 * The run's config with every field score_sde's NCSNpp, create_model and get_optimizer read filled in (the defaults
 * ncsnppConfigFromJson applies), for building the official model: {model, data, training, optim}.
 */
export function scoreSdeConfigForRun(out: string): ScoreSdeConfigJson {
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunJson & { gradClip?: number };
  const c = ncsnppConfigFromJson(run.config);
  return {
    ...run.config,
    training: { sde: 'vpsde', continuous: true, ...run.config.training },
    data: { ...run.config.data, image_size: c.imageSize, num_channels: c.numChannels, centered: c.centered },
    model: {
      ...run.config.model,
      name: 'ncsnpp',
      nf: c.nf,
      ch_mult: [...c.chMult],
      num_res_blocks: c.numResBlocks,
      attn_resolutions: [...c.attnResolutions],
      resblock_type: c.resblockType,
      fir: c.fir,
      fir_kernel: [...c.firKernel],
      skip_rescale: c.skipRescale,
      resamp_with_conv: c.resampWithConv,
      progressive: c.progressive,
      progressive_input: c.progressiveInput,
      progressive_combine: c.progressiveCombine,
      embedding_type: c.embeddingType,
      fourier_scale: c.fourierScale,
      conditional: c.conditional,
      scale_by_sigma: c.scaleBySigma,
      init_scale: c.initScale,
      dropout: c.dropout,
      nonlinearity: c.nonlinearity,
      sigma_min: c.sigmaMin,
      sigma_max: c.sigmaMax,
      num_scales: c.numScales,
      beta_min: Number(run.config.model.beta_min ?? 0.1),
      beta_max: Number(run.config.model.beta_max ?? 20),
      ema_rate: Number(run.config.model.ema_rate ?? 0.9999),
    },
    optim: {
      optimizer: 'Adam',
      lr: run.lr,
      beta1: ADAM.beta1,
      eps: ADAM.eps,
      weight_decay: ADAM.weightDecay,
      warmup: run.warmup,
      grad_clip: run.gradClip ?? 1,
    },
  };
}
