// Driver-side defence against a lying device: bad used ids, lengths and index jumps must mark the
// queue broken with a reason, deliver only what came before the violation, and leave abandon()
// with exactly the chains still in flight.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainSpec, RingLoopback, drainPairs, newLoopback, popChain, submit } from './loopback';

const READ_LEN = 32;
const WRITE_LEN = 64;

interface Setup {
  lb: RingLoopback;
  heads: number[]; // device-side head of chain i
  tokens: number[]; // token of chain i
}

/** `n` chains (readable 32 bytes + writable 64 bytes, or readable only) popped by the device. */
function setup(size: number, n: number, eventIdx = false, readableOnly = false): Setup {
  const lb = newLoopback(size, eventIdx, 0);
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

/** Checks the broken state, that abandon() returns exactly `stillOut`, and that the queue stays dead. */
function assertBroken(lb: RingLoopback, reason: RegExp, stillOut: number[]): void {
  const st = lb.state();
  assert.equal(st.broken, true, 'queue marked broken');
  assert.match(st.reason, reason);
  assert.equal(st.inFlight, stillOut.length);
  const sorted = (a: Iterable<number>): number[] => [...a].sort((x, y) => x - y);
  assert.deepEqual(sorted(lb.abandon()), sorted(stillOut), 'abandon returns exactly the chains still in flight');
  assert.equal(lb.state().inFlight, 0);
  assert.equal(lb.abandon().length, 0, 'abandon twice returns nothing the second time');
  assert.equal(submit(lb, [{ token: 1, segs: [{ offset: 0, length: 8, writable: true }] }]), 0, 'submit after broken');
  assert.equal(lb.publish(), false);
  assert.equal(lb.drain(), 0, 'drain after broken');
  assert.equal(lb.enableInterrupts(), false, 'a broken queue reports nothing pending');
  assert.equal(lb.state().broken, true, 'stays broken');
  assert.equal(lb.state().reason, st.reason, 'reason does not change');
}

describe('lying device: used id', () => {
  it('id beyond the queue size', () => {
    for (const badId of [8, 9, 0xffff, 0x10000, 0xffffffff]) {
      const { lb, heads, tokens } = setup(8, 4);
      lb.devicePush(heads[0], 10);
      lb.devicePush(badId, 0);
      lb.devicePush(heads[1], 0);
      lb.devicePublish();
      assert.deepEqual(drainPairs(lb), [[tokens[0], 10]], 'only the entry before the violation');
      assertBroken(lb, new RegExp(`used id ${badId} beyond the queue size 8`), tokens.slice(1));
    }
  });

  it('the same id twice in one batch', () => {
    const { lb, heads, tokens } = setup(8, 4);
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
    const { lb, heads, tokens } = setup(8, 3, true);
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

  it('an in-range id that is not the head of any chain', () => {
    const { lb, heads, tokens } = setup(8, 4);
    // Two descriptors per chain: heads are 4 of the 8 slots, the others are chain tails.
    const notHead = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => !heads.includes(i));
    assert.equal(notHead.length, 4);
    lb.devicePush(notHead[0], 0);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), []);
    assertBroken(lb, new RegExp(`used id ${notHead[0]} that is not in flight`), tokens);
  });
});

describe('lying device: used length', () => {
  it('len greater than the chain\u2019s writable bytes', () => {
    for (const badLen of [WRITE_LEN + 1, WRITE_LEN + READ_LEN, 0xffffffff]) {
      const { lb, heads, tokens } = setup(8, 4);
      lb.devicePush(heads[0], WRITE_LEN);
      lb.devicePush(heads[1], badLen);
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
    const { lb, heads, tokens } = setup(8, 2, false, true);
    lb.devicePush(heads[0], 0);
    lb.devicePush(heads[1], 1);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 0]]);
    assertBroken(lb, /1 bytes written into a chain with only 0 writable/, [tokens[1]]);
  });

  it('len up to the writable bytes is fine', () => {
    const { lb, heads, tokens } = setup(8, 4);
    const lens = [0, WRITE_LEN, 1, WRITE_LEN - 1];
    for (let i = 3; i >= 0; i--) lb.devicePush(heads[i], lens[i]);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [
      [tokens[3], lens[3]],
      [tokens[2], lens[2]],
      [tokens[1], lens[1]],
      [tokens[0], lens[0]],
    ]);
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: 8 });
  });
});

describe('lying device: used index jump', () => {
  it('jump past the number of chains in flight', () => {
    const { lb, heads, tokens } = setup(8, 4);
    lb.devicePush(heads[0], 1);
    lb.deviceJumpUsedIdx(4); // used idx 5 with 4 in flight
    lb.devicePublish();
    assert.equal(lb.drain(), 0, 'nothing is trusted after an impossible index');
    assertBroken(lb, /device moved the used index from 0 to 5 with only 4 requests in flight/, tokens);
  });

  it('jump larger than the ring', () => {
    const { lb, tokens } = setup(8, 4, true);
    lb.deviceJumpUsedIdx(9);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used index from 0 to 9 with only 4 requests in flight/, tokens);
  });

  it('index moved backwards', () => {
    const { lb, heads, tokens } = setup(8, 2);
    lb.devicePush(heads[0], 3);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 3]]);
    lb.deviceJumpUsedIdx(0xfffe); // 1 -> 65535
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used index from 1 to 65535/, [tokens[1]]);
  });

  it('jump within the in-flight count over stale used entries', () => {
    const { lb, heads, tokens } = setup(8, 4);
    assert.equal(heads[0], 0);
    // Slot 0 gets a real entry; slots 1-2 were never written (id 0, len 0): id 0 is then no longer
    // in flight.
    lb.devicePush(heads[0], 7);
    lb.deviceJumpUsedIdx(2);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[0], 7]]);
    assertBroken(lb, /used id 0 that is not in flight/, tokens.slice(1));
  });

  it('later valid completions are ignored once broken', () => {
    const { lb, heads, tokens } = setup(8, 3);
    lb.devicePush(9, 0);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    lb.devicePush(heads[0], 1);
    lb.devicePush(heads[1], 1);
    lb.devicePublish();
    assert.equal(lb.drain(), 0);
    assertBroken(lb, /used id 9 beyond/, tokens);
  });
});

describe('abandon on a healthy queue', () => {
  it('returns the tokens of chains the device still holds', () => {
    const { lb, heads, tokens } = setup(8, 4);
    lb.devicePush(heads[1], 2);
    lb.devicePublish();
    assert.deepEqual(drainPairs(lb), [[tokens[1], 2]]);
    assert.deepEqual(
      [...lb.abandon()].sort((a, b) => a - b),
      [tokens[0], tokens[2], tokens[3]],
    );
    assert.equal(lb.state().inFlight, 0);
    assert.equal(lb.state().broken, false);
  });
});
