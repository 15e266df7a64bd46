// Packed ring, driver-side defence against a lying device: bad used ids and lengths, used
// descriptors whose wrap flags fit no lap, used descriptors with nothing outstanding. The queue is
// marked broken with a reason, delivers only what came before the violation, and abandon() returns
// exactly what is still in flight.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainSpec, DATA_IOVA, drainPairs, popChain, submit } from './loopback';
import { F_AVAIL, F_USED, PackedLoopback, newPacked, usedFlags } from './packed-loopback';

const READ_LEN = 32;
const WRITE_LEN = 64;

interface Setup {
  lb: PackedLoopback;
  ids: number[];
  tokens: number[];
}

/** `n` chains (readable 32 + writable 64 bytes, or readable only), published and popped. */
function setup(size: number, n: number, eventIdx = false, readableOnly = false): Setup {
  const lb = newPacked(size, eventIdx, 0);
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
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(popChain(lb).head);
  assert.equal(lb.devicePop(), undefined);
  return { lb, ids, tokens };
}

function assertBroken(lb: PackedLoopback, reason: RegExp, stillOut: number[]): void {
  const st = lb.state();
  assert.equal(st.broken, true, 'queue marked broken');
  assert.match(st.reason, reason);
  assert.equal(st.inFlight, stillOut.length);
  const sorted = (a: Iterable<number>): number[] => [...a].sort((x, y) => x - y);
  assert.deepEqual(sorted(lb.abandon()), sorted(stillOut), 'abandon returns exactly the chains still in flight');
  assert.equal(lb.state().inFlight, 0);
  assert.equal(lb.abandon().length, 0);
  assert.equal(submit(lb, [{ token: 1, segs: [{ offset: 0, length: 8, writable: true }] }]), 0, 'submit after broken');
  assert.equal(lb.publish(), false);
  assert.equal(lb.drain(), 0, 'drain after broken');
  assert.equal(lb.enableInterrupts(), false, 'a broken queue reports nothing pending');
  assert.equal(lb.state().reason, st.reason, 'reason does not change');
}

describe('packed lying device: used id', () => {
  it('id beyond the queue size', () => {
    for (const badId of [8, 9, 0x7fff, 0xffff]) {
      const { lb, ids, tokens } = setup(8, 4);
      lb.devicePush(ids[0], 10);
      lb.devicePush(badId, 0);
      lb.devicePush(ids[1], 0);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), [[tokens[0], 10]], 'only the entry before the violation');
      assertBroken(lb, new RegExp(`used id ${badId} beyond the queue size 8`), tokens.slice(1));
    }
  });

  it('the same id twice in one batch', () => {
    const { lb, ids, tokens } = setup(8, 4);
    lb.devicePush(ids[2], 1);
    lb.devicePush(ids[0], 2);
    lb.devicePush(ids[2], 3);
    lb.devicePush(ids[1], 4);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [
      [tokens[2], 1],
      [tokens[0], 2],
    ]);
    assertBroken(lb, new RegExp(`used id ${ids[2]} that is not in flight`), [tokens[1], tokens[3]]);
  });

  it('an id completed in an earlier drain', () => {
    const { lb, ids, tokens } = setup(8, 3, true);
    lb.devicePush(ids[1], 5);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[1], 5]]);
    lb.devicePush(ids[0], 5);
    lb.devicePush(ids[1], 5);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 5]]);
    assertBroken(lb, /not in flight/, [tokens[2]]);
  });

  it('an in-range id that was never handed out', () => {
    const { lb, ids, tokens } = setup(8, 3);
    const unused = [0, 1, 2, 3, 4, 5, 6, 7].find((i) => !ids.includes(i));
    assert.ok(unused !== undefined);
    lb.devicePush(unused, 0);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), []);
    assertBroken(lb, new RegExp(`used id ${unused} that is not in flight`), tokens);
  });

  it('the id of a chain added but not yet published', () => {
    const { lb, ids, tokens } = setup(8, 1);
    assert.equal(submit(lb, [{ token: 0x77, segs: [{ offset: 0, length: 8, writable: true }] }]), 1);
    // The device guesses the next id (ids are handed out from a stack: the next free one).
    const guess = [0, 1, 2, 3, 4, 5, 6, 7].find((i) => !ids.includes(i));
    assert.ok(guess !== undefined);
    lb.devicePush(guess, 0);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), []);
    assertBroken(lb, new RegExp(`used id ${guess} that is not in flight`), [tokens[0], 0x77]);
  });
});

describe('packed lying device: used length', () => {
  it('len greater than the chain\u2019s writable bytes', () => {
    for (const badLen of [WRITE_LEN + 1, WRITE_LEN + READ_LEN, 0xffffffff]) {
      const { lb, ids, tokens } = setup(8, 4);
      lb.devicePush(ids[0], WRITE_LEN);
      lb.devicePush(ids[1], badLen);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), [[tokens[0], WRITE_LEN]]);
      assertBroken(lb, new RegExp(`${badLen} bytes written into a chain with only ${WRITE_LEN} writable`), [
        tokens[1],
        tokens[2],
        tokens[3],
      ]);
    }
  });

  it('any nonzero len for a chain with no writable buffers', () => {
    const { lb, ids, tokens } = setup(8, 2, false, true);
    lb.devicePush(ids[0], 0);
    lb.devicePush(ids[1], 1);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 0]]);
    assertBroken(lb, /1 bytes written into a chain with only 0 writable/, [tokens[1]]);
  });

  it('len up to the writable bytes is fine, in any order', () => {
    const { lb, ids, tokens } = setup(8, 4);
    const lens = [0, WRITE_LEN, 1, WRITE_LEN - 1];
    for (let i = 3; i >= 0; i--) lb.devicePush(ids[i], lens[i]);
    lb.devicePublish();
    assert.deepEqual(
      drainPairs(lb),
      [3, 2, 1, 0].map((i) => [tokens[i], lens[i]]),
    );
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: 8 });
  });
});

describe('packed lying device: wrap counters and positions', () => {
  it('a used descriptor a whole lap ahead (wrong wrap flags in the right slot)', () => {
    const { lb, ids, tokens } = setup(8, 4);
    lb.devicePush(ids[0], 1);
    lb.deviceJumpUsedIdx(8); // same slot, other lap
    lb.devicePush(ids[1], 1);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 1]]);
    assertBroken(lb, /flags 0x0000 to descriptor 2 \(wrap counter 1\).*neither an available nor a used/, [
      tokens[1],
      tokens[2],
      tokens[3],
    ]);
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
    const { lb, ids, tokens } = setup(8, 2);
    lb.devicePush(ids[0], 1);
    lb.devicePush(ids[1], 1);
    lb.devicePush(ids[1], 1); // one more than was made available
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [
      [tokens[0], 1],
      [tokens[1], 1],
    ]);
    assertBroken(lb, /marked descriptor 4 \(wrap counter 1\) used with no request outstanding/, []);
  });

  it('a used descriptor over a chain that was added but not published', () => {
    const lb = newPacked(8, false, 0);
    assert.equal(submit(lb, [{ token: 9, segs: [{ offset: 0, length: 8, writable: true }] }]), 1);
    // The device writes a used descriptor into slot 0 on its own.
    lb.pokeDescriptor(0, 0n, 0, usedFlags(true), 0);
    assert.equal(lb.enableInterrupts(), true, 'looks like a completion');
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used with no request outstanding/, [9]);
  });

  it('garbage flags in the next used slot (AVAIL without USED, USED without AVAIL)', () => {
    for (const flags of [F_USED, F_USED | 2, 0]) {
      const { lb, tokens } = setup(8, 2);
      lb.pokeDescriptor(0, DATA_IOVA, 8, flags, 0);
      assert.equal(lb.drain(), 0);
      assertBroken(lb, /match neither an available nor a used descriptor/, tokens);
    }
    // AVAIL=1, USED=0 is our own available descriptor: not a violation, just not done yet.
    const { lb } = setup(8, 2);
    lb.pokeDescriptor(0, DATA_IOVA, 8, F_AVAIL | 1, 0);
    assert.equal(lb.drain(), 0);
    assert.equal(lb.state().broken, false);
  });

  it('a device that skips ahead over outstanding descriptors looks slow, not broken', () => {
    // As with Linux: the driver reads only the slot the next used descriptor must go to.
    const { lb, ids } = setup(8, 4);
    lb.deviceJumpUsedIdx(2);
    lb.devicePush(ids[0], 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assert.equal(lb.enableInterrupts(), false);
    assert.equal(lb.state().broken, false);
    assert.equal(lb.state().inFlight, 4);
  });

  it('later valid completions are ignored once broken', () => {
    const { lb, ids, tokens } = setup(8, 3);
    lb.devicePush(9, 0);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    lb.devicePush(ids[0], 1);
    lb.devicePush(ids[1], 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used id 9 beyond/, tokens);
  });
});

describe('packed: abandon on a healthy queue', () => {
  it('returns the tokens of chains the device still holds and of unpublished ones', () => {
    const { lb, ids, tokens } = setup(8, 4);
    lb.devicePush(ids[1], 2);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[1], 2]]);
    assert.equal(submit(lb, [{ token: 0x99, segs: [{ offset: 0, length: 8, writable: true }] }]), 1);
    assert.deepEqual(
      [...lb.abandon()].sort((a, b) => a - b),
      [0x99, tokens[0], tokens[2], tokens[3]],
    );
    assert.equal(lb.state().inFlight, 0);
    assert.equal(lb.state().broken, false);
    assert.equal(lb.publish(), false, 'abandoned chains are never published');
  });
});
