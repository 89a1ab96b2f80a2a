// GPU buffers pooled by size class. Creating and destroying buffers costs driver calls and
// fragments memory; a tensor loop allocates the same few sizes over and over, so freed buffers
// wait in a free list for the next request of their class (the idea of tfjs' buffer_manager.ts).

/** A pooled buffer; the id keys cached bind groups. */
export interface GpuBuf {
  readonly buffer: GPUBuffer;
  readonly id: number;
  /** Allocated bytes (the size class), at least the bytes requested. */
  readonly size: number;
}

/**
 * Round up to a size class: multiples of 256 B below 4 KiB, above that 2^k, 1.25, 1.5 and
 * 1.75 x 2^k. Waste is at most 25% while a loop's sizes still land on few classes.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const p = 2 ** Math.floor(Math.log2(b));
  const q = p / 4;
  return Math.ceil(b / q) * q;
}

let nextId = 1;

export class BufferPool {
  private readonly free = new Map<number, GpuBuf[]>();
  /** Bytes of buffers handed out and not yet returned. */
  bytesInUse = 0;
  peakBytes = 0;
  /** Bytes of buffers waiting in the free lists. */
  poolBytes = 0;
  created = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly usage: GPUBufferUsageFlags,
    private readonly label: string,
  ) {}

  acquire(bytes: number): GpuBuf {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    // the lowest id of the class, not the last freed: a loop then keeps binding the same few
    // buffers, so its bind groups hit the cache instead of piling up (each one is an mmap on
    // lavapipe, freed only when Dawn next ticks; ~65k of them exhaust vm.max_map_count)
    let b: GpuBuf | undefined;
    if (list?.length) {
      let at = 0;
      for (let i = 1; i < list.length; i++) if ((list[i] as GpuBuf).id < (list[at] as GpuBuf).id) at = i;
      b = list[at];
      list[at] = list[list.length - 1] as GpuBuf;
      list.pop();
    }
    if (b) this.poolBytes -= size;
    else {
      b = { buffer: this.device.createBuffer({ size, usage: this.usage, label: this.label }), id: nextId++, size };
      this.created++;
    }
    this.bytesInUse += size;
    if (this.bytesInUse > this.peakBytes) this.peakBytes = this.bytesInUse;
    return b;
  }

  /** Return a buffer for reuse; the caller guarantees no unsubmitted command still uses it. */
  release(b: GpuBuf): void {
    this.bytesInUse -= b.size;
    this.poolBytes += b.size;
    let list = this.free.get(b.size);
    if (!list) {
      list = [];
      this.free.set(b.size, list);
    }
    list.push(b);
  }

  /** Destroy every pooled (free) buffer; returns the ids destroyed so caches can forget them. */
  trim(): number[] {
    const ids: number[] = [];
    for (const list of this.free.values()) {
      for (const b of list) {
        b.buffer.destroy();
        ids.push(b.id);
      }
    }
    this.free.clear();
    this.poolBytes = 0;
    return ids;
  }
}
