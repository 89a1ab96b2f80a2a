// Tensor: a shape, a dtype and a reference to storage, plus the autograd node that made it.
// Memory is explicit: dispose() or tidy(); a node keeps its inputs alive until the output is released.

import type { Backend, DType, Storage, TypedArray } from './backend.js';
import { fmt, type Shape, sizeOf } from './shape.js';

/** A differentiable operation as autograd sees it: its name and its vector-Jacobian product. */
export interface Prim<A = unknown> {
  readonly name: string;
  /**
   * Cotangents for each input given the output cotangent `g` (null where an input gets none).
   * Written with tensor ops, so it runs on any backend. Called with gradient recording off.
   */
  vjp?(g: Tensor, ctx: VjpContext<A>): (Tensor | null)[];
}

export interface VjpContext<A = unknown> {
  readonly inputs: readonly Tensor[];
  readonly output: Tensor;
  readonly attrs: A;
}

/** How a tensor was made: the primitive, its inputs (retained) and attributes. */
export interface GradNode {
  readonly prim: Prim;
  readonly inputs: readonly Tensor[];
  readonly attrs: unknown;
}

let nextId = 0;

export class Tensor {
  readonly id = nextId++;
  readonly size: number;
  /** Set on leaves by autograd (grad, vjp) and propagated through ops. */
  requiresGrad = false;
  node: GradNode | null = null;
  private refs = 1;
  private userDisposed = false;
  private _storage: Storage | null;

  constructor(
    storage: Storage,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {
    this._storage = storage;
    this.size = sizeOf(shape);
    scopes.track(this);
  }

  get rank(): number {
    return this.shape.length;
  }

  get backend(): Backend {
    return this.storage.backend;
  }

  get isDisposed(): boolean {
    return this._storage === null;
  }

  /** Storage, or an error naming the tensor if it has been freed. */
  get storage(): Storage {
    if (this._storage === null) {
      throw new Error(`Tensor #${this.id} ${fmt(this.shape)} ${this.dtype} was disposed and cannot be used`);
    }
    return this._storage;
  }

  /** Copy the elements to the host. */
  async data(): Promise<TypedArray> {
    const d = await this.backend.read(this.storage);
    return d.length === this.size ? d : d.subarray(0, this.size);
  }

  /** Elements as a plain number array. */
  async toArray(): Promise<number[]> {
    return Array.from(await this.data());
  }

  /** The single element of a size-1 tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor has shape ${fmt(this.shape)}, expected exactly one element`);
    return (await this.data())[0] as number;
  }

  /** Synchronous read; only for backends that hold host memory (cpu). */
  dataSync(): TypedArray {
    const h = this.storage.handle;
    if (!(h instanceof Float32Array || h instanceof Float64Array)) {
      throw new Error(`dataSync: tensor lives on '${this.backend.name}'; use 'await t.data()' instead`);
    }
    this.storage.exposed = true; // the caller may keep this array: never recycle it
    return h.length === this.size ? h : h.subarray(0, this.size);
  }

  /** Release the caller's reference. Safe to call twice. */
  dispose(): void {
    if (this.userDisposed) return;
    this.userDisposed = true;
    this.release();
  }

  /** @internal autograd nodes hold references to their inputs. */
  retain(): void {
    this.refs++;
  }

  /** @internal Iterative, so releasing a deep graph (a long SDE solve) cannot overflow the stack. */
  release(): void {
    const stack: Tensor[] = [this];
    while (stack.length) {
      const t = stack.pop() as Tensor;
      if (--t.refs > 0) continue;
      t._storage?.release();
      t._storage = null;
      const node = t.node;
      t.node = null;
      if (node) stack.push(...node.inputs);
    }
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}, ${this._storage ? this.backend.name : 'disposed'})`;
  }
}

// ---- scopes ---------------------------------------------------------------------------------

class ScopeStack {
  private stack: Set<Tensor>[] = [];
  track(t: Tensor): void {
    this.stack[this.stack.length - 1]?.add(t);
  }
  push(): Set<Tensor> {
    const s = new Set<Tensor>();
    this.stack.push(s);
    return s;
  }
  pop(): void {
    this.stack.pop();
  }
  /** Take t out of every open scope, so no tidy() disposes it. */
  untrack(t: Tensor): void {
    for (const s of this.stack) s.delete(t);
  }
  /** Move t into the innermost open scope. */
  adopt(t: Tensor): void {
    this.untrack(t);
    this.track(t);
  }
}
const scopes = new ScopeStack();

/** Tensors tidy keeps: those in the result, inside arrays and plain objects (any depth). */
function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collect(x, out);
}

/**
 * Run fn and dispose every tensor it created, except those it returns (inside arrays or plain
 * objects) and those passed to keep(). Returned tensors move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const created = scopes.push();
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of created) {
    if (kept.has(t)) scopes.track(t);
    else t.dispose();
  }
  return result;
}

/** Exempt a tensor from disposal by enclosing tidy() scopes. */
export function keep<T extends Tensor>(t: T): T {
  scopes.untrack(t);
  return t;
}

export function dispose(...ts: (Tensor | readonly Tensor[] | null | undefined)[]): void {
  for (const t of ts) {
    if (t instanceof Tensor) t.dispose();
    else if (t) for (const x of t) x.dispose();
  }
}

/** @internal re-home a tensor into the current scope (used by autograd for results). */
export function adoptIntoScope(t: Tensor): void {
  scopes.adopt(t);
}
