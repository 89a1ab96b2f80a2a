// Byte-level mutations for the fuzz tests (no vitest import, so scripts can use it too).

/** Byte-level mutations for fuzzing: flips, overwrites with large values, truncation, insertion. */
export type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'set32'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: readonly number[] }
  | { kind: 'delete'; at: number; len: number };

export function mutate(src: Uint8Array, muts: readonly Mutation[], lo = 0, hi = src.length): Uint8Array {
  let b = new Uint8Array(src);
  const span = Math.max(1, hi - lo);
  for (const m of muts) {
    const at = lo + (m.at % span);
    switch (m.kind) {
      case 'flip':
        if (at < b.length) b[at] = (b[at] as number) ^ (m.xor || 1);
        break;
      case 'set32':
        if (at + 4 <= b.length) new DataView(b.buffer).setUint32(at, m.value >>> 0, true);
        break;
      case 'truncate':
        b = b.slice(0, Math.min(at, b.length));
        break;
      case 'insert': {
        const c = new Uint8Array(b.length + m.bytes.length);
        const p = Math.min(at, b.length);
        c.set(b.subarray(0, p));
        c.set(m.bytes, p);
        c.set(b.subarray(p), p + m.bytes.length);
        b = c;
        break;
      }
      case 'delete': {
        const p = Math.min(at, b.length);
        const c = new Uint8Array(b.length - Math.min(m.len, b.length - p));
        c.set(b.subarray(0, p));
        c.set(b.subarray(p + m.len), p);
        b = c;
        break;
      }
    }
  }
  return b;
}
