// Per-sample records of an evaluation: a JSON-lines file per shard. Line 1 is a header naming what produced the
// records (the protocol as run, the sample count, the backend, the shard); then, per finished unit, one line per
// image and a closing unit line, written with one append and flushed to disk. A unit without its closing line
// (a kill -9 mid-write) does not count: resume drops its lines and runs it again, so a resumed run ends with the
// same records as an uninterrupted one.

import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Protocol, Target } from './protocol.js';
import { SHARD_RULE, type Shard, unitKey } from './units.js';

export const RECORDS_FORMAT = 'diffpure-eval-records/1';

/** What must match for records to be resumed or merged. */
export interface RunIdentity {
  protocol: Protocol;
  /** Images in the sample list. */
  images: number;
  backend: string;
  /**
   * sha256 of the weights files the run loaded ({classifier, purifier?}): the protocol names files by path, and a
   * retrained model shipped under the same path must not resume into (or merge with) the old model's records.
   */
  weights?: Record<string, string>;
}

export interface HeaderRecord extends RunIdentity {
  type: 'header';
  format: string;
  /** rule: how units were assigned to shards (SHARD_RULE; absent in records of the earlier round robin). */
  shard: { index: number; count: number; rule?: string };
}

export interface SampleRecord {
  type: 'sample';
  attack: string;
  target: Target;
  seed: number;
  chunk: number;
  /** Position in the sample list, and index in the data set's test split. */
  sample: number;
  index: number;
  label: number;
  /** Correct on the clean image under the attack's verdict rule (its own clean check). */
  correct: boolean;
  /** Still correct after the attack, under its verdict rule (the number robust accuracy counts). */
  robust: boolean;
  /** Predictions of one extra pass on the clean and the adversarial image (key purpose 'report'). */
  pred: { clean: number; adv: number };
  /** Norms of adv - x. */
  linf: number;
  l2: number;
}

export interface UnitRecord {
  type: 'unit';
  attack: string;
  target: Target;
  seed: number;
  chunk: number;
  images: number;
  seconds: number;
  /** The settings the attack ran with after defaults (what the numbers mean). */
  settings: Record<string, unknown>;
  warnings: string[];
}

export type EvalRecord = SampleRecord | UnitRecord;

export function recordsFileName(shard: Shard): string {
  return shard.count === 1 ? 'records.jsonl' : `records-${shard.index}-of-${shard.count}.jsonl`;
}

export interface RecordsContents {
  header: HeaderRecord;
  /** Finished units, by unitKey. */
  units: Map<string, UnitRecord>;
  samples: SampleRecord[];
  /** Lines dropped: a torn last line or the lines of an unfinished unit. */
  dropped: number;
}

/** Parses a records file; an unfinished unit's lines and a torn last line are dropped (counted). */
export function readRecords(path: string): RecordsContents {
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let header: HeaderRecord | undefined;
  const units = new Map<string, UnitRecord>();
  const pending = new Map<string, SampleRecord[]>();
  const samples: SampleRecord[] = [];
  let dropped = 0;
  lines.forEach((line, i) => {
    let r: HeaderRecord | EvalRecord;
    try {
      r = JSON.parse(line);
    } catch {
      // only the last line can be torn by a kill mid-write; anything else is damage
      if (i === lines.length - 1) {
        dropped++;
        return;
      }
      throw new Error(`${path}:${i + 1}: not a JSON line; this records file is damaged (move it away to start over)`);
    }
    if (i === 0) {
      if (r.type !== 'header' || (r as HeaderRecord).format !== RECORDS_FORMAT)
        throw new Error(`${path}: not a diffpure eval records file (its first line is not a ${RECORDS_FORMAT} header)`);
      header = r as HeaderRecord;
      return;
    }
    if (r.type === 'sample') {
      const k = unitKey(r);
      const list = pending.get(k);
      if (list) list.push(r);
      else pending.set(k, [r]);
    } else if (r.type === 'unit') {
      const k = unitKey(r);
      units.set(k, r);
      samples.push(...(pending.get(k) ?? []));
      pending.delete(k);
    } else throw new Error(`${path}:${i + 1}: unknown record type '${(r as { type: unknown }).type}'`);
  });
  if (!header) throw new Error(`${path}: empty records file (no header line); delete it to start over`);
  for (const v of pending.values()) dropped += v.length;
  return { header, units, samples, dropped };
}

/** The paths (e.g. protocol.attacks[0].eps) at which two JSON values differ. */
export function differingPaths(a: unknown, b: unknown, path = ''): string[] {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return [`${path} (length ${a.length} vs ${b.length})`];
    return a.flatMap((x, i) => differingPaths(x, b[i], `${path}[${i}]`));
  }
  const isObj = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort();
    return keys.flatMap((k) => differingPaths(ra[k], rb[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}

/** Why two identities differ (the differing fields), or null when records of one may join the other's. */
export function identityMismatch(a: RunIdentity, b: RunIdentity): string[] | null {
  const d = differingPaths(
    { protocol: a.protocol, images: a.images, backend: a.backend, weights: a.weights ?? null },
    { protocol: b.protocol, images: b.images, backend: b.backend, weights: b.weights ?? null },
  );
  return d.length ? d : null;
}

/** An open records file of one shard: finished units so far, and append for new ones. */
export class RecordsFile {
  private constructor(
    readonly path: string,
    readonly contents: RecordsContents,
  ) {}

  /**
   * Opens dir/records(-i-of-n).jsonl for this run: a new file with its header, or the existing one when its
   * header matches (resume), rewritten without the lines of an unfinished unit. A header that does not match
   * is refused with the fields that differ.
   */
  static open(dir: string, identity: RunIdentity, shard: Shard): RecordsFile {
    const path = join(dir, recordsFileName(shard));
    // shards of another split in the same folder would not merge: say so now, not after the work
    for (const f of recordsFilesIn(dir)) {
      const m = /records-\d+-of-(\d+)\.jsonl$/.exec(f);
      const count = m ? Number(m[1]) : 1;
      if (count !== shard.count)
        throw new Error(
          `${f} is a shard of a ${count}-way split, but this run is ${shard.count}-way (shard ${shard.index}/${shard.count}); ` +
            `records of different splits do not merge. Give another --out, or pass --shard i/${count} to join that split.`,
        );
    }
    const header: HeaderRecord = {
      type: 'header',
      format: RECORDS_FORMAT,
      ...identity,
      shard: { index: shard.index, count: shard.count, rule: SHARD_RULE },
    };
    if (!existsSync(path)) {
      writeFileSync(path, `${JSON.stringify(header)}\n`);
      return new RecordsFile(path, { header, units: new Map(), samples: [], dropped: 0 });
    }
    const c = readRecords(path);
    const rule = c.header.shard.rule ?? 'round-robin';
    if (shard.count > 1 && rule !== SHARD_RULE)
      // another assignment gives this shard other units: resuming would redo some and never run others
      throw new Error(
        `${path} was written with the shard assignment '${rule}', this version assigns units by '${SHARD_RULE}'; ` +
          'finish that split with the version that started it, or pass --fresh to start this shard over.',
      );
    const differ = identityMismatch(c.header, identity);
    if (differ) {
      throw new Error(
        `${path} holds records of another run (differing: ${differ.join(', ')}); refusing to resume into them. ` +
          'Give another --out folder, or pass --fresh to discard those records.',
      );
    }
    if (c.dropped > 0) {
      // rewrite without the unfinished unit's lines, so the file again ends at a unit boundary
      const keep = [JSON.stringify(c.header)];
      const byUnit = new Map<string, SampleRecord[]>();
      for (const s of c.samples) {
        const list = byUnit.get(unitKey(s));
        if (list) list.push(s);
        else byUnit.set(unitKey(s), [s]);
      }
      for (const [k, u] of c.units)
        keep.push(...(byUnit.get(k) ?? []).map((s) => JSON.stringify(s)), JSON.stringify(u));
      // to a temporary file and renamed: a kill during the rewrite leaves the old file whole
      writeFileSync(`${path}.tmp`, `${keep.join('\n')}\n`);
      renameSync(`${path}.tmp`, path);
    }
    return new RecordsFile(path, c);
  }

  has(key: string): boolean {
    return this.contents.units.has(key);
  }

  /** Appends a finished unit (its sample lines, then the unit line) in one write, flushed to disk. */
  append(samples: readonly SampleRecord[], unit: UnitRecord): void {
    const text = `${[...samples, unit].map((r) => JSON.stringify(r)).join('\n')}\n`;
    const fd = openSync(this.path, 'a');
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.contents.units.set(unitKey(unit), unit);
    this.contents.samples.push(...samples);
  }
}

/** The records files in a folder (records.jsonl and records-i-of-n.jsonl), sorted. */
export function recordsFilesIn(dir: string): string[] {
  if (!existsSync(dir)) throw new Error(`'${dir}': no such folder`);
  return readdirSync(dir)
    .filter((f) => /^records(-\d+-of-\d+)?\.jsonl$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}
