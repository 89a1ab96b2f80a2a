// PyTorch checkpoints: the fixture files of ../shared/fixtures (ddpmpp, ddpmpp/nf8_with_adam_state,
// adm, wrn) checked against their meta.json (sha256, names, shapes, dtypes, parameter counts) and
// against what the official code computes by construction (sigmas, Adam moments); the small
// test/io/data/*.pt files (make_fixtures.py) for every dtype, strided views, protocol 4, byte order;
// the legacy-format error; and a fuzz of the zip reader.

import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { unzipSync, zipSync } from 'fflate';
import { describe, expect, test } from 'vitest';
import { countElements, detectCheckpointKind, extractStateDict } from '../../src/nn/io/checkpoint.js';
import { isDict, isTuple, type PyGlobal, type PyValue, unpickle } from '../../src/nn/io/pickle.js';
import { checkpointAllowList, listTensors, loadTorchCheckpoint, readTorchArchive } from '../../src/nn/io/torch.js';
import type { HostTensor, StateDict } from '../../src/nn/io/types.js';
import type { HostWeights as ModuleHostTensor } from '../../src/nn/module.js';
import { DATA, expectCleanOutcome, FIXTURES, type Mutation, mutate, readJson, sha256, sum } from './helpers.js';

const asMap = (v: unknown) => {
  expect(isDict(v)).toBe(true);
  return v as Map<PyValue, PyValue>;
};
const stripModule = (k: string) => k.replace(/^(module\.)+/, '');

interface FileInfo {
  bytes: number;
  sha256: string;
}

/** The checkpoint must be the exact file meta.json describes before its values are trusted. */
function checkFile(dir: string, name: string) {
  const meta = readJson<{ files: Record<string, FileInfo> }>(`${FIXTURES}${dir}/meta.json`);
  const info = meta.files[name] as FileInfo;
  expect(sha256(`${FIXTURES}${dir}/${name}`)).toBe(info.sha256);
}

// Values printed in Python from the same files (sha256 checked above), with Debian's
// python3-torch 1.13.1:   t = torch.load(path)[...];  t.flatten()[:3].tolist(), t.double().sum().item()
// They guard against a reader that gets names and shapes right but reads the wrong bytes.
const TORCH_PRINTED: Record<string, Record<string, { first: number[]; sum: number }>> = {
  'ddpmpp/checkpoint.pth': {
    'ema/shadow_params/0': {
      first: [0.10933469980955124, 0.14845353364944458, 0.07353442162275314],
      sum: -1.2315671453106916,
    },
    'ema/shadow_params/367': {
      first: [-0.041279297322034836, 0.10267844796180725, -0.055040206760168076],
      sum: 0.00635894387960434,
    },
    'model/module.all_modules.0.weight': {
      first: [0.10723172128200531, 0.15290379524230957, 0.06461550295352936],
      sum: -1.3471924635232426,
    },
  },
  'adm/model.pt': {
    'time_embed.0.weight': {
      first: [0.08147046715021133, 0.13673225045204163, 0.037468552589416504],
      sum: 16.553171137580648,
    },
    'out.2.bias': { first: [0.027714136987924576, 0.01274929940700531, 0.07252516597509384], sum: 0.08408133126795292 },
  },
  'wrn/model.pt': {
    'state_dict/module.conv1.weight': {
      first: [0.0529598668217659, -0.1891952008008957, -0.037405163049697876],
      sum: 2.4447244270704687,
    },
    'state_dict/module.bn1.running_var': {
      first: [1.9887752532958984, 2.0860352516174316, 2.38283371925354],
      sum: 249.46410846710205,
    },
  },
};

function checkPrinted(file: string, obj: PyValue) {
  const tensors = new Map(listTensors(obj));
  for (const [path, ref] of Object.entries(TORCH_PRINTED[file] ?? {})) {
    const t = tensors.get(path) as HostTensor;
    expect(t, path).toBeDefined();
    expect(Array.from(t.data.subarray(0, 3))).toEqual(ref.first);
    expect(sum(t.data)).toBeCloseTo(ref.sum, 9);
  }
}

describe('score_sde checkpoints (ddpmpp fixtures)', () => {
  const cases = [
    { dir: 'ddpmpp', entries: 369 },
    { dir: 'ddpmpp/nf8_with_adam_state', entries: 271 },
  ];
  for (const { dir, entries } of cases) {
    test(`${dir}: layout, names, shapes, dtypes and parameter count match meta.json`, () => {
      checkFile(dir, 'checkpoint.pth');
      const meta = readJson<{
        n_params: number;
        n_param_tensors: number;
        param_names_in_ema_order: string[];
        state_dict_shapes: Record<string, number[]>;
        state_dict_dtypes: Record<string, string>;
        checkpoint_layout: { top_level_keys: string[]; step: number };
      }>(`${FIXTURES}${dir}/meta.json`);
      const bytes = new Uint8Array(readFileSync(`${FIXTURES}${dir}/checkpoint.pth`));
      // meta.json zip_note: the root folder inside the zip is the file stem
      expect(readTorchArchive(bytes).root).toBe('checkpoint');
      const ck = loadTorchCheckpoint(bytes);
      if (dir === 'ddpmpp') checkPrinted('ddpmpp/checkpoint.pth', ck);
      const top = asMap(ck);
      expect([...top.keys()]).toEqual(meta.checkpoint_layout.top_level_keys);
      expect(top.get('step')).toBe(meta.checkpoint_layout.step);
      expect(detectCheckpointKind(ck)).toBe('score_sde');

      // the raw 'model' entry: names, order, shapes, dtypes as in meta.json
      const model = asMap(top.get('model'));
      expect(model.size).toBe(entries);
      expect([...model.keys()]).toEqual(Object.keys(meta.state_dict_shapes));
      for (const [k, t] of model as Map<string, HostTensor>) {
        expect(t.shape, k).toEqual(meta.state_dict_shapes[k]);
        expect(`torch.${t.dtype}`).toBe(meta.state_dict_dtypes[k] ?? 'torch.float32');
      }

      // EMA weights mapped onto the parameter names, in state-dict order, plus the sigmas buffer
      const sd = extractStateDict(ck, { kind: 'score_sde' });
      const names = meta.param_names_in_ema_order.map(stripModule);
      expect(names.length).toBe(meta.n_param_tensors);
      expect([...sd.keys()]).toEqual(['sigmas', ...names]);
      expect(countElements(sd, (k) => k !== 'sigmas')).toBe(meta.n_params);
      const shadow = asMap(top.get('ema')).get('shadow_params') as HostTensor[];
      names.forEach((n, i) => {
        expect(sd.get(n)?.data).toBe(shadow[i]?.data);
      });
      // explicit parameter names (as a Module's namedParameters() gives them) map the same way
      const sd2 = extractStateDict(ck, { kind: 'score_sde', parameterNames: names, includeBuffers: false });
      expect([...sd2.keys()]).toEqual(names);
      // and the raw weights on request
      const raw = extractStateDict(ck, { weights: 'model' });
      expect([...raw.keys()]).toEqual(['sigmas', ...names]);

      // sigmas = exp(linspace(log(sigma_max), log(sigma_min), num_scales)), score_sde get_sigmas
      // with the config's sigma_max 50, sigma_min 0.01, num_scales 1000 (meta.json config.model)
      const sigmas = sd.get('sigmas') as HostTensor;
      expect(sigmas.dtype).toBe('float64');
      const a = Math.log(50);
      const b = Math.log(0.01);
      sigmas.data.forEach((v, i) => {
        const ref = Math.exp(i === 999 ? b : a + ((b - a) / 999) * i);
        expect(Math.abs(v - ref)).toBeLessThan(1e-13 * ref);
      });
    });
  }

  test('the EMA and the raw weights differ (so picking EMA by default matters)', () => {
    // meta.json (nf8_with_adam_state) weight_construction: "max |ema-model| = 0.0443"
    const ck = loadTorchCheckpoint(`${FIXTURES}ddpmpp/nf8_with_adam_state/checkpoint.pth`);
    const ema = extractStateDict(ck);
    const raw = extractStateDict(ck, { weights: 'model' });
    let m = 0;
    for (const [k, t] of ema) {
      if (k === 'sigmas') continue;
      const r = raw.get(k) as HostTensor;
      t.data.forEach((v, i) => {
        m = Math.max(m, Math.abs(v - (r.data[i] as number)));
      });
    }
    expect(m).toBeGreaterThanOrEqual(0.04425);
    expect(m).toBeLessThan(0.04435);
  });

  test('nf8_with_adam_state: the populated Adam state and the numpy scalar learning rate', () => {
    const meta = readJson<{ n_param_tensors: number; state_dict_shapes: Record<string, number[]> }>(
      `${FIXTURES}ddpmpp/nf8_with_adam_state/meta.json`,
    );
    const ck = asMap(loadTorchCheckpoint(`${FIXTURES}ddpmpp/nf8_with_adam_state/checkpoint.pth`));
    const ema = asMap(ck.get('ema'));
    // meta.json checkpoint_layout.ema: dict(decay=0.9999, num_updates=1, shadow_params=...)
    expect(ema.get('decay')).toBe(0.9999);
    expect(ema.get('num_updates')).toBe(1);
    const opt = asMap(ck.get('optimizer'));
    const state = asMap(opt.get('state'));
    const groups = opt.get('param_groups') as Map<string, PyValue>[];
    expect(state.size).toBe(meta.n_param_tensors);
    const group = groups[0] as Map<string, PyValue>;
    expect(group.get('params')).toEqual([...Array(meta.n_param_tensors).keys()]);
    expect(group.get('betas')).toEqual([0.9, 0.999]);
    expect(isTuple(group.get('betas'))).toBe(true);
    // 'lr' is a numpy.float64 (score_sde's optimization_manager sets lr * np.minimum(step / warmup, 1)),
    // pickled as numpy.core.multiarray.scalar(dtype('f8'), 8 bytes); at the first step, step = 0.
    expect(group.get('lr')).toBe(0);
    // One Adam step from zero moments (torch.optim.Adam, beta1 0.9, beta2 0.999 from the config):
    // exp_avg = 0.1 g and exp_avg_sq = 0.001 g^2, so exp_avg_sq = 0.1 exp_avg^2 elementwise.
    const shapes = Object.entries(meta.state_dict_shapes).filter(([k]) => k !== 'module.sigmas');
    let checked = 0;
    let worst = 0;
    for (const [i, s] of state as Map<number, Map<string, PyValue>>) {
      const m1 = s.get('exp_avg') as HostTensor;
      const m2 = s.get('exp_avg_sq') as HostTensor;
      expect((s.get('step') as HostTensor).data[0]).toBe(1);
      expect(m1.shape).toEqual(shapes[i]?.[1]);
      expect(m2.shape).toEqual(m1.shape);
      for (let j = 0; j < m1.data.length; j++) {
        const v = m1.data[j] as number;
        const ref = 0.1 * v * v;
        if (ref < 1e-30) continue;
        worst = Math.max(worst, Math.abs((m2.data[j] as number) - ref) / ref);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100000);
    expect(worst).toBeLessThan(1e-5); // float32 rounding of three products
  });
});

describe('guided-diffusion and RobustBench checkpoints', () => {
  test('adm/model.pt: a plain state dict, names and shapes and parameter count from meta.json', () => {
    checkFile('adm', 'model.pt');
    const meta = readJson<{ n_params: number; state_dict_keys: string[]; state_dict_shapes: Record<string, number[]> }>(
      `${FIXTURES}adm/meta.json`,
    );
    const ck = loadTorchCheckpoint(`${FIXTURES}adm/model.pt`);
    checkPrinted('adm/model.pt', ck);
    expect(detectCheckpointKind(ck)).toBe('plain');
    const sd = extractStateDict(ck, { kind: 'guided_diffusion' });
    expect([...sd.keys()]).toEqual(meta.state_dict_keys);
    for (const [k, t] of sd) expect(t.shape, k).toEqual(meta.state_dict_shapes[k]);
    expect(countElements(sd)).toBe(meta.n_params);
  });

  test('wrn/model.pt: state_dict wrapper and module. prefix removed, BatchNorm buffers kept', () => {
    checkFile('wrn', 'model.pt');
    const meta = readJson<{
      n_params: number;
      state_dict_keys: string[];
      state_dict_shapes: Record<string, number[]>;
      state_dict_dtypes: Record<string, string>;
    }>(`${FIXTURES}wrn/meta.json`);
    const ck = loadTorchCheckpoint(`${FIXTURES}wrn/model.pt`);
    checkPrinted('wrn/model.pt', ck);
    expect(detectCheckpointKind(ck)).toBe('robustbench');
    const sd: StateDict = extractStateDict(ck);
    expect([...sd.keys()]).toEqual(meta.state_dict_keys.map((k) => k.replace(/^module\./, '')));
    for (const k of meta.state_dict_keys) {
      const t = sd.get(k.replace(/^module\./, '')) as HostTensor;
      expect(t.shape, k).toEqual(meta.state_dict_shapes[k]);
      expect(`torch.${t.dtype}`).toBe(meta.state_dict_dtypes[k] ?? 'torch.float32');
    }
    // parameters only (BatchNorm running statistics and counters are buffers)
    expect(countElements(sd, (k) => !/\.(running_mean|running_var|num_batches_tracked)$/.test(k))).toBe(meta.n_params);
    // meta.json weight_construction: "num_batches_tracked is therefore 3"
    const nbt = sd.get('block1.layer.0.bn1.num_batches_tracked') as HostTensor;
    expect(nbt.dtype).toBe('int64');
    expect(Array.from(nbt.data)).toEqual([3]);
    // a bare state dict with 'model.' prefixes gives the same keys (RobustBench accepts both)
    const bare = new Map(
      [...(asMap(asMap(ck).get('state_dict')) as Map<string, PyValue>)].map(([k, v]) => [
        k.replace(/^module\./, 'model.'),
        v,
      ]),
    );
    expect([...extractStateDict(bare, { kind: 'robustbench' }).keys()]).toEqual([...sd.keys()]);
    // DiffPure's wrn-70-16 layout: 'model_state_dict' with DataParallel(Sequential) 'module.0.' keys
    const diffpure = new Map<PyValue, PyValue>([
      ['epoch', 100],
      ['model_state_dict', new Map([...bare].map(([k, v]) => [k.replace(/^model\./, 'module.0.'), v]))],
    ]);
    expect(detectCheckpointKind(diffpure)).toBe('robustbench');
    expect([...extractStateDict(diffpure).keys()]).toEqual([...sd.keys()]);
    // the result is what Module.loadStateDict takes
    const forModule: ReadonlyMap<string, ModuleHostTensor> = sd;
    expect(forModule.size).toBe(sd.size);
  });

  test('extractStateDict errors name the problem', () => {
    const ck = loadTorchCheckpoint(`${FIXTURES}ddpmpp/nf8_with_adam_state/checkpoint.pth`);
    expect(() => extractStateDict(ck, { kind: 'score_sde', parameterNames: ['a', 'b'] })).toThrow(
      /EMA list has 270 tensors but 2 parameter names/,
    );
    const meta = readJson<{ param_names_in_ema_order: string[] }>(`${FIXTURES}ddpmpp/nf8_with_adam_state/meta.json`);
    const names = meta.param_names_in_ema_order.map(stripModule);
    const swapped = [names[1], names[0], ...names.slice(2)] as string[];
    expect(() => extractStateDict(ck, { kind: 'score_sde', parameterNames: swapped })).toThrow(
      /the parameter order does not match/,
    );
    expect(() => extractStateDict(ck, { kind: 'plain' })).toThrow(/is a dict, not a tensor/);
    expect(() => extractStateDict([] as PyValue)).toThrow(/should be a dict/);
  });
});

describe('small checkpoints of every dtype (test/io/data, made by make_fixtures.py)', () => {
  // Expected values follow the formulas in make_fixtures.py: base = arange(24).reshape(2, 3, 4).
  const base = (i: number) => i;
  const idx = (s: number[], st: number[], off = 0) => {
    const out: number[] = [];
    const rec = (d: number, o: number) => {
      if (d === s.length) out.push(o);
      else for (let i = 0; i < (s[d] as number); i++) rec(d + 1, o + i * (st[d] as number));
    };
    rec(0, off);
    return out;
  };
  const ar = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

  for (const file of ['dtypes.pt', 'dtypes_p4.pt']) {
    test(`${file}: dtypes, strided views, scalars, parameters and plain Python values`, () => {
      const ck = asMap(loadTorchCheckpoint(`${DATA}${file}`));
      const t = asMap(ck.get('tensors')) as Map<string, HostTensor>;
      const expectT = (k: string, dtype: string, shape: number[], values: number[], sourceDtype?: string) => {
        const x = t.get(k) as HostTensor;
        expect(x.dtype, k).toBe(dtype);
        expect(x.shape, k).toEqual(shape);
        expect(Array.from(x.data), k).toEqual(values);
        expect(x.sourceDtype, k).toBe(sourceDtype);
      };
      expectT('f32', 'float32', [2, 3, 4], ar(24, base));
      expectT('f32_transposed', 'float32', [4, 3, 2], idx([4, 3, 2], [1, 4, 12]));
      expectT(
        'f32_offset_view',
        'float32',
        [3, 4],
        ar(12, (i) => 12 + i),
      );
      expectT('f32_shared_base', 'float32', [2, 3, 4], ar(24, base));
      expectT('f32_sliced', 'float32', [2, 2, 2], idx([2, 2, 2], [12, 4, 2], 4));
      expectT(
        'f64',
        'float64',
        [2, 3, 4],
        ar(24, (i) => i / 8),
      );
      expectT(
        'f16',
        'float32',
        [2, 3, 4],
        ar(24, (i) => i / 8),
        'float16',
      );
      expectT(
        'bf16',
        'float32',
        [2, 3, 4],
        ar(24, (i) => i / 8),
        'bfloat16',
      );
      expectT(
        'i64',
        'int64',
        [2, 3, 4],
        ar(24, (i) => i - 12),
      );
      expectT(
        'i32',
        'int32',
        [2, 3, 4],
        ar(24, (i) => i - 12),
      );
      expectT(
        'i16',
        'int16',
        [2, 3, 4],
        ar(24, (i) => i - 12),
      );
      expectT(
        'i8',
        'int8',
        [2, 3, 4],
        ar(24, (i) => i - 12),
      );
      expectT('u8', 'uint8', [2, 3, 4], ar(24, base));
      expectT(
        'bool',
        'bool',
        [2, 3, 4],
        ar(24, (i) => (i > 10 ? 1 : 0)),
      );
      expectT('scalar', 'float32', [], [2.5]);
      expectT('empty', 'float32', [0, 3], []);
      // the view and its base share one storage, as in PyTorch
      expect((t.get('f32_offset_view') as HostTensor).data.buffer).toBe(
        (t.get('f32_shared_base') as HostTensor).data.buffer,
      );
      const p = ck.get('param') as HostTensor;
      expect(p.requiresGrad).toBe(true);
      expect(Array.from(p.data)).toEqual([0, 1, 2, 3]);
      expect(ck.get('size')).toEqual([2, 3]);
      expect((ck.get('dtype') as PyGlobal).qualname).toBe('torch.float16');
      expect(ck.get('numpy_f8')).toBe(0.25);
      expect(ck.get('numpy_i8')).toBe(-7);
      expect(ck.get('set')).toEqual(new Set([1, 2]));
      expect(ck.get('bytes')).toEqual(new Uint8Array([0, 255]));
      expect(ck.get('nested')).toEqual([1, [2, 3.5], new Map([['k', null]])]);
      expect(ck.get('big')).toBe(2n ** 70n);
      expect(ck.get('neg')).toBe(-(2 ** 40));
    });
  }

  test('byteorder "big": storages are byte-swapped on read; any root folder name works', () => {
    const files = unzipSync(readFileSync(`${DATA}dtypes.pt`));
    const root = Object.keys(files)[0]?.split('/')[0] as string;
    // which storage holds which element size: read the pickle with stub handlers
    const sizes = new Map<string, number>();
    const item: Record<string, number> = {
      'torch.FloatStorage': 4,
      'torch.DoubleStorage': 8,
      'torch.HalfStorage': 2,
      'torch.BFloat16Storage': 2,
      'torch.LongStorage': 8,
      'torch.IntStorage': 4,
      'torch.ShortStorage': 2,
      'torch.CharStorage': 1,
      'torch.ByteStorage': 1,
      'torch.BoolStorage': 1,
    };
    const stub = { call: () => null };
    unpickle(files[`${root}/data.pkl`] as Uint8Array, {
      globals: {
        'torch._utils._rebuild_tensor_v2': stub,
        'torch._utils._rebuild_parameter': stub,
        'torch.Size': stub,
        'torch.float16': {},
        ...Object.fromEntries(Object.keys(item).map((k) => [k, {}])),
      },
      persistentLoad: (pid) => {
        const [, type, key] = pid as [string, PyGlobal, string];
        sizes.set(key, item[type.qualname] as number);
        return null;
      },
    });
    const out: Record<string, Uint8Array> = {};
    for (const [name, data] of Object.entries(files)) {
      const rest = name.slice(root.length + 1);
      const key = rest.startsWith('data/') ? rest.slice(5) : undefined;
      let d = data;
      if (key !== undefined) {
        const size = sizes.get(key) as number;
        d = new Uint8Array(data);
        for (let i = 0; i < d.length; i += size) d.subarray(i, i + size).reverse();
      }
      out[`archive/${rest}`] = rest === 'byteorder' ? new TextEncoder().encode('big') : d;
    }
    out['archive/byteorder'] ??= new TextEncoder().encode('big');
    const be = loadTorchCheckpoint(zipSync(out, { level: 0 }));
    const le = loadTorchCheckpoint(`${DATA}dtypes.pt`);
    expect(listTensors(be)).toEqual(listTensors(le));
  });

  test('refusals: legacy format, expanded tensors, TorchScript, compressed entries, missing storages', () => {
    expect(() => loadTorchCheckpoint(`${DATA}legacy.pt`)).toThrow(
      /legacy \(pre-1\.6, non-zip\) serialization format.*_use_new_zipfile_serialization=True/,
    );
    const tar = new Uint8Array(1024);
    tar.set(new TextEncoder().encode('ustar'), 257);
    expect(() => loadTorchCheckpoint(tar)).toThrow(/legacy/);
    expect(() => loadTorchCheckpoint(new Uint8Array([1, 2, 3]))).toThrow(/not a PyTorch checkpoint/);
    expect(() => loadTorchCheckpoint(`${DATA}expanded.pt`)).toThrow(/expanded \(stride-0\) tensors are not supported/);
    const files = unzipSync(readFileSync(`${DATA}dtypes.pt`));
    const pkl = Object.entries(files).find(([n]) => n.endsWith('/data.pkl')) as [string, Uint8Array];
    expect(() =>
      loadTorchCheckpoint(zipSync({ 'm/code/m.py': new Uint8Array(4), 'm/constants.pkl': new Uint8Array(4) })),
    ).toThrow(/TorchScript/);
    expect(() => loadTorchCheckpoint(zipSync({ [pkl[0]]: pkl[1] }, { level: 6 }))).toThrow(
      /is compressed \(method 8\)/,
    );
    expect(() => loadTorchCheckpoint(zipSync({ [pkl[0]]: pkl[1] }, { level: 0 }))).toThrow(
      /storage '\d+' is missing from the archive/,
    );
    expect(() => loadTorchCheckpoint(zipSync({ 'a/data.pkl': pkl[1], 'b/data.pkl': pkl[1] }, { level: 0 }))).toThrow(
      /several roots/,
    );
    expect(() => loadTorchCheckpoint('/nonexistent/x.pth')).toThrow(/cannot open/);
  });

  test('many strided views of one storage cannot copy more than a budget proportional to the file', () => {
    // storage '0': 2^20 float32 (4 MiB); 100 transposed (non-contiguous) views of all of it would
    // need 400 MiB of copies; the reader allows 4x the file + 64 MiB and then stops
    const enc = (s: string) => Array.from(new TextEncoder().encode(s));
    const int = (n: number) => [0x4a, n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
    const str = (s: string) => [0x8c, s.length, ...enc(s)];
    const n = 1 << 20;
    const ops = [0x80, 2, 0x63, ...enc('torch._utils\n_rebuild_tensor_v2\n'), 0x71, 0, 0x30];
    ops.push(0x28, ...str('storage'), 0x63, ...enc('torch\nFloatStorage\n'), ...str('0'), ...str('cpu'), ...int(n));
    ops.push(0x74, 0x71, 1, 0x30, 0x5d, 0x28);
    for (let i = 0; i < 100; i++) {
      ops.push(0x68, 0, 0x28, 0x68, 1, 0x51, ...int(0), ...int(n / 2), ...int(2), 0x86, ...int(1), ...int(n / 2), 0x86);
      ops.push(0x89, 0x4e, 0x74, 0x52);
    }
    ops.push(0x65, 0x2e);
    const zip = zipSync(
      { 'archive/data.pkl': new Uint8Array(ops), 'archive/data/0': new Uint8Array(4 * n) },
      { level: 0 },
    );
    const t0 = performance.now();
    expect(() => loadTorchCheckpoint(zip)).toThrow(/tensor copies would exceed \d+ bytes for this file/);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  test('a global outside the allow-list is refused with its name, also inside a checkpoint', () => {
    // GLOBAL 'posix system' (what pickle writes for os.system on Linux), then REDUCE ('echo',)
    const enc = new TextEncoder();
    const evil = new Uint8Array([
      0x80,
      2,
      0x63,
      ...enc.encode('posix\nsystem\n'),
      0x58,
      4,
      0,
      0,
      0,
      ...enc.encode('echo'),
      0x85,
      0x52,
      0x2e,
    ]);
    const zip = zipSync({ 'archive/data.pkl': evil }, { level: 0 });
    expect(() => loadTorchCheckpoint(zip)).toThrow(
      "refusing global 'posix.system' (not on the allow-list of checkpoint types)",
    );
    const list = checkpointAllowList();
    expect(list).toContain('collections.OrderedDict');
    expect(list).toContain('torch._utils._rebuild_tensor_v2');
    expect(list.some((g) => /^(os|posix|subprocess|builtins\.(eval|exec|getattr|__import__))/.test(g))).toBe(false);
  });
});

describe('fuzz: the zip checkpoint reader', () => {
  const PREFIXES = ['torch:', 'pickle:'];
  const small = new Uint8Array(readFileSync(`${DATA}dtypes.pt`));
  const mutationArb = (maxAt: number): fc.Arbitrary<Mutation> =>
    fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(maxAt), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({
        kind: fc.constant('set32' as const),
        at: fc.nat(maxAt),
        value: fc.constantFrom(0xffffffff, 0x7fffffff, 0x80000000, 0x10000, 0),
      }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(maxAt) }),
      fc.record({
        kind: fc.constant('insert' as const),
        at: fc.nat(maxAt),
        bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 9 }),
      }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(maxAt), len: fc.integer({ min: 1, max: 64 }) }),
    );

  test('mutated small checkpoints: a value or a clear error, quickly', () => {
    let errors = 0;
    fc.assert(
      fc.property(fc.array(mutationArb(1 << 20), { minLength: 1, maxLength: 4 }), (muts) => {
        if (expectCleanOutcome(() => loadTorchCheckpoint(mutate(small, muts)), PREFIXES) === 'error') errors++;
      }),
      { numRuns: 400, seed: 41 },
    );
    expect(errors).toBeGreaterThan(0);
  });

  test('mutations aimed at the zip directory and the pickle of a fixture checkpoint', () => {
    const wrn = new Uint8Array(readFileSync(`${FIXTURES}wrn/model.pt`));
    const pklEnd = 9200; // data.pkl is the first entry (9074 bytes), right after its local header
    const dirStart = wrn.length - 9000; // the central directory and end record
    fc.assert(
      fc.property(fc.boolean(), fc.array(mutationArb(1 << 20), { minLength: 1, maxLength: 3 }), (atEnd, muts) => {
        const b = atEnd ? mutate(wrn, muts, dirStart, wrn.length) : mutate(wrn, muts, 0, pklEnd);
        expectCleanOutcome(() => loadTorchCheckpoint(b), PREFIXES);
      }),
      { numRuns: 120, seed: 42 },
    );
  });

  test('mutated data.pkl inside a valid zip: the unpickler and tensor rebuild under fuzz', () => {
    const files = unzipSync(small);
    const pklName = Object.keys(files).find((n) => n.endsWith('/data.pkl')) as string;
    const pkl = files[pklName] as Uint8Array;
    const opcodeArb = fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(1 << 20),
      // opcodes with length fields followed by huge lengths, and unknown opcodes
      bytes: fc.oneof(
        fc.constantFrom(
          [0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
          [0x58, 0xff, 0xff, 0xff, 0x7f],
          [0x42, 0xff, 0xff, 0xff, 0xff],
          [0x95, 0, 0, 0, 0, 0, 0, 0, 0x40],
          [0x8b, 0xff, 0xff, 0xff, 0x7f],
          [0x6a, 0xff, 0xff, 0xff, 0xff],
          [0x2e],
          [0x30, 0x30, 0x30],
          [0x31],
        ),
        fc.array(fc.nat(255), { minLength: 1, maxLength: 4 }),
      ),
    });
    fc.assert(
      fc.property(fc.array(fc.oneof(mutationArb(1 << 20), opcodeArb), { minLength: 1, maxLength: 4 }), (muts) => {
        const zip = zipSync({ ...files, [pklName]: mutate(pkl, muts) }, { level: 0 });
        expectCleanOutcome(() => loadTorchCheckpoint(zip), PREFIXES);
      }),
      { numRuns: 400, seed: 43 },
    );
  });
});
