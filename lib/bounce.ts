// Bounce buffers for requests on ordinary (non-DMA) memory: 64 KiB chunks in lazily registered
// 1 MiB regions of device memory.
import type { Device } from './device';
import { Fifo } from './fifo';

export const BOUNCE_CHUNK = 64 * 1024;
const BOUNCE_REGION = 16 * BOUNCE_CHUNK;

export interface BounceChunk {
  region: number;
  offset: number;
  bytes: Uint8Array;
}

export class BouncePool {
  private readonly free: BounceChunk[] = [];
  private regions = 0;
  private chunks = 0;
  /** Callbacks waiting for a chunk, oldest first. */
  private readonly waiters = new Fifo<() => void>();

  /**
   * One region is mapped at open, before any I/O. On vhost-vdpa the pool stays at that size: a
   * mapping change while requests are in flight makes a VDUSE device re-map everything (its daemon
   * drops the buffers of requests it is working on), so no IOTLB update may happen under I/O.
   */
  constructor(
    private readonly device: Device,
    private readonly maxRegions: number,
  ) {
    this.grow();
  }

  /** @internal Chunks in the pool and how many of them are free (for tests). */
  get stats(): { chunks: number; free: number } {
    return { chunks: this.chunks, free: this.free.length };
  }

  acquire(): BounceChunk | undefined {
    if (this.free.length === 0 && this.regions < this.maxRegions) {
      try {
        this.grow();
      } catch {
        // Out of pinnable memory (RLIMIT_MEMLOCK) or IOVA space: wait for a chunk in use.
        return undefined;
      }
    }
    return this.free.pop();
  }

  release(chunk: BounceChunk): void {
    this.free.push(chunk);
    // A loop, not a chain of calls: a waiter that fails (or was aborted) without taking the chunk
    // hands it on.
    while (this.free.length > 0 && this.waiters.length > 0) (this.waiters.shift() as () => void)();
  }

  whenFree(fn: () => void): void {
    this.waiters.push(fn);
  }

  /** The device failed: every waiter runs now, sees the failure and settles. */
  wakeAll(): void {
    for (const fn of this.waiters.drain()) fn();
  }

  private grow(): void {
    const r = this.device.allocInternal(BOUNCE_REGION);
    this.regions++;
    for (let off = 0; off < BOUNCE_REGION; off += BOUNCE_CHUNK) {
      this.free.push({ region: r.handle, offset: off, bytes: r.bytes.subarray(off, off + BOUNCE_CHUNK) });
      this.chunks++;
    }
  }
}
