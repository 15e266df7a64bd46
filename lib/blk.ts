import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { BOUNCE_CHUNK, BouncePool, type BounceChunk } from './bounce';
import { Call, abortError, requestSignal, runCall, type CallHandle, type RequestOptions } from './call';
import {
  BLK_CONFIG_SIZE,
  BLK_DISCARD_SEGMENT_SIZE,
  BLK_ID_BYTES,
  BLK_REQUEST_HEADER_SIZE,
  BlkConfig,
  BlkDiscardSegment,
  BlkRequestHeader,
  BlkStatus,
  ConfigView,
  type Field,
} from './config';
import { BlkFeature, DeviceType, Feature } from './constants';
import {
  COMMON_FEATURES,
  forwardDeviceEvents,
  inspectLine,
  openForDriver,
  type AllocOptions,
  type Device,
  type DeviceEvents,
  type DmaRegion,
  type InspectStyling,
} from './device';
import { vdpaError } from './errors';
import { checkBlkCompatible, handOver, type HandOverOptions, type HandOverResult } from './handover';
import type { OpenOptions } from './options';
import { TokenWaiters, type QueueDriver } from './queue';
import { BlkReadStream, BlkWriteStream, type BlkReadStreamOptions, type BlkWriteStreamOptions } from './streams';
import { checkBlockRange, checkInteger, checkPollMicros } from './validate';

/** Options for {@link openBlk}. */
export interface BlkOptions extends OpenOptions {
  /**
   * Request queues the driver uses. Default 1. More than the device offers is a RangeError, never
   * silently capped (a mock:blk offers `mock.numQueues`, default 1).
   */
  numQueues?: number;
  /** Entries per queue (a power of two unless packed). Default 256, or the device's maximum if smaller. */
  queueSize?: number;
  /** Use the packed ring when the device offers it; default false. */
  packed?: boolean;
  /**
   * Polling mode: after the completions of each wake-up, keep looking at the used ring for up to
   * this many microseconds (0 to 1,000,000) before waiting for the next interrupt. Completions
   * that arrive meanwhile are handled without an interrupt round trip, which pays where interrupts
   * are expensive (VFIO in a VM, a device on another core) at the price of the JS thread spinning
   * for that long after each batch (never longer per wake-up, so timers and I/O still run). Default 0:
   * interrupts only.
   */
  pollMicros?: number;
}

/** One operation of a {@link BlkDevice.batch}. */
export interface BlkOp {
  op: 'read' | 'write';
  /** Byte offset on the device, multiple of 512. */
  offset: number;
  /** Data to write, or where to read into; length a multiple of 512. */
  buffer: Uint8Array;
}

type DmaLocation = NonNullable<ReturnType<Device['dmaLocation']>>;

const SECTOR = 512;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const T_DISCARD = 11;
const T_WRITE_ZEROES = 13;
// Per-slot metadata: request header, then the discard range or the ID, then the status byte.
const SLOT_BYTES = 64;
const PAYLOAD_AT = BLK_REQUEST_HEADER_SIZE;
const STATUS_AT = PAYLOAD_AT + Math.max(BLK_DISCARD_SEGMENT_SIZE, BLK_ID_BYTES);
const BOUNCE_REGIONS_MAX = 16;
const MAX_REQUEST_BYTES = 1 << 20;
/** Entries of the indirect tables the native rings use: a longer chain needs that many ring slots. */
const INDIRECT_TABLE_ENTRIES = 128;

/**
 * One chain: everything it holds and what to do when it completes. A piece not yet on the device can
 * be placed (again) with `place()`; its data segments are made from `region`/`offset` when it is.
 */
class Piece {
  /** Data: a range of a registered region (-1: none, a flush, discard or getId). */
  region = -1;
  offset = 0;
  range: { sector: number; count: number } | undefined = undefined;
  /** Through a bounce buffer: the chunk and the caller's bytes it stands for. */
  bounce: BounceChunk | undefined = undefined;
  part: Uint8Array | undefined = undefined;
  /** A zero-copy buffer's region: pinned (freeBuffer refuses it) while the device may use it. */
  dma: DmaRegion | undefined = undefined;
  /** The caller's buffer, kept reachable until the piece is done. */
  keep: Uint8Array | undefined = undefined;
  idOut: ((id: string) => void) | undefined = undefined;

  constructor(
    readonly call: CallHandle,
    readonly type: number,
    readonly sector: number,
    /** Bytes of data it moves (0 for flush, discard, write-zeroes). */
    readonly length: number,
  ) {}
}

/** The events of a {@link BlkDevice}: its device's, and `'handOver'` with the result of each hand-over. */
export interface BlkDeviceEvents extends DeviceEvents {
  handOver: [result: HandOverResult];
}

interface BlkQueue {
  driver: QueueDriver<Piece>;
  meta: Uint8Array;
  metaView: DataView;
  metaHandle: number;
}

/**
 * A virtio-blk device driven from Node: promise-per-request I/O, a batch path, zero-copy DMA buffers,
 * and Node streams ({@link createReadStream}, {@link createWriteStream}). Offsets and lengths are
 * bytes and must be multiples of 512. Every request takes a final {@link RequestOptions} with an
 * AbortSignal. Emits the {@link DeviceEvents} of its {@link device}; `await using` closes it.
 */
export class BlkDevice extends EventEmitter<BlkDeviceEvents> implements AsyncDisposable {
  /** Size in bytes; re-read when the device reports a configuration change (a resize). */
  get capacity(): number {
    return this.size;
  }
  /** Logical block size the device reports (512 when it reports none). */
  readonly blockSize: number;
  /** Request queues in use. */
  readonly numQueues: number;
  /** Entries per queue. */
  readonly queueSize: number;
  /** True when the device is read-only (VIRTIO_BLK_F_RO). */
  readonly readOnly: boolean;
  /** The underlying device (features, config space, DMA buffers, `'timeout'` events); a new one after {@link handOver}. */
  get device(): Device {
    return this.current;
  }

  private current: Device;
  private size: number;
  /** Stops re-emitting the current device's events (a hand-over moves on to the next one). */
  private unforward: () => void;

  private readonly queues: BlkQueue[] = [];
  /** Requests waiting for a free slot on any queue, oldest first. */
  private readonly waiters = new TokenWaiters();
  private readonly bounce: BouncePool;
  private readonly maxRequest: number;
  private readonly sizeMax: number;
  private maxDiscardSectors: number;
  private maxZeroesSectors: number;
  private nextQueue = 0;
  private readonly pollMicros: number;

  /** @internal Use {@link openBlk}; `f` is what the device accepted of {@link blkFeatures}. */
  constructor(device: Device, options: BlkOptions, f: bigint) {
    super();
    this.current = device;
    this.unforward = this.follow(device);
    const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, BLK_CONFIG_SIZE)));
    // A field counts when its feature was negotiated and the device's config space holds it.
    const field = (fd: Field, feature: bigint, def: number): number => (f & feature && cfg.has(fd) ? cfg.get(fd) : def);
    this.size = cfg.get(BlkConfig.capacity) * SECTOR;
    this.blockSize = field(BlkConfig.blkSize, BlkFeature.BLK_SIZE, SECTOR) || SECTOR;
    this.readOnly = (f & BlkFeature.RO) !== 0n;
    const offered = field(BlkConfig.numQueues, BlkFeature.MQ, 1);
    const numQueues = options.numQueues === undefined ? 1 : checkInteger(options.numQueues, 'numQueues', 1, 256);
    if (numQueues > Math.max(1, offered))
      throw new RangeError(`numQueues ${numQueues} is more than the device offers (${Math.max(1, offered)})`);
    this.numQueues = numQueues;
    this.pollMicros = checkPollMicros(options.pollMicros);
    const queueSize = device.queueSizeFor(options.queueSize, [0]);
    this.queueSize = queueSize;
    // A request is one chain: header + data + status. It must fit the device's seg_max and the ring:
    // one indirect table, or (without indirect descriptors) the queue itself.
    const chainMax = f & Feature.RING_INDIRECT_DESC ? INDIRECT_TABLE_ENTRIES : queueSize;
    const segMax = Math.max(1, Math.min(field(BlkConfig.segMax, BlkFeature.SEG_MAX, 1), chainMax - 2));
    this.sizeMax = Math.max(SECTOR, field(BlkConfig.sizeMax, BlkFeature.SIZE_MAX, MAX_REQUEST_BYTES)) & ~(SECTOR - 1);
    this.maxRequest = Math.max(SECTOR, Math.min(MAX_REQUEST_BYTES, segMax * this.sizeMax) & ~(SECTOR - 1));
    this.maxDiscardSectors = field(BlkConfig.maxDiscardSectors, BlkFeature.DISCARD, 0) || 0xffffffff;
    this.maxZeroesSectors = field(BlkConfig.maxWriteZeroesSectors, BlkFeature.WRITE_ZEROES, 0) || 0xffffffff;
    this.bounce = new BouncePool(device, BOUNCE_REGIONS_MAX);
    // Requests waiting for a bounce chunk see the failure (queue waiters are woken by the queues).
    device.onFailure(() => this.bounce.wakeAll());
  }

  /**
   * @internal Sets up the request queues and sets DRIVER_OK (each step on the threadpool); on another
   * device for a hand-over, its queues kept in `into`.
   */
  async bringUp(device = this.device, into = this.queues): Promise<void> {
    const maxSegments = Math.max(3, Math.ceil(this.maxRequest / this.sizeMax) + 2);
    for (let i = 0; i < this.numQueues; i++) {
      const meta = device.allocInternal(this.queueSize * SLOT_BYTES);
      const q: BlkQueue = {
        meta: meta.bytes,
        metaView: new DataView(meta.bytes.buffer),
        metaHandle: meta.handle,
        driver: await device.createQueue<Piece>(i, this.queueSize, {
          onChain: (piece, token, len, err) => this.chainDone(q, piece, token, len, err),
          onOrphan: (piece, err) => piece.call.failNow(err),
          maxSegments,
          waiters: this.waiters,
        }),
      };
      if (this.pollMicros > 0) q.driver.setPoll(this.pollMicros);
      into.push(q);
    }
    await device.start();
  }

  /**
   * Moves this driver to another block device without losing a request: the new device is opened
   * and brought up (`options` are its open options) while this one still carries I/O; then this one
   * is suspended (where it offers that) or drained, what it did not complete is re-issued on the
   * new one, and it is reset and closed. Requests issued meanwhile wait, they do not fail. The new
   * device must have the same capacity and block size, be writable if this one is, and offer the
   * features, limits and queues the driver uses (RangeError otherwise); should it fail to open or
   * come up, the hand-over rejects and the driver stays where it was. Emits `'handOver'` with the
   * result; see the README's Hand-over section.
   */
  handOver(path: string, options?: HandOverOptions): Promise<HandOverResult> {
    let limits = { maxDiscardSectors: this.maxDiscardSectors, maxZeroesSectors: this.maxZeroesSectors };
    return handOver<Piece>(path, options, {
      owner: this,
      device: this.device,
      type: DeviceType.blk,
      what: 'a block device',
      check: (device, f) => (limits = checkBlkCompatible(this, device, f)),
      skipHandles: this.queues.map((q) => q.metaHandle),
      bringUp: async (device) => {
        const staged: BlkQueue[] = [];
        await this.bringUp(device, staged);
        return () => {
          this.unforward();
          this.current = device;
          this.unforward = this.follow(device);
          this.queues.splice(0, this.queues.length, ...staged);
          this.bounce.moveTo(device);
          device.onFailure(() => this.bounce.wakeAll());
          this.maxDiscardSectors = limits.maxDiscardSectors;
          this.maxZeroesSectors = limits.maxZeroesSectors;
        };
      },
      reissue: (pieces) => {
        for (const piece of pieces) {
          if (piece.call.settled) this.finish(piece, undefined);
          else if (piece.range) this.placeRange(piece);
          else this.place(piece);
        }
      },
      emit: (result) => this.emit('handOver', result),
    });
  }

  /** Allocates a zero-copy DMA buffer (see {@link Device.allocBuffer}). */
  allocBuffer(size: number, options?: AllocOptions): Uint8Array {
    return this.device.allocBuffer(size, options);
  }

  /**
   * Frees a buffer from {@link allocBuffer} (see {@link Device.freeBuffer}): its views become
   * detached; one a request still holds is refused with code `'EBUSY'`.
   */
  freeBuffer(buffer: Uint8Array): void {
    this.device.freeBuffer(buffer);
  }

  /** Reads `buffer.length` bytes at `offset` into `buffer`; resolves to `buffer`. */
  read<T extends Uint8Array>(offset: number, buffer: T, options?: RequestOptions): Promise<T> {
    return this.io(T_IN, offset, buffer, buffer, options);
  }

  /** Writes `buffer` at `offset`. */
  write(offset: number, buffer: Uint8Array, options?: RequestOptions): Promise<void> {
    return this.io(T_OUT, offset, buffer, undefined, options);
  }

  /**
   * Many reads and writes with one Promise: no Promise or buffer is created per entry. Entries may
   * complete in any order; the Promise settles when all have (rejecting with the first error).
   */
  batch(ops: readonly BlkOp[], options?: RequestOptions): Promise<void> {
    if (!Array.isArray(ops)) return Promise.reject(new TypeError('ops must be an array'));
    return this.request(options, (c) => {
      for (const o of ops) {
        if (o === null || typeof o !== 'object') throw new TypeError('each op must be an object');
        if (o.op !== 'read' && o.op !== 'write') throw new TypeError(`op must be 'read' or 'write'`);
        this.checkData(o.offset, o.buffer, o.op === 'write');
      }
      this.device.check('batch');
      for (const o of ops) {
        if (c.failing) break;
        this.issueData(c, o.op === 'read' ? T_IN : T_OUT, o.offset, o.buffer, this.device.dmaLocation(o.buffer));
      }
    });
  }

  /** Makes completed writes durable (a no-op for write-through devices without VIRTIO_BLK_F_FLUSH). */
  flush(options?: RequestOptions): Promise<void> {
    return this.request(options, (c) => {
      this.device.check('flush');
      if (this.device.features & BlkFeature.FLUSH) this.place(this.start(c, T_FLUSH, 0, 0));
    });
  }

  /** Tells the device a range is unused (VIRTIO_BLK_F_DISCARD). */
  discard(offset: number, length: number, options?: RequestOptions): Promise<void> {
    return this.request(options, (c) => this.startRanges(c, T_DISCARD, offset, length));
  }

  /** Writes zeroes over a range without transferring them (VIRTIO_BLK_F_WRITE_ZEROES). */
  writeZeroes(offset: number, length: number, options?: RequestOptions): Promise<void> {
    return this.request(options, (c) => this.startRanges(c, T_WRITE_ZEROES, offset, length));
  }

  /** The device's serial/ID string (VIRTIO_BLK_T_GET_ID, up to 20 bytes). */
  async getId(options?: RequestOptions): Promise<string> {
    let id = '';
    await this.request(options, (c) => {
      this.device.check('getId');
      const piece = this.start(c, T_GET_ID, 0, BLK_ID_BYTES);
      piece.idOut = (s) => (id = s);
      this.place(piece);
    });
    return id;
  }

  /** See {@link Device.ref}. */
  ref(): this {
    this.device.ref();
    return this;
  }

  /** See {@link Device.unref}. */
  unref(): this {
    this.device.unref();
    return this;
  }

  /**
   * A Readable of the bytes from `start` to `end` (exclusive), read `highWaterMark` bytes per
   * request with at most `depth` requests in flight; see {@link BlkReadStreamOptions}.
   */
  createReadStream(options?: BlkReadStreamOptions): BlkReadStream {
    return new BlkReadStream(this, options);
  }

  /**
   * A Writable that writes what is piped into it from `start` on, in block-aligned requests of
   * `highWaterMark` bytes with at most `depth` in flight; see {@link BlkWriteStreamOptions}.
   */
  createWriteStream(options?: BlkWriteStreamOptions): BlkWriteStream {
    return new BlkWriteStream(this, options);
  }

  /** Resets the device; requests in flight reject with code `'ECANCELED'`. */
  close(): Promise<void> {
    return this.device.close();
  }

  /** Closes the device as {@link close} does: `await using blk = await openBlk(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal One line for `console.log` and `util.inspect`: identity, geometry and state. */
  [inspect.custom](_depth: number, options: InspectStyling): string {
    return inspectLine(
      'BlkDevice',
      {
        path: this.device.path,
        transport: this.device.transport,
        capacity: this.capacity,
        blockSize: this.blockSize,
        numQueues: this.numQueues,
        queueSize: this.queueSize,
        readOnly: this.readOnly,
        state: this.device.state,
      },
      options,
    );
  }

  /** @internal Bounce chunks in the pool and how many are free (for tests). */
  get bounceStats(): { chunks: number; free: number } {
    return this.bounce.stats;
  }

  /**
   * Re-emits the events of `device` (until the returned function is called), re-reading the
   * capacity first on a config change, so a `'configChange'` listener sees the new size.
   */
  private follow(device: Device): () => void {
    const reread = (): void => {
      this.size = new ConfigView(device.readConfig(0, 8)).get(BlkConfig.capacity) * SECTOR;
    };
    device.on('configChange', reread);
    const unforward = forwardDeviceEvents(device, this as EventEmitter<DeviceEvents>);
    return () => {
      device.off('configChange', reread);
      unforward();
    };
  }

  private request(options: RequestOptions | undefined, start: (c: Call) => void): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      signal = requestSignal(options);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return runCall(signal, start);
  }

  /**
   * A read or write: one Promise (resolving with `value`), no closure per request. The checks are
   * those of {@link checkData}, in the same order.
   */
  private io<T>(
    type: number,
    offset: number,
    buffer: Uint8Array,
    value: T,
    options: RequestOptions | undefined,
  ): Promise<T> {
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      try {
        signal = requestSignal(options);
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const c = new Call<T>(signal, value);
    try {
      const dma = this.checkData(offset, buffer, type === T_OUT);
      this.device.check(type === T_OUT ? 'write' : 'read');
      this.issueData(c, type, offset, buffer, dma);
    } catch (e) {
      c.startFailed(e as Error);
    }
    c.pieceDone(undefined);
    return c.promise;
  }

  /** Checks a read or write; returns where a zero-copy buffer is (undefined: bounced). */
  private checkData(offset: number, buffer: Uint8Array, isWrite: boolean): DmaLocation | undefined {
    if (!(buffer instanceof Uint8Array)) throw new TypeError('buffer must be a Uint8Array');
    const dma = this.device.dmaLocation(buffer); // a freed buffer is a TypeError, before its length 0 is a RangeError
    checkBlockRange(offset, buffer.length, this.capacity);
    if (isWrite && this.readOnly) throw vdpaError('EROFS', 'write', this.device.path, 'the device is read-only');
    return dma;
  }

  /** A new piece of `c`, counted until it is done. */
  private start(c: CallHandle, type: number, sector: number, length: number): Piece {
    const piece = new Piece(c, type, sector, length);
    c.addPiece();
    return piece;
  }

  private issueData(
    c: CallHandle,
    type: number,
    offset: number,
    buffer: Uint8Array,
    dma: DmaLocation | undefined,
  ): void {
    const step = dma ? this.maxRequest : Math.min(this.maxRequest, BOUNCE_CHUNK);
    for (let at = 0; at < buffer.length && !c.failing; at += step) {
      const length = Math.min(step, buffer.length - at);
      const piece = this.start(c, type, (offset + at) / SECTOR, length);
      piece.keep = buffer;
      if (dma) {
        piece.dma = dma.region;
        dma.region.pins++;
        piece.region = dma.region.native.handle;
        piece.offset = dma.offset + at;
        this.place(piece);
      } else {
        piece.part = buffer.subarray(at, at + length);
        this.bounced(piece);
      }
    }
  }

  /** Takes a bounce chunk for `piece` (or waits for one), then places it on a queue. */
  private bounced(piece: Piece): void {
    // A request still waiting for a chunk when the device closed or failed fails like one in flight.
    const failed = this.device.pendingFailure;
    if (failed) return this.finish(piece, failed);
    if (piece.call.settled) return this.finish(piece, undefined);
    const chunk = this.bounce.acquire();
    if (!chunk) return this.bounce.whenFree(() => this.bounced(piece));
    piece.bounce = chunk;
    if (piece.type === T_OUT) {
      const part = piece.part as Uint8Array;
      piece.part = undefined;
      if (part.length !== piece.length)
        return this.finish(piece, new TypeError('the buffer to write was detached or shrunk before it was sent'));
      chunk.bytes.set(part);
    }
    piece.region = chunk.region;
    piece.offset = chunk.offset;
    this.place(piece);
  }

  private startRanges(c: CallHandle, type: number, offset: number, length: number): void {
    checkBlockRange(offset, length, this.capacity);
    const name = type === T_DISCARD ? 'discard' : 'writeZeroes';
    this.device.check(name);
    const feature = type === T_DISCARD ? BlkFeature.DISCARD : BlkFeature.WRITE_ZEROES;
    if (!(this.device.features & feature))
      throw vdpaError('EOPNOTSUPP', name, this.device.path, 'the device does not offer this operation');
    if (this.readOnly) throw vdpaError('EROFS', name, this.device.path, 'the device is read-only');
    const maxSectors = type === T_DISCARD ? this.maxDiscardSectors : this.maxZeroesSectors;
    for (let sector = offset / SECTOR, left = length / SECTOR; left > 0 && !c.failing;) {
      const n = Math.min(left, maxSectors);
      const piece = this.start(c, type, 0, 0);
      piece.range = { sector, count: n };
      this.place(piece);
      sector += n;
      left -= n;
    }
  }

  /** Hand-over: a discard or write-zeroes piece placed again, split to the new device's limit. */
  private placeRange(piece: Piece): void {
    const range = piece.range as { sector: number; count: number };
    const max = piece.type === T_DISCARD ? this.maxDiscardSectors : this.maxZeroesSectors;
    if (range.count <= max) return this.place(piece);
    for (let sector = range.sector, left = range.count; left > 0;) {
      const n = Math.min(left, max);
      const part = this.start(piece.call, piece.type, 0, 0);
      part.range = { sector, count: n };
      this.place(part);
      sector += n;
      left -= n;
    }
    this.finish(piece, undefined);
  }

  /** Puts a piece on the first queue with a free slot, from the next in turn; else waits (FIFO). */
  private place(piece: Piece): void {
    try {
      for (let i = 0; i < this.queues.length; i++) {
        const q = this.queues[this.nextQueue] as BlkQueue;
        this.nextQueue = (this.nextQueue + 1) % this.queues.length;
        const token = q.driver.tryAcquire();
        if (token >= 0) return this.submit(q, token, piece);
      }
    } catch (e) {
      return this.finish(piece, e as Error);
    }
    this.waiters.push(() => {
      if (piece.call.settled) {
        this.finish(piece, undefined);
        return false;
      }
      this.place(piece);
      return true;
    });
  }

  /** Writes the request's header into the slot of `token` and queues its chain: no array, no object. */
  private submit(q: BlkQueue, token: number, piece: Piece): void {
    const slot = token * SLOT_BYTES;
    const v = q.metaView;
    v.setUint32(slot + BlkRequestHeader.type.offset, piece.type, true);
    v.setUint32(slot + BlkRequestHeader.ioprio.offset, 0, true);
    setUint64(v, slot + BlkRequestHeader.sector.offset, piece.sector);
    q.meta[slot + STATUS_AT] = 0xff;
    const dataSegs = piece.region < 0 ? 0 : Math.ceil(piece.length / this.sizeMax);
    const d = q.driver;
    d.openChain(token, 2 + dataSegs + (piece.range || piece.type === T_GET_ID ? 1 : 0), piece);
    d.segment(q.metaHandle, slot, BLK_REQUEST_HEADER_SIZE, false);
    if (piece.range) {
      const at = slot + PAYLOAD_AT;
      setUint64(v, at + BlkDiscardSegment.sector.offset, piece.range.sector);
      v.setUint32(at + BlkDiscardSegment.numSectors.offset, piece.range.count, true);
      v.setUint32(at + BlkDiscardSegment.flags.offset, 0, true);
      d.segment(q.metaHandle, at, BLK_DISCARD_SEGMENT_SIZE, false);
    }
    const writable = piece.type === T_IN;
    for (let at = 0; at < piece.length && piece.region >= 0; at += this.sizeMax)
      d.segment(piece.region, piece.offset + at, Math.min(this.sizeMax, piece.length - at), writable);
    if (piece.type === T_GET_ID) d.segment(q.metaHandle, slot + PAYLOAD_AT, BLK_ID_BYTES, true);
    d.segment(q.metaHandle, slot + STATUS_AT, 1, true);
  }

  /** The device returned the chain (or was reset): results go to the caller unless it settled already. */
  private chainDone(q: BlkQueue, piece: Piece, token: number, len: number, err: Error | undefined): void {
    if (!err && !piece.call.settled) err = this.result(q, piece, token * SLOT_BYTES, len);
    this.finish(piece, err);
  }

  private result(q: BlkQueue, piece: Piece, slot: number, len: number): Error | undefined {
    const status = q.meta[slot + STATUS_AT];
    if (len < 1 || status !== BlkStatus.OK) {
      const what = len < 1 ? 'the device returned the request without a status' : `status ${status}`;
      return vdpaError(
        status === BlkStatus.UNSUPP ? 'EOPNOTSUPP' : 'EIO',
        blkOpName(piece.type),
        this.device.path,
        `the device failed the request (${what})`,
      );
    }
    if (piece.part && piece.bounce) {
      try {
        // The prototype's set: no subclass override runs inside a completion.
        Uint8Array.prototype.set.call(piece.part, piece.bounce.bytes.subarray(0, piece.length));
      } catch (e) {
        return new TypeError('the read completed, but its buffer can no longer be written (detached or shrunk)', {
          cause: e,
        });
      }
    } else if (piece.idOut) {
      const raw = q.meta.subarray(slot + PAYLOAD_AT, slot + PAYLOAD_AT + Math.min(BLK_ID_BYTES, len - 1));
      const end = raw.indexOf(0);
      piece.idOut(Buffer.from(end < 0 ? raw : raw.subarray(0, end)).toString('latin1'));
    }
    return undefined;
  }

  /** Releases what the piece holds and reports it done to its call. */
  private finish(piece: Piece, err: Error | undefined): void {
    piece.part = undefined;
    piece.keep = undefined;
    if (piece.dma) {
      piece.dma.pins--;
      piece.dma = undefined;
    }
    const chunk = piece.bounce;
    piece.bounce = undefined;
    if (chunk) this.bounce.release(chunk);
    piece.call.pieceDone(err);
  }
}

/** A little-endian u64 from a safe integer, without a BigInt. */
function setUint64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value >>> 0, true);
  v.setUint32(at + 4, Math.floor(value / 0x100000000), true);
}

function blkOpName(type: number): string {
  switch (type) {
    case T_IN:
      return 'read';
    case T_OUT:
      return 'write';
    case T_FLUSH:
      return 'flush';
    case T_GET_ID:
      return 'getId';
    case T_DISCARD:
      return 'discard';
    default:
      return 'writeZeroes';
  }
}

/**
 * Opens a virtio-blk device and brings it up: features, queues, DRIVER_OK.
 *
 * @example
 * const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 256, mock: { numQueues: 2 } });
 * const buf = blk.allocBuffer(4096);
 * await blk.write(0, buf);
 */
export async function openBlk(path: string, options: BlkOptions = {}): Promise<BlkDevice> {
  return openForDriver(path, options, {
    type: DeviceType.blk,
    what: 'a block device',
    check: (o) => {
      if (o.numQueues !== undefined) checkInteger(o.numQueues, 'numQueues', 1, 256);
      checkPollMicros(o.pollMicros);
    },
    bringUp: async (device) => {
      const blk = new BlkDevice(device, options, await device.negotiate(blkFeatures(options)));
      await blk.bringUp();
      return blk;
    },
  });
}

/** The features the block driver asks for. */
function blkFeatures(options: BlkOptions): bigint {
  return (
    COMMON_FEATURES |
    BlkFeature.SIZE_MAX |
    BlkFeature.SEG_MAX |
    BlkFeature.BLK_SIZE |
    BlkFeature.FLUSH |
    BlkFeature.MQ |
    BlkFeature.RO |
    BlkFeature.DISCARD |
    BlkFeature.WRITE_ZEROES |
    (options.packed ? Feature.RING_PACKED : 0n)
  );
}
