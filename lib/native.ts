// Loads the addon and types its surface. Nothing outside lib/ sees these objects directly.
import path from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import { VdpaError } from './errors';

/** Options the native layer understands when opening a device (mock devices use most of them). */
export interface NativeOpenOptions {
  capacity?: number;
  numQueues?: number;
  maxQueueSize?: number;
  segMax?: number;
  sizeMax?: number;
  blockSize?: number;
  readOnly?: boolean;
  mac?: Uint8Array;
  mtu?: number;
  fault?: string;
  faultAfter?: number;
}

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
  free(): void;
}

export interface NativeQueue {
  /** [token, len] pairs written before each completion callback. */
  readonly completions: Uint32Array;
  readonly size: number;
  readonly index: number;
  submit(batch: Uint32Array, count: number): number;
  ref(): void;
  unref(): void;
}

export type NativeCompletionCallback = (count: number, brokenReason: string | undefined) => void;

export interface NativeDevice {
  info(): NativeDeviceInfo;
  status(): number;
  setStatus(status: number): void;
  negotiate(wanted: bigint): bigint;
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, data: Uint8Array): void;
  maxQueueSize(index: number): number;
  createQueue(index: number, size: number, onComplete: NativeCompletionCallback): NativeQueue;
  allocRegion(size: number, hugePages: boolean): NativeRegion;
  start(): void;
  onConfigChange(callback: (kind: 'config' | 'removal') => void): void;
  close(): void;
  vhostInfo(): {
    backendFeatures: bigint;
    offeredBackendFeatures: bigint;
    iovaFirst: bigint;
    iovaLast: bigint;
    groupCount: number;
    asidCount: number;
  };
  vhostSuspend(): void;
  vhostResume(): void;
  vhostVringBase(index: number): number;
  vhostVqGroup(index: number): number;
  vhostSetGroupAsid(group: number, asid: number): void;
}

export interface RingLoopbackChain {
  head?: number;
  error?: string;
  readable?: { offset: number; length: number }[];
  writable?: { offset: number; length: number }[];
}

export interface NativeRingLoopback {
  readonly completions: Uint32Array;
  readonly data: ArrayBuffer;
  submit(batch: Uint32Array, count: number): number;
  publish(): boolean;
  devicePop(): RingLoopbackChain | undefined;
  deviceCompleteAll(len?: number): number;
  devicePush(id: number, len: number): void;
  devicePublish(): boolean;
  deviceEnableNotify(): boolean;
  deviceJumpUsedIdx(delta: number): void;
  drain(): number;
  enableInterrupts(): boolean;
  state(): { broken: boolean; reason: string; inFlight: number; freeDescriptors: number };
  abandon(): Uint32Array;
  roundTrip(batch: Uint32Array, count: number): number;
  runNative(iterations: number, batch: number): number;
  pokeDescriptor(index: number, addr: bigint, len: number, flags: number, next: number): void;
  pokeAvail(head: number, advance: number): void;
}

export interface NativeAddon {
  Device: new (path: string, options: NativeOpenOptions) => NativeDevice;
  RingLoopback: new (size: number, eventIdx: boolean, indirectMax: number, dataBytes: number) => NativeRingLoopback;
  setErrorClass(cls: new (message: string, info: never) => Error): void;
  mockFaults: string[];
  benchMockBlk(depth: number, ops: number, write: boolean, capacity: number): { ops: number; nanoseconds: number };
  needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean;
  vdpaDeviceInfo(
    name: string,
  ): { deviceId: number; vendorId: number; maxVqs: number; maxVqSize: number; mgmtDev: string } | undefined;
}

function load(): NativeAddon {
  // VDPA_NATIVE_PATH points at a specific vdpa.node (e.g. the sanitizer build); otherwise
  // node-gyp-build picks build/Release or a matching prebuild.
  const override = process.env.VDPA_NATIVE_PATH;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addon = (override ? require(path.resolve(override)) : nodeGypBuild(packageRoot())) as NativeAddon;
  addon.setErrorClass(VdpaError);
  return addon;
}

function packageRoot(): string {
  // lib/native.ts compiles to dist/lib/native.js: the package root is two levels up.
  return path.resolve(__dirname, '..', '..');
}

/** The loaded addon (one per thread: each worker loads its own instance). */
export const native: NativeAddon = load();
