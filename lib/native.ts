// Loads the addon and types its surface. Nothing outside lib/ sees these objects directly (the
// testing addon, test/helpers/testing-addon.ts, is loaded by the same loadAddon()).
import path from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import { VdpaError } from './errors';
import type { MockOptions } from './options';

/**
 * Options the native layer understands when opening a device: exactly the mock's settings (the
 * other transports take none), passed flat; transport/mock/mock_options.cc checks them again.
 */
export type NativeOpenOptions = MockOptions;

export interface NativeDeviceInfo {
  transport: string;
  path: string;
  deviceId: number;
  vendorId: number;
  deviceFeatures: bigint;
  maxQueues: number;
  configSize: number;
}

export interface NativeRegion {
  readonly buffer: ArrayBuffer;
  readonly handle: number;
  readonly size: number;
  readonly hugePages: boolean;
  /** The mapping is queued: applied by the next {@link NativeDevice.applyDmaUpdates}. */
  readonly pending: boolean;
  free(): void;
}

export interface NativeQueue {
  /** [token, len] pairs written before each completion callback. */
  readonly completions: Uint32Array<ArrayBuffer>;
  readonly size: number;
  readonly index: number;
  submit(batch: Uint32Array, count: number): number;
  ref(): void;
  unref(): void;
  /** Microseconds to poll the used ring after each wake-up's completions (0 = none). */
  setPoll(microseconds: number): void;
  /** Hands over what the used ring holds now (a hand-over, once the device was suspended). */
  deliver(): void;
  /** true: completions stay in the used ring (a native loop takes them); false: to JS again, at once. */
  park(on: boolean): void;
}

export interface NativeVhostInfo {
  backendFeatures: bigint;
  offeredBackendFeatures: bigint;
  iovaFirst: bigint;
  iovaLast: bigint;
  groupCount: number;
  asidCount: number;
}

/** The vhost-vdpa control of a device whose transport is vhost-vdpa. */
export interface NativeVhost {
  info(): NativeVhostInfo;
  suspend(): void;
  resume(): void;
  vringBase(index: number): number;
  vqGroup(index: number): number;
  setGroupAsid(group: number, asid: number): void;
}

/** `broken`: the VdpaError (code EPROTO) the queue's requests fail with once the ring broke. */
export type NativeCompletionCallback = (count: number, broken: VdpaError | undefined) => void;

export interface NativeDevice {
  info(): NativeDeviceInfo;
  status(): number;
  setStatus(status: number): void;
  /** Reset, features, FEATURES_OK on the threadpool; resolves to the accepted features. */
  negotiate(wanted: bigint): Promise<bigint>;
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, data: Uint8Array): void;
  maxQueueSize(index: number): number;
  /** Queue setup on the threadpool (the device refuses other calls with EBUSY meanwhile). */
  createQueue(index: number, size: number, onComplete: NativeCompletionCallback): Promise<NativeQueue>;
  allocRegion(size: number, hugePages: boolean): NativeRegion;
  /** Whether region mappings or unmaps are queued (transports that quiesce around DMA updates). */
  dmaPending(): boolean;
  /** Applies the queued DMA updates on the threadpool; no chain may be on the device meanwhile. */
  applyDmaUpdates(done: (failures: { handle: number; error: VdpaError }[]) => void): void;
  /** Enables the queues and sets DRIVER_OK, on the threadpool. */
  start(): Promise<void>;
  onConfigChange(callback: (kind: 'config' | 'removal') => void): void;
  /**
   * Closes on the threadpool: waits (at most `budgetMs`, at most 1 s) for the chains of the
   * `awaited` queues while their completions keep being delivered, then resets the device and
   * unmaps its memory; resolves once the queues are stopped. Once only.
   */
  close(awaited: number[], budgetMs: number): Promise<void>;
  /** The vhost-vdpa control, or undefined on other transports. */
  vhost(): NativeVhost | undefined;
  /** Hand-over: this device, just opened, draws region handles from `from`'s handle space. */
  shareHandles(from: NativeDevice): void;
  /** Hand-over: registers `from`'s live regions (except `skip`) here under the same handles. */
  adoptRegions(from: NativeDevice, skip: number[]): { region: NativeRegion; pending: boolean }[];
  /** Hand-over: the adopted regions are this device's now (`from`'s close leaves them attached). */
  commitAdoption(from: NativeDevice): void;
  /** Whether the transport offers suspend (vhost-vdpa VHOST_BACKEND_F_SUSPEND, mock option). */
  canSuspend(): boolean;
  /** Suspends the device on the threadpool: it stops processing queues. */
  suspend(): Promise<void>;
}

/** A native frame loop over queues of open devices (native/napi/net_loop_wrap.h). */
export interface NativeNetLoop {
  addPath(
    rxQueue: NativeQueue | null,
    rxRegion: number,
    rxSlot: number,
    mergeable: boolean,
    txQueue: NativeQueue | null,
    txRegion: number,
    txSlot: number,
    maxFrame: number,
  ): void;
  setGenerator(frame: Uint8Array, count: number, rate: number): void;
  start(): void;
  stop(drain: boolean): void;
  /** [frames, bytes, drops, errors] */
  stats(): [number, number, number, number];
}

export interface NativeAddon extends ErrorClassSink {
  /** `onDone(err, which)`: once, when the loop ended; `which` = the queue `err` is about (addPath order), or -1. */
  NativeNetLoop: new (onDone: (err: VdpaError | undefined, which: number) => void) => NativeNetLoop;
  /** Opens the transport on the threadpool. */
  openDevice(path: string, options: NativeOpenOptions): Promise<NativeDevice>;
  mockFaults: string[];
  mockNetFaults: string[];
  /** Sends one netlink request on the threadpool; resolves with the raw messages of its answer. */
  netlinkTransact(request: Uint8Array, timeoutMs: number): Promise<Uint8Array[]>;
}

/** What every addon of this package exports: the class its native errors are built with. */
export interface ErrorClassSink {
  setErrorClass(cls: new (message: string, info: never) => Error): void;
}

/**
 * @internal Loads one of this package's addons: the file `process.env[overrideVar]` names if set,
 * else `defaultPath()`, and registers VdpaError with it. Each thread (worker) loads its own instance.
 */
export function loadAddon<T extends ErrorClassSink>(overrideVar: string, defaultPath: () => string): T {
  const override = process.env[overrideVar];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addon = require(override ? path.resolve(override) : defaultPath()) as T;
  addon.setErrorClass(VdpaError);
  return addon;
}

/** @internal The package root (lib/native.ts compiles to dist/lib/native.js: two levels up). */
export function packageRoot(): string {
  return path.resolve(__dirname, '..', '..');
}

/**
 * The shipped addon (one per thread). VDPA_NATIVE_PATH points at a specific vdpa.node (e.g. the
 * sanitizer build); otherwise node-gyp-build picks build/Release or a matching prebuild.
 */
export const native: NativeAddon = loadAddon<NativeAddon>('VDPA_NATIVE_PATH', () =>
  nodeGypBuild.resolve(packageRoot()),
);
