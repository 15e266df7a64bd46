// What every device served here through VDUSE shares: attaching it as a vdpa device (createDevice +
// bindDriver, undone when a step fails), detaching it, and closing it, one step after another.
import { abortError } from './call';
import type { DeviceEntry } from './discovery';
import { vdpaError, type VdpaError } from './errors';
import { bindDriver, createDevice, deleteDevice, getDevice, type VdpaDriver } from './management';
import { checkInteger, checkObject } from './validate';

/** Options of {@link VduseDevice.attach}. */
export interface VduseAttachOptions {
  /** Bound on each wait for the kernel, in ms (default 30000). */
  timeout?: number;
  /** Cancels the attach between its steps; a vdpa device made meanwhile is deleted again. */
  signal?: AbortSignal;
}

/** @internal An error about the VDUSE device `name` (its node /dev/vduse/NAME). */
export function vduseError(code: 'EBUSY' | 'EBADF', syscall: string, name: string, detail: string): VdpaError {
  return vdpaError(code, syscall, `/dev/vduse/${name}`, detail);
}

/**
 * A device this process serves through VDUSE ({@link VduseBlkDevice}, {@link VduseNetDevice}):
 * attaching, detaching and closing. These run one after another, never at once.
 */
export abstract class VduseDevice implements AsyncDisposable {
  /** The VDUSE and vdpa device name. */
  readonly name: string;
  private entry: DeviceEntry | undefined;
  private busy: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  /** @internal `entry`: the vdpa device a reconnected device is already attached as. */
  protected constructor(name: string, entry?: DeviceEntry) {
    this.name = name;
    this.entry = entry;
  }

  /**
   * The entry of the attached vdpa device (`blockDevice` or `netdev` for virtio_vdpa, `path` for
   * vhost_vdpa), or undefined while detached.
   */
  get attached(): DeviceEntry | undefined {
    return this.entry;
  }

  /**
   * Creates the vdpa device (`createDevice({ name, mgmtdev: 'vduse' })`) and binds it to `driver`:
   * `'virtio_vdpa'` (the kernel's own virtio_blk or virtio_net: the entry's `blockDevice`, e.g.
   * `/dev/vdb`, or `netdev`, e.g. `eth1`) or `'vhost_vdpa'` (the entry's `path`, `/dev/vhost-vdpa-N`,
   * for `openBlk`/`openNet` or QEMU). Needs root. EBUSY while already attached.
   */
  attach(driver: VdpaDriver, options: VduseAttachOptions = {}): Promise<DeviceEntry> {
    if (driver !== 'virtio_vdpa' && driver !== 'vhost_vdpa')
      throw new RangeError(`driver must be 'virtio_vdpa' or 'vhost_vdpa', got ${JSON.stringify(driver)}`);
    checkObject(options, 'options');
    const { timeout, signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw new TypeError('options.signal must be an AbortSignal');
    const bind = timeout === undefined ? {} : { timeoutMs: checkInteger(timeout, 'timeout', 1, 3_600_000) };
    return this.serialize(async () => {
      this.checkOpen('attach');
      if (this.entry) throw vduseError('EBUSY', 'attach', this.name, `already attached to ${this.entry.driver}`);
      if (signal?.aborted) throw abortError(signal);
      await createDevice({ name: this.name, mgmtdev: 'vduse' });
      try {
        if (signal?.aborted) throw abortError(signal);
        this.entry = await bindDriver(this.name, driver, bind);
        if (signal?.aborted) throw abortError(signal);
      } catch (e) {
        this.entry = undefined;
        await deleteDevice(this.name).catch(() => undefined);
        throw e;
      }
      return this.entry;
    });
  }

  /**
   * Deletes the vdpa device (its /dev/vdX, netdev or /dev/vhost-vdpa-N goes away); the VDUSE device
   * stays and can be attached again. EBUSY, without deleting, while the kernel side is in use (a
   * mounted disk, an open vhost node). Does nothing while detached.
   */
  detach(): Promise<void> {
    return this.serialize(async () => {
      if (this.closing === undefined) this.checkOpen('detach');
      if (!this.entry && !(await getDevice(this.name).catch(() => undefined))) return;
      await deleteDevice(this.name);
      this.entry = undefined;
    });
  }

  /**
   * Detaches (if attached), stops the device thread and destroys the VDUSE device. Once only: later
   * calls return the same promise. A failed detach (EBUSY: still mounted or open) rejects it and
   * leaves the device working; call close() again once it is free.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const p = this.serialize(async () => {
      if (this.entry) {
        await deleteDevice(this.name);
        this.entry = undefined;
      }
      await this.release();
    });
    this.closing = p;
    p.catch(() => {
      this.closing = undefined; // still open: close() may be tried again
    });
    return p;
  }

  /** `await using dev = await createVduseBlk(...)` closes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Stops the device thread and destroys the VDUSE device; the vdpa device is gone by then. */
  protected abstract release(): Promise<void>;

  /** EBADF once close() has begun. */
  protected checkOpen(what: string): void {
    if (this.closing) throw vduseError('EBADF', what, this.name, 'the device is closed');
  }

  /** Runs `step` after every step started before it (attach, detach, close, a resize). */
  protected serialize<T>(step: () => Promise<T>): Promise<T> {
    const run = this.busy.then(step, step);
    this.busy = run.catch(() => undefined);
    return run;
  }
}
