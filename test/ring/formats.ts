// The ring-format adapter for suites that run once per format: how to build a loopback, and the
// few places where split and packed rings truly differ (which sizes are legal, the raw descriptor
// layout a hostile driver writes, and the space notification positions live in).
import { DESC_F_NEXT, newLoopback } from './loopback';
import { EVENT_DESC, EventView, F_AVAIL, PackedLoopback, availFlags, newPacked } from './packed-loopback';

/** A raw descriptor as a driver writes it: address, length, NEXT / WRITE / INDIRECT bits. */
export type RawDesc = [addr: bigint, len: number, flags: number];

export interface RingFormat {
  readonly name: 'split' | 'packed';
  /**
   * A loopback of this format. Typed with the packed view because it names the poke and peek
   * methods both formats have (the split loopback's pokeDescriptor takes `next` where packed takes
   * an id; peekDescriptor returns `next` instead of `id`).
   */
  make(size: number, eventIdx: boolean, indirectMax: number, dataBytes?: number): PackedLoopback;
  /** The smallest legal queue size not below `n` (split sizes are powers of two). */
  sizeNear(n: number): number;
  /** Sizes that exercise the format: small, odd where legal, and not tiny. */
  readonly sizes: readonly number[];
  /** Sizes the constructor refuses, and ones it takes. */
  readonly badSizes: readonly number[];
  readonly goodSizes: readonly number[];
  /** Used ids beyond the queue size of 8 that the device can write (packed ids are 16 bits). */
  readonly badUsedIds: readonly number[];
  /** Flag bits a driver adds to a descriptor it makes available on the lap with wrap counter `wrap`. */
  availBits(wrap: boolean): number;
  /**
   * Writes a chain as a hostile driver would and makes it available. Split: at `slots` (default
   * 0, 1, ...) linked by next, the first slot put in the avail ring. Packed: at slots 0, 1, ... of a
   * fresh ring with `id` (default 0) in the last descriptor and junk ids in the others. Returns the
   * head the device must report.
   */
  pokeChain(lb: PackedLoopback, descs: readonly RawDesc[], where?: { slots?: number[]; id?: number }): number;
  /** Writes entry `i` of an indirect table at `tableOffset` of the data area; `next` is split only. */
  tableEntry(lb: PackedLoopback, tableOffset: number, i: number, desc: RawDesc, next?: number): void;
  /** Writes a whole table, linked by NEXT on split rings (packed entries must not carry NEXT). */
  pokeTable(lb: PackedLoopback, tableOffset: number, entries: readonly RawDesc[]): void;
  /**
   * The space notification positions count in: split event indexes count chains modulo 2^16,
   * packed ones count descriptors modulo two laps (offset plus wrap counter).
   */
  modulus(size: number): number;
  positionsPerChain(descriptorsPerChain: number): number;
  /** Packed only: the event suppression structures, read and as armed at linear position `pos`. */
  readonly events?: {
    read(lb: PackedLoopback): { driver: EventView; device: EventView };
    armedAt(pos: number, size: number): EventView;
  };
}

function writeTableEntry(lb: PackedLoopback, tableOffset: number, i: number, words: [bigint, number, number, number]) {
  const v = new DataView(lb.data, tableOffset + 16 * i, 16);
  v.setBigUint64(0, words[0], true);
  v.setUint32(8, words[1], true);
  v.setUint16(12, words[2], true);
  v.setUint16(14, words[3], true);
}

const split: RingFormat = {
  name: 'split',
  make: (size, eventIdx, indirectMax, dataBytes) =>
    newLoopback(size, eventIdx, indirectMax, dataBytes) as unknown as PackedLoopback,
  sizeNear: (n) => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n))),
  sizes: [1, 4, 16],
  badSizes: [0, 3, 6, 100, 32769, 65536, 1 << 20],
  goodSizes: [1, 2, 32768],
  badUsedIds: [8, 9, 0x7fff, 0xffff, 0x10000, 0xffffffff],
  availBits: () => 0,
  pokeChain(lb, descs, where = {}) {
    const slots = where.slots ?? descs.map((_, i) => i);
    descs.forEach(([addr, len, flags], i) => lb.pokeDescriptor(slots[i], addr, len, flags, slots[i + 1] ?? 0));
    lb.pokeAvail(slots[0], 1);
    return slots[0];
  },
  tableEntry: (lb, tableOffset, i, [addr, len, flags], next = 0) =>
    writeTableEntry(lb, tableOffset, i, [addr, len, flags, next]),
  pokeTable(lb, tableOffset, entries) {
    entries.forEach(([addr, len, flags], i) => {
      const linked = i + 1 < entries.length;
      this.tableEntry(lb, tableOffset, i, [addr, len, linked ? flags | DESC_F_NEXT : flags], linked ? i + 1 : 0);
    });
  },
  modulus: () => 0x10000,
  positionsPerChain: () => 1,
};

const packed: RingFormat = {
  name: 'packed',
  make: newPacked,
  sizeNear: (n) => Math.max(1, n),
  sizes: [1, 3, 5, 16],
  badSizes: [0, 32769, 65536],
  goodSizes: [1, 3, 6, 100, 1000, 32767, 32768],
  badUsedIds: [8, 9, 0x7fff, 0xffff],
  availBits: availFlags,
  pokeChain(lb, descs, where = {}) {
    const id = where.id ?? 0;
    // Head last, as a driver publishes; only the last descriptor's id counts.
    for (let i = descs.length - 1; i >= 0; i--) {
      const [addr, len, flags] = descs[i];
      lb.pokeDescriptor(i, addr, len, flags | F_AVAIL, i + 1 === descs.length ? id : 0xffff - i);
    }
    return id;
  },
  tableEntry: (lb, tableOffset, i, [addr, len, flags]) => writeTableEntry(lb, tableOffset, i, [addr, len, 0, flags]),
  pokeTable(lb, tableOffset, entries) {
    entries.forEach((e, i) => this.tableEntry(lb, tableOffset, i, e));
  },
  modulus: (size) => 2 * size,
  positionsPerChain: (descriptorsPerChain) => descriptorsPerChain,
  events: {
    read: (lb) => lb.eventSuppression(),
    armedAt: (pos, size) => ({ flags: EVENT_DESC, off: pos % size, wrap: pos < size }),
  },
};

export const FORMATS: readonly RingFormat[] = [split, packed];
export const SPLIT = split;
export const PACKED = packed;

/** Whether a side moving from `from` to `to` (positions modulo `modulus`) passes `event`. */
export function crosses(event: number, from: number, to: number, modulus: number): boolean {
  return (event - from + modulus) % modulus < (to - from + modulus) % modulus;
}
