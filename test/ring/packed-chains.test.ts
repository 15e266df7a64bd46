// Packed ring, chain construction on the driver side: indirect descriptors, chain validation,
// ring-full behaviour, chains over the end of the ring, sizes that are not powers of two, and the
// loopback constructor's checks for the packed format.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChainSpec,
  DATA_IOVA,
  RING_IOVA,
  addon,
  assertThrowsCode,
  drainPairs,
  encode,
  popChain,
  simpleChain,
  submit,
  writableBytes,
} from './loopback';
import { PackedLoopback, availFlags, newPacked } from './packed-loopback';

const FIVE: ChainSpec = {
  token: 0xabc,
  segs: [
    { offset: 0, length: 10, writable: false },
    { offset: 128, length: 20, writable: false },
    { offset: 512, length: 30, writable: true },
    { offset: 1024, length: 40, writable: true },
    { offset: 4096, length: 50, writable: true },
  ],
};

function roundTrip(lb: PackedLoopback): [number, number][] {
  lb.publish();
  lb.deviceCompleteAll();
  lb.devicePublish();
  return drainPairs(lb);
}

function assertIdle(lb: PackedLoopback, size: number): void {
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
}

function fiveSegments(lb: PackedLoopback, size: number, descriptors: number): void {
  assert.equal(submit(lb, [FIVE]), 1);
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 1, freeDescriptors: size - descriptors });
  assert.equal(lb.publish(), true);
  const c = popChain(lb);
  assert.deepEqual(c.readable, [
    { offset: 0, length: 10 },
    { offset: 128, length: 20 },
  ]);
  assert.deepEqual(c.writable, [
    { offset: 512, length: 30 },
    { offset: 1024, length: 40 },
    { offset: 4096, length: 50 },
  ]);
  assert.equal(lb.devicePop(), undefined);
  lb.devicePush(c.head, 120);
  lb.devicePublish();
  assert.deepEqual(drainPairs(lb), [[0xabc, 120]]);
  assertIdle(lb, size);
}

describe('packed: indirect descriptors', () => {
  it('a 5-segment chain takes exactly one ring descriptor when indirectMax >= 5', () => {
    fiveSegments(newPacked(8, false, 8), 8, 1);
    fiveSegments(newPacked(7, true, 5), 7, 1);
  });

  it('the ring descriptor names the table; table entries carry only WRITE', () => {
    const lb = newPacked(8, false, 8);
    assert.equal(submit(lb, [FIVE]), 1);
    lb.publish();
    const d = lb.peekDescriptor(0);
    assert.equal(d.flags, availFlags(true) | 4, 'INDIRECT, no NEXT');
    assert.equal(d.len, 5 * 16);
    assert.ok(d.addr > RING_IOVA && d.addr % 16n === 0n, 'table inside ring memory, aligned');
  });

  it('without indirect the same chain takes 5 descriptors', () => {
    fiveSegments(newPacked(8, false, 0), 8, 5);
  });

  it('a chain longer than indirectMax falls back to direct descriptors', () => {
    fiveSegments(newPacked(8, false, 4), 8, 5);
  });

  it('every ring slot can hold an indirect chain, each with its own table', () => {
    const size = 6;
    const lb = newPacked(size, true, 6);
    const chains: ChainSpec[] = [];
    for (let t = 0; t < size + 1; t++) {
      const segs = [];
      for (let i = 0; i < 6; i++) segs.push({ offset: t * 1024 + i * 64, length: 1 + t * 6 + i, writable: i >= 2 });
      chains.push({ token: 1000 + t, segs });
    }
    assert.equal(submit(lb, chains), size, 'ring full after `size` indirect chains');
    lb.publish();
    const ids: number[] = [];
    for (let t = 0; t < size; t++) {
      const c = popChain(lb);
      ids.push(c.head);
      assert.deepEqual(
        [...c.readable, ...c.writable].map((b) => [b.offset, b.length]),
        chains[t].segs.map((s) => [s.offset, s.length]),
        `chain ${t} sees its own table`,
      );
    }
    assert.equal(new Set(ids).size, size);
    for (const h of [...ids].reverse()) lb.devicePush(h, 0);
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, size);
    assertIdle(lb, size);
    assert.equal(lb.submit(encode([chains[size]]), 1), 1, 'the left-over chain fits now');
    assert.deepEqual(roundTrip(lb), [[1000 + size, writableBytes(chains[size])]]);
  });

  it('a chain longer than the queue works when it fits in an indirect table', () => {
    const lb = newPacked(3, false, 8);
    const chain = simpleChain(5, 3, 5);
    assert.equal(submit(lb, [chain]), 1);
    assert.equal(lb.state().freeDescriptors, 2);
    assert.deepEqual(roundTrip(lb), [[5, writableBytes(chain)]]);
    assertIdle(lb, 3);
  });

  it('a chain longer than both the queue and indirectMax is rejected with E2BIG', () => {
    for (const indirectMax of [0, 2, 4]) {
      const lb = newPacked(4, true, indirectMax);
      assertThrowsCode(() => submit(lb, [simpleChain(1, 2, 3)]), 'E2BIG', /longer than the queue/);
      assertIdle(lb, 4);
      assert.equal(submit(lb, [simpleChain(2, 1, 1)]), 1);
      assert.deepEqual(roundTrip(lb), [[2, 17]]);
    }
  });
});

describe('packed: chains over the end of the ring', () => {
  it('a chain of exactly the queue size, starting anywhere, works without indirect', () => {
    for (const size of [1, 3, 5, 16]) {
      for (let start = 0; start < size; start++) {
        const lb = newPacked(size, false, 0);
        // Move the ring position to `start` with single-descriptor chains.
        for (let i = 0; i < start; i++) {
          assert.equal(submit(lb, [simpleChain(900 + i, 0, 1)]), 1);
          assert.equal(roundTrip(lb).length, 1);
        }
        const chain = simpleChain(77, size >> 1, size - (size >> 1), 8);
        assert.equal(submit(lb, [chain, simpleChain(78, 0, 1)]), 1, 'the second chain does not fit');
        assert.equal(lb.state().freeDescriptors, 0);
        lb.publish();
        const c = popChain(lb);
        assert.deepEqual(
          [...c.readable, ...c.writable].map((b) => [b.offset, b.length]),
          chain.segs.map((s) => [s.offset, s.length]),
          `size ${size} start ${start}`,
        );
        lb.devicePush(c.head, writableBytes(chain));
        lb.devicePublish();
        assert.deepEqual(drainPairs(lb), [[77, writableBytes(chain)]]);
        assertIdle(lb, size);
        assert.equal(submit(lb, [simpleChain(78, 0, 1)]), 1);
        assert.deepEqual(roundTrip(lb), [[78, 16]]);
      }
    }
  });

  it('the descriptors after the ring end carry the next lap\u2019s flags', () => {
    const lb = newPacked(3, false, 0);
    assert.equal(submit(lb, [simpleChain(1, 0, 2)]), 1);
    assert.equal(roundTrip(lb).length, 1);
    // Next chain uses slots 2, 0, 1: slot 2 on lap 0 (wrap 1), slots 0 and 1 on lap 1 (wrap 0).
    assert.equal(submit(lb, [simpleChain(2, 1, 2)]), 1);
    lb.publish();
    assert.equal(lb.peekDescriptor(2).flags, availFlags(true) | 1);
    assert.equal(lb.peekDescriptor(0).flags, availFlags(false) | 1 | 2);
    assert.equal(lb.peekDescriptor(1).flags, availFlags(false) | 2);
    const c = popChain(lb);
    assert.equal(c.readable.length + c.writable.length, 3);
  });
});

describe('packed: chain rules', () => {
  it('a chain with zero segments is a RangeError, not a full ring', () => {
    const lb = newPacked(8, false, 0);
    assert.throws(() => lb.submit(new Uint32Array([9, 0]), 1), { name: 'RangeError', message: /bad segment count/ });
    assertIdle(lb, 8);
  });

  it('a zero-length segment is rejected', () => {
    for (const indirectMax of [0, 8]) {
      const lb = newPacked(8, false, indirectMax);
      const chain = simpleChain(1, 1, 2);
      chain.segs[1].length = 0;
      assert.throws(() => submit(lb, [chain]), { name: 'RangeError', message: /zero-length/ });
      assertIdle(lb, 8);
      assert.equal(submit(lb, [simpleChain(2, 1, 2)]), 1, 'queue still usable');
      assert.equal(roundTrip(lb).length, 1);
    }
  });

  it('a device-readable segment after a device-writable one is rejected with EINVAL', () => {
    for (const indirectMax of [0, 8]) {
      const lb = newPacked(8, true, indirectMax);
      const chain: ChainSpec = {
        token: 1,
        segs: [
          { offset: 0, length: 8, writable: false },
          { offset: 64, length: 8, writable: true },
          { offset: 128, length: 8, writable: false },
        ],
      };
      assertThrowsCode(() => submit(lb, [chain]), 'EINVAL', /readable buffers must come before/);
      assertIdle(lb, 8);
    }
  });

  it('a segment outside the data area is rejected; the last bytes are fine', () => {
    const lb = newPacked(8, false, 0, 8192);
    const size = lb.data.byteLength;
    for (const batch of [
      new Uint32Array([1, 1, 1, size - 8, 16, 1]),
      new Uint32Array([1, 1, 1, 0xffffffff, 2, 0]),
      new Uint32Array([1, 1, 2, 0, 16, 1]),
    ]) {
      assert.throws(() => lb.submit(batch, 1), { name: 'RangeError', message: /not inside a live region/ });
      assertIdle(lb, 8);
    }
    assert.equal(lb.submit(new Uint32Array([1, 1, 1, size - 16, 16, 1]), 1), 1);
    lb.publish();
    const c = popChain(lb);
    assert.deepEqual(c.writable, [{ offset: size - 16, length: 16 }]);
    assert.equal(lb.peekDescriptor(0).addr, DATA_IOVA + BigInt(size - 16));
  });

  it('ring full with multi-descriptor chains stops at the first chain that does not fit', () => {
    const lb = newPacked(7, false, 0);
    const three = (t: number): ChainSpec => simpleChain(t, 1, 2);
    assert.equal(submit(lb, [three(1), three(2), three(3), simpleChain(4, 0, 1)]), 2);
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 2, freeDescriptors: 1 });
    assert.equal(submit(lb, [three(3)]), 0);
    assert.equal(submit(lb, [simpleChain(5, 0, 1)]), 1);
    assert.deepEqual(
      roundTrip(lb).map(([t]) => t),
      [1, 2, 5],
    );
    assert.equal(submit(lb, [three(3), simpleChain(4, 0, 1)]), 2);
    assert.deepEqual(
      roundTrip(lb).map(([t]) => t),
      [3, 4],
    );
    assertIdle(lb, 7);
  });

  it('submit of zero chains accepts nothing and publish has nothing to kick', () => {
    const lb = newPacked(4, false, 0);
    assert.equal(lb.submit(new Uint32Array(0), 0), 0);
    assert.equal(lb.publish(), false);
    assertIdle(lb, 4);
  });
});

describe('packed RingLoopback arguments', () => {
  it('takes any size from 1 to 32768; the split format still wants powers of two', () => {
    for (const size of [0, 32769, 65536]) {
      assert.throws(() => newPacked(size, false, 0), RangeError, `size ${size}`);
    }
    for (const size of [1, 3, 6, 100, 1000, 32767, 32768]) assertIdle(newPacked(size, false, 0), size);
    assert.throws(() => new addon.RingLoopback(6, false, 0, 4096), RangeError);
    assert.equal((new addon.RingLoopback(8, false, 0, 4096) as unknown as { packed: boolean }).packed, false);
  });

  it('pokeAvail is refused on a packed ring; eventSuppression on a split one', () => {
    const lb = newPacked(4, false, 0);
    assert.throws(() => lb.pokeAvail(0, 1), RangeError);
    const split = new addon.RingLoopback(4, false, 0, 4096) as unknown as PackedLoopback;
    assert.throws(() => split.eventSuppression(), RangeError);
  });
});
