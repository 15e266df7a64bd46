// Device-side defence against a hostile driver, for each ring format: descriptors (and, on split
// rings, avail entries) are written raw, and devicePop must report {error} for malformed chains,
// never crash and never read outside mapped memory. These tests only use the device side of each
// loopback. The random descriptor soup is in device-soup.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DATA_IOVA,
  DESC_F_INDIRECT as IND,
  DESC_F_NEXT as NEXT,
  DESC_F_WRITE as WRITE,
  RING_IOVA,
  popChain,
  popError,
} from './loopback';
import { F_AVAIL, F_USED, PackedLoopback } from './packed-loopback';
import { FORMATS, PACKED, RawDesc, RingFormat, SPLIT } from './formats';

const SIZE = 8;
const DATA_BYTES = 1 << 16;

function d(offset: number): bigint {
  return DATA_IOVA + BigInt(offset);
}

function freshOf(fmt: RingFormat): (size?: number) => PackedLoopback {
  return (size = SIZE) => {
    const lb = fmt.make(size, false, 8, DATA_BYTES);
    assert.equal(lb.data.byteLength, DATA_BYTES);
    return lb;
  };
}

function wellFormedSuite(fmt: RingFormat): void {
  const fresh = freshOf(fmt);
  it('a well-formed poked chain is accepted', () => {
    const lb = fresh();
    const descs: RawDesc[] = [
      [d(0), 16, NEXT],
      [d(64), 32, NEXT | WRITE],
      [d(4096), 8, WRITE],
    ];
    // Split: any descriptors linked by next; packed: the id comes from the last descriptor.
    assert.equal(fmt.pokeChain(lb, descs, { slots: [3, 5, 6], id: 5 }), fmt === SPLIT ? 3 : 5);
    const c = popChain(lb);
    assert.equal(c.head, fmt === SPLIT ? 3 : 5);
    assert.deepEqual(c.readable, [{ offset: 0, length: 16 }]);
    assert.deepEqual(c.writable, [
      { offset: 64, length: 32 },
      { offset: 4096, length: 8 },
    ]);
    assert.equal(lb.devicePop(), undefined);
  });

  it('a well-formed poked indirect chain is accepted', () => {
    const lb = fresh();
    fmt.pokeTable(lb, 2048, [
      [d(0), 10, 0],
      [d(100), 20, WRITE],
      [d(300), 30, WRITE],
    ]);
    const head = fmt.pokeChain(lb, [[d(2048), 48, IND]], { slots: [1], id: 3 });
    const c = popChain(lb);
    assert.equal(c.head, head);
    assert.deepEqual(c.readable, [{ offset: 0, length: 10 }]);
    assert.deepEqual(c.writable, [
      { offset: 100, length: 20 },
      { offset: 300, length: 30 },
    ]);
  });

  it('a direct chain using every descriptor once is accepted', () => {
    const lb = fresh();
    const descs: RawDesc[] = [];
    for (let i = 0; i < SIZE; i++) descs.push([d(i * 64), 8, i + 1 < SIZE ? NEXT : 0]);
    fmt.pokeChain(lb, descs);
    assert.equal(popChain(lb).readable.length, SIZE);
  });

  it('pokeDescriptor checks its own arguments', () => {
    const lb = fresh();
    assert.throws(() => lb.pokeDescriptor(SIZE, d(0), 8, 0, 0), RangeError);
    assert.throws(() => lb.pokeDescriptor(0, 0 as unknown as bigint, 8, 0, 0), TypeError);
  });
}

function chainSuite(fmt: RingFormat): void {
  const fresh = freshOf(fmt);
  it('a buffer outside mapped memory is reported, as head or further down the chain', () => {
    const cases: [bigint, number][] = [
      [0n, 16], // nothing mapped at 0
      [0x10n, 8],
      [DATA_IOVA - 8n, 16], // straddles the start of the data area
      [DATA_IOVA - 1n, 2],
      [d(DATA_BYTES - 8), 16], // straddles the end
      [d(DATA_BYTES - 4), 8],
      [d(DATA_BYTES), 1], // just past the end
      [d(0), 0xffffffff], // far too long
      [0xfffffffffffffff0n, 0x20], // addr + len wraps 64 bits
      [RING_IOVA - 1n, 2], // straddles the start of ring memory
      [0x80000000n, 4096],
    ];
    for (const [addr, len] of cases) {
      let lb = fresh();
      fmt.pokeChain(lb, [[addr, len, WRITE]], { slots: [2] });
      assert.match(popError(lb), new RegExp(`buffer at iova 0x${addr.toString(16)} is outside mapped memory`));
      lb = fresh();
      fmt.pokeChain(
        lb,
        [
          [d(0), 16, NEXT],
          [addr, len, 0],
        ],
        { slots: [0, 4] },
      );
      assert.match(popError(lb), /outside mapped memory/);
    }
  });

  it('a device-readable buffer after a device-writable one is reported', () => {
    const lb = fresh();
    fmt.pokeChain(lb, [
      [d(0), 16, NEXT | WRITE],
      [d(64), 16, 0],
    ]);
    assert.match(popError(lb), /device-readable buffer after a device-writable one/);
  });
}

function indirectSuite(fmt: RingFormat): void {
  const fresh = freshOf(fmt);
  it('a table length that is zero or not a multiple of 16 is reported', () => {
    for (const len of [0, 8, 17, 20, 33, 40, 0xffffffff]) {
      const lb = fresh();
      fmt.pokeChain(lb, [[d(1024), len, IND]]);
      assert.match(popError(lb), new RegExp(`indirect table length ${len} is not a multiple of 16`));
    }
  });

  it('an indirect descriptor inside an indirect table is reported', () => {
    for (const at of [0, 1]) {
      const lb = fresh();
      fmt.pokeTable(lb, 1024, [
        [d(0), 16, at === 0 ? IND : 0],
        [at === 1 ? d(2048) : d(64), 32, at === 1 ? IND : 0],
      ]);
      fmt.pokeTable(lb, 2048, [
        [d(0), 16, 0],
        [d(64), 16, 0],
      ]);
      fmt.pokeChain(lb, [[d(1024), 32, IND]]);
      assert.match(popError(lb), /indirect descriptor inside an indirect table/);
    }
  });

  it('an indirect descriptor that is not alone in its chain is reported', () => {
    for (const variant of ['indirect with NEXT', 'indirect as second descriptor']) {
      const lb = fresh();
      fmt.pokeTable(lb, 1024, [[d(0), 16, 0]]);
      const descs: RawDesc[] =
        variant === 'indirect with NEXT'
          ? [
              [d(1024), 16, IND | NEXT],
              [d(64), 16, 0],
            ]
          : [
              [d(64), 16, NEXT],
              [d(1024), 16, IND],
            ];
      fmt.pokeChain(lb, descs);
      assert.match(popError(lb), /indirect descriptor must be the only descriptor/, variant);
    }
  });

  it('a table outside mapped memory or misaligned is reported', () => {
    const cases: [bigint, number][] = [
      [0x10n, 32],
      [d(DATA_BYTES - 16), 32], // runs past the end of the data area
      [d(8), 32], // misaligned
      [0xfffffffffffffff0n, 32],
      [RING_IOVA - 16n, 32],
    ];
    for (const [addr, len] of cases) {
      const lb = fresh();
      fmt.pokeChain(lb, [[addr, len, IND]]);
      assert.match(popError(lb), /indirect table outside mapped memory or misaligned/);
    }
  });

  it('a table with more than 65536 entries is reported', () => {
    const lb = fresh();
    fmt.pokeChain(lb, [[d(0), 16 * 65537, IND]]);
    assert.match(popError(lb), /indirect table too long/);
  });

  it('bad buffers inside a table are reported', () => {
    let lb = fresh();
    fmt.pokeTable(lb, 1024, [
      [d(0), 8, 0],
      [d(DATA_BYTES - 4), 8, 0],
    ]);
    fmt.pokeChain(lb, [[d(1024), 32, IND]]);
    assert.match(popError(lb), /outside mapped memory/);

    lb = fresh();
    fmt.pokeTable(lb, 1024, [
      [d(0), 8, WRITE],
      [d(64), 8, 0],
    ]);
    fmt.pokeChain(lb, [[d(1024), 32, IND]]);
    assert.match(popError(lb), /device-readable buffer after a device-writable one/);
  });
}

for (const fmt of FORMATS) {
  describe(`${fmt.name} hostile driver: well-formed chains`, () => wellFormedSuite(fmt));
  describe(`${fmt.name} hostile driver: descriptor chains`, () => chainSuite(fmt));
  describe(`${fmt.name} hostile driver: indirect tables`, () => indirectSuite(fmt));
}

describe('split hostile driver: next pointers and the avail ring', () => {
  const fresh = freshOf(SPLIT);
  it('a loop through next pointers is reported, not followed forever', () => {
    const loops: [number, number, number][][] = [
      [
        [0, NEXT, 1],
        [1, NEXT, 0],
      ], // 0 -> 1 -> 0
      [[0, NEXT, 0]], // self loop
      [
        [0, NEXT, 5],
        [5, NEXT | WRITE, 2],
        [2, NEXT | WRITE, 5],
      ], // loop not through the head
    ];
    // A loop through every descriptor.
    const all: [number, number, number][] = [];
    for (let i = 0; i < SIZE; i++) all.push([i, NEXT, (i + 1) % SIZE]);
    loops.push(all);
    for (const chain of loops) {
      const lb = fresh();
      for (const [i, flags, next] of chain) lb.pokeDescriptor(i, d(i * 64), 16, flags, next);
      lb.pokeAvail(0, 1);
      assert.match(popError(lb), /longer than its table \(loop\?\)/);
    }
  });

  it('a next index beyond the queue size is reported', () => {
    for (const next of [SIZE, SIZE + 1, 0xffff]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(0), 16, NEXT, 1);
      lb.pokeDescriptor(1, d(64), 16, NEXT, next);
      lb.pokeAvail(0, 1);
      assert.match(popError(lb), new RegExp(`descriptor index ${next} out of range`));
    }
  });

  it('loops and bad next indexes inside a table are reported', () => {
    const table = (lb: PackedLoopback, entries: [bigint, number, number, number][]): void =>
      entries.forEach(([addr, len, flags, next], i) => SPLIT.tableEntry(lb, 1024, i, [addr, len, flags], next));
    let lb = fresh();
    table(lb, [
      [d(0), 8, NEXT, 1],
      [d(64), 8, NEXT, 2],
      [d(128), 8, NEXT, 0],
      [d(192), 8, 0, 0],
    ]);
    SPLIT.pokeChain(lb, [[d(1024), 64, IND]]);
    assert.match(popError(lb), /longer than its table \(loop\?\)/);

    lb = fresh();
    table(lb, [
      [d(0), 8, NEXT, 1],
      [d(64), 8, NEXT, 4], // the table has 4 entries
    ]);
    SPLIT.pokeChain(lb, [[d(1024), 64, IND]]);
    assert.match(popError(lb), /descriptor index 4 out of range/);
  });

  it('an avail index that moves by more than the queue size is reported', () => {
    for (const advance of [SIZE + 1, 1000, 0x8000, 0xffff]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(0), 16, 0, 0);
      lb.pokeAvail(0, advance);
      assert.match(popError(lb), /driver moved the avail index by more than the queue size/);
      // Asking again does not crash or hand out chains.
      assert.match(popError(lb), /more than the queue size/);
    }
  });

  it('an avail index that moves by exactly the queue size is fine', () => {
    const lb = fresh();
    lb.pokeDescriptor(0, d(0), 16, 0, 0);
    lb.pokeAvail(0, SIZE); // untouched avail slots also name head 0
    for (let i = 0; i < SIZE; i++) assert.equal(popChain(lb).head, 0);
    assert.equal(lb.devicePop(), undefined);
  });

  it('a head index beyond the queue size is reported and skipped', () => {
    for (const head of [SIZE, SIZE + 7, 0xffff]) {
      const lb = fresh();
      lb.pokeDescriptor(1, d(0), 16, 0, 0);
      lb.pokeAvail(head, 1);
      assert.match(popError(lb), new RegExp(`avail ring names descriptor ${head} beyond the queue size`));
      lb.pokeAvail(1, 1);
      assert.equal(popChain(lb).head, 1, 'the next entry is still read');
      assert.equal(lb.devicePop(), undefined);
    }
  });
});

describe('packed hostile driver: ids, availability and wrap flags', () => {
  const fresh = freshOf(PACKED);
  /** Writes single-descriptor chains of `descs` [addr, len, flags, id] at slot `start` on lap 0. */
  const chainAt = (lb: PackedLoopback, start: number, descs: [bigint, number, number, number][]): void => {
    for (let i = descs.length - 1; i >= 0; i--) {
      const [addr, len, flags, id] = descs[i];
      lb.pokeDescriptor((start + i) % SIZE, addr, len, flags | F_AVAIL, id);
    }
  };

  it('buffer ids need not be below the queue size', () => {
    const lb = fresh();
    PACKED.pokeChain(lb, [[d(0), 16, 0]], { id: 0xfffe });
    assert.equal(popChain(lb).head, 0xfffe);
    lb.devicePush(0xfffe, 0);
    lb.devicePublish();
    const used = lb.peekDescriptor(0);
    assert.equal(used.id, 0xfffe);
    assert.equal(used.flags & (F_AVAIL | F_USED), F_AVAIL | F_USED);
  });

  it('a chain using every descriptor once, starting mid-ring and wrapping, is accepted', () => {
    const lb = fresh();
    // Move the device to slot 3 with three single-descriptor chains.
    for (let i = 0; i < 3; i++) {
      chainAt(lb, i, [[d(i * 64), 8, 0, i]]);
      assert.equal(popChain(lb).head, i);
    }
    // Slots 3..7 are on lap 0; the chain's last three (slots 0..2) are written with lap 1 flags.
    for (let i = SIZE - 1; i >= 0; i--) {
      const slot = (3 + i) % SIZE;
      lb.pokeDescriptor(slot, d(1024 + i * 64), 8, (i + 1 < SIZE ? NEXT : 0) | (slot >= 3 ? F_AVAIL : F_USED), 7);
    }
    const c = popChain(lb);
    assert.equal(c.readable.length, SIZE);
    assert.equal(c.head, 7);
  });

  it('zero-length buffers are skipped, not translated', () => {
    const lb = fresh();
    PACKED.pokeChain(lb, [
      [0xdead0000n, 0, NEXT],
      [d(0), 8, 0],
    ]);
    assert.deepEqual(popChain(lb).readable, [{ offset: 0, length: 8 }]);
  });

  it('only AVAIL == wrap and USED != wrap make a descriptor available', () => {
    for (const flags of [0, F_USED, F_AVAIL | F_USED]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(0), 8, flags, 0);
      assert.equal(lb.devicePop(), undefined, `flags ${flags.toString(16)}`);
    }
    // On lap 1 (wrap counter 0) the roles flip.
    const lb = fresh(1);
    lb.pokeDescriptor(0, d(0), 8, F_AVAIL, 0);
    assert.equal(popChain(lb).head, 0);
    lb.pokeDescriptor(0, d(0), 8, F_AVAIL, 1);
    assert.equal(lb.devicePop(), undefined, 'lap 0 flags seen on lap 1: not available');
    lb.pokeDescriptor(0, d(0), 8, F_USED, 1);
    assert.equal(popChain(lb).head, 1);
  });

  it('the same id twice while the device holds it is reported', () => {
    const lb = fresh();
    chainAt(lb, 0, [[d(0), 8, 0, 4]]);
    chainAt(lb, 1, [[d(64), 8, 0, 4]]);
    assert.equal(popChain(lb).head, 4);
    assert.match(popError(lb), /buffer id 4 is already in use by another chain/);
    // Once returned, an id may be reused.
    const lb2 = fresh();
    chainAt(lb2, 0, [[d(0), 8, 0, 4]]);
    assert.equal(popChain(lb2).head, 4);
    lb2.devicePush(4, 0);
    chainAt(lb2, 1, [[d(64), 8, 0, 4]]);
    assert.equal(popChain(lb2).head, 4);
  });

  it('errors are sticky: the queue stays failed', () => {
    const lb = fresh();
    PACKED.pokeChain(lb, [[0x10n, 8, 0]]);
    const first = popError(lb);
    assert.equal(popError(lb), first);
    assert.equal(lb.deviceEnableNotify(), false);
  });

  it('a chain with NEXT on every descriptor is cut off after one trip around the ring', () => {
    for (const size of [1, 2, 5, SIZE]) {
      const lb = fresh(size);
      for (let i = size - 1; i >= 0; i--) lb.pokeDescriptor(i, d(i * 64), 16, NEXT | F_AVAIL, 0);
      assert.match(popError(lb), new RegExp(`longer than the queue \\(${size} descriptors\\)`));
    }
  });

  it('indirect table entries may carry only WRITE', () => {
    for (const flags of [NEXT, NEXT | WRITE, F_AVAIL, F_USED | WRITE, 8]) {
      const lb = fresh();
      PACKED.tableEntry(lb, 1024, 0, [d(0), 8, flags]);
      PACKED.pokeChain(lb, [[d(1024), 16, IND]]);
      assert.match(popError(lb), /indirect table entry 0 has flags 0x[0-9a-f]{4} \(only WRITE is allowed\)/);
    }
  });
});
