// The testing addon checks its arguments as the shipped one does: TypeError for the wrong kind of
// value, RangeError out of range; never a crash (benchMockBlk with a tiny disk divided by zero) or a
// hang (depth 0 waited forever).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { testingAddon } from '../helpers/testing-addon';

/** Calls `fn` with arguments the types do not allow, as a JS caller could. */
function call(fn: (...args: never[]) => unknown, ...args: unknown[]): () => unknown {
  return () => (fn as (...a: unknown[]) => unknown)(...args);
}

describe('testing addon arguments', () => {
  const blk = testingAddon.benchMockBlk;

  test('benchMockBlk runs with valid arguments', () => {
    const r = blk(4, 64, false, 1 << 16);
    assert.equal(r.ops, 64);
    assert.ok(r.nanoseconds > 0);
  });

  test('benchMockBlk: a capacity under one 4 KiB block is a RangeError', () => {
    for (const capacity of [0, 512, 4095]) assert.throws(call(blk, 1, 1, false, capacity), RangeError);
  });

  test('benchMockBlk: a capacity mock:blk refuses is a RangeError', () => {
    assert.throws(call(blk, 1, 1, false, 4097), RangeError);
  });

  test('benchMockBlk: depth 0 or deeper than the queue is a RangeError', () => {
    assert.throws(call(blk, 0, 1, false, 1 << 16), RangeError);
    assert.throws(call(blk, 257, 1, false, 1 << 16), RangeError);
  });

  test('benchMockBlk: non-integers and negatives are RangeErrors, other types TypeErrors', () => {
    assert.throws(call(blk, 1.5, 1, false, 1 << 16), RangeError);
    assert.throws(call(blk, 1, -1, false, 1 << 16), RangeError);
    assert.throws(call(blk, 1, Number.NaN, false, 1 << 16), RangeError);
    assert.throws(call(blk, 1, 1, false, (1 << 16) + 0.5), RangeError);
    assert.throws(call(blk, '1', 1, false, 1 << 16), TypeError);
    assert.throws(call(blk, 1, 1, 'yes', 1 << 16), TypeError);
    assert.throws(call(blk, 1, 1, false, 2n ** 16n), TypeError);
    assert.throws(call(blk), TypeError);
  });

  test('needEvent takes 16-bit indexes', () => {
    assert.equal(testingAddon.needEvent(0, 1, 0), true);
    assert.throws(call(testingAddon.needEvent, 0x10000, 0, 0), RangeError);
    assert.throws(call(testingAddon.needEvent, -1, 0, 0), RangeError);
    assert.throws(call(testingAddon.needEvent, 'a', 0, 0), TypeError);
  });

  test('RingLoopback checks its constructor arguments', () => {
    const Ctor = testingAddon.RingLoopback;
    assert.throws(() => Reflect.construct(Ctor, [0, false, 0, 4096]), RangeError);
    assert.throws(() => Reflect.construct(Ctor, [6, false, 0, 4096]), RangeError, 'split rings need a power of two');
    assert.throws(() => Reflect.construct(Ctor, [40000, false, 0, 4096, true]), RangeError);
    assert.throws(() => Reflect.construct(Ctor, [8, false, 4097, 4096]), RangeError);
    assert.throws(() => Reflect.construct(Ctor, [8, false, 0, -1]), RangeError);
    assert.throws(() => Reflect.construct(Ctor, [8, 1, 0, 4096]), TypeError);
    assert.throws(() => Reflect.construct(Ctor, [8, false, 0, 4096, 'packed']), TypeError);
    assert.throws(() => Reflect.construct(Ctor, ['8', false, 0, 4096]), TypeError);
    assert.doesNotThrow(() => Reflect.construct(Ctor, [6, false, 0, 4096, true]), 'packed rings take any size');
  });

  test('RingLoopback methods check theirs', () => {
    const lb = new testingAddon.RingLoopback(8, false, 0, 4096);
    assert.throws(call(lb.runNative.bind(lb), 1, 0), RangeError, 'a batch of 0 chains');
    assert.throws(call(lb.runNative.bind(lb), 1, 9), RangeError, 'a batch larger than the ring');
    assert.throws(call(lb.pokeDescriptor.bind(lb), 8, 0n, 0, 0, 0), RangeError);
    assert.throws(call(lb.pokeDescriptor.bind(lb), 0, 1, 0, 0, 0), TypeError);
    assert.throws(call(lb.pokeDescriptor.bind(lb), 0, 2n ** 64n, 0, 0, 0), RangeError);
    assert.throws(call(lb.peekDescriptor.bind(lb), 8), RangeError);
    assert.throws(call(lb.deviceCompleteAll.bind(lb), 'all'), TypeError);
    assert.throws(call(lb.deviceJumpUsedIdx.bind(lb), 0x10000), RangeError);
    assert.throws(call(lb.submit.bind(lb), [1, 1, 1, 0, 16, 0], 1), TypeError);
  });
});
