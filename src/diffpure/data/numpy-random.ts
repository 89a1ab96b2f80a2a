// NumPy's legacy RandomState (MT19937), as far as DiffPure's data subsets need it:
// np.random.RandomState(seed).choice(N, n, replace=False), which NumPy computes as permutation(N)[:n]
// (numpy/random/mtrand.pyx, RandomState.choice; unchanged since the legacy generator was frozen in NumPy 1.17).
//
// - Seeding with an integer is MT19937's init_genrand (Knuth's multiplier 1812433253), as NumPy's _legacy_seeding.
// - permutation(N) shuffles arange(N) with Fisher-Yates from the last element down; the swap index for position i is
//   random_interval(i): a 32-bit output masked to the smallest all-ones mask >= i, redrawn until it is <= i.
// Checked index for index against NumPy 1.24's draws (test/diffpure/data.test.ts, ../shared/fixtures/subsets).

const N = 624;
const M = 397;

export class RandomState {
  private readonly mt = new Uint32Array(N);
  private mti = N;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`RandomState: seed must be an integer in [0, 2^32 - 1] (as NumPy's), got ${seed}`);
    }
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = (mt[i - 1] as number) ^ ((mt[i - 1] as number) >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
  }

  /** The next 32-bit output of MT19937 (genrand_int32). */
  nextUint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      for (let k = 0; k < N; k++) {
        const y = ((mt[k] as number) & 0x80000000) | ((mt[(k + 1) % N] as number) & 0x7fffffff);
        mt[k] = (mt[(k + M) % N] as number) ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.mti = 0;
    }
    let y = mt[this.mti++] as number;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** A uniform integer in [0, max] by masked rejection (NumPy's random_interval for max < 2^32). */
  interval(max: number): number {
    if (max === 0) return 0;
    let mask = max;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    for (;;) {
      const v = (this.nextUint32() & mask) >>> 0;
      if (v <= max) return v;
    }
  }

  /** permutation(n): a shuffled arange(n). */
  permutation(n: number): number[] {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`permutation: n must be a count, got ${n}`);
    const a = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i >= 1; i--) {
      const j = this.interval(i);
      const t = a[i] as number;
      a[i] = a[j] as number;
      a[j] = t;
    }
    return a;
  }

  /** choice(n, size, replace=False) without weights: permutation(n)[:size]. */
  choiceWithoutReplacement(n: number, size: number): number[] {
    if (!Number.isInteger(size) || size < 0 || size > n) {
      throw new Error(`choice: cannot take ${size} samples without replacement from ${n} (NumPy raises here too)`);
    }
    return this.permutation(n).slice(0, size);
  }
}

/** DiffPure's evaluation subset: the indices of np.random.RandomState(dataSeed).choice(total, n, replace=False). */
export function diffpureSubset(dataSeed: number, total: number, n: number): number[] {
  return new RandomState(dataSeed).choiceWithoutReplacement(total, n);
}
