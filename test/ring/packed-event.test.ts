// Packed ring event suppression: the driver's and the device's event suppression structures, in
// ENABLE/DISABLE mode and in EVENT_IDX descriptor mode (offset + wrap counter), kick and interrupt
// decisions on both sides, and the descriptor event firing again exactly two laps later.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { drainPairs, simpleChain, submit } from './loopback';
import { EVENT_DESC, EVENT_DISABLE, EVENT_ENABLE, PackedLoopback, newPacked, offWrap } from './packed-loopback';

function submitPublish(lb: PackedLoopback, n: number, tokenBase: number): boolean {
  const chains = [];
  for (let i = 0; i < n; i++) chains.push(simpleChain(tokenBase + i, 0, 1));
  assert.equal(submit(lb, chains), n);
  return lb.publish();
}

describe('packed: initial event suppression state', () => {
  it('EVENT_IDX: both sides ask for the first descriptor (offset 0, wrap 1)', () => {
    const lb = newPacked(16, true, 0);
    assert.deepEqual(lb.eventSuppression(), {
      driver: { flags: EVENT_DESC, off: 0, wrap: true },
      device: { flags: EVENT_DESC, off: 0, wrap: true },
    });
  });
  it('without EVENT_IDX: both sides enable notifications', () => {
    const lb = newPacked(16, false, 0);
    assert.deepEqual(lb.eventSuppression(), {
      driver: { flags: EVENT_ENABLE, off: 0, wrap: false },
      device: { flags: EVENT_ENABLE, off: 0, wrap: false },
    });
  });
});

describe('packed: kick suppression', () => {
  it('EVENT_IDX: kick once, none until the device re-arms, then again', () => {
    const lb = newPacked(16, true, 0);
    assert.equal(lb.publish(), false, 'nothing to publish');
    assert.equal(submitPublish(lb, 1, 1), true, 'first publish crosses offset 0');
    assert.equal(submitPublish(lb, 1, 2), false);
    assert.equal(submitPublish(lb, 3, 3), false);
    assert.equal(lb.deviceCompleteAll(), 5);
    assert.equal(submitPublish(lb, 1, 6), false, 'device consumed but did not re-arm');
    assert.equal(lb.deviceCompleteAll(), 1);
    assert.equal(lb.deviceEnableNotify(), false, 'nothing new since the device caught up');
    assert.deepEqual(lb.eventSuppression().device, { flags: EVENT_DESC, off: 6, wrap: true });
    assert.equal(submitPublish(lb, 2, 7), true, 'kick after re-arm');
    assert.equal(submitPublish(lb, 1, 9), false, 'and suppressed again');
    assert.equal(lb.deviceEnableNotify(), true, 'chains were published meanwhile');
    assert.equal(lb.deviceCompleteAll(), 3);
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, 9);
    assert.equal(lb.state().broken, false);
  });

  it('EVENT_IDX: the event fires again exactly when the same (offset, wrap) comes round, two laps on', () => {
    const size = 5;
    const lb = newPacked(size, true, 0);
    const batch = new Uint32Array(size * 6);
    for (let i = 0; i < size; i++) batch.set([i, 1, 1, i * 64, 8, 1], i * 6);
    const kicksAt: number[] = [];
    for (let round = 0; round < 7; round++) {
      assert.equal(lb.submit(batch, size), size);
      if (lb.publish()) kicksAt.push(round);
      assert.equal(lb.deviceCompleteAll(), size);
      lb.devicePublish();
      assert.equal(lb.drain(), size);
    }
    // Each round is one lap; (0, wrap 1) is crossed on laps 0, 2, 4, 6 only.
    assert.deepEqual(kicksAt, [0, 2, 4, 6]);
  });

  it('the device arms the wrap counter of the lap it is on', () => {
    const lb = newPacked(3, true, 0);
    assert.equal(submitPublish(lb, 3, 0), true);
    assert.equal(lb.deviceCompleteAll(), 3);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.deepEqual(lb.eventSuppression().device, { flags: EVENT_DESC, off: 0, wrap: false });
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, 3);
    assert.equal(submitPublish(lb, 1, 10), true, 'lap 1 offset 0 is crossed');
  });

  it('DISABLE suppresses every kick; ENABLE asks for every one', () => {
    for (const eventIdx of [false, true]) {
      const lb = newPacked(16, eventIdx, 0);
      lb.pokeEventSuppression(false, EVENT_DISABLE, 0);
      for (let i = 0; i < 4; i++) assert.equal(submitPublish(lb, 1, i), false);
      lb.pokeEventSuppression(false, EVENT_ENABLE, 0);
      for (let i = 0; i < 4; i++) assert.equal(submitPublish(lb, 1, 10 + i), true);
    }
  });

  it('DESC without EVENT_IDX (a device bug) and reserved flags still kick', () => {
    const lb = newPacked(16, false, 0);
    lb.pokeEventSuppression(false, EVENT_DESC, offWrap(9, true));
    assert.equal(submitPublish(lb, 1, 1), true);
    lb.pokeEventSuppression(false, 3, 0);
    assert.equal(submitPublish(lb, 1, 2), true);
  });

  it('flags mode: every publish kicks; deviceEnableNotify reports pending chains', () => {
    const lb = newPacked(16, false, 0);
    for (let i = 0; i < 8; i++) assert.equal(submitPublish(lb, 1, i), true);
    assert.equal(lb.deviceEnableNotify(), true);
    assert.equal(lb.deviceCompleteAll(), 8);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.equal(submitPublish(lb, 2, 100), true);
  });
});

describe('packed: interrupt suppression', () => {
  it('EVENT_IDX: interrupt once, none until drain + enableInterrupts re-arm', () => {
    const lb = newPacked(16, true, 0);
    submitPublish(lb, 2, 1);
    assert.equal(lb.devicePublish(), false, 'nothing used yet');
    assert.equal(lb.deviceCompleteAll(), 2);
    assert.equal(lb.devicePublish(), true, 'first used descriptor is at offset 0');
    submitPublish(lb, 1, 3);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'not re-armed');
    assert.deepEqual(
      drainPairs(lb).map(([t]) => t),
      [1, 2, 3],
    );
    submitPublish(lb, 1, 4);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'drain alone does not re-arm');
    assert.equal(drainPairs(lb).length, 1);
    assert.equal(lb.enableInterrupts(), false);
    assert.deepEqual(lb.eventSuppression().driver, { flags: EVENT_DESC, off: 4, wrap: true });
    submitPublish(lb, 2, 5);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), true, 're-armed at the drained position');
    submitPublish(lb, 1, 7);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'one interrupt per re-arm');
    assert.equal(lb.enableInterrupts(), true, 'undrained completions are pending');
    assert.equal(drainPairs(lb).length, 3);
    assert.equal(lb.enableInterrupts(), false);
  });

  it('EVENT_IDX with multi-descriptor chains: the event names the slot of the next used descriptor', () => {
    const lb = newPacked(8, true, 0);
    // Chains of 3 and 2 descriptors; the device returns the 2-descriptor one first.
    assert.equal(submit(lb, [simpleChain(1, 1, 2), simpleChain(2, 1, 1)]), 2);
    lb.publish();
    const a = lb.devicePop();
    const b = lb.devicePop();
    assert.ok(a && b && !('error' in a) && !('error' in b));
    lb.devicePush(b.head, 0);
    assert.equal(lb.devicePublish(), true);
    assert.deepEqual(drainPairs(lb), [[2, 0]]);
    assert.equal(lb.enableInterrupts(), false);
    // The next used descriptor goes right after the first: slot 2 (it skipped 2 descriptors).
    assert.deepEqual(lb.eventSuppression().driver, { flags: EVENT_DESC, off: 2, wrap: true });
    lb.devicePush(a.head, 0);
    assert.equal(lb.devicePublish(), true);
    assert.deepEqual(drainPairs(lb), [[1, 0]]);
    lb.enableInterrupts();
    assert.deepEqual(lb.eventSuppression().driver, { flags: EVENT_DESC, off: 5, wrap: true });
  });

  it('DISABLE suppresses every interrupt', () => {
    const lb = newPacked(16, false, 0);
    lb.pokeEventSuppression(true, EVENT_DISABLE, 0);
    for (let i = 0; i < 4; i++) {
      submitPublish(lb, 1, i);
      lb.deviceCompleteAll();
      assert.equal(lb.devicePublish(), false);
    }
    assert.equal(lb.enableInterrupts(), true, 're-enabling reports what is pending');
    assert.deepEqual(lb.eventSuppression().driver, { flags: EVENT_ENABLE, off: 0, wrap: false });
    assert.equal(drainPairs(lb).length, 4);
    submitPublish(lb, 1, 9);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), true);
  });

  it('flags mode: every publish of new used descriptors interrupts', () => {
    const lb = newPacked(16, false, 0);
    for (let i = 0; i < 6; i++) {
      submitPublish(lb, 1, i);
      assert.equal(lb.deviceCompleteAll(), 1);
      assert.equal(lb.devicePublish(), true, `completion ${i}`);
    }
    assert.equal(lb.devicePublish(), false, 'nothing pushed');
    assert.equal(drainPairs(lb).length, 6);
  });
});
