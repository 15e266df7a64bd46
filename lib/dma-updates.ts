// DMA mapping changes on transports where one must not race I/O (vhost-vdpa: a VDUSE daemon drops the
// mappings of the requests it is working on). Native code queues each change; here new submissions
// are held, the chains the device holds are waited for (a late one times out through the deadline
// wheel and fails the device), the queued changes are applied on the threadpool in one IOTLB batch,
// and the held submissions go out.
import type { VdpaError } from './errors';
import type { NativeDevice } from './native';

/** What {@link DmaUpdates} needs of each queue. */
export interface QuiescableQueue {
  /** Chains the device holds now (not counting those held back in the batch). */
  readonly onDevice: number;
  /** Whether this queue's chains must be back before an update (receive buffers wait for traffic: no). */
  readonly drainsForDma: boolean;
  /** Submits what was held back. */
  flush(): void;
}

/** Called once the mapping of a region was applied (`err` undefined) or refused. */
export type MappedCallback = (err: VdpaError | undefined) => void;

export class DmaUpdates {
  /** Regions whose mapping is queued in native code, by handle. */
  private waiting = new Map<number, MappedCallback[]>();
  private scheduled = false;
  /** Native code has updates queued (as of the last change or run). */
  private queued = false;
  private running = false;
  private stopped = false;

  constructor(
    private readonly nativeDevice: NativeDevice,
    private readonly queues: readonly QuiescableQueue[],
  ) {}

  /** True while submissions must stay off the device. */
  get holding(): boolean {
    return this.running || this.queued;
  }

  /**
   * A region was allocated (`pending`: its mapping is queued; `onMapped` runs once it was applied)
   * or freed: if native code queued an update, start one.
   */
  changed(handle: number, pending: boolean, onMapped?: MappedCallback): void {
    if (this.stopped) return;
    if (pending) this.waiting.set(handle, onMapped ? [onMapped] : []);
    else this.waiting.delete(handle);
    const wasQueued = this.queued;
    this.queued = this.nativeDevice.dmaPending();
    // A free that dropped the only queued mapping: nothing to wait for any more.
    if (wasQueued && !this.queued && !this.running) this.resume();
    if (!this.queued || this.scheduled) return;
    this.scheduled = true;
    // After this tick: everything allocated or freed in it goes in one batch.
    queueMicrotask(() => {
      this.scheduled = false;
      this.tryRun();
    });
  }

  /** A queue's device-held chains may have dropped to zero. */
  drained(): void {
    if (!this.scheduled) this.tryRun();
  }

  /** The device failed or closed: nothing more is applied, nobody waits. */
  stop(err: VdpaError): void {
    this.stopped = true;
    this.queued = false;
    const waiting = this.waiting;
    this.waiting = new Map();
    for (const list of waiting.values()) for (const fn of list) fn(err);
  }

  private tryRun(): void {
    if (this.running || !this.queued) return;
    for (const q of this.queues) if (q.drainsForDma && q.onDevice > 0) return;
    this.running = true;
    this.queued = false;
    const batch = this.waiting;
    this.waiting = new Map();
    try {
      this.nativeDevice.applyDmaUpdates((failures) => this.applied(batch, failures));
    } catch (e) {
      // The device is closing (EBADF): nothing is applied any more; its close settles the requests.
      this.running = false;
      this.waiting = batch;
      this.stop(e as VdpaError);
    }
  }

  private applied(batch: Map<number, MappedCallback[]>, failures: { handle: number; error: VdpaError }[]): void {
    this.running = false;
    if (this.stopped) return;
    const failed = new Map(failures.map((f) => [f.handle, f.error]));
    for (const [handle, list] of batch) for (const fn of list) fn(failed.get(handle));
    // Updates queued meanwhile go first (nothing is on the device yet); then the held submissions.
    this.queued = this.nativeDevice.dmaPending();
    if (this.queued) return this.tryRun();
    this.resume();
  }

  private resume(): void {
    for (const q of this.queues) q.flush();
  }
}
