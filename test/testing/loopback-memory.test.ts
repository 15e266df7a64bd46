// Memory the testing addon hands to JS stays valid whatever JS does: the loopback's data area outlives
// the loopback while a view holds it, and a transferred completions buffer does not leave native
// code writing into freed memory.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { type RingLoopback, testingAddon } from '../helpers/testing-addon';
import { collectGarbage } from '../helpers/util';

/** Collects until `ref` is gone, then lets deferred native finalizers run. */
async function collectUntilGone(ref: WeakRef<object>): Promise<void> {
  // deref() keeps its target alive until the current job ends: never collect in the job that looked.
  let gone = false;
  for (let i = 0; i < 50 && !gone; i++) {
    await tick();
    collectGarbage();
    await tick();
    gone = ref.deref() === undefined;
  }
  assert.ok(gone, 'the loopback was not collected');
  for (let i = 0; i < 5; i++) {
    collectGarbage();
    await tick();
  }
}

/** Submits one chain with `writable` device-writable bytes and lets the device side answer it. */
function completeOne(lb: RingLoopback, token: number, writable: number): void {
  assert.equal(lb.submit(new Uint32Array([token, 1, 1, 0, writable, 1]), 1), 1);
  lb.publish();
  assert.equal(lb.deviceCompleteAll(), 1);
  lb.devicePublish();
}

describe('testing addon memory', () => {
  for (const packed of [false, true]) {
    const kind = packed ? 'packed' : 'split';

    test(`${kind}: lb.data stays readable and writable after the loopback is collected`, async () => {
      const { data, ref } = (() => {
        const lb = packed
          ? new testingAddon.RingLoopback(8, false, 0, 8192, true)
          : new testingAddon.RingLoopback(8, false, 0, 8192);
        const view = new Uint8Array(lb.data);
        view.fill(0x5a);
        return { data: view, ref: new WeakRef(lb) };
      })();
      await collectUntilGone(ref);
      assert.equal(data.length, 8192);
      assert.equal(data[8191], 0x5a);
      data.fill(0xc3);
      assert.ok(data.every((b) => b === 0xc3));
    });

    test(`${kind}: drain writes where JS reads after the completions buffer was transferred`, async () => {
      const lb = packed
        ? new testingAddon.RingLoopback(8, false, 0, 8192, true)
        : new testingAddon.RingLoopback(8, false, 0, 8192);
      completeOne(lb, 3, 100);
      // Transfer the buffer away and drop the clone: memory the addon no longer owned would be
      // freed here (native memory is copied instead, and stays the addon's).
      const old = lb.completions;
      structuredClone(old.buffer, { transfer: [old.buffer] });
      await tick();
      collectGarbage();
      await tick();
      assert.equal(lb.drain(), 1);
      assert.deepEqual([lb.completions[0], lb.completions[1]], [3, 100]);
      // Where the runtime can detach it (ArrayBuffer.prototype.transfer, Node 21+), the addon
      // publishes a fresh array over its memory before JS reads the next drain.
      const buffer: ArrayBuffer & { transfer?: () => ArrayBuffer } = lb.completions.buffer;
      if (typeof buffer.transfer === 'function') {
        buffer.transfer();
        completeOne(lb, 5, 7);
        assert.equal(lb.drain(), 1);
        assert.deepEqual([lb.completions[0], lb.completions[1]], [5, 7]);
      }
    });
  }
});
