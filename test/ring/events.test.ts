// Notification suppression: the event-index rule itself, then for each ring format kick and
// interrupt suppression with and without EVENT_IDX (split: avail_event / used_event and the ring
// flags; packed: the two event suppression structures, offset plus wrap counter), and the event
// firing again exactly when its position comes round.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RingLoopback, addon, drainPairs, needEventModel, rng, simpleChain, submit } from './loopback';
import { EVENT_DESC, EVENT_DISABLE, EVENT_ENABLE, PackedLoopback, newPacked, offWrap } from './packed-loopback';
import { FORMATS, RingFormat } from './formats';

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

/** Full-ring rounds of one-descriptor chains until an event position comes round again. */
function period(fmt: RingFormat, size: number): number {
  return fmt.modulus(size) / (size * fmt.positionsPerChain(1));
}

/**
 * Rounds of `size` one-descriptor chains with the event left at its first position; returns the
 * rounds in which `side` notified (the driver kicked, or the device interrupted).
 */
function notifyingRounds(fmt: RingFormat, size: number, rounds: number, side: 'kick' | 'interrupt'): number[] {
  const lb = fmt.make(size, true, 0);
  const batch = new Uint32Array(size * 6);
  for (let i = 0; i < size; i++) batch.set([i, 1, 1, i * 64, 8, 1], i * 6);
  const at: number[] = [];
  for (let round = 0; round < rounds; round++) {
    if (lb.submit(batch, size) !== size) assert.fail(`round ${round}: ring not empty`);
    const kick = lb.publish();
    if (lb.deviceCompleteAll() !== size) assert.fail('device missed chains');
    const irq = lb.devicePublish();
    if ((side === 'kick' ? kick : irq) === true) at.push(round);
    if (lb.drain() !== size) assert.fail('drain missed completions');
  }
  return at;
}

function kickSuite(fmt: RingFormat): void {
  it('event-idx: kick once, none until the device re-arms, then again', () => {
    const lb = fmt.make(16, true, 0);
    assert.equal(lb.publish(), false, 'nothing to publish');
    assert.equal(submitPublish(lb, 1, 1), true, 'first publish crosses the event at 0');
    assert.equal(submitPublish(lb, 1, 2), false, 'device has not re-enabled notifications');
    assert.equal(submitPublish(lb, 3, 3), false);
    // Device consumes without re-enabling: its event stays behind, still no kick.
    assert.equal(lb.deviceCompleteAll(), 5);
    assert.equal(submitPublish(lb, 1, 6), false);
    assert.equal(lb.deviceCompleteAll(), 1);
    // Re-enable with nothing pending: the event moves to 6, the next publish crosses it.
    assert.equal(lb.deviceEnableNotify(), false, 'nothing new since the device caught up');
    if (fmt.events) assert.deepEqual(fmt.events.read(lb).device, fmt.events.armedAt(6, 16));
    assert.equal(submitPublish(lb, 2, 7), true, 'kick after deviceEnableNotify');
    assert.equal(submitPublish(lb, 1, 9), false, 'and suppressed again after that one kick');
    // Re-enable while chains are pending: reported, and the event is set at the device position.
    assert.equal(lb.deviceEnableNotify(), true, 'chains were published meanwhile');
    // The event is at 6 (the device has not popped 7..9); new publishes from 9 do not cross it.
    assert.equal(submitPublish(lb, 1, 10), false);
    assert.equal(lb.deviceCompleteAll(), 4);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.equal(submitPublish(lb, 1, 11), true);
    assert.equal(lb.publish(), false, 'republishing nothing never kicks');
    assert.equal(lb.deviceCompleteAll(), 1);
    lb.devicePublish();
    assert.equal(drainPairs(lb).length, 11);
    assert.equal(lb.state().broken, false);
  });

  it('event-idx: an event left at 0 fires again exactly when its position comes round', () => {
    // Split: the 16-bit avail index wraps; packed: the same (offset, wrap counter), two laps on.
    for (const size of [fmt.sizeNear(3), fmt.sizeNear(5)]) {
      const p = period(fmt, size);
      const rounds = 3 * p + 1;
      const want = [0, p, 2 * p, 3 * p];
      assert.deepEqual(notifyingRounds(fmt, size, rounds, 'kick'), want, `size ${size}`);
    }
  });

  it('flags mode: every publish of new chains asks for a kick', () => {
    const lb = fmt.make(16, false, 0);
    assert.equal(lb.publish(), false, 'nothing to publish');
    for (let i = 0; i < 8; i++) assert.equal(submitPublish(lb, 1, i), true);
    assert.equal(lb.publish(), false);
    assert.equal(lb.deviceEnableNotify(), true, 'chains are pending');
    assert.equal(lb.deviceCompleteAll(), 8);
    assert.equal(lb.deviceEnableNotify(), false);
    assert.equal(submitPublish(lb, 2, 100), true);
  });
}

function interruptSuite(fmt: RingFormat): void {
  it('event-idx: interrupt once, none until drain + enableInterrupts re-arm', () => {
    const lb = fmt.make(16, true, 0);
    submitPublish(lb, 2, 1);
    assert.equal(lb.devicePublish(), false, 'nothing used yet');
    assert.equal(lb.deviceCompleteAll(), 2);
    assert.equal(lb.devicePublish(), true, 'first completion crosses the event at 0');
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
    assert.equal(lb.devicePublish(), false, 'drain without enableInterrupts leaves the event behind');
    assert.equal(drainPairs(lb).length, 1);
    assert.equal(lb.enableInterrupts(), false, 'nothing new since drain');
    if (fmt.events) assert.deepEqual(fmt.events.read(lb).driver, fmt.events.armedAt(4, 16));
    submitPublish(lb, 2, 5);
    lb.deviceCompleteAll();
    assert.equal(lb.devicePublish(), true, 'the event re-armed at the drained position');
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

  it('event-idx: an event left at 0 fires again exactly when the used position comes round', () => {
    for (const size of [fmt.sizeNear(3), fmt.sizeNear(8)]) {
      const p = period(fmt, size);
      const want = [0, p, 2 * p, 3 * p];
      assert.deepEqual(notifyingRounds(fmt, size, 3 * p + 1, 'interrupt'), want, `size ${size}`);
    }
  });

  it('flags mode: every publish of new used entries interrupts', () => {
    const lb = fmt.make(16, false, 0);
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
}

for (const fmt of FORMATS) {
  describe(`${fmt.name}: kick suppression`, () => kickSuite(fmt));
  describe(`${fmt.name}: interrupt suppression`, () => interruptSuite(fmt));
}

describe('packed: event suppression structures', () => {
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

  it('EVENT_IDX with multi-descriptor chains: the event names the slot of the next used descriptor', () => {
    const lb: PackedLoopback = newPacked(8, true, 0);
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
});
