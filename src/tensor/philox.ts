// Philox4x32-10 (Salmon et al., SC'11), the counter-based generator behind every random tensor.
// Written with 16-bit halves for the 32x32->64 multiply so the WGSL twin (no 64-bit ints)
// can do exactly the same arithmetic and produce the same bits.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High and low 32 bits of a*b for unsigned 32-bit a, b. */
export function mulhilo32(a: number, b: number): [hi: number, lo: number] {
  const lo = Math.imul(a, b) >>> 0;
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const ll = aL * bL;
  const lh = aL * bH;
  const hl = aH * bL;
  const hh = aH * bH;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  const hi = (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
  return [hi, lo];
}

/** Ten rounds of Philox4x32 on `counter` (4 words) with `key` (2 words); returns 4 words. */
export function philox4x32(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  let c0 = (counter[0] as number) >>> 0;
  let c1 = (counter[1] as number) >>> 0;
  let c2 = (counter[2] as number) >>> 0;
  let c3 = (counter[3] as number) >>> 0;
  let k0 = (key[0] as number) >>> 0;
  let k1 = (key[1] as number) >>> 0;
  for (let r = 0; r < 10; r++) {
    const [hi0, lo0] = mulhilo32(M0, c0);
    const [hi1, lo1] = mulhilo32(M1, c2);
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** 24 random bits to a float in [0, 1), exact in float32. */
export const toUnit = (w: number) => (w >>> 8) * 2 ** -24;

/**
 * The random numbers of element `i` of a tensor drawn with (seed, stream): counter (i, stream, 0, 0),
 * key (seed low 32 bits, seed high bits). Uniform uses word 0; normal is Box-Muller on words 0 and 1.
 */
export function philoxWords(seed: number, stream: number, i: number): [number, number, number, number] {
  return philox4x32(
    [i >>> 0, stream >>> 0, Math.floor(stream / 2 ** 32) >>> 0, 0],
    [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0],
  );
}

export function uniformAt(seed: number, stream: number, i: number): number {
  return toUnit(philoxWords(seed, stream, i)[0]);
}

export function normalAt(seed: number, stream: number, i: number): number {
  const w = philoxWords(seed, stream, i);
  const u1 = ((w[0] >>> 8) + 1) * 2 ** -24; // (0, 1]: log is finite
  const u2 = toUnit(w[1]);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
