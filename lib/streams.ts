// Node streams over the drivers: block-aligned Readable/Writable over BlkDevice.read/write, and an
// object-mode Duplex of frames over NetDevice.send/receive. Each keeps a bounded number of requests
// in flight (never more than the device's queues hold) and aborts them when it is destroyed.
import { setMaxListeners } from 'node:events';
import { Duplex, Readable, Writable } from 'node:stream';
import type { BlkDevice } from './blk';
import { VdpaError, vdpaError } from './errors';
import type { NetDevice } from './net';
import { checkBoolean, checkInteger, checkObject } from './validate';

/** Bytes per request of a block stream unless `highWaterMark` says otherwise (as fs streams). */
const DEFAULT_CHUNK = 64 * 1024;
/** Block stream requests in flight unless `depth` says otherwise. */
const DEFAULT_BLK_DEPTH = 4;
/** Largest `highWaterMark` of a block stream: `depth` chunks of it are held in memory. */
const MAX_CHUNK = 64 * 2 ** 20;

/** Options of {@link BlkDevice.createReadStream}. */
export interface BlkReadStreamOptions {
  /** First byte to read, a multiple of the device's `blockSize`. Default 0. */
  start?: number;
  /**
   * The byte after the last one to read (exclusive, unlike `fs.createReadStream`), a multiple of
   * `blockSize`, at most the capacity. Default: the capacity.
   */
  end?: number;
  /**
   * Bytes per read request, and what the stream buffers before it stops reading ahead: a multiple of
   * `blockSize`, at most 64 MiB. Default 64 KiB. The last chunk of the range may be shorter.
   */
  highWaterMark?: number;
  /**
   * Read requests in flight at most: 1 to the queue depth (`numQueues * queueSize`). Default 4 (or
   * the queue depth when smaller).
   */
  depth?: number;
  /** Destroys the stream with an AbortError when aborted (its requests in flight are aborted too). */
  signal?: AbortSignal;
}

/** Options of {@link BlkDevice.createWriteStream}. */
export interface BlkWriteStreamOptions {
  /** Where the first byte goes, a multiple of the device's `blockSize`. Default 0. */
  start?: number;
  /**
   * Bytes per write request (the data is gathered into chunks of this size), and what the stream
   * buffers before `write()` returns false: a multiple of `blockSize`, at most 64 MiB. Default 64 KiB.
   */
  highWaterMark?: number;
  /** Write requests in flight at most: 1 to the queue depth (`numQueues * queueSize`). Default 4. */
  depth?: number;
  /** Flush the device ({@link BlkDevice.flush}) before `'finish'`. Default false. */
  flush?: boolean;
  /** Destroys the stream with an AbortError when aborted (its requests in flight are aborted too). */
  signal?: AbortSignal;
}

/** Options of {@link NetDevice.createFrameStream}. */
export interface NetFrameStreamOptions {
  /**
   * Frames each side buffers (default 16). The readable side stops receiving once this many frames
   * wait unread; the device then keeps what arrives in its own backlog (see
   * {@link NetDevice.droppedFrames}).
   */
  highWaterMark?: number;
  /** Sends in flight at most: 1 to `queueSize`. Default `queueSize`. */
  depth?: number;
  /** Destroys the stream with an AbortError when aborted (its pending send and receive requests too). */
  signal?: AbortSignal;
}

interface BlkStreamSettings {
  start: number;
  chunk: number;
  depth: number;
  signal: AbortSignal | undefined;
}

/** Checks the options both block streams share; every offset and size must be whole blocks. */
function blkSettings(
  blk: BlkDevice,
  options: BlkReadStreamOptions | BlkWriteStreamOptions | undefined,
): BlkStreamSettings {
  const o = options === undefined ? {} : options;
  checkObject(o, 'options');
  const start = o.start === undefined ? 0 : checkInteger(o.start, 'options.start', 0, blk.capacity);
  checkAligned(blk, start, 'options.start');
  const chunk =
    o.highWaterMark === undefined
      ? Math.max(blk.blockSize, DEFAULT_CHUNK - (DEFAULT_CHUNK % blk.blockSize))
      : checkInteger(o.highWaterMark, 'options.highWaterMark', 1, MAX_CHUNK);
  checkAligned(blk, chunk, 'options.highWaterMark');
  const queueDepth = blk.numQueues * blk.queueSize;
  const depth =
    o.depth === undefined
      ? Math.min(DEFAULT_BLK_DEPTH, queueDepth)
      : checkInteger(o.depth, 'options.depth', 1, queueDepth);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal))
    throw new TypeError('options.signal must be an AbortSignal');
  return { start, chunk, depth, signal: o.signal };
}

function checkAligned(blk: BlkDevice, value: number, name: string): void {
  if (value % blk.blockSize !== 0)
    throw new RangeError(`${name} (${value}) is not a multiple of the block size (${blk.blockSize})`);
}

/** One read of a {@link BlkReadStream}: its bytes, and whether the device filled them yet. */
interface ReadSlot {
  data: Buffer;
  done: boolean;
}

/**
 * A Readable of a block device's bytes, made by {@link BlkDevice.createReadStream}. It reads ahead
 * in requests of `highWaterMark` bytes, at most `depth` at once, and delivers them in device order;
 * once its buffer is full it issues no more until the consumer reads. A failed read destroys it
 * with the read's error; `destroy()` aborts the reads in flight (through their AbortSignal).
 */
export class BlkReadStream extends Readable {
  /** First byte of the range. */
  readonly start: number;
  /** The byte after the range. */
  readonly end: number;
  /** Bytes delivered so far. */
  bytesRead = 0;

  private readonly blk: BlkDevice;
  private readonly chunk: number;
  private readonly depth: number;
  private readonly aborter = new AbortController();
  /** Device offset of the next read to issue. */
  private next: number;
  /** Reads issued and not yet delivered, in device order (at most `depth`). */
  private readonly window: ReadSlot[] = [];
  /** The consumer wants data: false from the moment push() reports a full buffer until _read(). */
  private pulling = false;
  private ended = false;

  /** @internal Use {@link BlkDevice.createReadStream}. */
  constructor(blk: BlkDevice, options?: BlkReadStreamOptions) {
    const s = blkSettings(blk, options);
    const end = options?.end === undefined ? blk.capacity : checkInteger(options.end, 'options.end', 0, blk.capacity);
    checkAligned(blk, end, 'options.end (exclusive)');
    if (end < s.start) throw new RangeError(`options.end (${end}) is before options.start (${s.start})`);
    super({ highWaterMark: s.chunk, signal: s.signal });
    this.blk = blk;
    this.start = s.start;
    this.end = end;
    this.next = s.start;
    this.chunk = s.chunk;
    this.depth = s.depth;
    // Each request in flight listens on it (plus a flush): not a leak.
    setMaxListeners(s.depth + 1, this.aborter.signal);
  }

  override _read(): void {
    this.pulling = true;
    this.issue();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.aborter.abort();
    this.window.length = 0;
    callback(err);
  }

  private issue(): void {
    while (this.pulling && this.window.length < this.depth && this.next < this.end) {
      const length = Math.min(this.chunk, this.end - this.next);
      const slot: ReadSlot = { data: Buffer.allocUnsafe(length), done: false };
      this.window.push(slot);
      const offset = this.next;
      this.next += length;
      this.blk.read(offset, slot.data, { signal: this.aborter.signal }).then(
        () => {
          slot.done = true;
          this.deliver();
        },
        (err: Error) => {
          if (!this.destroyed) this.destroy(err);
        },
      );
    }
    if (this.next >= this.end && this.window.length === 0 && !this.ended) {
      this.ended = true;
      this.push(null);
    }
  }

  /** Pushes the reads done at the head of the window, in order, then reads ahead again if wanted. */
  private deliver(): void {
    if (this.destroyed) return;
    while (this.window[0]?.done) {
      const slot = this.window.shift() as ReadSlot;
      this.bytesRead += slot.data.length;
      if (!this.push(slot.data)) this.pulling = false;
    }
    this.issue();
  }
}

/**
 * A Writable onto a block device, made by {@link BlkDevice.createWriteStream}. What is written is
 * copied into chunks of `highWaterMark` bytes, each one write request at the next offset, at most
 * `depth` in flight; `write()`'s callback waits while that many are. Chunks written need not be
 * whole blocks, but the data as a whole must be: a stream that ends inside a block writes the
 * whole blocks and then fails with a RangeError. Data past the end of the device fails it with a
 * VdpaError `code: 'ENOSPC'` once what fits is written. A failed write destroys the stream
 * with the write's error; `destroy()` aborts the writes in flight. `'finish'` means every write
 * completed (and, with `flush: true`, was flushed).
 */
export class BlkWriteStream extends Writable {
  /** Where the first byte goes. */
  readonly start: number;
  /** Bytes the device has written so far. */
  bytesWritten = 0;

  private readonly blk: BlkDevice;
  private readonly chunk: number;
  private readonly depth: number;
  private readonly flushAtEnd: boolean;
  private readonly aborter = new AbortController();
  /** Device offset of the staged bytes. */
  private next: number;
  private staged: Buffer;
  private stagedLength = 0;
  /** Chunk buffers whose writes completed, for reuse. */
  private readonly spare: Buffer[] = [];
  private inFlight = 0;
  /** A _write waiting for a request to complete before it can stage more. */
  private waiting: (() => void) | undefined;
  /** _final's callback, once the stream is ending. */
  private finalCallback: ((error?: Error | null) => void) | undefined;

  /** @internal Use {@link BlkDevice.createWriteStream}. */
  constructor(blk: BlkDevice, options?: BlkWriteStreamOptions) {
    const s = blkSettings(blk, options);
    const flush = options?.flush === undefined ? false : checkBoolean(options.flush, 'options.flush');
    super({ highWaterMark: s.chunk, signal: s.signal });
    this.blk = blk;
    this.start = s.start;
    this.next = s.start;
    this.chunk = s.chunk;
    this.depth = s.depth;
    setMaxListeners(s.depth + 1, this.aborter.signal);
    this.flushAtEnd = flush;
    this.staged = Buffer.allocUnsafe(s.chunk);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const room = this.blk.capacity - this.next - this.stagedLength;
    if (chunk.length > room) {
      const err = vdpaError(
        'ENOSPC',
        'write',
        this.blk.device.path,
        `the data goes past the end of the device (${this.blk.capacity} bytes)`,
      );
      // What fits is written first, as a file system would; then the stream fails.
      return this.take(chunk.subarray(0, room), 0, () => {
        this.finalCallback = (e) => callback(e ?? err);
        this.finishUp();
      });
    }
    this.take(chunk, 0, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finalCallback = callback;
    this.finishUp();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.aborter.abort();
    this.waiting = undefined;
    this.finalCallback = undefined;
    callback(err);
  }

  /** Stages `chunk` from `at` on, issuing each full chunk; waits (through `waiting`) at `depth`. */
  private take(chunk: Buffer, at: number, callback: (error?: Error | null) => void): void {
    while (at < chunk.length) {
      if (this.stagedLength === this.chunk) {
        if (this.inFlight >= this.depth) {
          this.waiting = () => this.take(chunk, at, callback);
          return;
        }
        this.issue(this.stagedLength);
      }
      const n = Math.min(chunk.length - at, this.chunk - this.stagedLength);
      chunk.copy(this.staged, this.stagedLength, at, at + n);
      this.stagedLength += n;
      at += n;
    }
    if (this.stagedLength === this.chunk && this.inFlight < this.depth) this.issue(this.stagedLength);
    callback();
  }

  /** Writes the first `length` staged bytes (whole blocks) at the next offset. */
  private issue(length: number): void {
    const buffer = this.staged;
    const data = buffer.subarray(0, length);
    const rest = this.stagedLength - length;
    const offset = this.next;
    this.next += length;
    this.staged = this.spare.pop() ?? Buffer.allocUnsafe(this.chunk);
    if (rest > 0) buffer.copy(this.staged, 0, length, length + rest);
    this.stagedLength = rest;
    this.inFlight++;
    this.blk.write(offset, data, { signal: this.aborter.signal }).then(
      () => {
        this.inFlight--;
        this.bytesWritten += length;
        if (this.spare.length < this.depth) this.spare.push(buffer);
        this.requestDone();
      },
      (err: Error) => {
        this.inFlight--;
        if (!this.destroyed) this.destroy(err);
      },
    );
  }

  private requestDone(): void {
    if (this.destroyed) return;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) waiting();
    else if (this.finalCallback) this.finishUp();
    else if (this.stagedLength === this.chunk && this.inFlight < this.depth) this.issue(this.stagedLength);
  }

  /** At the end: writes the staged whole blocks, waits for every write, then flushes if asked. */
  private finishUp(): void {
    const callback = this.finalCallback;
    if (!callback) return;
    const tail = this.stagedLength % this.blk.blockSize;
    if (this.stagedLength > tail && this.inFlight < this.depth) this.issue(this.stagedLength - tail);
    if (this.inFlight > 0) return; // requestDone() comes back here
    this.finalCallback = undefined;
    if (tail > 0)
      return callback(
        new RangeError(
          `the data ends ${tail} bytes into the ${this.blk.blockSize}-byte block at ${this.next}: ` +
            'a block stream writes whole blocks only',
        ),
      );
    if (!this.flushAtEnd) return callback();
    this.blk.flush({ signal: this.aborter.signal }).then(() => callback(), callback);
  }
}

/**
 * An object-mode Duplex of Ethernet frames over a {@link NetDevice}, made by
 * {@link NetDevice.createFrameStream}: each `Uint8Array` written is sent as one frame, each frame
 * received is read as one `Uint8Array`.
 *
 * - Writing: at most `depth` sends are in flight; `write()`'s callback waits while that many are.
 *   Do not modify a frame after writing it. A send that fails (a frame of the wrong size, a failed
 *   device) destroys the stream with its error. `end()` finishes once every send completed; the
 *   device stays open and the readable side goes on (the stream is half-open).
 * - Reading: it receives only while the consumer keeps up: once `highWaterMark` frames wait unread
 *   it stops calling {@link NetDevice.receive} until they are read. It receives nothing before it
 *   is first read from. The readable side ends when the device is closed; a device failure
 *   destroys the stream with the device's error.
 * - `destroy()` aborts the pending receive and the sends in flight (a frame the device already
 *   took may still go out); it does not close the device.
 */
export class NetFrameStream extends Duplex {
  /** Frames the device has taken for sending. */
  framesSent = 0;
  /** Frames received and pushed to the readable side. */
  framesReceived = 0;

  private readonly net: NetDevice;
  private readonly depth: number;
  private readonly aborter = new AbortController();
  private receiving = false;
  private inFlight = 0;
  /** A _write's callback held while `depth` sends are in flight. */
  private waiting: (() => void) | undefined;
  private finalCallback: ((error?: Error | null) => void) | undefined;

  /** @internal Use {@link NetDevice.createFrameStream}. */
  constructor(net: NetDevice, options?: NetFrameStreamOptions) {
    const o = options === undefined ? {} : options;
    checkObject(o, 'options');
    const highWaterMark =
      o.highWaterMark === undefined ? 16 : checkInteger(o.highWaterMark, 'options.highWaterMark', 1, 2 ** 20);
    const depth = o.depth === undefined ? net.queueSize : checkInteger(o.depth, 'options.depth', 1, net.queueSize);
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal))
      throw new TypeError('options.signal must be an AbortSignal');
    super({ objectMode: true, highWaterMark, allowHalfOpen: true, signal: o.signal });
    this.net = net;
    this.depth = depth;
    setMaxListeners(depth + 1, this.aborter.signal); // the sends in flight and the receive
  }

  override _write(frame: Uint8Array, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.inFlight++;
    this.net.send(frame, { signal: this.aborter.signal }).then(
      () => {
        this.inFlight--;
        this.framesSent++;
        this.sendDone();
      },
      (err: Error) => {
        this.inFlight--;
        if (!this.destroyed) this.destroy(err);
      },
    );
    if (this.inFlight < this.depth) callback();
    else this.waiting = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.inFlight === 0) return callback();
    this.finalCallback = callback;
  }

  override _read(): void {
    if (!this.receiving) this.receiveNext();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.aborter.abort();
    this.waiting = undefined;
    this.finalCallback = undefined;
    callback(err);
  }

  private sendDone(): void {
    if (this.destroyed) return;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) waiting();
    else if (this.finalCallback && this.inFlight === 0) {
      const callback = this.finalCallback;
      this.finalCallback = undefined;
      callback();
    }
  }

  private receiveNext(): void {
    this.receiving = true;
    this.net.receive({ signal: this.aborter.signal }).then(
      (frame) => {
        this.receiving = false;
        if (this.destroyed) return;
        this.framesReceived++;
        if (this.push(frame) && !this.receiving) this.receiveNext();
      },
      (err: Error) => {
        this.receiving = false;
        if (this.destroyed) return;
        // Closed while waiting, or already closed: the end of the frames, as for NetDevice.frames().
        if (err instanceof VdpaError && (err.code === 'ECANCELED' || err.code === 'EBADF')) this.push(null);
        else this.destroy(err);
      },
    );
  }
}
