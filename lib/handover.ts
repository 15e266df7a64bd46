// Hand-over: a running driver moves from one device to another without losing a request. The new
// device is opened and brought up while the old one still carries I/O; then the old one is held (no
// more submissions), suspended where the transport offers it or else drained (bounded by its
// requestTimeout), the chains it did not complete are taken back and re-issued on the new device,
// and the old one is reset and closed. Buffers from allocBuffer are registered on the new device
// under the same handles, so every chain and buffer the driver holds stays valid there.
import { abortError } from './call';
import { BLK_CONFIG_SIZE, BlkConfig, ConfigView, type Field } from './config';
import { BlkFeature, Feature } from './constants';
import { openDevice, type Device } from './device';
import { vdpaError } from './errors';
import type { OpenOptions } from './options';
import type { QueueDriver } from './queue';
import { checkBoolean, checkInteger, checkObject } from './validate';

/** Options for {@link BlkDevice.handOver} and {@link NetDevice.handOver}. */
export interface HandOverOptions extends OpenOptions {
  /**
   * Cancels the hand-over while the new device is being opened and brought up: it rejects with an
   * `AbortError` and the driver stays on its device. Once the switch itself has begun (bounded by
   * the old device's `requestTimeout`), it runs to its end.
   */
  signal?: AbortSignal | undefined;
  /** Milliseconds the bring-up of the new device may take before the hand-over rejects with `'ETIMEDOUT'`. */
  timeout?: number;
  /** Drain the old device even when it could be suspended. Default false. */
  drain?: boolean;
}

/** What a hand-over did; also the argument of the `'handOver'` event. */
export interface HandOverResult {
  /** Milliseconds from the last submission to the old device to the first to the new one. */
  pausedMs: number;
  /**
   * Requests (chains) the old device had not completed, re-issued on the new one (net: frames to
   * send; receive buffers are posted afresh and not counted).
   */
  reissued: number;
  /** Path of the device left. */
  from: string;
  /** Path of the device taken over. */
  to: string;
  /**
   * How the old device was stopped: `'suspend'` (it returned what it had finished and stopped),
   * `'drain'` (it returned everything it held), or `'reset'` (a drain that ran out of time, or a
   * device that broke: it was reset first, and what it held was re-issued).
   */
  method: 'suspend' | 'drain' | 'reset';
}

/** @internal What a driver (BlkDevice, NetDevice) gives the hand-over. */
export interface HandOverDriver<C> {
  /** The driver object: one hand-over at a time per driver. */
  readonly owner: object;
  readonly device: Device;
  /** Virtio device type and its name for errors (`'a block device'`). */
  readonly type: number;
  readonly what: string;
  /** RangeError (or VdpaError) when the driver cannot live with `device` and its features `f`. */
  check(device: Device, f: bigint): unknown;
  /** Handles of the old device's regions the new one does not need (per-queue request headers). */
  readonly skipHandles: number[];
  /** Sets up the driver's queues on `device` and starts it; resolves to what installs them. */
  bringUp(device: Device): Promise<() => void>;
  /**
   * The chains taken back from the old device, to be placed again (on the new one by now); returns
   * how many it re-issued when that is not all of them (net: receive buffers are posted afresh).
   */
  reissue(chains: C[]): number | void;
  emit(result: HandOverResult): void;
}

const inProgress = new WeakSet<object>();

/** @internal Moves `driver` to the device at `path`; see {@link BlkDevice.handOver} and {@link NetDevice.handOver}. */
export async function handOver<C>(
  path: string,
  options: HandOverOptions | undefined,
  driver: HandOverDriver<C>,
): Promise<HandOverResult> {
  if (typeof path !== 'string') throw new TypeError('device path must be a string');
  const opts = options ?? {};
  checkObject(opts, 'options');
  const { signal, timeout, drain, ...openOptions } = opts;
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new TypeError('options.signal must be an AbortSignal');
  if (timeout !== undefined) checkInteger(timeout, 'options.timeout', 1, 2 ** 31 - 1);
  if (drain !== undefined) checkBoolean(drain, 'options.drain');
  const old = driver.device;
  old.check('handOver');
  if (inProgress.has(driver.owner))
    throw vdpaError('EBUSY', 'handOver', old.path, 'a hand-over of this driver is already in progress');
  if (signal?.aborted) throw abortError(signal);
  inProgress.add(driver.owner);
  try {
    const install = await bringUpNew(path, openOptions, driver, signal, timeout);
    return await switchOver(old, install.device, install.install, driver, drain === true);
  } finally {
    inProgress.delete(driver.owner);
  }
}

/** Opens and brings up the new device; on any failure (or abort, or a close meanwhile) it is closed again. */
async function bringUpNew<C>(
  path: string,
  openOptions: OpenOptions,
  driver: HandOverDriver<C>,
  signal: AbortSignal | undefined,
  timeout: number | undefined,
): Promise<{ device: Device; install: () => void }> {
  const old = driver.device;
  let timer: NodeJS.Timeout | undefined;
  let stopped: Error | undefined;
  const stop = (err: Error): void => {
    stopped ??= err;
  };
  const onAbort = (): void => stop(abortError(signal as AbortSignal));
  signal?.addEventListener('abort', onAbort, { once: true });
  if (timeout !== undefined)
    timer = setTimeout(
      () =>
        stop(
          vdpaError('ETIMEDOUT', 'handOver', path, `the new device was not up within ${timeout} ms (options.timeout)`),
        ),
      timeout,
    );
  // The steps on the threadpool cannot be cut short: the hand-over gives up between them.
  const checkpoint = (): void => {
    if (stopped) throw stopped;
    if (old.closed) throw vdpaError('EBADF', 'handOver', old.path, 'the device was closed during the hand-over');
  };
  try {
    const device = await openDevice(path, openOptions);
    try {
      checkpoint();
      if (device.deviceId !== driver.type)
        throw vdpaError('ENODEV', 'handOver', path, `not ${driver.what} (virtio device id ${device.deviceId})`);
      device.shareHandlesWith(old);
      // Exactly what the old device agreed to, or a subset of it: the driver knows those.
      const f = await device.negotiate(old.features);
      checkpoint();
      driver.check(device, f);
      device.adoptRegionsOf(old, driver.skipHandles);
      const install = await driver.bringUp(device);
      checkpoint();
      return { device, install };
    } catch (e) {
      await device.close();
      throw e;
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The switch: hold the old device, stop it, move its chains, close it. No request fails meanwhile. */
async function switchOver<C>(
  old: Device,
  next: Device,
  install: () => void,
  driver: HandOverDriver<C>,
  forceDrain: boolean,
): Promise<HandOverResult> {
  const oldQueues: readonly QueueDriver<unknown>[] = old.queueDrivers;
  // A failure of the old device from now on (a timeout, a broken ring) settles nothing: its chains
  // are taken back and re-issued like the rest.
  for (const q of oldQueues) q.keepChainsOnFailure = true;
  next.holdForHandOver(true);
  old.holdForHandOver(true);
  const t0 = performance.now();
  // New requests go to the new device from here on (held there until the switch ends).
  install();
  let method: HandOverResult['method'];
  if (!forceDrain && old.state === 'open' && old.canSuspend()) {
    try {
      await old.suspend();
      method = 'suspend';
    } catch {
      method = 'reset';
    }
  } else {
    const budget = old.requestTimeout > 0 ? old.requestTimeout : DRAIN_BUDGET_MS;
    const failed = new Promise<void>((resolve) => old.onFailure(resolve));
    method = old.state === 'open' && (await old.waitIdle(budget, failed)) ? 'drain' : 'reset';
  }
  const moved = vdpaError('ECANCELED', 'handOver', old.path, 'the driver moved to another device');
  const onDevice = oldQueues.reduce((n, q) => n + q.onDevice, 0);
  const chains: C[] = [];
  for (const q of oldQueues) for (const c of q.takeBack(moved)) chains.push(c as C);
  // Buffers allocated on the old device during the bring-up, then the buffers move for good.
  next.adoptRegionsOf(old, driver.skipHandles);
  next.commitAdoption(old);
  // A device that may still work on chains (not drained, or not known to be idle) is reset before
  // anything it held is issued again: nothing may complete twice.
  if (method === 'reset' || (method === 'suspend' && onDevice > 0)) await old.closeForHandOver();
  const reissued = driver.reissue(chains) ?? chains.length;
  next.holdForHandOver(false);
  const pausedMs = performance.now() - t0;
  await old.closeForHandOver();
  const result: HandOverResult = { pausedMs, reissued, from: old.path, to: next.path, method };
  driver.emit(result);
  return result;
}

/** blk.ts: the entries of the native rings' indirect tables, and the largest request it builds. */
const INDIRECT_TABLE_ENTRIES = 128;
const MAX_REQUEST = 1 << 20;

/** How long a drain waits on a device without a requestTimeout. */
const DRAIN_BUDGET_MS = 30_000;

/**
 * @internal A block device the driver can move to: same capacity and block size, writable if the
 * old one was, the request types and limits it relied on, its queue count and size.
 */
export function checkBlkCompatible(
  old: {
    device: Device;
    capacity: number;
    blockSize: number;
    readOnly: boolean;
    numQueues: number;
    queueSize: number;
  },
  device: Device,
  f: bigint,
): { maxDiscardSectors: number; maxZeroesSectors: number } {
  const was = old.device.features;
  const oldCfg = new ConfigView(old.device.readConfig(0, Math.min(old.device.configSize, BLK_CONFIG_SIZE)));
  const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, BLK_CONFIG_SIZE)));
  const field = (view: ConfigView, features: bigint, fd: Field, feature: bigint, def: number): number =>
    features & feature && view.has(fd) ? view.get(fd) : def;
  const refuse = (what: string): never => {
    throw new RangeError(`cannot hand over to '${device.path}': ${what}`);
  };
  const capacity = cfg.get(BlkConfig.capacity) * 512;
  if (capacity !== old.capacity) refuse(`its capacity is ${capacity} bytes, not ${old.capacity}`);
  const blockSize = field(cfg, f, BlkConfig.blkSize, BlkFeature.BLK_SIZE, 512) || 512;
  if (blockSize !== old.blockSize) refuse(`its block size is ${blockSize}, not ${old.blockSize}`);
  // Offered counts: a device that is read-only says so whether or not the driver asks.
  if (!old.readOnly && (f | device.deviceFeatures) & BlkFeature.RO) refuse('it is read-only');
  const lost = was & (BlkFeature.FLUSH | BlkFeature.DISCARD | BlkFeature.WRITE_ZEROES | Feature.RING_INDIRECT_DESC);
  if ((f & lost) !== lost) refuse(`it lacks features the driver uses (0x${(lost & ~f).toString(16)})`);
  // Requests already split for the old device must fit the new one: segments as long (size_max),
  // as many per request (seg_max, capped by what one chain can hold).
  const segments = (view: ConfigView, features: bigint): { count: number; size: number; request: number } => {
    const chainMax = features & Feature.RING_INDIRECT_DESC ? INDIRECT_TABLE_ENTRIES : old.queueSize;
    const count = Math.max(1, Math.min(field(view, features, BlkConfig.segMax, BlkFeature.SEG_MAX, 1), chainMax - 2));
    const size = Math.max(512, field(view, features, BlkConfig.sizeMax, BlkFeature.SIZE_MAX, MAX_REQUEST)) & ~511;
    return { count, size, request: Math.max(512, Math.min(MAX_REQUEST, count * size) & ~511) };
  };
  const before = segments(oldCfg, was);
  const now = segments(cfg, f);
  if (now.size < before.size) refuse(`its size_max is ${now.size}, below the ${before.size} the driver relies on`);
  const needed = Math.ceil(before.request / before.size);
  if (now.count < needed) refuse(`it takes ${now.count} segments per request, the driver builds up to ${needed}`);
  const offered = Math.max(1, field(cfg, f, BlkConfig.numQueues, BlkFeature.MQ, 1));
  if (offered < old.numQueues) refuse(`it offers ${offered} request queues, the driver uses ${old.numQueues}`);
  const packed = (f & Feature.RING_PACKED) !== 0n;
  for (let i = 0; i < old.numQueues; i++)
    if (device.maxQueueSize(i) < old.queueSize) refuse(`its queue ${i} holds fewer than ${old.queueSize} entries`);
  if (!packed && (old.queueSize & (old.queueSize - 1)) !== 0)
    refuse(`the queue size ${old.queueSize} needs the packed ring, which it does not offer`);
  // Discard and write-zeroes ranges follow the new device's limits (0: none); ranges in flight are
  // split again when re-issued.
  return {
    maxDiscardSectors: field(cfg, f, BlkConfig.maxDiscardSectors, BlkFeature.DISCARD, 0) || 0xffffffff,
    maxZeroesSectors: field(cfg, f, BlkConfig.maxWriteZeroesSectors, BlkFeature.WRITE_ZEROES, 0) || 0xffffffff,
  };
}
