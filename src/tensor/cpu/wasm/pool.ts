// Persistent worker threads for the wasm kernels, driven through Atomics on a shared control block.
//
// Each worker owns one slot of CONTROL_INTS Int32s:
//   [0] ticket: bumped by the main thread to post a job (the worker sleeps in Atomics.wait on it); -1 = stop
//   [1] state:  POSTED when a job is written, then DONE or FAILED from the worker (the main thread waits on it)
//   [2] ready:  1 once the worker has instantiated the module
//   [3..14] the job's 12 sgemm arguments (addresses as uint32 bit patterns), [15] its workspace's address
// A job is ~1 us to post and ~20-60 us to wake a sleeping thread, against ms of arithmetic for the problems that are
// split (see minThreadedMacs in gemm.ts). Only Node's worker_threads start workers today; elsewhere (a browser, or no
// shared memory) the kernels run on the calling thread. A worker that dies mid-job is not detected (this thread would
// wait); one that errors or exits marks the pool broken, and later calls run on one thread.

import type { SgemmJob, WasmRuntime } from './runtime.js';

type WorkerThreads = typeof import('node:worker_threads');
type Worker = InstanceType<WorkerThreads['Worker']>;

const CONTROL_INTS = 16;
const MAX_WORKERS = 63;
const POSTED = 1;
const DONE = 2;
const FAILED = 3;

const WORKER_SOURCE = `'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, control, slot } = workerData;
const ctl = new Int32Array(control);
const u32 = new Uint32Array(control);
const base = slot * ${CONTROL_INTS};
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
Atomics.store(ctl, base + 2, 1);
let seen = Atomics.load(ctl, base);
for (;;) {
  Atomics.wait(ctl, base, seen);
  seen = Atomics.load(ctl, base);
  if (seen === -1) break;
  if (Atomics.load(ctl, base + 1) !== ${POSTED}) continue;
  let state = ${DONE};
  try {
    const j = base + 3;
    ex.sgemm(u32[j], u32[j + 1], u32[j + 2], u32[j + 3], u32[j + 4], u32[j + 5], u32[j + 6], u32[j + 7], u32[j + 8],
      u32[j + 9], u32[j + 10], u32[j + 11], u32[base + 15]);
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
  private readonly u32: Uint32Array;
  private readonly workers: Worker[] = [];
  broken = false;
  /** Bands computed by workers and bands this thread took over from a worker still booting. */
  readonly stats = { calls: 0, workerBands: 0, skippedBooting: 0 };

  private constructor(
    private readonly wt: WorkerThreads,
    private readonly rt: WasmRuntime,
  ) {
    const sab = new SharedArrayBuffer(4 * CONTROL_INTS * MAX_WORKERS);
    this.ctl = new Int32Array(sab);
    this.u32 = new Uint32Array(sab);
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
        workerData: { module: this.rt.module, memory: this.rt.memory, control: this.ctl.buffer, slot },
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

  /**
   * Runs `jobs` (independent bands of one gemm) with jobs[0] on this thread and the others on workers, returning when
   * all are done. Workspaces: job i uses workspace i (the caller reserved them with rt.reset(jobs.length)).
   */
  run(jobs: readonly SgemmJob[]): void {
    this.ensure(jobs.length - 1);
    this.stats.calls++;
    const posted: number[] = [];
    const local: number[] = [0];
    for (let i = 1; i < jobs.length; i++) {
      const slot = i - 1;
      const base = slot * CONTROL_INTS;
      if (this.broken || Atomics.load(this.ctl, base + 2) !== 1) {
        local.push(i);
        this.stats.skippedBooting++;
        continue;
      }
      const j = jobs[i] as SgemmJob;
      const u = this.u32;
      const f = base + 3;
      u[f] = j.m;
      u[f + 1] = j.n;
      u[f + 2] = j.k;
      u[f + 3] = j.a;
      u[f + 4] = j.lda;
      u[f + 5] = j.transA ? 1 : 0;
      u[f + 6] = j.b;
      u[f + 7] = j.ldb;
      u[f + 8] = j.transB ? 1 : 0;
      u[f + 9] = j.c;
      u[f + 10] = j.ldc;
      u[f + 11] = j.accumulate ? 1 : 0;
      u[base + 15] = this.rt.workspace(i);
      Atomics.store(this.ctl, base + 1, POSTED);
      Atomics.add(this.ctl, base, 1);
      Atomics.notify(this.ctl, base);
      posted.push(slot);
    }
    for (const i of local) this.rt.sgemm(jobs[i] as SgemmJob, i);
    let failed = false;
    for (const slot of posted) {
      const s = slot * CONTROL_INTS + 1;
      for (;;) {
        const v = Atomics.load(this.ctl, s);
        if (v !== POSTED) {
          if (v === FAILED) failed = true;
          else this.stats.workerBands++;
          break;
        }
        Atomics.wait(this.ctl, s, POSTED, 100);
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
