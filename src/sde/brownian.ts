// Brownian motion the solvers query as increments W(tb) - W(ta), regenerable in any order.
//
// BrownianGrid (seeded). [t0, t1] is cut into cells at fixed nodes (a uniform grid of dt, or any
// list, e.g. the union of a forward solve's grid and its adjoint's). Cell k's increment is
//   dW_k = sqrt(h_k) * N(seed, stream = k * 2^22)          (one Philox normal per element)
// and its space-time Levy area (for SRA1) H_k = sqrt(h_k / 12) * N(seed, stream = k * 2^22 + 1),
// independent of dW_k, so U_k = int_cell (W(s) - W(start)) ds = h_k (dW_k / 2 + H_k). A query whose
// ends are nodes is a sum of cells: exact in law, and bitwise the same whatever the order or
// number of queries (nothing is stored; the backward pass regenerates what the forward pass used).
// A query end strictly inside a cell is refined by a virtual Brownian tree inside that cell:
// bisection, each midpoint drawn from the Brownian bridge between its neighbours with its own
// stream (k * 2^22 + 1 + node, heap numbering), down to `depth` levels, then linear interpolation
// in the final leaf (which misses a variance of at most leaf/4: h * 2^-22 at the default depth 20).
// The refinement conditions on the cell's increment only, so the space-time area is offered for
// node-aligned queries only. Additivity W(s,u) + W(u,t) = W(s,t) holds for any points (values
// are differences of one function of time), up to float rounding of the sums.
//
// BrownianReplay: a path given by stored increments on a grid (fixtures, replaying a path),
// piecewise linear between its nodes, which is the rule the diffpure_revsde fixture uses.

import type { DType } from '../tensor/backend.js';
import { fromArray, randomNormal, zeros } from '../tensor/prims/creation.js';
import { add, mul, sub } from '../tensor/prims/elementwise.js';
import { checkShape, fmt, type Shape, sizeOf } from '../tensor/shape.js';
import { keep, type Tensor, tidy } from '../tensor/tensor.js';
import { stepGrid } from './time.js';

export interface BrownianMotion {
  readonly t0: number;
  readonly t1: number;
  /** Shape of one increment. */
  readonly shape: Shape;
  /** W(tb) - W(ta) for t0 <= ta <= tb <= t1. */
  increment(ta: number, tb: number): Tensor;
  /** The increment and U = int_ta^tb (W(s) - W(ta)) ds (the I_(1,0) integral SRA1 needs). */
  spaceTime?(ta: number, tb: number): { W: Tensor; U: Tensor };
}

const STREAMS_PER_CELL = 2 ** 22;
const MAX_CELLS = 2 ** 31;
const MAX_DEPTH = 20;

/** Largest k with nodes[k] <= t (nodes sorted, nodes[0] <= t). */
function locate(nodes: readonly number[], t: number): number {
  let lo = 0;
  let hi = nodes.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((nodes[mid] as number) <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function checkNodes(op: string, nodes: readonly number[]): void {
  if (nodes.length < 2) throw new Error(`${op}: needs at least 2 nodes, got ${nodes.length}`);
  for (let i = 1; i < nodes.length; i++) {
    if (!((nodes[i] as number) > (nodes[i - 1] as number)))
      throw new Error(
        `${op}: nodes must be strictly increasing; node ${i - 1} = ${nodes[i - 1]}, node ${i} = ${nodes[i]}`,
      );
  }
}

function checkQuery(op: string, t0: number, t1: number, ta: number, tb: number): void {
  if (!(ta <= tb)) throw new Error(`${op}: need ta <= tb, got ta = ${ta}, tb = ${tb}`);
  if (ta < t0 || tb > t1) throw new Error(`${op}: [${ta}, ${tb}] is outside the path's interval [${t0}, ${t1}]`);
}

export interface BrownianGridOptions {
  t0: number;
  t1: number;
  /** Shape of one increment (the state's shape for diagonal noise). */
  shape: Shape;
  /** Generator key, a non-negative safe integer. */
  seed: number;
  /** Cells of dt from t0 (float32 steps, last cell ending on t1), as the solvers step. */
  dt?: number;
  /** Explicit cell boundaries, strictly increasing from t0 to t1 (overrides dt). */
  nodes?: readonly number[];
  /** Bisection levels for query ends inside a cell (default 20, at most 20). */
  depth?: number;
  /** Keep every generated cell (torchsde's BrownianPath trade: speed for memory); free with dispose(). */
  cache?: boolean;
  dtype?: DType;
  backend?: string;
}

export class BrownianGrid implements BrownianMotion {
  readonly t0: number;
  readonly t1: number;
  readonly shape: Shape;
  readonly seed: number;
  readonly nodes: readonly number[];
  readonly depth: number;
  private readonly dtype: DType;
  private readonly backend: string | undefined;
  private readonly cached: Map<number, { W: Tensor; H?: Tensor }> | null;

  constructor(o: BrownianGridOptions) {
    checkShape('BrownianGrid', 'shape', o.shape);
    if (!Number.isSafeInteger(o.seed) || o.seed < 0)
      throw new Error(`BrownianGrid: seed must be a non-negative safe integer, got ${o.seed}`);
    if (!(o.t1 > o.t0)) throw new Error(`BrownianGrid: need t0 < t1, got t0 = ${o.t0}, t1 = ${o.t1}`);
    const nodes = o.nodes ? [...o.nodes] : o.dt !== undefined ? stepGrid(o.t0, o.t1, o.dt) : [o.t0, o.t1];
    checkNodes('BrownianGrid', nodes);
    if (nodes[0] !== o.t0 || nodes[nodes.length - 1] !== o.t1) {
      throw new Error(
        `BrownianGrid: nodes must start at t0 = ${o.t0} and end at t1 = ${o.t1}, got ${nodes[0]} .. ${nodes[nodes.length - 1]}`,
      );
    }
    if (nodes.length - 1 > MAX_CELLS) throw new Error(`BrownianGrid: at most 2^31 cells, got ${nodes.length - 1}`);
    const depth = o.depth ?? MAX_DEPTH;
    if (!Number.isInteger(depth) || depth < 0 || depth > MAX_DEPTH)
      throw new Error(`BrownianGrid: depth must be an integer in [0, ${MAX_DEPTH}], got ${depth}`);
    this.t0 = o.t0;
    this.t1 = o.t1;
    this.shape = [...o.shape];
    this.seed = o.seed;
    this.nodes = nodes;
    this.depth = depth;
    this.dtype = o.dtype ?? 'float32';
    this.backend = o.backend;
    this.cached = o.cache ? new Map() : null;
  }

  private normal(stream: number): Tensor {
    return randomNormal(this.shape, { seed: this.seed, stream, dtype: this.dtype, backend: this.backend });
  }

  private cellLength(k: number): number {
    return (this.nodes[k + 1] as number) - (this.nodes[k] as number);
  }

  /** dW_k (and H_k when `area`); cached tensors are shared, fresh ones belong to the caller's scope. */
  private cell(k: number, area: boolean): { W: Tensor; H?: Tensor } {
    const hit = this.cached?.get(k);
    if (hit && (!area || hit.H)) return hit;
    const h = this.cellLength(k);
    const base = k * STREAMS_PER_CELL;
    const W = hit?.W ?? mul(this.normal(base), Math.sqrt(h));
    const H = area ? mul(this.normal(base + 1), Math.sqrt(h / 12)) : undefined;
    if (this.cached) {
      keep(W);
      if (H) keep(H);
      this.cached.set(k, { W, H });
    }
    return { W, H };
  }

  /** W(s) - W(nodes[k]) for s strictly inside cell k: the virtual Brownian tree. */
  private inside(k: number, s: number): Tensor {
    const base = k * STREAMS_PER_CELL + 1;
    let l = this.nodes[k] as number;
    let r = this.nodes[k + 1] as number;
    let wl: Tensor | null = null;
    let wr = this.cell(k, false).W;
    let node = 1;
    for (let d = 0; d < this.depth; d++) {
      const m = 0.5 * (l + r);
      const mean = wl ? mul(add(wl, wr), 0.5) : mul(wr, 0.5);
      const wm = add(mean, mul(this.normal(base + node), Math.sqrt(0.25 * (r - l))));
      if (s === m) return wm;
      if (s < m) {
        r = m;
        wr = wm;
        node = 2 * node;
      } else {
        l = m;
        wl = wm;
        node = 2 * node + 1;
      }
    }
    const w = (s - l) / (r - l);
    return wl ? add(wl, mul(sub(wr, wl), w)) : mul(wr, w);
  }

  increment(ta: number, tb: number): Tensor {
    checkQuery('BrownianGrid.increment', this.t0, this.t1, ta, tb);
    return tidy(() => {
      const ka = locate(this.nodes, ta);
      const kb = locate(this.nodes, tb);
      const offA = this.nodes[ka] === ta ? null : this.inside(ka, ta);
      const offB = this.nodes[kb] === tb ? null : this.inside(kb, tb);
      let acc: Tensor | null = null;
      for (let c = ka; c < kb; c++) {
        const w = this.cell(c, false).W;
        acc = acc ? add(acc, w) : w;
      }
      if (offB) acc = acc ? add(acc, offB) : offB;
      if (offA) acc = acc ? sub(acc, offA) : mul(offA, -1);
      if (!acc) return zeros(this.shape, { dtype: this.dtype, backend: this.backend });
      // a cached cell returned as is would be disposed by the caller: hand out a copy
      return this.cached && ka + 1 === kb && !offA && !offB ? add(acc, 0) : acc;
    });
  }

  spaceTime(ta: number, tb: number): { W: Tensor; U: Tensor } {
    checkQuery('BrownianGrid.spaceTime', this.t0, this.t1, ta, tb);
    const ka = locate(this.nodes, ta);
    const kb = locate(this.nodes, tb);
    if (this.nodes[ka] !== ta || this.nodes[kb] !== tb) {
      throw new Error(
        `BrownianGrid.spaceTime: [${ta}, ${tb}] does not start and end on grid nodes; the space-time area ` +
          'is only available for node-aligned queries (build the grid on the solver steps)',
      );
    }
    return tidy(() => {
      // U over [a, c] = U[a, b] + U[b, c] + (c - b) W[a, b]
      let W: Tensor | null = null;
      let U: Tensor | null = null;
      for (let c = ka; c < kb; c++) {
        const h = this.cellLength(c);
        const cell = this.cell(c, true);
        const Uc = mul(add(mul(cell.W, 0.5), cell.H as Tensor), h);
        U = U ? add(add(U, Uc), mul(W as Tensor, h)) : Uc;
        W = W ? add(W, cell.W) : add(cell.W, 0);
      }
      if (!W || !U) {
        const z = () => zeros(this.shape, { dtype: this.dtype, backend: this.backend });
        return { W: z(), U: z() };
      }
      return { W, U };
    });
  }

  /** Free cached cells (cache: true). */
  dispose(): void {
    if (!this.cached) return;
    for (const { W, H } of this.cached.values()) {
      W.dispose();
      H?.dispose();
    }
    this.cached.clear();
  }
}

export interface BrownianReplayOptions {
  /** Grid nodes t_0 < ... < t_K. */
  times: readonly number[];
  /** dW_k = W(t_(k+1)) - W(t_k), row-major [K, ...shape]. */
  increments: ArrayLike<number>;
  shape: Shape;
  /** Optional space-time areas H_k (variance h_k / 12), same layout, to allow SRA1 on node-aligned steps. */
  areas?: ArrayLike<number>;
  dtype?: DType;
  backend?: string;
}

/**
 * A fixed path from stored increments. A query of exactly one cell returns the stored increment
 * bit for bit; any other query is W(tb) - W(ta) with W piecewise linear between nodes, computed
 * in float64 on the host and rounded to the tensor dtype (the diffpure_revsde fixture's rule).
 */
export class BrownianReplay implements BrownianMotion {
  readonly t0: number;
  readonly t1: number;
  readonly shape: Shape;
  readonly times: readonly number[];
  private readonly inc: Float64Array;
  private readonly area: Float64Array | null;
  /** W at the nodes, float64, [K + 1, n]. */
  private readonly W: Float64Array;
  private readonly n: number;
  private readonly dtype: DType;
  private readonly backend: string | undefined;

  constructor(o: BrownianReplayOptions) {
    checkShape('BrownianReplay', 'shape', o.shape);
    checkNodes('BrownianReplay', o.times);
    const K = o.times.length - 1;
    const n = sizeOf(o.shape);
    if (o.increments.length !== K * n) {
      throw new Error(
        `BrownianReplay: ${K} cells of shape ${fmt(o.shape)} need ${K * n} increments, got ${o.increments.length}`,
      );
    }
    if (o.areas && o.areas.length !== K * n) {
      throw new Error(`BrownianReplay: areas need ${K * n} values, got ${o.areas.length}`);
    }
    this.times = [...o.times];
    this.t0 = o.times[0] as number;
    this.t1 = o.times[K] as number;
    this.shape = [...o.shape];
    this.n = n;
    this.inc = Float64Array.from(o.increments);
    this.area = o.areas ? Float64Array.from(o.areas) : null;
    this.W = new Float64Array((K + 1) * n);
    for (let k = 0; k < K; k++)
      for (let i = 0; i < n; i++)
        this.W[(k + 1) * n + i] = (this.W[k * n + i] as number) + (this.inc[k * n + i] as number);
    this.dtype = o.dtype ?? 'float32';
    this.backend = o.backend;
  }

  private upload(v: Float64Array): Tensor {
    return fromArray(v, this.shape, { dtype: this.dtype, backend: this.backend });
  }

  /** W(t) into out (float64). */
  private at(t: number, out: Float64Array): void {
    const n = this.n;
    const k = Math.min(locate(this.times, t), this.times.length - 2);
    const tk = this.times[k] as number;
    const w = (t - tk) / ((this.times[k + 1] as number) - tk);
    for (let i = 0; i < n; i++) out[i] = (this.W[k * n + i] as number) + w * (this.inc[k * n + i] as number);
  }

  increment(ta: number, tb: number): Tensor {
    checkQuery('BrownianReplay.increment', this.t0, this.t1, ta, tb);
    const n = this.n;
    const ka = locate(this.times, ta);
    if (this.times[ka] === ta && this.times[ka + 1] === tb) return this.upload(this.inc.subarray(ka * n, (ka + 1) * n));
    const a = new Float64Array(n);
    const b = new Float64Array(n);
    this.at(ta, a);
    this.at(tb, b);
    for (let i = 0; i < n; i++) b[i] = (b[i] as number) - (a[i] as number);
    return this.upload(b);
  }

  spaceTime(ta: number, tb: number): { W: Tensor; U: Tensor } {
    checkQuery('BrownianReplay.spaceTime', this.t0, this.t1, ta, tb);
    const area = this.area;
    if (!area) throw new Error('BrownianReplay.spaceTime: this path was built without areas');
    const ka = locate(this.times, ta);
    const kb = locate(this.times, tb);
    if (this.times[ka] !== ta || this.times[kb] !== tb)
      throw new Error(`BrownianReplay.spaceTime: [${ta}, ${tb}] must start and end on grid nodes`);
    const n = this.n;
    const W = new Float64Array(n);
    const U = new Float64Array(n);
    for (let c = ka; c < kb; c++) {
      const h = (this.times[c + 1] as number) - (this.times[c] as number);
      for (let i = 0; i < n; i++) {
        const dw = this.inc[c * n + i] as number;
        U[i] = (U[i] as number) + h * (0.5 * dw + (area[c * n + i] as number)) + h * (W[i] as number);
        W[i] = (W[i] as number) + dw;
      }
    }
    return { W: this.upload(W), U: this.upload(U) };
  }
}

/**
 * The Brownian motion's shape for a state of `xShape` under `noiseType`; general noise needs the
 * number m of Brownian motions per row (the last axis of g).
 */
export function brownianShape(noiseType: string, xShape: Shape, m?: number): number[] {
  if (noiseType === 'scalar') return xShape.map((d, i) => (i === 0 ? d : 1));
  if (noiseType === 'general') {
    if (m === undefined) throw new Error('brownianShape: general noise needs m, the last axis of g');
    return [...xShape.slice(0, -1), m];
  }
  return [...xShape];
}

/** A seed for a path nobody asked to reproduce. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/** Sorted union of node lists (all within [t0, t1]), duplicates removed. */
export function mergeNodes(...lists: (readonly number[])[]): number[] {
  const all = [...new Set(lists.flat().map((t) => (t === 0 ? 0 : t)))].sort((a, b) => a - b);
  return all;
}
