// Persistent worker threads for the wasm kernels, driven through Atomics on shared control blocks.
//
// Each worker owns one slot: four Int32s of control
//   [0] ticket: bumped by the main thread to post a call (the worker sleeps in Atomics.wait on it); -1 = stop
//   [1] state:  POSTED when a call is written, then DONE or FAILED from the worker (the main thread waits on it)
//   [2] ready:  1 once the worker has instantiated the module
//   [3] which export to call (an index into CALLABLE)
// and ARGS float64s of arguments ([0] their count): float64 holds both addresses (up to 2^32) and f32 arguments.
// A call is ~1 us to post and ~20-60 us to wake a sleeping thread, against ms of work for the problems that are
// split (see minThreadedMacs in gemm.ts). Only Node's worker_threads start workers today; elsewhere (a browser, or no
// shared memory) the kernels run on the calling thread. A worker that dies mid-call is not detected (this thread would
// wait); one that errors or exits marks the pool broken, and later calls run on one thread.

import type { WasmRuntime } from './runtime.js';

type WorkerThreads = typeof import('node:worker_threads');
type Worker = InstanceType<WorkerThreads['Worker']>;

/** The exports a worker can be asked to run. */
export const CALLABLE = [
  'sgemm',
  'im2colImages',
  'col2imImages',
  'winogradInputImages',
  'winogradOutputImages',
  'winogradGradOutputImages',
  'sgemmBatch',
  'expF32',
  'sigmoidF32',
  'siluF32',
  'squareF32',
  'affineF32',
  'reluF32',
] as const;
export type Callable = (typeof CALLABLE)[number];

/** One call of a wasm export with its arguments. */
export interface WasmCall {
  fn: Callable;
  args: readonly number[];
}

const CONTROL_INTS = 4;
const ARGS = 24;
const MAX_WORKERS = 63;
/** Polls of a flag before a thread sleeps on it (~50-100 us of spinning). */
const SPIN = 20000;
const POSTED = 1;
const DONE = 2;
const FAILED = 3;

const WORKER_SOURCE = `'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, control, argBuffer, slot, names } = workerData;
const ctl = new Int32Array(control);
const args = new Float64Array(argBuffer);
const base = slot * ${CONTROL_INTS};
const abase = slot * ${ARGS};
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const fns = names.map((n) => ex[n]);
Atomics.store(ctl, base + 2, 1);
let seen = Atomics.load(ctl, base);
for (;;) {
  // poll a while before sleeping: the next call of a layer-by-layer loop usually comes within microseconds, and
  // waking from Atomics.wait costs tens to hundreds of microseconds on a VM
  for (let i = 0; i < ${SPIN} && Atomics.load(ctl, base) === seen; i++);
  Atomics.wait(ctl, base, seen);
  seen = Atomics.load(ctl, base);
  if (seen === -1) break;
  if (Atomics.load(ctl, base + 1) !== ${POSTED}) continue;
  let state = ${DONE};
  try {
    const n = args[abase];
    fns[ctl[base + 3]](...args.subarray(abase + 1, abase + 1 + n));
  } catch (e) {
    state = ${FAILED};
    console.error('diffpure-ts wasm worker:', e);
  }
  Atomics.store(ctl, base + 1, state);
  Atomics.notify(ctl, base + 1);
}
`;

export class WasmPool {
  private readonly ctl: Int32Array;
  private readonly args: Float64Array;
  private readonly workers: Worker[] = [];
  broken = false;
  /** Parallel runs, calls done by workers, and calls this thread took over from a worker still booting. */
  readonly stats = { calls: 0, workerBands: 0, skippedBooting: 0 };

  private constructor(
    private readonly wt: WorkerThreads,
    private readonly rt: WasmRuntime,
  ) {
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * CONTROL_INTS * MAX_WORKERS));
    this.args = new Float64Array(new SharedArrayBuffer(8 * ARGS * MAX_WORKERS));
  }

  /** A pool for `rt`, or null when threads cannot run here (no worker_threads, or an unshared memory). */
  static create(rt: WasmRuntime): WasmPool | null {
    if (!rt.shared) return null;
    const proc = typeof process === 'undefined' ? undefined : process;
    const wt = proc?.getBuiltinModule?.('node:worker_threads') as WorkerThreads | undefined;
    return wt ? new WasmPool(wt, rt) : null;
  }

  /** Starts workers up to `count` (unref'd: they never keep the process alive). */
  ensure(count: number): void {
    count = Math.min(count, MAX_WORKERS);
    while (this.workers.length < count) {
      const slot = this.workers.length;
      const w = new this.wt.Worker(WORKER_SOURCE, {
        eval: true,
        name: 'diffpure-wasm',
        workerData: {
          module: this.rt.module,
          memory: this.rt.memory,
          control: this.ctl.buffer,
          argBuffer: this.args.buffer,
          slot,
          names: CALLABLE,
        },
      });
      w.unref();
      const fail = () => {
        this.broken = true;
      };
      w.on('error', fail);
      w.on('exit', fail);
      this.workers.push(w);
    }
  }

  /** Runs calls[0] on this thread and the others on workers (independent work), returning when all are done. */
  run(calls: readonly WasmCall[]): void {
    this.ensure(calls.length - 1);
    this.stats.calls++;
    const posted: number[] = [];
    const local: WasmCall[] = [calls[0] as WasmCall];
    for (let i = 1; i < calls.length; i++) {
      const slot = i - 1;
      const base = slot * CONTROL_INTS;
      const c = calls[i] as WasmCall;
      if (this.broken || Atomics.load(this.ctl, base + 2) !== 1) {
        local.push(c);
        this.stats.skippedBooting++;
        continue;
      }
      if (c.args.length >= ARGS)
        throw new Error(`wasm pool: ${c.fn} has ${c.args.length} arguments, at most ${ARGS - 1}`);
      const ab = slot * ARGS;
      this.args[ab] = c.args.length;
      this.args.set(c.args, ab + 1);
      this.ctl[base + 3] = CALLABLE.indexOf(c.fn);
      Atomics.store(this.ctl, base + 1, POSTED);
      Atomics.add(this.ctl, base, 1);
      Atomics.notify(this.ctl, base);
      posted.push(slot);
    }
    for (const c of local) callLocal(this.rt, c);
    let failed = false;
    for (const slot of posted) {
      const s = slot * CONTROL_INTS + 1;
      for (let spin = 0; ; spin++) {
        const v = Atomics.load(this.ctl, s);
        if (v !== POSTED) {
          if (v === FAILED) failed = true;
          else this.stats.workerBands++;
          break;
        }
        if (spin >= SPIN) Atomics.wait(this.ctl, s, POSTED, 100);
      }
    }
    if (failed) {
      this.broken = true;
      throw new Error('cpu wasm kernels: a worker thread failed (see its error above); later calls run on one thread');
    }
  }

  /** Stops the workers (a new pool starts lazily on the next threaded call). */
  async shutdown(): Promise<void> {
    for (let s = 0; s < this.workers.length; s++) {
      Atomics.store(this.ctl, s * CONTROL_INTS, -1);
      Atomics.notify(this.ctl, s * CONTROL_INTS);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

/** Runs one call on this thread. */
export function callLocal(rt: WasmRuntime, c: WasmCall): void {
  (rt.exports[c.fn] as (...a: number[]) => void)(...c.args);
}
