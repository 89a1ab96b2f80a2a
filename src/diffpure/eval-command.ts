// `diffpure eval` and `diffpure merge`: a protocol (preset or JSON) run end to end on this machine or on one
// shard of many, with per-sample records that resume after a kill, a Markdown table and results.json, and a
// PNG of what the attack and the purification did; `merge` joins the shards' records into the same table.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readNpy } from '../nn/io/index.js';
import { initBackend, reshape } from '../tensor/index.js';
import { type Images, logitsOf, predictions, takeRows } from './attacks/model.js';
import { KeyedRandom } from './attacks/random.js';
import { type GridSample, writeEvalGrid } from './eval/grid.js';
import { loadEvalData, loadEvalModels } from './eval/load.js';
import { progressReporter } from './eval/progress.js';
import {
  attackTargets,
  checkProtocol,
  DEFAULT_PRESET,
  loadProtocol,
  needsPurifier,
  PRESETS,
  type Protocol,
} from './eval/protocol.js';
import {
  identityMismatch,
  type RecordsContents,
  RecordsFile,
  type RunIdentity,
  readRecords,
  recordsFileName,
  recordsFilesIn,
  type SampleRecord,
  type UnitRecord,
} from './eval/records.js';
import { markdownTable, type Results, summarize } from './eval/report.js';
import { advPath, type EvalData, type EvalModels, runEval, targetModel } from './eval/runner.js';
import { parseShard, type Shard, shardFromEnv, unitKey, WHOLE } from './eval/units.js';

export interface EvalArgs {
  protocol: string;
  out?: string;
  shard?: string;
  backend: string;
  images?: number;
  seeds?: number[];
  batch?: number;
  dataDir?: string;
  classifierWeights?: string;
  classifierConfig?: string;
  scoreWeights?: string;
  scoreConfig?: string;
  dt?: number;
  fresh: boolean;
  json: boolean;
}

/** The protocol with the command line's overrides applied (they become part of the records' identity). */
export function applyOverrides(p: Protocol, a: Partial<EvalArgs>): Protocol {
  const q = structuredClone(p);
  if (a.dataDir) q.data.dir = a.dataDir;
  if (a.classifierWeights) q.classifier.weights = a.classifierWeights;
  if (a.classifierConfig) q.classifier.config = a.classifierConfig;
  if (a.scoreWeights) q.purifier.weights = a.scoreWeights;
  if (a.scoreConfig) q.purifier.config = a.scoreConfig;
  if (a.dt !== undefined) q.purifier.dt = a.dt;
  if (a.seeds) q.seeds = a.seeds;
  if (a.batch !== undefined) q.batch = a.batch;
  // the overrides pass the same checks as the file (e.g. a seed given twice)
  return checkProtocol(q);
}

/** The sample list cut to its first n images (--images). */
function firstImages(d: EvalData, n: number | undefined): EvalData {
  if (n === undefined || n >= d.labels.length) return d;
  const rows = Array.from({ length: n }, (_, i) => i);
  return { images: takeRows(d.images, rows), labels: d.labels.slice(0, n), indices: d.indices.slice(0, n) };
}

function writeResults(dir: string, r: Results, extra: Record<string, unknown>): void {
  writeFileSync(join(dir, 'results.md'), markdownTable(r));
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify({ ...r, ...extra }, null, 2)}\n`);
}

/**
 * The run's picture: the first batch of the first attack on DiffPure (first seed), up to 8 images: clean,
 * adversarial, the perturbation, and both purified (one pass, key purpose 'grid'), with the bare classifier's predictions.
 */
async function writeGrid(
  dir: string,
  p: Protocol,
  models: EvalModels,
  data: EvalData,
  classes: string[],
  samples: readonly SampleRecord[],
): Promise<string | null> {
  const spec = p.attacks.find((a) => attackTargets(a).includes('diffpure'));
  if (!spec) return null;
  const seed = p.seeds[0] as number;
  const unit = { attack: spec.id, target: 'diffpure', seed, chunk: 0 };
  // only a unit this run's records hold: an adv file left by another run (before --fresh) is not ours to draw
  if (!samples.some((s) => unitKey(s) === unitKey(unit))) return null;
  const path = advPath(join(dir, 'adv'), unit);
  if (!existsSync(path)) return null;
  const advAll = readNpy(path);
  const shape = data.images.shape;
  const batch = Array.from({ length: advAll.shape[0] as number }, (_, i) => i);
  // the batch's images with broken ones first (correct on the clean image, not after the attack): the ones to see
  const rec = new Map(
    samples.filter((s) => s.attack === spec.id && s.target === 'diffpure' && s.seed === seed).map((s) => [s.sample, s]),
  );
  // broken by a perturbation first, then broken with none (a stochastic defense's clean check and re-check can
  // disagree: AutoAttack then returns the clean image as adversarial), then the rest
  const broken = (r: number) => {
    const s = rec.get(r);
    if (!s?.correct || s.robust) return 2;
    return s.linf > 0 ? 0 : 1;
  };
  const pos = [...batch].sort((i, j) => broken(i) - broken(j) || i - j).slice(0, 8);
  const rows = pos; // chunk 0: a position in the batch is the position in the sample list
  const x = takeRows(data.images, rows);
  const d = shape[1] * shape[2] * shape[3];
  const adv = takeRows(
    { data: Float32Array.from(advAll.data), shape: advAll.shape as unknown as Images['shape'] },
    pos,
  );
  const purify = models.purifier({ tStar: spec.tStar, dt: p.purifier.dt, gradient: 'continuous' });
  const random = new KeyedRandom(seed);
  const keys = (which: string) => rows.map((r) => random.noiseKey(['grid', spec.id, which], r));
  const purified = async (v: Images, which: string) => {
    // the purifier's output as "logits" of width C*H*W: logitsOf runs it without a graph and reads it back
    const flat = {
      backend: models.backend,
      classify: (t: Parameters<typeof purify>[0], k: readonly number[]) => reshape(purify(t, k), [rows.length, d]),
    };
    return (await logitsOf(flat, v, keys(which))).logits;
  };
  const pc = await purified(x, 'clean');
  const pa = await purified(adv, 'adv');
  const bare = targetModel(models, 'classifier', spec, p.purifier.dt);
  const predOf = async (v: Float32Array) => {
    const out = await logitsOf(bare, { data: v, shape: adv.shape }, keys('grid'));
    return predictions(out.logits, out.k);
  };
  const [pcx, pax, pcp, pap] = [await predOf(x.data), await predOf(adv.data), await predOf(pc), await predOf(pa)];
  const cells: GridSample[] = rows.map((r, i) => ({
    index: data.indices[r] as number,
    label: data.labels[r] as number,
    clean: x.data.subarray(i * d, (i + 1) * d),
    adv: adv.data.subarray(i * d, (i + 1) * d),
    purifiedClean: pc.subarray(i * d, (i + 1) * d),
    purifiedAdv: pa.subarray(i * d, (i + 1) * d),
    pred: {
      clean: pcx[i] as number,
      adv: pax[i] as number,
      purifiedClean: pcp[i] as number,
      purifiedAdv: pap[i] as number,
    },
  }));
  const file = join(dir, `grid-${spec.id}.png`);
  const threat = spec.attack === 'stadv' ? `StAdv ${spec.bound}` : `${spec.norm} eps ${spec.eps}`;
  writeEvalGrid(file, cells, {
    shape: [shape[1], shape[2], shape[3]],
    classNames: classes,
    eps: spec.attack === 'stadv' ? 1 : spec.eps,
    norm: spec.attack === 'stadv' || spec.norm === 'L2' ? 'L2' : 'Linf',
    title: `${p.name} · ${spec.id} · ${threat} · t* ${spec.tStar} · seed ${seed}`,
  });
  return file;
}

/** sha256 of the classifier's weights file, and of the purifier's when a DiffPure attack loads it. */
function weightsSha256(p: Protocol): Record<string, string> {
  const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
  return {
    classifier: sha(p.classifier.weights),
    ...(needsPurifier(p) ? { purifier: sha(p.purifier.weights) } : {}),
  };
}

export async function runEvalCommand(a: EvalArgs): Promise<void> {
  const p = applyOverrides(loadProtocol(a.protocol), a);
  const shard: Shard = a.shard ? parseShard(a.shard) : (shardFromEnv() ?? WHOLE);
  const out = a.out ?? join('eval-runs', p.name);
  const loaded = loadEvalData(p);
  const data = firstImages(loaded, a.images);
  const n = data.labels.length;
  // the models first: a missing checkpoint should leave no records folder behind
  await initBackend(a.backend);
  const models = await loadEvalModels(p, a.backend);
  const identity: RunIdentity = { protocol: p, images: n, backend: a.backend, weights: weightsSha256(p) };
  mkdirSync(out, { recursive: true });
  if (a.fresh) rmSync(join(out, recordsFileName(shard)), { force: true });
  const records = RecordsFile.open(out, identity, shard);
  const say = (s: string) => process.stderr.write(`${s}\n`);
  say(
    `eval: protocol ${p.name}, ${n} images x ${p.seeds.length} seed(s), ${p.attacks.length} attack(s), backend ${a.backend}` +
      (shard.count > 1 ? `, shard ${shard.index}/${shard.count} (from ${shard.source})` : '') +
      ` -> ${records.path}`,
  );
  if (records.contents.units.size > 0) say(`eval: resuming: ${records.contents.units.size} batch(es) already recorded`);
  const bar = progressReporter();
  try {
    await runEval(p, models, data, { records, shard, advDir: join(out, 'adv'), progress: bar.update });
  } finally {
    bar.done();
  }
  const results = summarize(p, n, records.contents.samples, records.contents.units);
  writeResults(out, results, { shard, records: records.path });
  // the picture needs the first attack's first batch on DiffPure: the shard that ran it draws it
  const grid = await writeGrid(out, p, models, data, loaded.classes, records.contents.samples);
  models.dispose();
  if (grid) writeResults(out, results, { shard, records: records.path, grid });
  if (a.json) console.log(JSON.stringify({ ...results, shard, records: records.path, grid }));
  else {
    console.log(markdownTable(results));
    if (shard.count > 1)
      console.log(`This is shard ${shard.index} of ${shard.count}; join the shards with: diffpure merge ${out}`);
  }
  say(`eval: wrote ${join(out, 'results.md')}, results.json${grid ? `, ${grid}` : ''}`);
}

/** Joins the records of shards (folders or files) into one table; they must come from the same run. */
export function mergeRecords(paths: string[]): { results: Results; files: string[]; shards: number } {
  const files = paths.flatMap((p) => (p.endsWith('.jsonl') ? [p] : recordsFilesIn(p)));
  if (files.length === 0)
    throw new Error(`no records files (records.jsonl or records-i-of-n.jsonl) in ${paths.join(', ')}`);
  const parts: { file: string; c: RecordsContents }[] = files.map((f) => ({ file: f, c: readRecords(f) }));
  const first = parts[0] as { file: string; c: RecordsContents };
  for (const { file, c } of parts.slice(1)) {
    const d = identityMismatch(first.c.header, c.header);
    if (d) throw new Error(`${file} and ${first.file} come from different runs (differing: ${d.join(', ')})`);
  }
  const counts = new Set(parts.map((x) => x.c.header.shard.count));
  if (counts.size > 1) throw new Error(`the records mix shard counts ${[...counts].join(', ')}; merge one split`);
  const units = new Map<string, UnitRecord>();
  for (const { c } of parts) for (const [k, u] of c.units) units.set(k, u);
  const samples = parts.flatMap(({ c }) => c.samples);
  const h = first.c.header;
  return { results: summarize(h.protocol, h.images, samples, units), files, shards: [...counts][0] as number };
}

export function runMergeCommand(paths: string[], out: string | undefined, json: boolean): void {
  const m = mergeRecords(paths);
  const first = paths[0] as string;
  const dir = out ?? (first.endsWith('.jsonl') ? dirname(first) : first);
  mkdirSync(dir, { recursive: true });
  writeResults(dir, m.results, { merged: m.files });
  if (json) console.log(JSON.stringify({ ...m.results, merged: m.files }));
  else console.log(markdownTable(m.results));
  const present = new Set(m.files.map((f) => f));
  process.stderr.write(
    `merge: ${present.size} records file(s) of a ${m.shards}-shard split -> ${join(dir, 'results.md')}` +
      `${m.results.complete ? '' : ' (incomplete: some batches are not recorded yet)'}\n`,
  );
}

export function presetList(): string {
  return Object.entries(PRESETS)
    .map(([name, v]) => `${name}${name === DEFAULT_PRESET ? ' (default)' : ''}\n  ${(v as Protocol).description}`)
    .join('\n\n');
}
