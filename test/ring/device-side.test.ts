// Device-side defence against a hostile driver: descriptors and avail entries are written raw with
// pokeDescriptor/pokeAvail, and devicePop must report {error} (never crash, never read outside
// mapped memory). These tests only use the device side of each loopback.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DATA_IOVA,
  DESC_F_INDIRECT as IND,
  DESC_F_NEXT as NEXT,
  DESC_F_WRITE as WRITE,
  RING_IOVA,
  RingLoopback,
  isChain,
  newLoopback,
  popChain,
  popError,
  randInt,
  rng,
} from './loopback';

const SIZE = 8;
const DATA_BYTES = 1 << 16;

function fresh(size = SIZE, eventIdx = false): RingLoopback {
  const lb = newLoopback(size, eventIdx, 8, DATA_BYTES);
  assert.equal(lb.data.byteLength, DATA_BYTES);
  return lb;
}

function d(offset: number): bigint {
  return DATA_IOVA + BigInt(offset);
}

/** Writes an indirect table entry into the data area at `tableOffset`. */
function tableEntry(
  lb: RingLoopback,
  tableOffset: number,
  i: number,
  addr: bigint,
  len: number,
  flags: number,
  next: number,
): void {
  const v = new DataView(lb.data, tableOffset + 16 * i, 16);
  v.setBigUint64(0, addr, true);
  v.setUint32(8, len, true);
  v.setUint16(12, flags, true);
  v.setUint16(14, next, true);
}

/** Pokes `head` into the avail ring, publishes it, and returns the malformed reason. */
function popHostile(lb: RingLoopback, head = 0): string {
  lb.pokeAvail(head, 1);
  return popError(lb);
}

describe('hostile driver: sanity of the poking helpers', () => {
  it('a well-formed poked chain is accepted', () => {
    const lb = fresh();
    lb.pokeDescriptor(3, d(0), 16, NEXT, 5);
    lb.pokeDescriptor(5, d(64), 32, NEXT | WRITE, 6);
    lb.pokeDescriptor(6, d(4096), 8, WRITE, 0);
    lb.pokeAvail(3, 1);
    const c = popChain(lb);
    assert.equal(c.head, 3);
    assert.deepEqual(c.readable, [{ offset: 0, length: 16 }]);
    assert.deepEqual(c.writable, [
      { offset: 64, length: 32 },
      { offset: 4096, length: 8 },
    ]);
    assert.equal(lb.devicePop(), undefined);
  });

  it('a well-formed poked indirect chain is accepted', () => {
    const lb = fresh();
    tableEntry(lb, 2048, 0, d(0), 10, NEXT, 1);
    tableEntry(lb, 2048, 1, d(100), 20, NEXT | WRITE, 2);
    tableEntry(lb, 2048, 2, d(300), 30, WRITE, 0);
    lb.pokeDescriptor(1, d(2048), 48, IND, 0);
    lb.pokeAvail(1, 1);
    const c = popChain(lb);
    assert.equal(c.head, 1);
    assert.deepEqual(c.readable, [{ offset: 0, length: 10 }]);
    assert.deepEqual(c.writable, [
      { offset: 100, length: 20 },
      { offset: 300, length: 30 },
    ]);
  });

  it('a direct chain using every descriptor once is accepted', () => {
    const lb = fresh();
    for (let i = 0; i < SIZE; i++) lb.pokeDescriptor(i, d(i * 64), 8, i + 1 < SIZE ? NEXT : 0, i + 1);
    lb.pokeAvail(0, 1);
    assert.equal(popChain(lb).readable.length, SIZE);
  });

  it('pokeDescriptor checks its own arguments', () => {
    const lb = fresh();
    assert.throws(() => lb.pokeDescriptor(SIZE, d(0), 8, 0, 0), RangeError);
    assert.throws(() => lb.pokeDescriptor(0, 0 as unknown as bigint, 8, 0, 0), TypeError);
  });
});

describe('hostile driver: descriptor chains', () => {
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
      assert.match(popHostile(lb), /longer than its table \(loop\?\)/);
    }
  });

  it('a next index beyond the queue size is reported', () => {
    for (const next of [SIZE, SIZE + 1, 0xffff]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(0), 16, NEXT, 1);
      lb.pokeDescriptor(1, d(64), 16, NEXT, next);
      assert.match(popHostile(lb), new RegExp(`descriptor index ${next} out of range`));
    }
  });

  it('a buffer outside mapped memory is reported', () => {
    const cases: [bigint, number][] = [
      [0n, 16], // nothing mapped at 0
      [DATA_IOVA - 8n, 16], // straddles the start of the data area
      [d(DATA_BYTES - 8), 16], // straddles the end
      [d(DATA_BYTES), 1], // just past the end
      [d(0), 0xffffffff], // far too long
      [0xfffffffffffffff0n, 0x20], // addr + len wraps 64 bits
      [RING_IOVA - 1n, 2], // straddles the start of ring memory
      [0x80000000n, 4096],
    ];
    for (const [addr, len] of cases) {
      for (const asHead of [true, false]) {
        const lb = fresh();
        if (asHead) {
          lb.pokeDescriptor(2, addr, len, WRITE, 0);
          assert.match(popHostile(lb, 2), new RegExp(`buffer at iova 0x${addr.toString(16)} is outside mapped memory`));
        } else {
          lb.pokeDescriptor(0, d(0), 16, NEXT, 4);
          lb.pokeDescriptor(4, addr, len, 0, 0);
          assert.match(popHostile(lb), /outside mapped memory/);
        }
      }
    }
  });

  it('a device-readable buffer after a device-writable one is reported', () => {
    const lb = fresh();
    lb.pokeDescriptor(0, d(0), 16, NEXT | WRITE, 1);
    lb.pokeDescriptor(1, d(64), 16, 0, 0);
    assert.match(popHostile(lb), /device-readable buffer after a device-writable one/);
  });
});

describe('hostile driver: indirect tables', () => {
  it('a table length that is zero or not a multiple of 16 is reported', () => {
    for (const len of [0, 8, 20, 33, 0xffffffff]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(1024), len, IND, 0);
      assert.match(popHostile(lb), new RegExp(`indirect table length ${len} is not a multiple of 16`));
    }
  });

  it('an indirect descriptor inside an indirect table is reported', () => {
    for (const at of [0, 1]) {
      const lb = fresh();
      tableEntry(lb, 1024, 0, d(0), 16, at === 0 ? IND : NEXT, 1);
      tableEntry(lb, 1024, 1, at === 1 ? d(2048) : d(64), 32, at === 1 ? IND : 0, 0);
      tableEntry(lb, 2048, 0, d(0), 16, 0, 0);
      tableEntry(lb, 2048, 1, d(64), 16, 0, 0);
      lb.pokeDescriptor(0, d(1024), 32, IND, 0);
      assert.match(popHostile(lb), /indirect descriptor inside an indirect table/);
    }
  });

  it('an indirect descriptor that is not alone in its chain is reported', () => {
    for (const variant of ['indirect with NEXT', 'indirect as second descriptor']) {
      const lb = fresh();
      tableEntry(lb, 1024, 0, d(0), 16, 0, 0);
      if (variant === 'indirect with NEXT') {
        lb.pokeDescriptor(0, d(1024), 16, IND | NEXT, 1);
        lb.pokeDescriptor(1, d(64), 16, 0, 0);
      } else {
        lb.pokeDescriptor(0, d(64), 16, NEXT, 1);
        lb.pokeDescriptor(1, d(1024), 16, IND, 0);
      }
      assert.match(popHostile(lb), /indirect descriptor must be the only descriptor/, variant);
    }
  });

  it('a table outside mapped memory or misaligned is reported', () => {
    const cases: [bigint, number][] = [
      [0x10n, 32],
      [d(DATA_BYTES - 16), 32], // runs past the end of the data area
      [d(8), 32], // misaligned
      [0xfffffffffffffff0n, 32],
    ];
    for (const [addr, len] of cases) {
      const lb = fresh();
      lb.pokeDescriptor(0, addr, len, IND, 0);
      assert.match(popHostile(lb), /indirect table outside mapped memory or misaligned/);
    }
  });

  it('a table with more than 65536 entries is reported', () => {
    const lb = fresh();
    lb.pokeDescriptor(0, d(0), 16 * 65537, IND, 0);
    assert.match(popHostile(lb), /indirect table too long/);
  });

  it('loops and bad next indexes inside a table are reported', () => {
    let lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, NEXT, 1);
    tableEntry(lb, 1024, 1, d(64), 8, NEXT, 2);
    tableEntry(lb, 1024, 2, d(128), 8, NEXT, 0);
    tableEntry(lb, 1024, 3, d(192), 8, 0, 0);
    lb.pokeDescriptor(0, d(1024), 64, IND, 0);
    assert.match(popHostile(lb), /longer than its table \(loop\?\)/);

    lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, NEXT, 1);
    tableEntry(lb, 1024, 1, d(64), 8, NEXT, 4); // the table has 4 entries
    lb.pokeDescriptor(0, d(1024), 64, IND, 0);
    assert.match(popHostile(lb), /descriptor index 4 out of range/);

    lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, NEXT, 1);
    tableEntry(lb, 1024, 1, d(DATA_BYTES - 4), 8, 0, 0);
    lb.pokeDescriptor(0, d(1024), 32, IND, 0);
    assert.match(popHostile(lb), /outside mapped memory/);

    lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, NEXT | WRITE, 1);
    tableEntry(lb, 1024, 1, d(64), 8, 0, 0);
    lb.pokeDescriptor(0, d(1024), 32, IND, 0);
    assert.match(popHostile(lb), /device-readable buffer after a device-writable one/);
  });
});

describe('hostile driver: avail ring', () => {
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

describe('hostile driver: random descriptor soup', () => {
  it('never crashes and only hands out buffers inside mapped memory', () => {
    const r = rng(7);
    const pickAddr = (): bigint => {
      switch (randInt(r, 0, 5)) {
        case 0:
          return d(randInt(r, 0, DATA_BYTES + 64));
        case 1:
          return d(randInt(r, 0, DATA_BYTES / 16 - 1) * 16);
        case 2:
          return RING_IOVA + BigInt(randInt(r, 0, 4096));
        case 3:
          return BigInt(randInt(r, 0, 0xffffffff)) << BigInt(randInt(r, 0, 32));
        case 4:
          return DATA_IOVA - BigInt(randInt(r, 0, 64));
        default:
          return 0xffffffffffffffffn - BigInt(randInt(r, 0, 64));
      }
    };
    const pickLen = (): number => {
      switch (randInt(r, 0, 3)) {
        case 0:
          return randInt(r, 0, 64);
        case 1:
          return randInt(r, 1, 8) * 16;
        case 2:
          return randInt(r, 0, 0xffffffff);
        default:
          return randInt(r, 0, DATA_BYTES);
      }
    };
    let chains = 0;
    let errors = 0;
    for (let iter = 0; iter < 150; iter++) {
      const size = 1 << randInt(r, 0, 5);
      const lb = newLoopback(size, iter % 2 === 0, 8, DATA_BYTES);
      // Random bytes in the data area make random indirect tables.
      const bytes = new Uint8Array(lb.data);
      for (let i = 0; i < 4096; i++) bytes[randInt(r, 0, DATA_BYTES - 1)] = randInt(r, 0, 255);
      for (let k = 0; k < 40; k++) {
        lb.pokeDescriptor(randInt(r, 0, size - 1), pickAddr(), pickLen(), randInt(r, 0, 7), randInt(r, 0, size + 1));
        if (randInt(r, 0, 2) === 0)
          lb.pokeAvail(randInt(r, 0, size + 1), randInt(r, 0, 3) === 0 ? randInt(r, 0, 0xffff) : 1);
        const res = lb.devicePop();
        if (res === undefined) continue;
        if (isChain(res)) {
          chains++;
          assert.ok(res.head < size);
          for (const b of [...res.readable, ...res.writable]) {
            assert.ok(b.length > 0);
            // Buffers in the data area must lie entirely inside it (ring memory gives other offsets).
            if (b.offset >= 0 && b.offset < DATA_BYTES) assert.ok(b.offset + b.length <= DATA_BYTES);
          }
          lb.devicePush(res.head, 0);
          lb.devicePublish();
        } else {
          errors++;
          assert.ok(res.error.length > 0);
        }
      }
    }
    assert.ok(chains > 0 && errors > 0, `chains ${chains}, errors ${errors}`);
  });
});
