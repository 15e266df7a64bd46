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
  /** A region whose mapping is deferred (vhost-vdpa: until the device is idle) is on its way. */
  private growing = false;
  /** Callbacks waiting for a chunk, oldest first. */
  private readonly waiters = new Fifo<() => void>();

  /**
   * One region is mapped at open, before any I/O; more as requests need them, up to `maxRegions`. On
   * vhost-vdpa a new region's mapping waits until the device is idle (see Device.allocBuffer): its
   * chunks join the pool once it is mapped.
   */
  constructor(
    private device: Device,
    private maxRegions: number,
  ) {
    this.grow();
  }

  /** @internal Chunks in the pool and how many of them are free (for tests). */
  get stats(): { chunks: number; free: number } {
    return { chunks: this.chunks, free: this.free.length };
  }

  acquire(): BounceChunk | undefined {
    if (this.free.length === 0 && !this.growing && this.regions < this.maxRegions) {
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

  /** Hand-over: the pool's regions were adopted by `device`; it grows there from now on. */
  moveTo(device: Device): void {
    this.device = device;
  }

  whenFree(fn: () => void): void {
    this.waiters.push(fn);
  }

  /** The device failed: every waiter runs now, sees the failure and settles. */
  wakeAll(): void {
    for (const fn of this.waiters.drain()) fn();
  }

  private grow(): void {
    const r = this.device.allocInternal(BOUNCE_REGION, (err) => {
      this.growing = false;
      if (err) {
        // Refused (out of pinnable memory, say): make do with what is mapped.
        this.regions--;
        this.maxRegions = this.regions;
        return;
      }
      this.addChunks(r.handle, r.bytes);
      while (this.free.length > 0 && this.waiters.length > 0) (this.waiters.shift() as () => void)();
    });
    this.regions++;
    if (r.pending) this.growing = true;
    else this.addChunks(r.handle, r.bytes);
  }

  private addChunks(handle: number, bytes: Uint8Array): void {
    for (let off = 0; off < BOUNCE_REGION; off += BOUNCE_CHUNK) {
      this.free.push({ region: handle, offset: off, bytes: bytes.subarray(off, off + BOUNCE_CHUNK) });
      this.chunks++;
    }
  }
}
