// A virtio split ring written in plain TypeScript over one ArrayBuffer: the driver side (descriptor
// free list, avail ring, used-ring drain) and the device side (pop avail, push used), with 16-bit index
// wrap-around and VIRTIO_F_EVENT_IDX bookkeeping. It exists only as a benchmark baseline: "how fast is
// the same ring protocol if it never leaves JavaScript?". Layout follows virtio 1.x section 2.7, with
// little-endian host order assumed (typed arrays use the platform's byte order).
import os from 'node:os';

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;

/** vring_need_event(): whether moving an index from `old` to `next` crosses `event`. */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

export class TsSplitRing {
  readonly size: number;
  readonly buffer: ArrayBuffer;
  /** Where the data area starts, in the ring's pretend IOVA space (descriptor addresses). */
  readonly dataIova = 0x40000000;
  readonly dataBytes: number;
  /** Set when either side saw a protocol violation; both sides stop. */
  brokenReason: string | undefined;
  /** Notifications the driver would have sent / the device would have raised (EVENT_IDX). */
  kicks = 0;
  interrupts = 0;

  private readonly mask: number;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  // u16 indices of the avail ring fields, u16/u32 indices of the used ring fields.
  private readonly availIdxAt: number;
  private readonly availRingAt: number;
  private readonly usedEventAt: number;
  private readonly usedIdxAt: number;
  private readonly usedRingAt32: number;
  private readonly availEventAt: number;

  // Driver state.
  private freeHead = 0;
  private numFree: number;
  private availShadow = 0;
  private lastKickIdx = 0;
  private lastUsed = 0;
  private readonly tokens: Uint32Array;
  private readonly chainLen: Uint16Array;
  private readonly writableBytes: Uint32Array;
  private readonly inUse: Uint8Array;

  // Device state.
  private lastAvail = 0;
  private usedShadow = 0;
  private lastSignalIdx = 0;
  /** The chain the last devicePop() found: head and byte counts. */
  popHead = 0;
  popReadable = 0;
  popWritable = 0;

  constructor(size: number, dataBytes: number) {
    if (size < 1 || size > 32768 || (size & (size - 1)) !== 0)
      throw new RangeError('size must be a power of two <= 32768');
    if (os.endianness() !== 'LE') throw new Error('TsSplitRing assumes a little-endian host');
    this.size = size;
    this.mask = size - 1;
    this.numFree = size;
    this.dataBytes = dataBytes;
    const descBytes = 16 * size;
    const availOff = descBytes;
    const availBytes = 6 + 2 * size;
    const usedOff = (availOff + availBytes + 3) & ~3;
    const usedBytes = 6 + 8 * size;
    const dataOff = (usedOff + usedBytes + 4095) & ~4095;
    this.buffer = new ArrayBuffer(dataOff + dataBytes);
    this.u16 = new Uint16Array(this.buffer, 0, dataOff >> 1);
    this.u32 = new Uint32Array(this.buffer, 0, dataOff >> 2);
    this.availIdxAt = (availOff >> 1) + 1;
    this.availRingAt = (availOff >> 1) + 2;
    this.usedEventAt = this.availRingAt + size;
    this.usedIdxAt = (usedOff >> 1) + 1;
    this.usedRingAt32 = (usedOff + 4) >> 2;
    this.availEventAt = (usedOff + 4 + 8 * size) >> 1;
    this.tokens = new Uint32Array(size);
    this.chainLen = new Uint16Array(size);
    this.writableBytes = new Uint32Array(size);
    this.inUse = new Uint8Array(size);
    // Free list: every descriptor's next points at the following one.
    for (let i = 0; i < size; i++) this.u16[i * 8 + 7] = (i + 1) & 0xffff;
  }

  get freeDescriptors(): number {
    return this.numFree;
  }

  // ---- driver side ----------------------------------------------------------------------------

  /**
   * Adds a one-segment chain for `token` at data offset `offset`; false when no descriptor is free.
   * (Longer chains would link several descriptors with NEXT; the benchmark's requests have one.)
   */
  add(token: number, offset: number, length: number, writable: boolean): boolean {
    if (this.numFree < 1 || this.brokenReason !== undefined) return false;
    if (offset + length > this.dataBytes) throw new RangeError('segment outside the data area');
    const head = this.freeHead;
    const u32 = this.u32;
    const u16 = this.u16;
    const d = head << 2;
    u32[d] = this.dataIova + offset; // addr, low word (the data area sits below 4 GiB)
    u32[d + 1] = 0; // addr, high word
    u32[d + 2] = length;
    this.freeHead = u16[(head << 3) + 7] as number;
    u16[(head << 3) + 6] = writable ? DESC_F_WRITE : 0;
    this.numFree--;
    this.tokens[head] = token;
    this.chainLen[head] = 1;
    this.writableBytes[head] = writable ? length : 0;
    this.inUse[head] = 1;
    u16[this.availRingAt + (this.availShadow & this.mask)] = head;
    this.availShadow = (this.availShadow + 1) & 0xffff;
    return true;
  }

  /** Makes added chains visible to the device; returns whether the device asked to be kicked. */
  publish(): boolean {
    const old = this.lastKickIdx;
    const next = this.availShadow;
    if (old === next) return false;
    this.u16[this.availIdxAt] = next;
    this.lastKickIdx = next;
    const kick = needEvent(this.u16[this.availEventAt] as number, next, old);
    if (kick) this.kicks++;
    return kick;
  }

  /**
   * Moves finished chains into `out` as [token, len] pairs (up to out.length / 2 of them), returning
   * them to the free list. Returns how many; 0 and `brokenReason` set if the device misbehaved.
   */
  drain(out: Uint32Array): number {
    const u16 = this.u16;
    const u32 = this.u32;
    const usedIdx = u16[this.usedIdxAt] as number;
    const max = out.length >> 1;
    let n = 0;
    let last = this.lastUsed;
    if (((usedIdx - last) & 0xffff) > this.size - this.numFree)
      return this.fail('used index moved past the chains in flight');
    while (last !== usedIdx && n < max) {
      const e = this.usedRingAt32 + ((last & this.mask) << 1);
      const id = u32[e] as number;
      const len = u32[e + 1] as number;
      if (id >= this.size || this.inUse[id] === 0) return this.fail(`used id ${id} is not a chain in flight`);
      if (len > (this.writableBytes[id] as number))
        return this.fail(`used len ${len} exceeds the chain's writable bytes`);
      // Free the chain: walk to its tail and splice the whole chain onto the free list.
      let tail = id;
      for (let k = (this.chainLen[id] as number) - 1; k > 0; k--) tail = u16[(tail << 3) + 7] as number;
      u16[(tail << 3) + 7] = this.freeHead;
      this.freeHead = id;
      this.numFree += this.chainLen[id] as number;
      this.inUse[id] = 0;
      out[n << 1] = this.tokens[id] as number;
      out[(n << 1) + 1] = len;
      n++;
      last = (last + 1) & 0xffff;
    }
    this.lastUsed = last;
    // EVENT_IDX: interrupt me as soon as anything else is used.
    u16[this.usedEventAt] = last;
    return n;
  }

  // ---- device side ----------------------------------------------------------------------------

  /** Pops the next available chain into popHead/popReadable/popWritable; false when none (or broken). */
  devicePop(): boolean {
    if (this.brokenReason !== undefined) return false;
    const u16 = this.u16;
    const u32 = this.u32;
    const availIdx = u16[this.availIdxAt] as number;
    const last = this.lastAvail;
    if (last === availIdx) return false;
    if (((availIdx - last) & 0xffff) > this.size) return this.fail('avail index moved more than the ring size') > 0;
    const head = u16[this.availRingAt + (last & this.mask)] as number;
    if (head >= this.size) return this.fail(`avail head ${head} out of range`) > 0;
    let i = head;
    let readable = 0;
    let writable = 0;
    for (let count = 1; ; count++) {
      if (count > this.size) return this.fail('descriptor chain loops') > 0;
      const d = i << 2;
      const lo = u32[d] as number;
      const hi = u32[d + 1] as number;
      const len = u32[d + 2] as number;
      const flags = u16[(i << 3) + 6] as number;
      if (flags & DESC_F_INDIRECT) return this.fail('indirect descriptors are not negotiated') > 0;
      // "Translate": the buffer must lie inside the data area.
      if (hi !== 0 || lo < this.dataIova || lo - this.dataIova + len > this.dataBytes)
        return this.fail('descriptor outside guest memory') > 0;
      if (flags & DESC_F_WRITE) writable += len;
      else if (writable > 0) return this.fail('readable descriptor after a writable one') > 0;
      else readable += len;
      if (!(flags & DESC_F_NEXT)) break;
      i = u16[(i << 3) + 7] as number;
      if (i >= this.size) return this.fail('next descriptor out of range') > 0;
    }
    this.lastAvail = (last + 1) & 0xffff;
    this.popHead = head;
    this.popReadable = readable;
    this.popWritable = writable;
    return true;
  }

  /** Device side: marks chain `head` used with `len` bytes written (visible after devicePublish). */
  devicePush(head: number, len: number): void {
    const e = this.usedRingAt32 + ((this.usedShadow & this.mask) << 1);
    this.u32[e] = head;
    this.u32[e + 1] = len;
    this.usedShadow = (this.usedShadow + 1) & 0xffff;
  }

  /** Publishes pushed entries; returns whether the driver asked for an interrupt (EVENT_IDX). */
  devicePublish(): boolean {
    const old = this.lastSignalIdx;
    const next = this.usedShadow;
    if (old === next) return false;
    this.u16[this.usedIdxAt] = next;
    this.lastSignalIdx = next;
    // EVENT_IDX: kick me when the driver adds anything past what I consumed.
    this.u16[this.availEventAt] = this.lastAvail;
    const irq = needEvent(this.u16[this.usedEventAt] as number, next, old);
    if (irq) this.interrupts++;
    return irq;
  }

  private fail(reason: string): number {
    this.brokenReason ??= reason;
    return 0;
  }
}
