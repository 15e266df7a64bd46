// Packed ring, device-side defence against a hostile driver: descriptors written raw with
// pokeDescriptor (flags last, as a driver publishes), and devicePop must report {error} for
// malformed chains, never crash, never read outside mapped memory, and never follow a chain past
// one trip around the ring.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DATA_IOVA,
  DESC_F_INDIRECT as IND,
  DESC_F_NEXT as NEXT,
  DESC_F_WRITE as WRITE,
  RING_IOVA,
  isChain,
  popChain,
  popError,
  randInt,
  rng,
} from './loopback';
import { F_AVAIL, F_USED, PackedLoopback, newPacked } from './packed-loopback';

const SIZE = 8;
const DATA_BYTES = 1 << 16;
const A = F_AVAIL; // available on lap 0 (wrap counter 1)

function fresh(size = SIZE, eventIdx = false): PackedLoopback {
  return newPacked(size, eventIdx, 8, DATA_BYTES);
}
function d(offset: number): bigint {
  return DATA_IOVA + BigInt(offset);
}
function tableEntry(
  lb: PackedLoopback,
  tableOffset: number,
  i: number,
  addr: bigint,
  len: number,
  flags: number,
): void {
  const v = new DataView(lb.data, tableOffset + 16 * i, 16);
  v.setBigUint64(0, addr, true);
  v.setUint32(8, len, true);
  v.setUint16(12, 0, true);
  v.setUint16(14, flags, true);
}
/** Writes a chain at `start`: [addr, len, flags-without-AVAIL/USED, id]; the head last. */
function chain(lb: PackedLoopback, start: number, descs: [bigint, number, number, number][], avail = A): void {
  const size = lb.state().freeDescriptors; // the loopback's driver side is untouched in these tests
  for (let i = descs.length - 1; i >= 0; i--) {
    const [addr, len, flags, id] = descs[i];
    lb.pokeDescriptor((start + i) % size, addr, len, flags | avail, id);
  }
}

describe('packed hostile driver: well-formed chains', () => {
  it('a chain written descriptor by descriptor is accepted; the id comes from the last one', () => {
    const lb = fresh();
    chain(lb, 0, [
      [d(0), 16, NEXT, 99],
      [d(64), 32, NEXT | WRITE, 98],
      [d(4096), 8, WRITE, 5],
    ]);
    const c = popChain(lb);
    assert.equal(c.head, 5);
    assert.deepEqual(c.readable, [{ offset: 0, length: 16 }]);
    assert.deepEqual(c.writable, [
      { offset: 64, length: 32 },
      { offset: 4096, length: 8 },
    ]);
    assert.equal(lb.devicePop(), undefined);
  });

  it('buffer ids need not be below the queue size', () => {
    const lb = fresh();
    chain(lb, 0, [[d(0), 16, 0, 0xfffe]]);
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
      chain(lb, i, [[d(i * 64), 8, 0, i]]);
      assert.equal(popChain(lb).head, i);
    }
    const descs: [bigint, number, number, number][] = [];
    for (let i = 0; i < SIZE; i++) descs.push([d(1024 + i * 64), 8, i + 1 < SIZE ? NEXT : 0, 7]);
    // Slots 3..7 are on lap 0; the chain's last three (slots 0..2) are written with lap 1 flags.
    for (let i = SIZE - 1; i >= 0; i--) {
      const slot = (3 + i) % SIZE;
      lb.pokeDescriptor(slot, descs[i][0], descs[i][1], descs[i][2] | (slot >= 3 ? A : F_USED), descs[i][3]);
    }
    const c = popChain(lb);
    assert.equal(c.readable.length, SIZE);
    assert.equal(c.head, 7);
  });

  it('a well-formed indirect chain is accepted', () => {
    const lb = fresh();
    tableEntry(lb, 2048, 0, d(0), 10, 0);
    tableEntry(lb, 2048, 1, d(100), 20, WRITE);
    tableEntry(lb, 2048, 2, d(300), 30, WRITE);
    chain(lb, 0, [[d(2048), 48, IND, 3]]);
    const c = popChain(lb);
    assert.equal(c.head, 3);
    assert.deepEqual(c.readable, [{ offset: 0, length: 10 }]);
    assert.deepEqual(c.writable, [
      { offset: 100, length: 20 },
      { offset: 300, length: 30 },
    ]);
  });

  it('zero-length buffers are skipped, not translated', () => {
    const lb = fresh();
    chain(lb, 0, [
      [0xdead0000n, 0, NEXT, 0],
      [d(0), 8, 0, 1],
    ]);
    assert.deepEqual(popChain(lb).readable, [{ offset: 0, length: 8 }]);
  });
});

describe('packed hostile driver: availability', () => {
  it('only AVAIL == wrap and USED != wrap make a descriptor available', () => {
    for (const flags of [0, F_USED, F_AVAIL | F_USED]) {
      const lb = fresh();
      lb.pokeDescriptor(0, d(0), 8, flags, 0);
      assert.equal(lb.devicePop(), undefined, `flags ${flags.toString(16)}`);
    }
    // On lap 1 (wrap counter 0) the roles flip.
    const lb = newPacked(1, false, 0, DATA_BYTES);
    lb.pokeDescriptor(0, d(0), 8, A, 0);
    assert.equal(popChain(lb).head, 0);
    lb.pokeDescriptor(0, d(0), 8, A, 1);
    assert.equal(lb.devicePop(), undefined, 'lap 0 flags seen on lap 1: not available');
    lb.pokeDescriptor(0, d(0), 8, F_USED, 1);
    assert.equal(popChain(lb).head, 1);
  });

  it('the same id twice while the device holds it is reported', () => {
    const lb = fresh();
    chain(lb, 0, [[d(0), 8, 0, 4]]);
    chain(lb, 1, [[d(64), 8, 0, 4]]);
    assert.equal(popChain(lb).head, 4);
    assert.match(popError(lb), /buffer id 4 is already in use by another chain/);
    // Once returned, an id may be reused.
    const lb2 = fresh();
    chain(lb2, 0, [[d(0), 8, 0, 4]]);
    assert.equal(popChain(lb2).head, 4);
    lb2.devicePush(4, 0);
    chain(lb2, 1, [[d(64), 8, 0, 4]]);
    assert.equal(popChain(lb2).head, 4);
  });

  it('errors are sticky: the queue stays failed', () => {
    const lb = fresh();
    chain(lb, 0, [[0x10n, 8, 0, 0]]);
    const first = popError(lb);
    assert.equal(popError(lb), first);
    assert.equal(lb.deviceEnableNotify(), false);
  });
});

describe('packed hostile driver: chains', () => {
  it('a chain with NEXT on every descriptor is cut off after one trip around the ring', () => {
    for (const size of [1, 2, 5, SIZE]) {
      const lb = fresh(size);
      for (let i = size - 1; i >= 0; i--) lb.pokeDescriptor(i, d(i * 64), 16, NEXT | A, 0);
      assert.match(popError(lb), new RegExp(`longer than the queue \\(${size} descriptors\\)`));
    }
  });

  it('buffers outside mapped memory are reported', () => {
    const cases: [bigint, number][] = [
      [0x10n, 8],
      [d(DATA_BYTES - 4), 8],
      [0xfffffffffffffff0n, 32],
      [d(0), 0xffffffff],
      [DATA_IOVA - 1n, 2],
    ];
    for (const [addr, len] of cases) {
      const lb = fresh();
      chain(lb, 0, [
        [d(0), 8, NEXT, 0],
        [addr, len, 0, 1],
      ]);
      assert.match(popError(lb), /outside mapped memory/);
    }
  });

  it('a device-readable buffer after a device-writable one is reported', () => {
    const lb = fresh();
    chain(lb, 0, [
      [d(0), 8, NEXT | WRITE, 0],
      [d(64), 8, 0, 1],
    ]);
    assert.match(popError(lb), /device-readable buffer after a device-writable one/);
  });
});

describe('packed hostile driver: indirect tables', () => {
  it('an indirect descriptor must be the only descriptor of its chain', () => {
    for (const variant of ['with NEXT', 'not first']) {
      const lb = fresh();
      tableEntry(lb, 1024, 0, d(0), 8, 0);
      if (variant === 'with NEXT') {
        chain(lb, 0, [
          [d(1024), 16, IND | NEXT, 0],
          [d(64), 8, 0, 0],
        ]);
      } else {
        chain(lb, 0, [
          [d(64), 8, NEXT, 0],
          [d(1024), 16, IND, 0],
        ]);
      }
      assert.match(popError(lb), /indirect descriptor must be the only descriptor/, variant);
    }
  });

  it('table length zero or not a multiple of 16 is reported', () => {
    for (const len of [0, 8, 17, 40]) {
      const lb = fresh();
      chain(lb, 0, [[d(1024), len, IND, 0]]);
      assert.match(popError(lb), /is not a multiple of 16/);
    }
  });

  it('a table outside mapped memory or misaligned is reported', () => {
    for (const [addr, len] of [
      [0x10n, 32],
      [d(DATA_BYTES - 16), 32],
      [d(8), 32],
      [0xfffffffffffffff0n, 32],
      [RING_IOVA - 16n, 32],
    ] as [bigint, number][]) {
      const lb = fresh();
      chain(lb, 0, [[addr, len, IND, 0]]);
      assert.match(popError(lb), /indirect table outside mapped memory or misaligned/);
    }
  });

  it('a table with more than 65536 entries is reported', () => {
    const lb = fresh();
    chain(lb, 0, [[d(0), 16 * 65537, IND, 0]]);
    assert.match(popError(lb), /indirect table too long/);
  });

  it('entries may carry only WRITE: nested INDIRECT and NEXT are reported', () => {
    let lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, 0);
    tableEntry(lb, 1024, 1, d(2048), 16, IND);
    chain(lb, 0, [[d(1024), 32, IND, 0]]);
    assert.match(popError(lb), /indirect descriptor inside an indirect table/);

    for (const flags of [NEXT, NEXT | WRITE, F_AVAIL, F_USED | WRITE, 8]) {
      lb = fresh();
      tableEntry(lb, 1024, 0, d(0), 8, flags);
      chain(lb, 0, [[d(1024), 16, IND, 0]]);
      assert.match(popError(lb), /indirect table entry 0 has flags 0x[0-9a-f]{4} \(only WRITE is allowed\)/);
    }
  });

  it('bad buffers inside a table are reported', () => {
    let lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, 0);
    tableEntry(lb, 1024, 1, d(DATA_BYTES - 4), 8, 0);
    chain(lb, 0, [[d(1024), 32, IND, 0]]);
    assert.match(popError(lb), /outside mapped memory/);

    lb = fresh();
    tableEntry(lb, 1024, 0, d(0), 8, WRITE);
    tableEntry(lb, 1024, 1, d(64), 8, 0);
    chain(lb, 0, [[d(1024), 32, IND, 0]]);
    assert.match(popError(lb), /device-readable buffer after a device-writable one/);
  });
});

describe('packed hostile driver: random descriptor soup', () => {
  it('never crashes and only hands out buffers inside mapped memory', () => {
    const r = rng(11);
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
    for (let iter = 0; iter < 300; iter++) {
      const size = randInt(r, 1, 40);
      const lb = newPacked(size, iter % 2 === 0, 8, DATA_BYTES);
      const bytes = new Uint8Array(lb.data);
      for (let i = 0; i < 4096; i++) bytes[randInt(r, 0, DATA_BYTES - 1)] = randInt(r, 0, 255);
      for (let k = 0; k < 60; k++) {
        // Random low flag bits plus random AVAIL/USED bits: often available, often not.
        const flags = randInt(r, 0, 7) | (randInt(r, 0, 1) ? F_AVAIL : 0) | (randInt(r, 0, 2) === 0 ? F_USED : 0);
        lb.pokeDescriptor(randInt(r, 0, size - 1), pickAddr(), pickLen(), flags, randInt(r, 0, 0xffff));
        const res = lb.devicePop();
        if (res === undefined) continue;
        if (isChain(res)) {
          chains++;
          for (const b of [...res.readable, ...res.writable]) {
            assert.ok(b.length > 0);
            if (b.offset >= 0 && b.offset < DATA_BYTES) assert.ok(b.offset + b.length <= DATA_BYTES);
          }
          lb.devicePush(res.head, 0);
          lb.devicePublish();
        } else {
          errors++;
          assert.ok(res.error.length > 0);
          break; // errors are sticky: next ring
        }
      }
    }
    assert.ok(chains > 0 && errors > 0, `chains ${chains}, errors ${errors}`);
  });
});
