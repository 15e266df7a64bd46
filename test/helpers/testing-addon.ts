// The testing addon (build/Release/testing/vdpa_testing.node, never shipped) and its one complete
// type. Ring tests and benchmarks import `testingAddon` from here; VDPA_TESTING_NATIVE_PATH selects
// another build of it (the sanitizer one), as VDPA_NATIVE_PATH does for the shipped addon.
import fs from 'node:fs';
import path from 'node:path';
import { type ErrorClassSink, loadAddon, packageRoot } from '../../lib/native';

export interface DeviceBuf {
  offset: number;
  length: number;
}

export interface DeviceChainView {
  head: number;
  readable: DeviceBuf[];
  writable: DeviceBuf[];
}

/** devicePop(): undefined when the ring is empty, `{error}` for a malformed chain, else the chain. */
export type DevicePopResult = undefined | { error: string } | DeviceChainView;

export interface LoopbackState {
  broken: boolean;
  reason: string;
  inFlight: number;
  freeDescriptors: number;
}

/** A split-ring descriptor as it is in ring memory. */
export interface SplitDescView {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

/** A packed-ring descriptor as it is in ring memory. */
export interface PackedDescView {
  addr: bigint;
  len: number;
  flags: number;
  id: number;
}

/** One packed-ring event suppression structure. */
export interface EventView {
  flags: number;
  off: number;
  wrap: boolean;
}

/**
 * A driver-side and a device-side ring sharing one region in this process. Region handle 1 in a
 * batch names `data`; `completions` holds the [token, len] pairs of the last drain().
 */
export interface RingLoopback {
  readonly data: ArrayBuffer;
  readonly completions: Uint32Array<ArrayBuffer>;
  readonly packed: boolean;
  submit(batch: Uint32Array, chainCount: number): number;
  publish(): boolean;
  drain(): number;
  enableInterrupts(): boolean;
  state(): LoopbackState;
  abandon(): Uint32Array;
  devicePop(): DevicePopResult;
  /** Answers every available chain with `len` bytes (default: its writable size). */
  deviceCompleteAll(len?: number): number;
  devicePush(id: number, len: number): void;
  devicePublish(): boolean;
  deviceEnableNotify(): boolean;
  deviceJumpUsedIdx(delta: number): void;
  /** The fifth argument is `next` on a split ring, the buffer id on a packed one. */
  pokeDescriptor(index: number, addr: bigint, len: number, flags: number, nextOrId: number): void;
  peekDescriptor(index: number): SplitDescView | PackedDescView;
  /** Split rings only (RangeError on a packed one). */
  pokeAvail(head: number, advance: number): void;
  /** Packed rings only (RangeError on a split one). */
  eventSuppression(): { driver: EventView; device: EventView };
  /** Packed rings only (RangeError on a split one). */
  pokeEventSuppression(driverSide: boolean, flags: number, offWrap: number): void;
  /** Submit, device answers all, drain: one call per batch (the ring benchmark). */
  roundTrip(batch: Uint32Array, chainCount: number): number;
  /** `iterations` rounds of `batch` one-segment chains, all in C++; returns nanoseconds. */
  runNative(iterations: number, batch: number): number;
}

export interface SplitRingLoopback extends RingLoopback {
  readonly packed: false;
  peekDescriptor(index: number): SplitDescView;
}

export interface PackedRingLoopback extends RingLoopback {
  readonly packed: true;
  peekDescriptor(index: number): PackedDescView;
}

export interface RingLoopbackConstructor {
  new (size: number, eventIdx: boolean, indirectMax: number, dataBytes: number, packed: true): PackedRingLoopback;
  new (size: number, eventIdx: boolean, indirectMax: number, dataBytes: number, packed?: false): SplitRingLoopback;
}

/** Where the virtio-pci unit found one capability: which BAR, at what offset, how long. */
export interface VirtioPciRegion {
  present: boolean;
  bar: number;
  offset: number;
  length: number;
}

/** What the fake virtio-pci function should look like and do. */
export interface VirtioPciBringUpOptions {
  deviceType?: number;
  deviceFeatures?: bigint;
  driverFeatures?: bigint;
  numQueues?: number;
  queueMaxSize?: number;
  msixVectors?: number;
  /** Status reads that still return non-zero after a reset is written. */
  resetDelayReads?: number;
  neverResets?: boolean;
  resetTimeoutMs?: number;
  /** Make that capability point past the end of its BAR. */
  badCapability?: 'common' | 'notify';
  config?: Uint8Array;
  queues?: { index: number; size: number; desc?: bigint; driver?: bigint; device?: bigint }[];
}

/** What the virtio-pci unit did to the fake function, and what the fake saw. */
export interface VirtioPciBringUpResult {
  deviceType?: number;
  capabilities?: {
    common: VirtioPciRegion;
    notify: VirtioPciRegion;
    isr: VirtioPciRegion;
    device: VirtioPciRegion;
    notifyMultiplier: number;
  };
  configSize?: number;
  maxQueueSizes?: number[];
  deviceFeatures?: bigint;
  featuresOk?: boolean;
  status?: number;
  config?: Uint8Array;
  error?: { code: string; syscall: string; message: string; hint: string };
  resetDone: boolean;
  statusReadsDuringReset: number;
  resets: number;
  driverFeaturesSeen: bigint;
  queues: { size: number; msixVector: number; enabled: boolean; desc: bigint; driver: bigint; device: bigint }[];
  notifies: { offset: number; value: number }[];
  log: string[];
}

export interface TestingAddon extends ErrorClassSink {
  /** Brings up the virtio-pci modern unit against a fake function (no VFIO needed). */
  virtioPciBringUp(options?: VirtioPciBringUpOptions): VirtioPciBringUpResult;
  RingLoopback: RingLoopbackConstructor;
  /** The ring code's event-index rule: whether moving from `oldIdx` to `newIdx` passes `event`. */
  needEvent(event: number, newIdx: number, oldIdx: number): boolean;
  /** The C++ mock:blk loop: `ops` 4 KiB requests at `depth` (1..256) on a fresh disk of `capacity` bytes. */
  benchMockBlk(depth: number, ops: number, write: boolean, capacity: number): { ops: number; nanoseconds: number };
}

/** Where the build puts the testing addon (its own folder: build/Release holds only vdpa.node). */
export function testingAddonPath(): string {
  const file = path.join(packageRoot(), 'build', 'Release', 'testing', 'vdpa_testing.node');
  // A build/ from before the testing addon existed satisfies node-gyp-build, which then builds nothing.
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run npm run build:native`);
  return file;
}

export const testingAddon: TestingAddon = loadAddon<TestingAddon>('VDPA_TESTING_NATIVE_PATH', testingAddonPath);
