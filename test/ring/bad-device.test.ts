// Driver-side defence against a lying device, for each ring format: bad used ids and lengths,
// impossible used positions (split: index jumps; packed: wrap flags that fit no lap). The queue is
// marked broken with a reason, delivers only what came before the violation, and abandon() returns
// exactly the chains still in flight.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainSpec, DATA_IOVA, RingLoopback, drainPairs, popChain, submit } from './loopback';
import { F_AVAIL, F_USED, newPacked, usedFlags } from './packed-loopback';
import { FORMATS, PACKED, RingFormat, SPLIT } from './formats';

const READ_LEN = 32;
const WRITE_LEN = 64;

interface Setup {
  lb: RingLoopback;
  heads: number[]; // the id the device saw for chain i
  tokens: number[]; // token of chain i
}

/** `n` chains (readable 32 bytes + writable 64 bytes, or readable only) popped by the device. */
function setup(fmt: RingFormat, size: number, n: number, eventIdx = false, readableOnly = false): Setup {
  const lb = fmt.make(size, eventIdx, 0);
  const chains: ChainSpec[] = [];
  const tokens: number[] = [];
  for (let i = 0; i < n; i++) {
    const segs = [{ offset: i * 256, length: READ_LEN, writable: false }];
    if (!readableOnly) segs.push({ offset: i * 256 + 128, length: WRITE_LEN, writable: true });
    tokens.push(0x5000 + i);
    chains.push({ token: 0x5000 + i, segs });
  }
  assert.equal(submit(lb, chains), n);
  lb.publish();
  const heads: number[] = [];
  for (let i = 0; i < n; i++) heads.push(popChain(lb).head);
  assert.equal(lb.devicePop(), undefined);
  return { lb, heads, tokens };
}

const sorted = (a: Iterable<number>): number[] => [...a].sort((x, y) => x - y);
const oneWritable = (token: number): ChainSpec => ({ token, segs: [{ offset: 0, length: 8, writable: true }] });

/** Checks the broken state, that abandon() returns exactly `stillOut`, and that the queue stays dead. */
function assertBroken(lb: RingLoopback, reason: RegExp, stillOut: number[]): void {
  const st = lb.state();
  assert.equal(st.broken, true, 'queue marked broken');
  assert.match(st.reason, reason);
  assert.equal(st.inFlight, stillOut.length);
  assert.deepEqual(sorted(lb.abandon()), sorted(stillOut), 'abandon returns exactly the chains still in flight');
  assert.equal(lb.state().inFlight, 0);
  assert.equal(lb.abandon().length, 0, 'abandon twice returns nothing the second time');
  assert.equal(submit(lb, [oneWritable(1)]), 0, 'submit after broken');
  assert.equal(lb.publish(), false);
  assert.equal(lb.drain(), 0, 'drain after broken');
  assert.equal(lb.enableInterrupts(), false, 'a broken queue reports nothing pending');
  assert.equal(lb.state().broken, true, 'stays broken');
  assert.equal(lb.state().reason, st.reason, 'reason does not change');
}

function usedIdSuite(fmt: RingFormat): void {
  it('id beyond the queue size', () => {
    for (const badId of fmt.badUsedIds) {
      const { lb, heads, tokens } = setup(fmt, 8, 4);
      lb.devicePush(heads[0], 10);
      lb.devicePush(badId, 0);
      lb.devicePush(heads[1], 0);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), [[tokens[0], 10]], 'only the entry before the violation');
      assertBroken(lb, new RegExp(`used id ${badId} beyond the queue size 8`), tokens.slice(1));
    }
  });

  it('the same id twice in one batch', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 4);
    lb.devicePush(heads[2], 1);
    lb.devicePush(heads[0], 2);
    lb.devicePush(heads[2], 3);
    lb.devicePush(heads[1], 4);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [
      [tokens[2], 1],
      [tokens[0], 2],
    ]);
    assertBroken(lb, new RegExp(`used id ${heads[2]} that is not in flight`), [tokens[1], tokens[3]]);
  });

  it('an id completed in an earlier drain', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 3, true);
    lb.devicePush(heads[1], 5);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[1], 5]]);
    assert.equal(lb.state().broken, false);
    lb.devicePush(heads[0], 5);
    lb.devicePush(heads[1], 5);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 5]]);
    assertBroken(lb, /not in flight/, [tokens[2]]);
  });

  it('an in-range id that names no chain in flight', () => {
    for (const n of [3, 4]) {
      const { lb, heads, tokens } = setup(fmt, 8, n);
      // Split: two descriptors per chain, so the other slots are chain tails. Packed: ids never handed out.
      const unused = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => !heads.includes(i));
      assert.equal(unused.length, 8 - n);
      lb.devicePush(unused[0], 0);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), []);
      assertBroken(lb, new RegExp(`used id ${unused[0]} that is not in flight`), tokens);
    }
  });
}

function usedLengthSuite(fmt: RingFormat): void {
  it('len greater than the chain\u2019s writable bytes', () => {
    for (const badLen of [WRITE_LEN + 1, WRITE_LEN + READ_LEN, 0xffffffff]) {
      const { lb, heads, tokens } = setup(fmt, 8, 4);
      lb.devicePush(heads[0], WRITE_LEN);
      lb.devicePush(heads[1], badLen);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), [[tokens[0], WRITE_LEN]]);
      const reason = new RegExp(`${badLen} bytes written into a chain with only ${WRITE_LEN} writable`);
      assertBroken(lb, reason, tokens.slice(1));
    }
  });

  it('any nonzero len for a chain with no writable buffers', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 2, false, true);
    lb.devicePush(heads[0], 0);
    lb.devicePush(heads[1], 1);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 0]]);
    assertBroken(lb, /1 bytes written into a chain with only 0 writable/, [tokens[1]]);
  });

  it('len up to the writable bytes is fine, in any order', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 4);
    const lens = [0, WRITE_LEN, 1, WRITE_LEN - 1];
    for (let i = 3; i >= 0; i--) lb.devicePush(heads[i], lens[i]);
    lb.devicePublish();
    assert.deepEqual(
      drainPairs(lb),
      [3, 2, 1, 0].map((i) => [tokens[i], lens[i]]),
    );
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: 8 });
  });

  it('later valid completions are ignored once broken', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 3);
    lb.devicePush(9, 0);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    lb.devicePush(heads[0], 1);
    lb.devicePush(heads[1], 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used id 9 beyond/, tokens);
  });
}

function abandonSuite(fmt: RingFormat): void {
  it('returns the tokens of chains the device still holds and of unpublished ones', () => {
    const { lb, heads, tokens } = setup(fmt, 8, 4);
    lb.devicePush(heads[1], 2);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[1], 2]]);
    assert.equal(submit(lb, [oneWritable(0x99)]), 1);
    assert.deepEqual(sorted(lb.abandon()), [0x99, tokens[0], tokens[2], tokens[3]]);
    assert.equal(lb.state().inFlight, 0);
    assert.equal(lb.state().broken, false);
  });

  it('abandoned chains are never published', () => {
    const lb = fmt.make(8, false, 0);
    assert.equal(submit(lb, [oneWritable(0x99)]), 1);
    assert.deepEqual([...lb.abandon()], [0x99]);
    assert.equal(lb.publish(), false, 'abandoned chains are never published');
    assert.equal(lb.devicePop(), undefined);
  });
}

for (const fmt of FORMATS) {
  describe(`${fmt.name} lying device: used id`, () => usedIdSuite(fmt));
  describe(`${fmt.name} lying device: used length`, () => usedLengthSuite(fmt));
  describe(`${fmt.name}: abandon on a healthy queue`, () => abandonSuite(fmt));
}

describe('split lying device: used index jump', () => {
  it('jump past the number of chains in flight', () => {
    const { lb, heads, tokens } = setup(SPLIT, 8, 4);
    lb.devicePush(heads[0], 1);
    lb.deviceJumpUsedIdx(4); // used idx 5 with 4 in flight
    lb.devicePublish();
    assert.equal(lb.drain(), 0, 'nothing is trusted after an impossible index');
    assertBroken(lb, /device moved the used index from 0 to 5 with only 4 requests in flight/, tokens);
  });

  it('jump larger than the ring', () => {
    const { lb, tokens } = setup(SPLIT, 8, 4, true);
    lb.deviceJumpUsedIdx(9);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used index from 0 to 9 with only 4 requests in flight/, tokens);
  });

  it('index moved backwards', () => {
    const { lb, heads, tokens } = setup(SPLIT, 8, 2);
    lb.devicePush(heads[0], 3);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 3]]);
    lb.deviceJumpUsedIdx(0xfffe); // 1 -> 65535
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used index from 1 to 65535/, [tokens[1]]);
  });

  it('jump within the in-flight count over stale used entries', () => {
    const { lb, heads, tokens } = setup(SPLIT, 8, 4);
    assert.equal(heads[0], 0);
    // Slot 0 gets a real entry; slots 1-2 were never written (id 0, len 0): id 0 is then no longer
    // in flight.
    lb.devicePush(heads[0], 7);
    lb.deviceJumpUsedIdx(2);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 7]]);
    assertBroken(lb, /used id 0 that is not in flight/, tokens.slice(1));
  });
});

describe('packed lying device: ids, wrap counters and positions', () => {
  it('the id of a chain added but not yet published', () => {
    const { lb, heads, tokens } = setup(PACKED, 8, 1);
    assert.equal(submit(lb, [oneWritable(0x77)]), 1);
    // The device guesses the next id (ids are handed out from a stack: the next free one).
    const guess = [0, 1, 2, 3, 4, 5, 6, 7].find((i) => !heads.includes(i));
    assert.ok(guess !== undefined);
    lb.devicePush(guess, 0);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), []);
    assertBroken(lb, new RegExp(`used id ${guess} that is not in flight`), [tokens[0], 0x77]);
  });

  it('a used descriptor a whole lap ahead (wrong wrap flags in the right slot)', () => {
    const { lb, heads, tokens } = setup(PACKED, 8, 4);
    lb.devicePush(heads[0], 1);
    lb.deviceJumpUsedIdx(8); // same slot, other lap
    lb.devicePush(heads[1], 1);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 1]]);
    const reason = /flags 0x0000 to descriptor 2 \(wrap counter 1\).*neither an available nor a used/;
    assertBroken(lb, reason, tokens.slice(1));
  });

  it('the wrong lap detected after the ring wrapped once (wrap counter 0)', () => {
    const size = 4;
    const lb = newPacked(size, true, 0);
    const one = (t: number): ChainSpec => ({ token: t, segs: [{ offset: t * 64, length: 8, writable: true }] });
    // A full lap of single-descriptor chains.
    assert.equal(submit(lb, [one(1), one(2), one(3), one(4)]), 4);
    lb.publish();
    assert.equal(lb.deviceCompleteAll(), 4);
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, 4);
    // Second lap: the device claims wrap counter 1 again.
    assert.equal(submit(lb, [one(5), one(6)]), 2);
    lb.publish();
    const id = popChain(lb).head;
    lb.deviceJumpUsedIdx(size);
    lb.devicePush(id, 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /flags 0x8080 to descriptor 0 \(wrap counter 0\)/, [5, 6]);
  });

  it('a used descriptor where nothing is outstanding', () => {
    const { lb, heads, tokens } = setup(PACKED, 8, 2);
    lb.devicePush(heads[0], 1);
    lb.devicePush(heads[1], 1);
    lb.devicePush(heads[1], 1); // one more than was made available
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [
      [tokens[0], 1],
      [tokens[1], 1],
    ]);
    assertBroken(lb, /marked descriptor 4 \(wrap counter 1\) used with no request outstanding/, []);
  });

  it('a used descriptor over a chain that was added but not published', () => {
    const lb = newPacked(8, false, 0);
    assert.equal(submit(lb, [oneWritable(9)]), 1);
    // The device writes a used descriptor into slot 0 on its own.
    lb.pokeDescriptor(0, 0n, 0, usedFlags(true), 0);
    assert.equal(lb.enableInterrupts(), true, 'looks like a completion');
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used with no request outstanding/, [9]);
  });

  it('garbage flags in the next used slot (AVAIL without USED, USED without AVAIL)', () => {
    for (const flags of [F_USED, F_USED | 2, 0]) {
      const { lb, tokens } = setup(PACKED, 8, 2);
      lb.pokeDescriptor(0, DATA_IOVA, 8, flags, 0);
      assert.equal(lb.drain(), 0);
      assertBroken(lb, /match neither an available nor a used descriptor/, tokens);
    }
    // AVAIL=1, USED=0 is our own available descriptor: not a violation, just not done yet.
    const { lb } = setup(PACKED, 8, 2);
    lb.pokeDescriptor(0, DATA_IOVA, 8, F_AVAIL | 1, 0);
    assert.equal(lb.drain(), 0);
    assert.equal(lb.state().broken, false);
  });

  it('a device that skips ahead over outstanding descriptors looks slow, not broken', () => {
    // As with Linux: the driver reads only the slot the next used descriptor must go to.
    const { lb, heads } = setup(PACKED, 8, 4);
    lb.deviceJumpUsedIdx(2);
    lb.devicePush(heads[0], 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assert.equal(lb.enableInterrupts(), false);
    assert.equal(lb.state().broken, false);
    assert.equal(lb.state().inFlight, 4);
  });
});
