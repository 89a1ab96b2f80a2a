// Backend registry, gradient-recording state and the one place every primitive is dispatched.

import type { Backend, DType, KernelArg } from './backend.js';
import { fmt, type Shape } from './shape.js';
import { type Prim, Tensor } from './tensor.js';

// ---- backends -------------------------------------------------------------------------------

const factories = new Map<string, () => Promise<Backend>>();
const ready = new Map<string, Backend>();
let current: Backend | null = null;

export function registerBackend(name: string, factory: () => Promise<Backend>): void {
  factories.set(name, factory);
}

export function registerReadyBackend(b: Backend): void {
  ready.set(b.name, b);
  factories.set(b.name, async () => b);
}

/** Initialise (once) and return a backend by name. */
export async function initBackend(name: string): Promise<Backend> {
  const have = ready.get(name);
  if (have) return have;
  const f = factories.get(name);
  if (!f) throw new Error(`unknown backend '${name}'; registered: ${[...factories.keys()].join(', ')}`);
  const b = await f();
  ready.set(name, b);
  return b;
}

/** Make `name` the backend new tensors are created on. */
export async function setBackend(name: string): Promise<Backend> {
  current = await initBackend(name);
  return current;
}

export function getBackend(name?: string): Backend {
  if (name !== undefined) {
    const b = ready.get(name);
    if (!b) throw new Error(`backend '${name}' is not initialised; call 'await initBackend("${name}")' first`);
    return b;
  }
  if (!current) {
    current = ready.get('cpu') ?? null;
    if (!current) throw new Error('no backend is initialised');
  }
  return current;
}

export function registeredBackends(): string[] {
  return [...factories.keys()];
}

// ---- gradient recording ---------------------------------------------------------------------

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn with gradient recording on or off, restoring the previous state. */
export function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

// ---- dispatch -------------------------------------------------------------------------------

function checkInputs(op: string, inputs: readonly Tensor[], sameDtype: boolean): Backend {
  const first = inputs[0] as Tensor;
  if (first.isDisposed) throw new Error(`${op}: input 0 ${fmt(first.shape)} was disposed and cannot be used`);
  const backend = first.backend;
  for (const [i, t] of inputs.entries()) {
    if (t.isDisposed) throw new Error(`${op}: input ${i} ${fmt(t.shape)} was disposed and cannot be used`);
    if (t.backend !== backend) {
      throw new Error(
        `${op}: input ${i} is on '${t.backend.name}' but input 0 is on '${backend.name}'; move tensors with toBackend()`,
      );
    }
    if (sameDtype && t.dtype !== first.dtype) {
      throw new Error(
        `${op}: input ${i} ${fmt(t.shape)} is ${t.dtype} but input 0 ${fmt(first.shape)} is ${first.dtype}; cast with astype()`,
      );
    }
  }
  return backend;
}

function attach(out: Tensor, prim: Prim, inputs: readonly Tensor[], attrs: unknown): Tensor {
  if (gradEnabled && prim.vjp && inputs.some((t) => t.requiresGrad)) {
    for (const t of inputs) t.retain();
    out.node = { prim, inputs, attrs };
    out.requiresGrad = true;
  }
  return out;
}

export interface ApplyOptions {
  /** Output dtype; defaults to the first input's. */
  dtype?: DType;
  /** Inputs may have different dtypes (cast). */
  mixedDtypes?: boolean;
}

/** Run a primitive on its backend and record it for autograd. Shapes are validated by the caller. */
export function apply<A>(
  prim: Prim<A>,
  inputs: readonly Tensor[],
  attrs: A,
  outShape: Shape,
  opts: ApplyOptions = {},
): Tensor {
  // errors name the user-facing op (exp, max, ...) where the primitive is a family (unary, reduce)
  const label = typeof (attrs as { op?: unknown })?.op === 'string' ? (attrs as { op: string }).op : prim.name;
  const backend = checkInputs(label, inputs, !opts.mixedDtypes);
  const dtype = opts.dtype ?? (inputs[0] as Tensor).dtype;
  if (!backend.dtypes.includes(dtype)) {
    throw new Error(
      `${prim.name}: backend '${backend.name}' does not support ${dtype}; use float32 or the cpu backend`,
    );
  }
  const args: KernelArg[] = inputs.map((t) => ({ storage: t.storage, shape: t.shape, dtype: t.dtype }));
  const storage = backend.run(prim.name, args, attrs, outShape, dtype);
  return attach(new Tensor(storage, outShape, dtype), prim as Prim, inputs, attrs);
}

/** A new tensor sharing the input's storage with another shape of the same size (no kernel). */
export function applyView<A>(prim: Prim<A>, input: Tensor, attrs: A, outShape: Shape): Tensor {
  if (input.size !== outShape.reduce((a, b) => a * b, 1)) {
    throw new Error(`${prim.name}: cannot view ${fmt(input.shape)} as ${fmt(outShape)}`);
  }
  const s = input.storage;
  s.retain();
  return attach(new Tensor(s, outShape, input.dtype), prim as Prim, [input], attrs);
}

/** Wrap an already computed tensor as the output of a custom differentiable op (e.g. sdeintAdjoint). */
export function attachCustom(out: Tensor, prim: Prim, inputs: readonly Tensor[], attrs: unknown = undefined): Tensor {
  return attach(out, prim, inputs, attrs);
}
