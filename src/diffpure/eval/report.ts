// From per-sample records to the paper's tables: standard and robust accuracy per (model, attack, seed), their
// mean ± std over seeds, and DiffPure's min rule (the lower of AutoAttack rand and standard, per seed). The
// numbers depend only on the records' verdicts, so a merged set of shards gives the same table as one run.

import { describeVerdict, parseVerdict } from '../attacks/verdicts.js';
import { type AttackSpec, attackTargets, type Protocol, type Target } from './protocol.js';
import type { SampleRecord, UnitRecord } from './records.js';
import { unitKey, workUnits } from './units.js';

export interface MeanStd {
  mean: number;
  /** Population std over seeds (ddof 0, NumPy's np.std default); 0 for one seed. */
  std: number;
}

export interface SeedResult {
  seed: number;
  images: number;
  /** Percentages. */
  standard: number;
  robust: number;
}

export interface ResultRow {
  target: Target;
  /** The attack id, or a min rule's id. */
  attack: string;
  /** What produced the number: threat, t*, dt, gradient, verdict (or the rows a min rule takes). */
  setting: string;
  perSeed: SeedResult[];
  standard: MeanStd;
  robust: MeanStd;
  /** Units finished of those expected (a partial table says so). */
  done: number;
  expected: number;
}

export interface Results {
  protocol: string;
  description: string;
  images: number;
  seeds: number[];
  rows: ResultRow[];
  complete: boolean;
  /** The attack layer's sanity flags (AutoAttack's checks), with the unit each came from. */
  warnings: string[];
  /** Wall-clock seconds of the finished units (sum over shards). */
  seconds: number;
}

function meanStd(xs: number[]): MeanStd {
  if (xs.length === 0) return { mean: Number.NaN, std: Number.NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  return { mean, std: Math.sqrt(v) };
}

/** The attack's budget where the protocol sets one (a reduced budget must show in the table). */
function budget(a: AttackSpec): string {
  const set: Record<string, unknown> =
    a.attack === 'autoattack'
      ? { ...(a.settings ?? {}) }
      : a.attack === 'stadv'
        ? { nIter: a.nIter, eotIter: a.eotIter }
        : a.attack === 'pgd-eot'
          ? { steps: a.steps, stepSize: a.stepSize, eotIter: a.eotIter }
          : { steps: a.steps, stepSize: a.stepSize, eotAttackReps: a.eotAttackReps, eotDefenseReps: a.eotDefenseReps };
  const parts = Object.entries(set)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${v}`);
  return parts.length ? ` (${parts.join(', ')}${a.attack === 'autoattack' ? '; the rest as the version' : ''})` : '';
}

/** The threat model and settings of an attack row, in words (every number printed says what produced it). */
export function describeAttack(a: AttackSpec, target: Target, p: Protocol): string {
  const threat =
    a.attack === 'stadv'
      ? `flow bound ${a.bound}`
      : `${a.norm} eps ${+a.eps.toFixed(6)}${a.norm === 'Linf' ? ` (${+(a.eps * 255).toFixed(2)}/255)` : ''}`;
  const kind =
    a.attack === 'autoattack'
      ? `AutoAttack ${a.version}${a.attacks ? ` [${a.attacks.join(', ')}]` : ''}`
      : { 'pgd-eot': 'PGD-EOT', 'bpda-eot': 'BPDA+EOT', stadv: 'StAdv' }[a.attack];
  const rule = parseVerdict(a.verdict ?? 'single');
  const verdict =
    a.attack === 'bpda-eot'
      ? `BPDA+EOT's verdict (logits averaged over ${a.eotDefenseReps ?? 150} purifications at each evaluation)`
      : rule.rule === 'single'
        ? 'one stochastic pass'
        : describeVerdict(rule);
  const through =
    a.attack === 'bpda-eot'
      ? 'identity backward through the purifier (BPDA)'
      : p.purifier.model === 'ddpm'
        ? 'exact gradient through the DDPM chain'
        : `${a.gradient ?? 'continuous'} gradient`;
  const steps =
    p.purifier.model === 'ddpm' ? `${Math.round(a.tStar * 1000)} DDPM steps` : `t* ${a.tStar}, dt ${p.purifier.dt}`;
  const defence = target === 'diffpure' ? `${steps}, ${through}` : 'no defence';
  const counted =
    p.report?.accuracy === 'recheck'
      ? `; accuracies from RobustBench's re-check (one more pass on the clean and on the returned images; the attack ran with ${verdict})`
      : `; ${verdict}`;
  return `${kind}, ${threat}${budget(a)}; ${defence}${counted}`;
}

/** Results from the finished records of a protocol over `images` samples. */
export function summarize(
  p: Protocol,
  images: number,
  samples: readonly SampleRecord[],
  units: ReadonlyMap<string, UnitRecord>,
): Results {
  const expectedUnits = workUnits(p, images);
  // verdicts by (attack, target, seed) and sample position; duplicates (the same unit in two shards) must agree
  const cells = new Map<string, Map<number, SampleRecord>>();
  for (const s of samples) {
    const k = `${s.attack}|${s.target}|${s.seed}`;
    const m = cells.get(k) ?? new Map<number, SampleRecord>();
    const prev = m.get(s.sample);
    // what a row counts must agree: the verdicts, and under 'recheck' the extra pass's predictions
    const differs =
      prev !== undefined &&
      (prev.correct !== s.correct ||
        prev.robust !== s.robust ||
        (p.report?.accuracy === 'recheck' && (prev.pred.clean !== s.pred.clean || prev.pred.adv !== s.pred.adv)));
    if (differs)
      throw new Error(
        `records disagree on sample ${s.sample} under ${s.attack}/${s.target}/seed ${s.seed}: ` +
          'the same unit ran twice with different results (records of different code or backends?)',
      );
    m.set(s.sample, s);
    cells.set(k, m);
  }
  const rows: ResultRow[] = [];
  const recheck = p.report?.accuracy === 'recheck';
  const correct = (r: SampleRecord) => (recheck ? r.pred.clean === r.label : r.correct);
  const robust = (r: SampleRecord) => (recheck ? r.pred.adv === r.label : r.robust);
  const seedResult = (attack: string, target: Target, seed: number): SeedResult | null => {
    const m = cells.get(`${attack}|${target}|${seed}`);
    if (!m || m.size === 0) return null;
    const rs = [...m.values()];
    return {
      seed,
      images: rs.length,
      standard: (100 * rs.filter(correct).length) / rs.length,
      robust: (100 * rs.filter(robust).length) / rs.length,
    };
  };
  const count = (attack: string, target: Target) => {
    const exp = expectedUnits.filter((u) => u.attack === attack && u.target === target);
    return { done: exp.filter((u) => units.has(unitKey(u))).length, expected: exp.length };
  };
  for (const target of ['diffpure', 'classifier'] as const) {
    for (const a of p.attacks) {
      if (!attackTargets(a).includes(target)) continue;
      const perSeed = p.seeds.map((s) => seedResult(a.id, target, s)).filter((r): r is SeedResult => r !== null);
      rows.push({
        target,
        attack: a.id,
        setting: describeAttack(a, target, p),
        perSeed,
        standard: meanStd(perSeed.map((r) => r.standard)),
        robust: meanStd(perSeed.map((r) => r.robust)),
        ...count(a.id, target),
      });
    }
    for (const rule of p.report?.min ?? []) {
      const parts = rule.of.map((id) => rows.find((r) => r.attack === id && r.target === target));
      if (parts.some((r) => !r)) continue;
      const perSeed: SeedResult[] = [];
      for (const seed of p.seeds) {
        const rs = parts.map((r) => r?.perSeed.find((x) => x.seed === seed));
        if (rs.some((r) => !r)) continue;
        const ok = rs as SeedResult[];
        // DiffPure reports the lower robust accuracy of AutoAttack rand and standard; the standard accuracy shown
        // is the mean of the runs' clean checks (equal when they share t* and the clean-check keys)
        perSeed.push({
          seed,
          images: Math.min(...ok.map((r) => r.images)),
          standard: ok.reduce((s, r) => s + r.standard, 0) / ok.length,
          robust: Math.min(...ok.map((r) => r.robust)),
        });
      }
      const c = parts.map((r) => r as ResultRow);
      rows.push({
        target,
        attack: rule.id,
        setting: `min over seeds' runs of ${rule.of.join(', ')}`,
        perSeed,
        standard: meanStd(perSeed.map((r) => r.standard)),
        robust: meanStd(perSeed.map((r) => r.robust)),
        done: c.reduce((s, r) => s + r.done, 0),
        expected: c.reduce((s, r) => s + r.expected, 0),
      });
    }
  }
  // one line per distinct flag and attack, with the batches that raised it
  const flagged = new Map<string, string[]>();
  let seconds = 0;
  // in run order, so that merged shards list them as one run does
  for (const u of expectedUnits.map((e) => units.get(unitKey(e))).filter((x): x is UnitRecord => !!x)) {
    seconds += u.seconds;
    for (const w of u.warnings) {
      const k = `${u.attack} on ${u.target === 'diffpure' ? 'DiffPure' : 'the classifier'}: ${w}`;
      flagged.set(k, [...(flagged.get(k) ?? []), `seed ${u.seed} batch ${u.chunk}`]);
    }
  }
  const warnings = [...flagged].map(
    ([k, where]) =>
      `${k} (${where.length} batch${where.length > 1 ? 'es' : ''}: ${where.slice(0, 4).join(', ')}${where.length > 4 ? ', ...' : ''})`,
  );
  return {
    protocol: p.name,
    description: p.description,
    images,
    seeds: p.seeds,
    rows,
    complete: expectedUnits.every((u) => units.has(unitKey(u))),
    warnings,
    seconds,
  };
}

const pct = (m: MeanStd, seeds: number) =>
  Number.isNaN(m.mean) ? '-' : seeds > 1 ? `${m.mean.toFixed(2)} ± ${m.std.toFixed(2)}` : m.mean.toFixed(2);

/** The results as a Markdown table (the paper's columns), with what produced each row beneath. */
export function markdownTable(r: Results): string {
  const lines = [
    `Protocol **${r.protocol}**: ${r.images} images x ${r.seeds.length} seed${r.seeds.length > 1 ? 's' : ''} (${r.seeds.join(', ')})` +
      (r.seeds.length > 1 ? '; mean ± std over seeds' : '') +
      (r.complete ? '' : '; **incomplete** (units done / expected in the last column)'),
    '',
    '| Model | Attack | Standard Acc (%) | Robust Acc (%) | Units |',
    '|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    const model = row.target === 'diffpure' ? 'DiffPure' : 'classifier alone';
    lines.push(
      `| ${model} | ${row.attack} | ${pct(row.standard, row.perSeed.length)} | ${pct(row.robust, row.perSeed.length)} | ${row.done}/${row.expected} |`,
    );
  }
  lines.push('');
  const seen = new Set<string>();
  for (const row of r.rows) {
    const k = `${row.attack}: ${row.setting}`;
    if (row.target === 'classifier' && row.setting.includes('no defence')) continue;
    if (seen.has(k)) continue;
    seen.add(k);
    lines.push(`- ${k}`);
  }
  lines.push('- classifier alone: the same attacks on the bare classifier (deterministic: one EOT sample, one pass)');
  lines.push(
    "- Robust Acc counts what each attack's official code counts: AutoAttack and BPDA+EOT an image right on the " +
      'clean check and after the attack; PGD-EOT and StAdv an image right after the attack (whatever its clean verdict)',
  );
  if (r.warnings.length) {
    lines.push('', '**Sanity flags from the attacks:**');
    for (const w of r.warnings) lines.push(`- ${w}`);
  }
  return `${lines.join('\n')}\n`;
}
