// Multithreaded gemm for Node: worker_threads over SharedArrayBuffer, driven synchronously.
//
// Ops are synchronous in this library, so a threaded gemm splits C into row (or column) bands, posts every band
// but the first to a worker, computes the first band itself, then blocks in Atomics.wait until the workers are done.
// Workers run the same kernel as the main thread: their source is `makeGemmKernel.toString()` (see gemm-kernel.ts),
// evaluated from a string, so this works unchanged from TS sources (vitest) and from an esbuild bundle.
//
// Memory: workers can only see SharedArrayBuffer memory. Operands that already live in one are used in place;
// the others are copied into pooled scratch SharedArrayBuffers (O(n^2) copies against O(n^3) work, which is why
// gemm.ts only comes here for large problems). The main thread's own band always works on the caller's arrays.
//
// Handshake, one Int32 slot per worker: the main thread writes a ticket (a multiple of 4) into the slot and posts the
// job; the worker claims it with compareExchange(ticket -> ticket+RUNNING), computes, stores ticket+DONE (or +FAILED)
// and notifies. A worker handles one job at a time and we wait for each, so a live worker claims its job as soon as it
// has booted (~60 ms). If one has not claimed its job START_TIMEOUT_MS after the main thread started waiting, it is
// taken to be dead: the main thread takes the job back with the same compareExchange, computes that band itself, and
// stops using the pool. A worker that dies in the middle of a job, though, is not detected (the main thread waits).
// Workers start lazily on the first threaded gemm and are unref'd, so they never keep the process alive.

import { type GemmJob, MR, makeGemmKernel, NR } from './gemm-kernel.js';

type WorkerThreads = typeof import('node:worker_threads');
type Worker = InstanceType<WorkerThreads['Worker']>;
type Kernel = (job: GemmJob) => void;
type FloatArray = Float32Array | Float64Array;

const RUNNING = 1;
const DONE = 2;
const FAILED = 3;
const START_TIMEOUT_MS = 10_000;
const MAX_WORKERS = 64;

const WORKER_SOURCE = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const __name = (f) => f; // in case a transpiler's keepNames helper shows up in the kernel's text
const gemm = (${makeGemmKernel.toString()})();
const flags = workerData.flags;
parentPort.on('message', ({ slot, ticket, job }) => {
  if (Atomics.compareExchange(flags, slot, ticket, ticket + ${RUNNING}) !== ticket) return; // taken back by main
  let state = ${DONE};
  try {
    gemm(job);
  } catch (e) {
    state = ${FAILED};
    console.error('diffpure-ts gemm worker:', e);
  }
  Atomics.store(flags, slot, ticket + state);
  Atomics.notify(flags, slot);
});
`;

interface Pool {
  wt: WorkerThreads;
  workers: Worker[];
  /** One handshake slot per worker. */
  flags: Int32Array;
  /** Set when a worker errors or exits; the pool is then no longer used. */
  broken: boolean;
  nextTicket: number;
}

let pool: Pool | null | undefined; // undefined: not tried yet; null: worker_threads unavailable here

/** Counters for tests and benchmarks: threaded gemms, bands done by workers, bands taken back by this thread. */
export const poolStats = { threadedCalls: 0, workerBands: 0, takenBack: 0 };

function getPool(): Pool | null {
  if (pool !== undefined) return pool;
  const proc = typeof process === 'undefined' ? undefined : process;
  const wt = proc?.getBuiltinModule?.('node:worker_threads') as WorkerThreads | undefined;
  pool = wt
    ? {
        wt,
        workers: [],
        flags: new Int32Array(new SharedArrayBuffer(4 * MAX_WORKERS)),
        broken: false,
        nextTicket: 0,
      }
    : null;
  return pool;
}

/** Makes sure `count` workers exist (started lazily, unref'd). */
function ensureWorkers(p: Pool, count: number): void {
  while (p.workers.length < count) {
    const w = new p.wt.Worker(WORKER_SOURCE, { eval: true, workerData: { flags: p.flags }, name: 'diffpure-gemm' });
    w.unref();
    const fail = () => {
      p.broken = true;
    };
    w.on('error', fail);
    w.on('exit', fail);
    p.workers.push(w);
  }
}

/** Whether threaded gemm can run in this environment (Node with worker_threads and a healthy pool). */
export function threadsAvailable(): boolean {
  const p = getPool();
  return !!p && !p.broken;
}

/** Stops the workers and drops the scratch buffers (they restart lazily on the next threaded gemm). */
export async function shutdownGemmPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  scratch.clear();
  if (p) await Promise.all(p.workers.map((w) => w.terminate()));
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch SharedArrayBuffers, one per role, grown on demand and reused (a gemm finishes before the next starts).
// Buffers above SCRATCH_KEEP_BYTES are allocated for the one call and left to the garbage collector, so that one huge
// gemm (e.g. an im2col matrix of a large image) does not pin its size in memory for the rest of the process.

const SCRATCH_KEEP_BYTES = 64 << 20;
const scratch = new Map<string, SharedArrayBuffer>();

function scratchArray(role: string, like: FloatArray, length: number): FloatArray {
  const bytes = length * like.BYTES_PER_ELEMENT;
  let sab = scratch.get(role);
  if (!sab || sab.byteLength < bytes) {
    const grown = Math.min(SCRATCH_KEEP_BYTES, Math.ceil((sab?.byteLength ?? 0) * 1.5));
    sab = new SharedArrayBuffer(Math.max(bytes, grown));
    if (bytes <= SCRATCH_KEEP_BYTES) scratch.set(role, sab); // else: a one-off buffer for this call
  }
  return like instanceof Float64Array ? new Float64Array(sab, 0, length) : new Float32Array(sab, 0, length);
}

const isShared = (x: FloatArray) => x.buffer instanceof SharedArrayBuffer;

/**
 * A matrix view `rows x cols` at `off` (element (i, j) at off + i*ld + j, or off + j*ld + i if trans) made visible to
 * workers: the array itself if it is shared, else a copy of the view's span into scratch. Returns the array and the
 * view's offset in it.
 */
function share(
  role: string,
  x: FloatArray,
  off: number,
  ld: number,
  trans: boolean,
  rows: number,
  cols: number,
): [FloatArray, number] {
  if (isShared(x)) return [x, off];
  const end = trans ? off + (cols - 1) * ld + rows : off + (rows - 1) * ld + cols;
  const s = scratchArray(role, x, end - off);
  s.set(x.subarray(off, end));
  return [s, 0];
}

/** Copies an h x w block between row-major matrices. */
function copyBlock(
  src: FloatArray,
  so: number,
  sld: number,
  dst: FloatArray,
  d0: number,
  dld: number,
  h: number,
  w: number,
) {
  for (let i = 0; i < h; i++) dst.set(src.subarray(so + i * sld, so + i * sld + w), d0 + i * dld);
}

/**
 * Blocks until the worker in `slot` has finished job `ticket` (DONE or FAILED), or, if it has not claimed the job
 * START_TIMEOUT_MS after we started waiting, takes the job back so that the caller computes it.
 */
function awaitWorker(flags: Int32Array, slot: number, ticket: number): typeof DONE | typeof FAILED | 'taken back' {
  const t0 = Date.now();
  for (;;) {
    const v = Atomics.load(flags, slot);
    if (v === ticket + DONE) return DONE;
    if (v === ticket + FAILED) return FAILED;
    if (v === ticket && Date.now() - t0 > START_TIMEOUT_MS) {
      // not claimed yet: mark it so that the worker skips it when it gets there
      if (Atomics.compareExchange(flags, slot, ticket, ticket + FAILED) === ticket) return 'taken back';
      continue;
    }
    Atomics.wait(flags, slot, v, 50);
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Runs `g` on up to `threads` threads (this one included). Returns false, having done nothing, when threads cannot be
 * used here; the caller then runs the single-threaded kernel.
 */
export function gemmThreaded(g: GemmJob, kernel: Kernel, threads: number): boolean {
  const p = getPool();
  if (!p || p.broken) return false;
  const { m, n, k } = g;
  const ta = !!g.transA;
  const tb = !!g.transB;

  // Split the longer side of C into bands aligned to the register tile.
  const byRows = m >= n;
  const len = byRows ? m : n;
  const unit = byRows ? MR : NR;
  const parts = Math.min(threads, MAX_WORKERS + 1, Math.floor(len / unit));
  if (parts < 2) return false;
  const bounds = [0];
  for (let i = 1; i < parts; i++) bounds.push(Math.round((len * i) / parts / unit) * unit);
  bounds.push(len);

  /** The sub-problem for band [s, e) of C, on the caller's arrays. */
  const band = (s: number, e: number): GemmJob =>
    byRows
      ? { ...g, m: e - s, aOff: g.aOff + (ta ? s : s * g.lda), cOff: g.cOff + s * g.ldc }
      : { ...g, n: e - s, bOff: g.bOff + (tb ? s * g.ldb : s), cOff: g.cOff + s };

  // Operands for the workers' bands [b1, len): in place if shared, else copied once into scratch.
  const b1 = bounds[1] as number;
  const rest = band(b1, len);
  const [aS, aSOff] = share('a', g.a, rest.aOff, g.lda, ta, rest.m, k);
  const [bS, bSOff] = share('b', g.b, rest.bOff, g.ldb, tb, k, rest.n);
  const cShared = isShared(g.c);
  const rowsLeft = byRows ? m - b1 : m;
  const colsLeft = byRows ? n : n - b1;
  // Workers' part of C, compact (ldc = its width) when C is not shared.
  const cS = cShared ? g.c : scratchArray('c', g.c, rowsLeft * colsLeft);
  const cSld = cShared ? g.ldc : colsLeft;
  if (!cShared && g.accumulate) copyBlock(g.c, rest.cOff, g.ldc, cS, 0, cSld, rowsLeft, colsLeft);

  ensureWorkers(p, parts - 1);
  const posted: { slot: number; ticket: number; s: number; e: number }[] = [];
  for (let i = 1; i < parts; i++) {
    const s = bounds[i] as number;
    const e = bounds[i + 1] as number;
    if (e <= s) continue;
    const d = s - b1; // band offset within the workers' region
    const job: GemmJob = {
      ...g,
      m: byRows ? e - s : m,
      n: byRows ? n : e - s,
      a: aS,
      aOff: aSOff + (byRows ? (ta ? d : d * g.lda) : 0),
      b: bS,
      bOff: bSOff + (byRows ? 0 : tb ? d * g.ldb : d),
      c: cS,
      cOff: cShared ? band(s, e).cOff : byRows ? d * cSld : d,
      ldc: cSld,
    };
    const slot = i - 1;
    p.nextTicket = (p.nextTicket + 4) & 0x3ffffffc;
    const ticket = p.nextTicket;
    Atomics.store(p.flags, slot, ticket);
    (p.workers[slot] as Worker).postMessage({ slot, ticket, job });
    posted.push({ slot, ticket, s, e });
  }

  kernel(band(0, b1));

  let failed = false;
  poolStats.threadedCalls++;
  for (const { slot, ticket, s, e } of posted) {
    const state = awaitWorker(p.flags, slot, ticket);
    if (state === FAILED) failed = true;
    if (state === DONE) poolStats.workerBands++;
    if (state === 'taken back') {
      poolStats.takenBack++;
      p.broken = true; // a worker that does not pick up its job is not used again
    }
    if (state === 'taken back' || (state === FAILED && !cShared)) {
      kernel(band(s, e)); // this band of the caller's C is untouched: compute it here
    } else if (!cShared && state === DONE) {
      const d = s - b1;
      const h = byRows ? e - s : m;
      const w = byRows ? n : e - s;
      copyBlock(cS, byRows ? d * cSld : d, cSld, g.c, band(s, e).cOff, g.ldc, h, w);
    }
  }
  if (failed) {
    p.broken = true; // later gemms run single-threaded
    if (cShared) throw new Error('gemm: a worker thread failed (see its error above) while writing C');
  }
  return true;
}
