// Chain construction on the driver side, for each ring format: indirect descriptors, chain
// validation, ring-full behaviour, chains over the end of the ring, the loopback constructor's
// argument checks, and the AVAIL and USED bits each side writes on a packed ring.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChainSpec,
  DATA_IOVA,
  DESC_F_INDIRECT,
  DESC_F_NEXT,
  DESC_F_WRITE,
  DeviceChainView,
  RING_IOVA,
  RingLoopback,
  assertThrowsCode,
  drainPairs,
  encode,
  popChain,
  simpleChain,
  submit,
  writableBytes,
} from './loopback';
import { Pos, availFlags, newPacked, usedFlags } from './packed-loopback';
import { FORMATS, RingFormat, SPLIT } from './formats';

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

/** Publishes, lets the device answer everything with its writable size, and drains. */
function roundTrip(lb: RingLoopback): [number, number][] {
  lb.publish();
  lb.deviceCompleteAll();
  lb.devicePublish();
  return drainPairs(lb);
}

function assertIdle(lb: RingLoopback, size: number): void {
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
}

/** Submits FIVE, checks descriptor use and what the device sees, and completes it. */
function fiveSegments(lb: RingLoopback, size: number, descriptors: number): void {
  assert.equal(submit(lb, [FIVE]), 1);
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 1, freeDescriptors: size - descriptors });
  assert.equal(lb.publish(), true);
  const c = popChain(lb);
  assert.ok(c.head >= 0 && c.head < size);
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

const bufferList = (c: DeviceChainView) => [...c.readable, ...c.writable].map((b) => [b.offset, b.length]);
const segList = (chain: ChainSpec) => chain.segs.map((s) => [s.offset, s.length]);

function indirectSuite(fmt: RingFormat): void {
  const make = fmt.make;
  it('a 5-segment chain takes exactly one ring descriptor when indirectMax >= 5', () => {
    fiveSegments(make(8, false, 8), 8, 1);
    fiveSegments(make(fmt.sizeNear(7), true, 5), fmt.sizeNear(7), 1);
  });

  it('the ring descriptor names the table; table entries carry only WRITE', () => {
    const lb = make(8, false, 8);
    assert.equal(submit(lb, [FIVE]), 1);
    lb.publish();
    const d = lb.peekDescriptor(0);
    assert.equal(d.flags, fmt.availBits(true) | DESC_F_INDIRECT, 'INDIRECT, no NEXT');
    assert.equal(d.len, 5 * 16);
    assert.ok(d.addr > RING_IOVA && d.addr % 16n === 0n, 'table inside ring memory, aligned');
  });

  it('without indirect the same chain takes 5 descriptors', () => {
    fiveSegments(make(8, false, 0), 8, 5);
  });

  it('a chain longer than indirectMax falls back to direct descriptors', () => {
    fiveSegments(make(8, false, 4), 8, 5);
  });

  it('every ring slot can hold an indirect chain, each with its own table', () => {
    const size = fmt.sizeNear(6);
    const lb = make(size, true, 6);
    const chains: ChainSpec[] = [];
    for (let t = 0; t < size + 1; t++) {
      const segs = [];
      for (let i = 0; i < 6; i++) segs.push({ offset: t * 1024 + i * 64, length: 1 + t * 6 + i, writable: i >= 2 });
      chains.push({ token: 1000 + t, segs });
    }
    assert.equal(submit(lb, chains), size, 'ring full after `size` indirect chains');
    assert.equal(lb.state().freeDescriptors, 0);
    lb.publish();
    const heads = new Set<number>();
    for (let t = 0; t < size; t++) {
      const c = popChain(lb);
      heads.add(c.head);
      assert.deepEqual(bufferList(c), segList(chains[t]), `chain ${t} sees its own table`);
      assert.equal(c.readable.length, 2);
    }
    assert.equal(heads.size, size);
    assert.equal(lb.devicePop(), undefined);
    for (const h of [...heads].reverse()) lb.devicePush(h, 0);
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, size);
    assertIdle(lb, size);
    assert.equal(lb.submit(encode([chains[size]]), 1), 1, 'the left-over chain fits now');
    assert.deepEqual(roundTrip(lb), [[1000 + size, writableBytes(chains[size])]]);
  });

  it('a chain longer than the queue works when it fits in an indirect table', () => {
    const size = fmt.sizeNear(3);
    const lb = make(size, false, 8);
    const chain = simpleChain(5, 3, 5);
    assert.equal(submit(lb, [chain]), 1);
    assert.equal(lb.state().freeDescriptors, size - 1);
    lb.publish();
    const c = popChain(lb);
    assert.equal(c.readable.length, 3);
    assert.equal(c.writable.length, 5);
    lb.devicePush(c.head, writableBytes(chain));
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[5, writableBytes(chain)]]);
    assertIdle(lb, size);
  });

  it('a chain longer than both the queue and indirectMax is rejected with E2BIG', () => {
    for (const indirectMax of [0, 2, 4]) {
      const lb = make(4, true, indirectMax);
      assertThrowsCode(() => submit(lb, [simpleChain(1, 2, 3)]), 'E2BIG', /longer than the queue/);
      assertIdle(lb, 4);
      // The queue is still usable.
      assert.equal(submit(lb, [simpleChain(2, 1, 1)]), 1);
      assert.deepEqual(roundTrip(lb), [[2, 17]]);
    }
  });

  it('a chain of exactly the queue size, starting anywhere, works without indirect', () => {
    for (const size of fmt.sizes) {
      for (let start = 0; start < size; start++) {
        const lb = make(size, false, 0);
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
        assert.equal(c.readable.length + c.writable.length, size);
        assert.deepEqual(bufferList(c), segList(chain), `size ${size} start ${start}`);
        lb.devicePush(c.head, writableBytes(chain));
        lb.devicePublish();
        assert.deepEqual(drainPairs(lb), [[77, writableBytes(chain)]]);
        assertIdle(lb, size);
        assert.equal(submit(lb, [simpleChain(78, 0, 1)]), 1);
        assert.deepEqual(roundTrip(lb), [[78, 16]]);
      }
    }
  });
}

function chainRulesSuite(fmt: RingFormat): void {
  const make = fmt.make;
  it('a chain with zero segments is rejected with an error, not mistaken for a full ring', () => {
    const lb = make(8, false, 0);
    assert.throws(() => lb.submit(new Uint32Array([9, 0]), 1), { name: 'RangeError', message: /bad segment count/ });
    assertIdle(lb, 8);
  });

  it('a zero-length segment is rejected with a RangeError', () => {
    for (const indirectMax of [0, 8]) {
      const lb = make(8, false, indirectMax);
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
      const lb = make(8, true, indirectMax);
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

  it('a segment outside the data area or in another region is rejected; the last bytes are fine', () => {
    const lb = make(8, false, 0, 8192);
    const size = lb.data.byteLength;
    assert.ok(size >= 8192);
    const cases: Uint32Array[] = [
      new Uint32Array([1, 1, 1, size - 8, 16, 1]), // runs past the end
      new Uint32Array([1, 1, 1, size, 1, 0]), // starts at the end
      new Uint32Array([1, 1, 1, 0xffffffff, 2, 0]), // offset + len wraps 32 bits
      new Uint32Array([1, 1, 2, 0, 16, 1]), // region handle 2 does not exist
    ];
    for (const batch of cases) {
      assert.throws(() => lb.submit(batch, 1), { name: 'RangeError', message: /not inside a live region/ });
      assertIdle(lb, 8);
    }
    assert.equal(lb.submit(new Uint32Array([1, 1, 1, size - 16, 16, 1]), 1), 1);
    lb.publish();
    assert.deepEqual(popChain(lb).writable, [{ offset: size - 16, length: 16 }]);
    assert.equal(lb.peekDescriptor(0).addr, DATA_IOVA + BigInt(size - 16));
  });

  it('readable-only and writable-only chains are accepted', () => {
    const lb = make(8, false, 0);
    assert.equal(submit(lb, [simpleChain(1, 2, 0), simpleChain(2, 0, 2)]), 2);
    assert.deepEqual(roundTrip(lb), [
      [1, 0],
      [2, 16 + 17],
    ]);
  });

  it('ring full: submit takes what fits, the rest fits after completions', () => {
    const lb = make(4, true, 0);
    const chains: ChainSpec[] = [];
    for (let t = 0; t < 6; t++) chains.push(simpleChain(t, 0, 1));
    const batch = encode(chains);
    assert.equal(lb.submit(batch, 6), 4);
    assert.equal(lb.state().freeDescriptors, 0);
    assert.equal(lb.submit(batch.subarray(4 * 6), 2), 0, 'still full');
    const tokens = (): number[] => roundTrip(lb).map(([t]) => t);
    assert.deepEqual(tokens(), [0, 1, 2, 3]);
    assert.equal(lb.submit(batch.subarray(4 * 6), 2), 2);
    assert.deepEqual(tokens(), [4, 5]);
    assertIdle(lb, 4);
  });

  it('ring full with multi-descriptor chains stops at the first chain that does not fit', () => {
    const size = fmt.sizeNear(7);
    const lb = make(size, false, 0);
    const three = (t: number): ChainSpec => simpleChain(t, 1, 2);
    // 3 + 3 fit, the third 3-descriptor chain does not; the 1-descriptor chain after it is not tried.
    assert.equal(submit(lb, [three(1), three(2), three(3), simpleChain(4, 0, 1)]), 2);
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 2, freeDescriptors: size - 6 });
    assert.equal(submit(lb, [three(3)]), 0);
    assert.equal(submit(lb, [simpleChain(5, size - 7, 1)]), 1, 'a chain of the last free descriptors fits');
    assert.equal(lb.state().freeDescriptors, 0);
    const tokens = (): number[] => roundTrip(lb).map(([t]) => t);
    assert.deepEqual(tokens(), [1, 2, 5]);
    assert.equal(submit(lb, [three(3), simpleChain(4, 0, 1)]), 2);
    assert.deepEqual(tokens(), [3, 4]);
    assertIdle(lb, size);
  });

  it('submit of zero chains accepts nothing and publish has nothing to kick', () => {
    const lb = make(4, false, 0);
    assert.equal(lb.submit(new Uint32Array(0), 0), 0);
    assert.equal(lb.publish(), false);
    assertIdle(lb, 4);
  });
}

function argumentsSuite(fmt: RingFormat): void {
  it('rejects sizes the format does not allow and takes the others', () => {
    for (const size of fmt.badSizes) assert.throws(() => fmt.make(size, false, 0, 4096), RangeError, `size ${size}`);
    assert.throws(() => fmt.make(8, false, 5000, 4096), RangeError, 'indirectMax too large');
    for (const size of fmt.goodSizes) assertIdle(fmt.make(size, false, 0), size);
  });

  it('rejects a batch that is not a Uint32Array', () => {
    const lb = fmt.make(4, false, 0);
    assert.throws(() => lb.submit([1, 1, 1, 0, 16, 1] as unknown as Uint32Array, 1), TypeError);
    assertIdle(lb, 4);
  });
}

for (const fmt of FORMATS) {
  describe(`${fmt.name}: indirect descriptors`, () => indirectSuite(fmt));
  describe(`${fmt.name}: chain rules`, () => chainRulesSuite(fmt));
  describe(`${fmt.name}: RingLoopback arguments`, () => argumentsSuite(fmt));
}

describe('packed: chains over the end of the ring', () => {
  it('the descriptors after the ring end carry the next lap\u2019s flags', () => {
    const lb = newPacked(3, false, 0);
    assert.equal(submit(lb, [simpleChain(1, 0, 2)]), 1);
    assert.equal(roundTrip(lb).length, 1);
    // Next chain uses slots 2, 0, 1: slot 2 on lap 0 (wrap 1), slots 0 and 1 on lap 1 (wrap 0).
    assert.equal(submit(lb, [simpleChain(2, 1, 2)]), 1);
    lb.publish();
    assert.equal(lb.peekDescriptor(2).flags, availFlags(true) | DESC_F_NEXT);
    assert.equal(lb.peekDescriptor(0).flags, availFlags(false) | DESC_F_NEXT | DESC_F_WRITE);
    assert.equal(lb.peekDescriptor(1).flags, availFlags(false) | DESC_F_WRITE);
    const c = popChain(lb);
    assert.equal(c.readable.length + c.writable.length, 3);
  });
});

describe('packed: descriptor flags on the ring', () => {
  it('the driver writes AVAIL=wrap, USED=!wrap; the device answers AVAIL=USED=wrap; laps alternate', () => {
    const size = 3;
    const lb = newPacked(size, false, 0);
    const pos = new Pos(size);
    for (let lap = 0; lap < 6; lap++) {
      // One 2-descriptor chain and one 1-descriptor chain fill the ring exactly once per lap.
      const chains: ChainSpec[] = [
        {
          token: lap * 2,
          segs: [
            { offset: 0, length: 8, writable: false },
            { offset: 64, length: 8, writable: true },
          ],
        },
        { token: lap * 2 + 1, segs: [{ offset: 128, length: 4, writable: true }] },
      ];
      assert.equal(lb.submit(encode(chains), 2), 2);
      const wrap = pos.wrap;
      // Before publish the head flags still belong to the previous lap: the device sees nothing.
      assert.equal(lb.devicePop(), undefined, 'nothing visible before publish');
      const before = lb.peekDescriptor(0).flags;
      assert.equal(before & 0x8080, lap === 0 ? 0 : usedFlags(!wrap), 'head keeps last lap\u2019s used flags');
      lb.publish();
      const heads = [lb.peekDescriptor(0), lb.peekDescriptor(1), lb.peekDescriptor(2)];
      assert.equal(heads[0].flags, availFlags(wrap) | 1, 'head: AVAIL/USED + NEXT');
      assert.equal(heads[1].flags, availFlags(wrap) | 2, 'tail: AVAIL/USED + WRITE');
      assert.equal(heads[2].flags, availFlags(wrap) | 2);
      assert.equal(heads[0].id, heads[1].id, 'the id is in every descriptor of the chain');
      const a = popChain(lb);
      const b = popChain(lb);
      assert.equal(a.head, heads[1].id, 'the device takes the id from the last descriptor');
      assert.equal(b.head, heads[2].id);
      // Out of order: the short chain first. Its used descriptor goes to slot 0, the long one to 1.
      lb.devicePush(b.head, 3);
      lb.devicePush(a.head, 5);
      lb.devicePublish();
      assert.equal(lb.peekDescriptor(0).flags & 0x8080, usedFlags(wrap));
      assert.equal(lb.peekDescriptor(0).id, b.head);
      assert.equal(lb.peekDescriptor(1).flags & 0x8080, usedFlags(wrap));
      assert.equal(lb.peekDescriptor(1).id, a.head);
      assert.equal(lb.peekDescriptor(1).len, 5);
      assert.equal(lb.peekDescriptor(2).flags & 0x8080, availFlags(wrap), 'slot 2 was skipped');
      assert.deepEqual(drainPairs(lb), [
        [lap * 2 + 1, 3],
        [lap * 2, 5],
      ]);
      pos.advance(size);
    }
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
  });
});

describe('format-only loopback methods', () => {
  it('the packed flag tells the formats apart', () => {
    assert.equal(newPacked(4, false, 0).packed, true);
    assert.equal(SPLIT.make(8, false, 0, 4096).packed, false);
  });

  it('pokeAvail is refused on a packed ring; eventSuppression on a split one', () => {
    assert.throws(() => newPacked(4, false, 0).pokeAvail(0, 1), RangeError);
    const split = SPLIT.make(4, false, 0, 4096);
    assert.throws(() => split.eventSuppression(), RangeError);
    assert.throws(() => split.pokeEventSuppression(true, 0, 0), RangeError);
  });
});
