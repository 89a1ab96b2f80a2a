// Module: named parameters, buffers and submodules whose dotted keys are the PyTorch state-dict
// keys, so official checkpoints load one to one (and errors list keys as PyTorch does).

import { fromArray, keep, Tensor } from '../tensor/index.js';
import { fmt, shapesEqual } from '../tensor/shape.js';

/** A mutable slot for a tensor: loading weights replaces `value`, layers read it at call time. */
export class Parameter {
  constructor(
    public value: Tensor,
    /** Parameters are trained; buffers (running statistics, fixed filters) are not. */
    readonly isBuffer = false,
    /** Non-persistent buffers are not part of the state dict (PyTorch's persistent=False). */
    readonly persistent = true,
  ) {}
}

/** Host-side weights (a checkpoint's HostTensor, or any shape + numbers). */
export interface HostWeights {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export abstract class Module {
  training = true;
  private readonly slots = new Map<string, Parameter>();
  private readonly children = new Map<string, Module>();

  protected registerParameter(name: string, value: Tensor): Parameter {
    return this.addSlot(name, new Parameter(keep(value)));
  }

  protected registerBuffer(name: string, value: Tensor, persistent = true): Parameter {
    return this.addSlot(name, new Parameter(keep(value), true, persistent));
  }

  protected registerModule<M extends Module>(name: string, m: M): M {
    if (this.slots.has(name) || this.children.has(name))
      throw new Error(`${this.constructor.name}: '${name}' is registered twice`);
    this.children.set(name, m);
    return m;
  }

  private addSlot(name: string, p: Parameter): Parameter {
    if (this.slots.has(name) || this.children.has(name))
      throw new Error(`${this.constructor.name}: '${name}' is registered twice`);
    this.slots.set(name, p);
    return p;
  }

  /** Submodules in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /**
   * Every slot with its dotted key, in PyTorch's state_dict order: a module's own parameters,
   * then its buffers, then each child's, depth first in registration order.
   */
  namedSlots(prefix = ''): [string, Parameter][] {
    const own = [...this.slots];
    const out: [string, Parameter][] = [
      ...own.filter(([, p]) => !p.isBuffer),
      ...own.filter(([, p]) => p.isBuffer),
    ].map(([k, p]) => [prefix + k, p]);
    for (const [name, m] of this.children) out.push(...m.namedSlots(`${prefix}${name}.`));
    return out;
  }

  /** The trainable parameter slots (not buffers), in the order of model.named_parameters(): what optimizers update. */
  parameterSlots(): Parameter[] {
    return this.namedSlots()
      .filter(([, p]) => !p.isBuffer)
      .map(([, p]) => p);
  }

  /** Trainable parameters with their keys, in the order of model.named_parameters(). */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const walk = (m: Module, prefix: string) => {
      for (const [k, p] of m.slots) if (!p.isBuffer) out.push([prefix + k, p.value]);
      for (const [name, c] of m.children) walk(c, `${prefix}${name}.`);
    };
    walk(this, '');
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  numParameters(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  /** The state dict: parameters and persistent buffers by key. */
  stateDict(): Map<string, Tensor> {
    return new Map(
      this.namedSlots()
        .filter(([, p]) => p.persistent)
        .map(([k, p]) => [k, p.value]),
    );
  }

  /**
   * Load weights by key. Strict (default): every key must match in name and shape, or the error
   * lists the missing keys, unexpected keys and shape mismatches, as torch's load_state_dict does.
   * Non-strict: load what matches by name (shape mismatches still fail) and report the rest.
   */
  loadStateDict(sd: ReadonlyMap<string, HostWeights | Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const strict = opts.strict ?? true;
    const slots = new Map(this.namedSlots().filter(([, p]) => p.persistent));
    const missingKeys = [...slots.keys()].filter((k) => !sd.has(k));
    const unexpectedKeys = [...sd.keys()].filter((k) => !slots.has(k));
    const mismatched: string[] = [];
    for (const [k, v] of sd) {
      const p = slots.get(k);
      if (p && !shapesEqual(p.value.shape, v.shape)) {
        mismatched.push(
          `  size mismatch for ${k}: copying a param with shape ${fmt(v.shape)}, the shape in the current model is ${fmt(p.value.shape)}`,
        );
      }
    }
    if (mismatched.length || (strict && (missingKeys.length || unexpectedKeys.length))) {
      const lines = [`Error(s) in loading state_dict for ${this.constructor.name}:`];
      if (strict && missingKeys.length)
        lines.push(`  Missing key(s) in state_dict: ${missingKeys.map((k) => `"${k}"`).join(', ')}.`);
      if (strict && unexpectedKeys.length)
        lines.push(`  Unexpected key(s) in state_dict: ${unexpectedKeys.map((k) => `"${k}"`).join(', ')}.`);
      lines.push(...mismatched);
      throw new Error(lines.join('\n'));
    }
    for (const [k, v] of sd) {
      const p = slots.get(k);
      if (!p) continue;
      const old = p.value;
      const data = v instanceof Tensor ? null : v.data;
      const next = data ? fromArray(data, v.shape, { dtype: old.dtype, backend: old.backend.name }) : (v as Tensor);
      if (!data && (next.dtype !== old.dtype || next.backend !== old.backend)) {
        throw new Error(
          `loadStateDict: ${k} is ${next.dtype} on '${next.backend.name}', the model holds ${old.dtype} on '${old.backend.name}'`,
        );
      }
      for (let i = 0; i < (data?.length ?? 0); i++) {
        if (!Number.isFinite(data?.[i] as number))
          throw new Error(`loadStateDict: ${k} contains ${data?.[i]} at flat index ${i}; weights must be finite`);
      }
      p.value = keep(next);
      if (data) old.dispose();
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Training mode for this module and all submodules (dropout active, batch statistics). */
  train(mode = true): this {
    this.training = mode;
    for (const m of this.children.values()) m.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Free every parameter and buffer. */
  dispose(): void {
    for (const [, p] of this.namedSlots()) p.value.dispose();
  }
}
