// Where the attacks' random numbers come from.
//
// KeyedRandom (the default) is counter-based: every draw is a pure function of (seed, attack, what it is for,
// index of the image in the whole data set, element), so an image gets the same random start, and its classifier
// the same noise, whichever batch or machine it is evaluated on. ReplayRandom hands out arrays recorded from the
// official code in its call order (torch.rand / torch.randn outputs), for parity tests against
// ../shared/fixtures/attacks. Attacks ask for draws in the official call order, so both sources fit one interface.

import { normalAt, philoxWords, uniformAt } from '../../tensor/philox.js';

/** What a draw is for, e.g. ['apgd-ce', restart] or ['square', iteration]; numbers or short names. */
export type DrawPurpose = readonly (string | number)[];

export interface AttackRandom {
  /** torch.rand of shape [rows.length, perRow]: one row of uniforms in [0, 1) per image (global indices). */
  uniform(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array;
  /** torch.randn, likewise. */
  normal(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array;
  /** torch.rand of `n` values shared by the whole batch (Square's window and signs). */
  shared(purpose: DrawPurpose, n: number): Float32Array;
  /** The key of a stochastic classifier's row (see model.ts). */
  noiseKey(purpose: DrawPurpose, row: number): number;
}

/** A 32-bit hash of a short name, so that purposes can name attacks. */
function nameCode(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A 53-bit key from a seed and a purpose, through Philox (a keyed bijection per part). */
export function mixKey(seed: number, purpose: DrawPurpose): number {
  let k = seed;
  for (const p of purpose) {
    const code = typeof p === 'string' ? nameCode(p) : p;
    if (!Number.isSafeInteger(code) || code < 0)
      throw new Error(`random: purpose part ${p} is not a name or a non-negative integer`);
    const w = philoxWords(k, code, 0x5eed);
    k = (w[0] as number) + ((w[1] as number) & 0x1fffff) * 2 ** 32;
  }
  return k;
}

export class KeyedRandom implements AttackRandom {
  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  }

  uniform(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array {
    const out = new Float32Array(rows.length * perRow);
    const key = mixKey(this.seed, purpose);
    rows.forEach((r, i) => {
      for (let j = 0; j < perRow; j++) out[i * perRow + j] = uniformAt(key, r, j);
    });
    return out;
  }

  normal(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array {
    const out = new Float32Array(rows.length * perRow);
    const key = mixKey(this.seed, purpose);
    rows.forEach((r, i) => {
      for (let j = 0; j < perRow; j++) out[i * perRow + j] = normalAt(key, r, j);
    });
    return out;
  }

  shared(purpose: DrawPurpose, n: number): Float32Array {
    const out = new Float32Array(n);
    const key = mixKey(this.seed, purpose);
    for (let j = 0; j < n; j++) out[j] = uniformAt(key, 2 ** 40, j); // a stream no image index reaches
    return out;
  }

  noiseKey(purpose: DrawPurpose, row: number): number {
    return mixKey(this.seed, [...purpose, 'noise', row]);
  }
}

/**
 * Recorded draws handed out in order. Each request must ask for exactly as many values as the next recorded
 * call holds (or, with `flat`, values are taken from one continuous stream, as torch's CPU generator is).
 * Classifier keys come from a KeyedRandom with `noiseSeed`.
 */
export class ReplayRandom implements AttackRandom {
  private next = 0;
  private offset = 0;
  private readonly keys: KeyedRandom;

  constructor(
    private readonly draws: readonly Float32Array[],
    private readonly opts: { flat?: boolean; noiseSeed?: number } = {},
  ) {
    this.keys = new KeyedRandom(opts.noiseSeed ?? 0);
  }

  private take(what: string, n: number): Float32Array {
    if (this.opts.flat) {
      const out = new Float32Array(n);
      let filled = 0;
      while (filled < n) {
        const d = this.draws[this.next];
        if (!d) throw new Error(`ReplayRandom: ${what} asked for ${n} values; the recording ran out after ${filled}`);
        const m = Math.min(n - filled, d.length - this.offset);
        out.set(d.subarray(this.offset, this.offset + m), filled);
        filled += m;
        this.offset += m;
        if (this.offset === d.length) {
          this.next++;
          this.offset = 0;
        }
      }
      return out;
    }
    const d = this.draws[this.next];
    if (!d)
      throw new Error(`ReplayRandom: ${what} asked for call ${this.next + 1}; only ${this.draws.length} were recorded`);
    if (d.length !== n) {
      throw new Error(`ReplayRandom: ${what} asked for ${n} values; recorded call ${this.next + 1} holds ${d.length}`);
    }
    this.next++;
    return d;
  }

  uniform(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array {
    return this.take(`uniform ${purpose.join('/')}`, rows.length * perRow);
  }

  normal(purpose: DrawPurpose, rows: readonly number[], perRow: number): Float32Array {
    return this.take(`normal ${purpose.join('/')}`, rows.length * perRow);
  }

  shared(purpose: DrawPurpose, n: number): Float32Array {
    return this.take(`shared ${purpose.join('/')}`, n);
  }

  noiseKey(purpose: DrawPurpose, row: number): number {
    return this.keys.noiseKey(purpose, row);
  }

  /** Recorded calls not yet handed out (a replay that used fewer draws than recorded is a mismatch). */
  get remaining(): number {
    return this.draws.length - this.next - (this.offset > 0 ? 1 : 0);
  }
}
