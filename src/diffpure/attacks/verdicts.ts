// When is an image "still correctly classified"? For a deterministic classifier one forward pass says it. For a
// stochastic one (DiffPure) it is a choice, and the choice moves the robust accuracy, so every reported number
// names the rule that produced it:
//   single    one stochastic pass (AutoAttack's, and so the paper's): correct in that pass
//   majority  N passes, correct in more than half of them (Lee & Kim's ensemble vote)
//   any       N passes, correct in all of them: one wrong pass breaks the image (the stricter rule later papers
//             argue for: an attacker needs to succeed once)

import { type AttackModel, type Images, logitsOf, predictions } from './model.js';
import type { AttackRandom, DrawPurpose } from './random.js';

export type Verdict = { rule: 'single' } | { rule: 'majority'; n: number } | { rule: 'any'; n: number };

export const SINGLE_PASS: Verdict = { rule: 'single' };

/** A parsed verdict: 'single', 'majority:N' or 'any:N'. */
export function parseVerdict(s: string): Verdict {
  if (s === 'single') return SINGLE_PASS;
  const m = /^(majority|any):(\d+)$/.exec(s);
  const n = m ? Number(m[2]) : Number.NaN;
  if (!m || !(n >= 1)) throw new Error(`verdict: expected 'single', 'majority:N' or 'any:N' (N >= 1), got '${s}'`);
  return { rule: m[1] as 'majority' | 'any', n };
}

export function describeVerdict(v: Verdict): string {
  switch (v.rule) {
    case 'single':
      return 'single stochastic pass (AutoAttack)';
    case 'majority':
      return `majority vote over ${v.n} passes`;
    case 'any':
      return `wrong in any of ${v.n} passes`;
  }
}

/** Which images the classifier gets right under the verdict rule; pass p of image i uses key (purpose, p, id). */
export async function correctUnder(
  model: AttackModel,
  x: Images,
  y: ArrayLike<number>,
  ids: readonly number[],
  verdict: Verdict,
  random: AttackRandom,
  purpose: DrawPurpose,
): Promise<boolean[]> {
  const passes = verdict.rule === 'single' ? 1 : verdict.n;
  const hits = new Array<number>(x.shape[0]).fill(0);
  for (let p = 0; p < passes; p++) {
    const keys = ids.map((id) => random.noiseKey(verdict.rule === 'single' ? purpose : [...purpose, p], id));
    const out = await logitsOf(model, x, keys);
    predictions(out.logits, out.k).forEach((c, i) => {
      if (c === y[i]) hits[i] = (hits[i] as number) + 1;
    });
  }
  return hits.map((h) => (verdict.rule === 'majority' ? h > passes / 2 : h === passes));
}
