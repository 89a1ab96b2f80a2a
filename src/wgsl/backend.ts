// The webgpu backend: the dispatch runtime every WGSL kernel goes through.
//
// Mechanics, as production WebGPU backends do them (tfjs-backend-webgpu, onnxruntime-web):
// - one open command encoder and compute pass; many dispatches per pass; a submit every
//   `submitEvery` dispatches or before a readback (a submit costs ~70 us of CPU here);
// - pipelines cached by shader key; one bind group layout per input count, so bind groups
//   (~50 us each to create) are cached by the buffers they bind and reused across pipelines;
// - parameters go into one uniform arena addressed with dynamic offsets, written once per
//   submit. The arena is reused after a submit: queue.writeBuffer is ordered after the work
//   already submitted, so the next batch's parameters never overwrite the current one's;
// - buffers come from a size-class pool and return to it only after the encoder that used
//   them has been submitted (a writeBuffer into a reused buffer would otherwise run before
//   the still-unsubmitted dispatches that read its old contents);
// - readback copies into a pooled MAP_READ staging buffer and waits with mapAsync. Never
//   queue.onSubmittedWorkDone(): with webgpu 0.6.2 on lavapipe, awaiting it and then running
//   synchronous JS before the next mapAsync aborts the process.

import { type Backend, type DType, type KernelArg, Storage, type TypedArray } from '../tensor/backend.js';
import { type Shape, sizeOf } from '../tensor/shape.js';
import type { GpuContext } from './device.js';
import { wgslKernels } from './kernels/index.js';
import type { KernelContext } from './kernels/kernel.js';
import { BufferPool, type GpuBuf } from './pool.js';
import { PARAM_BYTES, PARAM_WORDS, type Program } from './program.js';

export interface WebGPUOptions {
  /** Dispatches per submit (default 64). */
  submitEvery?: number;
}

export interface WebGPUStats {
  /** Bytes of storage buffers held by live tensors. */
  bytesInUse: number;
  /** Highest bytesInUse since creation or resetPeak(). */
  peakBytes: number;
  /** Bytes of storage buffers waiting in the pool (incl. those freed but not yet submitted). */
  poolBytes: number;
  /** Storage buffers ever created. */
  buffersCreated: number;
  pipelines: number;
  bindGroups: number;
  dispatches: number;
  submits: number;
  readbacks: number;
}

interface CachedPipeline {
  readonly pipeline: GPUComputePipeline;
  readonly nInputs: number;
}

const MAX_BIND_GROUPS = 4096;

export class WebGPUBackend implements Backend, KernelContext {
  readonly name = 'webgpu';
  readonly dtypes: readonly DType[] = ['float32'];
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  readonly limits: GPUSupportedLimits;

  private readonly pool: BufferPool;
  private readonly staging: BufferPool;
  private readonly pipelines = new Map<string, CachedPipeline>();
  private readonly layouts: { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout }[] = [];
  private readonly bindGroups = new Map<string, GPUBindGroup>();

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchDispatches = 0;
  /** Buffers freed while the open encoder may still use them. */
  private pendingRelease: GpuBuf[] = [];

  private readonly submitEvery: number;
  private readonly slotBytes: number;
  private readonly arenaSlots: number;
  private readonly arena: GPUBuffer;
  private readonly arenaHost: Uint32Array;
  private arenaUsed = 0;

  private counters = { dispatches: 0, submits: 0, readbacks: 0 };
  private deviceError: string | null = null;

  constructor(ctx: GpuContext, opts: WebGPUOptions = {}) {
    this.device = ctx.device;
    this.adapter = ctx.adapter;
    this.limits = ctx.device.limits;
    this.submitEvery = opts.submitEvery ?? 64;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.pool = new BufferPool(this.device, usage, 'tensor');
    this.staging = new BufferPool(this.device, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'staging');
    this.slotBytes = Math.max(PARAM_BYTES, this.limits.minUniformBufferOffsetAlignment);
    this.arenaSlots = Math.max(this.submitEvery, 16) * 2;
    this.arena = this.device.createBuffer({
      size: this.slotBytes * this.arenaSlots,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: 'params',
    });
    this.arenaHost = new Uint32Array((this.slotBytes * this.arenaSlots) / 4);
    this.device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      this.deviceError ??= msg;
      console.error(`webgpu: ${msg}`);
    });
  }

  // ---- Backend ------------------------------------------------------------------------------

  upload(data: TypedArray, dtype: DType): Storage {
    this.checkDtype(dtype);
    const n = data.length;
    const buf = this.alloc(n * 4);
    if (n > 0) {
      const f = data instanceof Float32Array ? data : Float32Array.from(data);
      this.device.queue.writeBuffer(buf.buffer, 0, f.buffer, f.byteOffset, n * 4);
    }
    return new Storage(this, buf, n, dtype);
  }

  async read(storage: Storage): Promise<TypedArray> {
    const n = storage.length;
    if (n === 0) return new Float32Array(0);
    const src = storage.handle as GpuBuf;
    const bytes = n * 4;
    const stage = this.staging.acquire(bytes);
    this.endPass();
    this.openEncoder().copyBufferToBuffer(src.buffer, 0, stage.buffer, 0, bytes);
    this.counters.readbacks++;
    this.flush();
    try {
      await stage.buffer.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (e) {
      throw new Error(`webgpu: readback failed: ${(e as Error).message}${this.errorSuffix()}`);
    }
    const out = new Float32Array(stage.buffer.getMappedRange(0, bytes).slice(0));
    stage.buffer.unmap();
    this.staging.release(stage);
    if (this.deviceError) {
      // reported once, with the readback that follows it
      const msg = this.deviceError;
      this.deviceError = null;
      throw new Error(`webgpu: device error before this readback: ${msg}`);
    }
    return out;
  }

  free(storage: Storage): void {
    const b = storage.handle as GpuBuf;
    if (this.encoder) this.pendingRelease.push(b);
    else this.pool.release(b);
  }

  run(prim: string, inputs: readonly KernelArg[], attrs: unknown, outShape: Shape, outDtype: DType): Storage {
    this.checkDtype(outDtype);
    const k = wgslKernels[prim];
    if (!k) throw new Error(`webgpu backend has no kernel for primitive '${prim}'`);
    const n = sizeOf(outShape);
    const out = this.alloc(n * 4);
    if (n > 0) k(this, inputs, attrs as never, outShape, out);
    return new Storage(this, out, n, outDtype);
  }

  /** Submit the open encoder (if any) and return buffers freed meanwhile to the pool. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.arenaUsed > 0) {
      this.device.queue.writeBuffer(this.arena, 0, this.arenaHost.buffer, 0, this.arenaUsed * this.slotBytes);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.counters.submits++;
    this.encoder = null;
    this.batchDispatches = 0;
    this.arenaUsed = 0;
    for (const b of this.pendingRelease) this.pool.release(b);
    this.pendingRelease = [];
  }

  // ---- KernelContext ------------------------------------------------------------------------

  alloc(bytes: number): GpuBuf {
    const max = this.limits.maxStorageBufferBindingSize;
    if (bytes > max) {
      throw new Error(
        `webgpu: a tensor of ${bytes} bytes exceeds this adapter's maxStorageBufferBindingSize (${max} bytes); split the batch`,
      );
    }
    return this.pool.acquire(bytes);
  }

  /** Release a kernel's scratch buffer (deferred like any other). */
  release(b: GpuBuf): void {
    if (this.encoder) this.pendingRelease.push(b);
    else this.pool.release(b);
  }

  dispatch(p: Program, inputs: readonly GpuBuf[], out: GpuBuf): void {
    if (inputs.length !== p.nInputs)
      throw new Error(`webgpu: ${p.key} takes ${p.nInputs} inputs, got ${inputs.length}`);
    if (p.params.length > PARAM_WORDS) throw new Error(`webgpu: ${p.key} has ${p.params.length} parameter words`);
    const [gx, gy, gz] = p.grid;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const cached = this.pipeline(p);
    if (this.arenaUsed === this.arenaSlots) this.flush();
    const slot = this.arenaUsed++;
    const base = (slot * this.slotBytes) / 4;
    const words = this.arenaHost;
    for (let i = 0; i < p.params.length; i++) words[base + i] = p.params[i] as number;
    const pass = this.openPass();
    pass.setPipeline(cached.pipeline);
    pass.setBindGroup(0, this.bindGroup(p.nInputs, out, inputs), [slot * this.slotBytes]);
    pass.dispatchWorkgroups(gx, gy, gz);
    this.counters.dispatches++;
    if (++this.batchDispatches >= this.submitEvery) this.flush();
  }

  // ---- stats --------------------------------------------------------------------------------

  stats(): WebGPUStats {
    let pending = 0;
    for (const b of this.pendingRelease) pending += b.size;
    return {
      bytesInUse: this.pool.bytesInUse - pending,
      peakBytes: this.pool.peakBytes,
      poolBytes: this.pool.poolBytes + pending,
      buffersCreated: this.pool.created,
      pipelines: this.pipelines.size,
      bindGroups: this.bindGroups.size,
      ...this.counters,
    };
  }

  /** Start a new peak measurement at the current bytes in use. */
  resetPeak(): void {
    this.pool.peakBytes = this.pool.bytesInUse;
  }

  /** Destroy pooled (free) buffers, e.g. between phases with different shapes. */
  trim(): void {
    this.flush();
    const gone = new Set(this.pool.trim());
    this.staging.trim();
    for (const k of [...this.bindGroups.keys()]) {
      if (k.split(/[:,]/).some((id, i) => i > 0 && gone.has(Number(id)))) this.bindGroups.delete(k);
    }
  }

  destroy(): void {
    this.flush();
    this.device.destroy();
  }

  // ---- internals ----------------------------------------------------------------------------

  private checkDtype(dtype: DType): void {
    if (dtype !== 'float32') throw new Error(`webgpu: ${dtype} is not supported; use float32 or the cpu backend`);
  }

  private errorSuffix(): string {
    return this.deviceError ? ` (device error: ${this.deviceError})` : '';
  }

  private openEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private openPass(): GPUComputePassEncoder {
    this.pass ??= this.openEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private layout(nInputs: number): { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout } {
    let l = this.layouts[nInputs];
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [
        {
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: PARAM_BYTES },
        },
        { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
      ];
      for (let i = 0; i < nInputs; i++) {
        entries.push({ binding: i + 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' } });
      }
      const bgl = this.device.createBindGroupLayout({ entries });
      l = { bgl, pl: this.device.createPipelineLayout({ bindGroupLayouts: [bgl] }) };
      this.layouts[nInputs] = l;
    }
    return l;
  }

  private pipeline(p: Program): CachedPipeline {
    let c = this.pipelines.get(p.key);
    if (!c) {
      const module = this.device.createShaderModule({ code: p.code(), label: p.key });
      const pipeline = this.device.createComputePipeline({
        layout: this.layout(p.nInputs).pl,
        compute: { module, entryPoint: 'main' },
        label: p.key,
      });
      c = { pipeline, nInputs: p.nInputs };
      this.pipelines.set(p.key, c);
    }
    return c;
  }

  private bindGroup(nInputs: number, out: GpuBuf, inputs: readonly GpuBuf[]): GPUBindGroup {
    let key = `${nInputs}:${out.id}`;
    for (const b of inputs) key += `,${b.id}`;
    let bg = this.bindGroups.get(key);
    if (bg) return bg;
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.arena, offset: 0, size: PARAM_BYTES } },
      { binding: 1, resource: { buffer: out.buffer } },
    ];
    inputs.forEach((b, i) => {
      entries.push({ binding: i + 2, resource: { buffer: b.buffer } });
    });
    bg = this.device.createBindGroup({ layout: this.layout(nInputs).bgl, entries });
    // bounded cache: buffers are pooled, so a steady loop keeps hitting the same keys
    if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
    this.bindGroups.set(key, bg);
    return bg;
  }
}
