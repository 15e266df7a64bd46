// Notification suppression: the event-index rule itself, kick suppression (avail_event / used
// flags) and interrupt suppression (used_event / avail flags), with and without EVENT_IDX.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RingLoopback, addon, drainPairs, needEventModel, newLoopback, rng, simpleChain, submit } from './loopback';

describe('needEvent (virtio 2.7.10 event-index rule)', () => {
  it('matches a hand-written truth table, including wrap-around', () => {
    // [event, new, old, expected]: notify iff event is in [old, new) modulo 2^16.
    const table: [number, number, number, boolean][] = [
      [0, 1, 0, true],
      [0, 0, 0, false], // nothing moved
      [1, 1, 0, false], // event not yet passed
      [5, 10, 5, true], // event == old
      [9, 10, 5, true], // event == new - 1
      [10, 10, 5, false], // event == new
      [4, 10, 5, false], // event before old
      [100, 10, 5, false],
      [65535, 1, 65534, true], // new wrapped past the event
      [65535, 0, 65535, true],
      [65535, 65535, 65534, false],
      [65534, 65535, 65534, true],
      [0, 1, 65535, true], // event at 0 after wrap
      [1, 1, 65535, false],
      [65533, 1, 65534, false], // event behind old across wrap
      [32768, 32769, 32768, true],
      [32767, 32769, 32768, false],
      [0, 32768, 0, true],
      [32768, 32768, 0, false],
      [65535, 65535, 0, false],
      [65534, 65535, 0, true],
    ];
    for (const [event, newIdx, oldIdx, want] of table) {
      assert.equal(addon.needEvent(event, newIdx, oldIdx), want, `needEvent(${event}, ${newIdx}, ${oldIdx})`);
      assert.equal(needEventModel(event, newIdx, oldIdx), want, `model(${event}, ${newIdx}, ${oldIdx})`);
    }
  });

  it('agrees with "event in [old, new) mod 2^16" on a grid around the wrap points', () => {
    const pts = [0, 1, 2, 3, 127, 128, 255, 256, 32766, 32767, 32768, 32769, 65533, 65534, 65535];
    let trues = 0;
    for (const e of pts) {
      for (const n of pts) {
        for (const o of pts) {
          const got = addon.needEvent(e, n, o);
          if (got !== needEventModel(e, n, o)) assert.fail(`needEvent(${e}, ${n}, ${o}) = ${got}`);
          if (got) trues++;
        }
      }
    }
    assert.ok(trues > 0 && trues < pts.length ** 3);
  });

  it('agrees with the model on random triples', () => {
    const r = rng(29);
    for (let i = 0; i < 20000; i++) {
      const o = Math.floor(r() * 65536);
      const n = (o + Math.floor(r() * (r() < 0.5 ? 8 : 65536))) & 0xffff;
      const e = r() < 0.5 ? (o + Math.floor(r() * 10) - 5) & 0xffff : Math.floor(r() * 65536);
      const got = addon.needEvent(e, n, o);
      if (got !== needEventModel(e, n, o)) assert.fail(`needEvent(${e}, ${n}, ${o}) = ${got}`);
    }
  });
});

/** Submits `n` one-segment chains and publishes; returns publish()'s kick decision. */
function submitPublish(lb: RingLoopback, n: number, tokenBase: number): boolean {
  const chains = [];
  for (let i = 0; i < n; i++) chains.push(simpleChain(tokenBase + i, 0, 1));
  assert.equal(submit(lb, chains), n);
  return lb.publish();
}

describe('kick suppression', () => {
  it('event-idx: kick once, none while avail_event is left behind, again after deviceEnableNotify', () => {
    const lb = newLoopback(16, true, 0);
    assert.equal(lb.publish(), false, 'nothing to publish');
    assert.equal(submitPublish(lb, 1, 1), true, 'first publish crosses avail_event 0');
    assert.equal(submitPublish(lb, 1, 2), false, 'device has not re-enabled notifications');
    assert.equal(submitPublish(lb, 3, 3), false);
    // Device consumes without re-enabling: avail_event stays behind, still no kick.
    assert.equal(lb.deviceCompleteAll(), 5);
    assert.equal(submitPublish(lb, 1, 6), false);
    assert.equal(lb.deviceCompleteAll(), 1);
    // Re-enable with nothing pending: avail_event = 6, the next publish crosses it.
    assert.equal(lb.deviceEnableNotify(), false, 'nothing new since the device caught up');
    assert.equal(submitPublish(lb, 2, 7), true, 'kick after deviceEnableNotify');
    assert.equal(submitPublish(lb, 1, 9), false, 'and suppressed again after that one kick');
    // Re-enable while chains are pending: reported, and avail_event is set at the device position.
    assert.equal(lb.deviceEnableNotify(), true, 'chains were published meanwhile');
    // avail_event = 6 (device has not popped 7..9); new publishes from 9 do not cross it.
    assert.equal(submitPublish(lb, 1, 10), false);
    assert.equal(lb.deviceCompleteAll(), 4);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.equal(submitPublish(lb, 1, 11), true);
    assert.equal(lb.publish(), false, 'republishing nothing never kicks');
    assert.equal(lb.state().broken, false);
  });

  it('event-idx: avail_event left at 0 fires again exactly when the index wraps back past it', () => {
    const size = 4;
    const lb = newLoopback(size, true, 0);
    const batch = new Uint32Array(size * 6);
    for (let i = 0; i < size; i++) batch.set([i, 1, 1, i * 64, 8, 1], i * 6);
    const kicksAt: number[] = [];
    let idx = 0;
    for (let round = 0; round < 65536 / size + 2; round++) {
      if (lb.submit(batch, size) !== size) assert.fail(`round ${round}: ring not empty`);
      if (lb.publish()) kicksAt.push(idx);
      idx = (idx + size) & 0xffff;
      if (lb.deviceCompleteAll() !== size) assert.fail('device missed chains');
      lb.devicePublish();
      if (lb.drain() !== size) assert.fail('drain missed completions');
    }
    // Publishes 0->4 and (after the wrap) 0->4 again cross avail_event 0; 65532->0 does not.
    assert.deepEqual(kicksAt, [0, 0]);
  });

  it('flags mode: every publish of new chains asks for a kick', () => {
    const lb = newLoopback(16, false, 0);
    assert.equal(lb.publish(), false, 'nothing to publish');
    for (let i = 0; i < 8; i++) assert.equal(submitPublish(lb, 1, i), true);
    assert.equal(lb.publish(), false);
    assert.equal(lb.deviceEnableNotify(), true, 'chains are pending');
    assert.equal(lb.deviceCompleteAll(), 8);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.equal(submitPublish(lb, 2, 100), true);
  });
});

describe('interrupt suppression', () => {
  it('event-idx: interrupt once, none until drain + enableInterrupts move used_event', () => {
    const lb = newLoopback(16, true, 0);
    submitPublish(lb, 2, 1);
    assert.equal(lb.devicePublish(), false, 'nothing used yet');
    assert.equal(lb.deviceCompleteAll(), 2);
    assert.equal(lb.devicePublish(), true, 'first completion crosses used_event 0');
    submitPublish(lb, 1, 3);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'driver has not re-enabled interrupts');
    // drain alone does not re-arm.
    assert.deepEqual(
      drainPairs(lb).map(([t]) => t),
      [1, 2, 3],
    );
    submitPublish(lb, 1, 4);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'drain without enableInterrupts leaves used_event behind');
    assert.equal(drainPairs(lb).length, 1);
    assert.equal(lb.enableInterrupts(), false, 'nothing new since drain');
    submitPublish(lb, 2, 5);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), true, 'used_event re-armed at the drained position');
    submitPublish(lb, 1, 7);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), false, 'one interrupt per re-arm');
    // enableInterrupts reports completions that arrived before it.
    assert.equal(lb.enableInterrupts(), true, 'undrained completions are pending');
    assert.equal(drainPairs(lb).length, 3);
    assert.equal(lb.enableInterrupts(), false);
    assert.equal(lb.devicePublish(), false, 'nothing pushed');
    assert.equal(lb.state().inFlight, 0);
  });

  it('event-idx: used_event left at 0 fires again exactly when the used index wraps back past it', () => {
    const size = 8;
    const lb = newLoopback(size, true, 0);
    const batch = new Uint32Array(size * 6);
    for (let i = 0; i < size; i++) batch.set([i, 1, 1, i * 64, 8, 1], i * 6);
    const irqAt: number[] = [];
    let idx = 0;
    for (let round = 0; round < 65536 / size + 2; round++) {
      if (lb.submit(batch, size) !== size) assert.fail(`round ${round}: ring not empty`);
      lb.publish();
      lb.deviceCompleteAll();
      if (lb.devicePublish()) irqAt.push(idx);
      idx = (idx + size) & 0xffff;
      if (lb.drain() !== size) assert.fail('drain missed completions');
    }
    assert.deepEqual(irqAt, [0, 0]);
  });

  it('flags mode: every publish of new used entries interrupts', () => {
    const lb = newLoopback(16, false, 0);
    for (let i = 0; i < 6; i++) {
      submitPublish(lb, 1, i);
      assert.equal(lb.deviceCompleteAll(), 1);
      assert.equal(lb.devicePublish(), true, `completion ${i}`);
      if (i < 3) assert.equal(drainPairs(lb).length, 1);
    }
    assert.equal(lb.devicePublish(), false, 'nothing pushed');
    assert.equal(lb.enableInterrupts(), true, 'three completions undrained');
    assert.equal(drainPairs(lb).length, 3);
    assert.equal(lb.enableInterrupts(), false);
  });
});
