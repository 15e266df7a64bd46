// A closed device can be garbage-collected: the callbacks native code keeps (in persistent
// references) reach the device only through relays that close() clears.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { openBlk, openDevice, openNet } from '../../lib';
import { TEST_TIMEOUT, tick, collectGarbage } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

describe('closed devices are collectable', () => {
  test('blk, net and bare devices, after I/O, a timeout and an abort', T, async () => {
    const refs: [string, WeakRef<object>][] = [];
    await (async () => {
      const blk = await openBlk('mock:blk', { numQueues: 2, mock: { numQueues: 2, capacity: 1 << 20 } });
      await blk.write(0, new Uint8Array(8192));
      await blk.read(0, blk.allocBuffer(4096));
      await blk.close();
      const net = await openNet('mock:net');
      await net.send(new Uint8Array(60));
      await net.receive();
      await net.close();
      const stalled = await openBlk('mock:blk', { requestTimeout: 20, mock: { fault: 'stall' } });
      await stalled.read(0, new Uint8Array(512)).catch(() => undefined);
      const ac = new AbortController();
      const aborted = stalled.read(0, stalled.allocBuffer(4096), { signal: ac.signal }).catch(() => undefined);
      ac.abort();
      await aborted;
      await stalled.close();
      const dev = await openDevice('mock:net');
      await dev.close();
      refs.push(['blk', new WeakRef(blk)], ['blk.device', new WeakRef(blk.device)], ['net', new WeakRef(net)]);
      refs.push(['net.device', new WeakRef(net.device)], ['stalled', new WeakRef(stalled)], ['dev', new WeakRef(dev)]);
    })();
    // WeakRef targets live to the end of the job that made them: collect over a few turns.
    for (let i = 0; i < 5; i++) {
      await tick();
      collectGarbage();
    }
    const alive = refs.filter(([, r]) => r.deref() !== undefined).map(([name]) => name);
    assert.deepEqual(alive, [], `still reachable after close(): ${alive.join(', ')}`);
  });
});

/** Threads of this process (each mock device runs one). */
function threads(): number {
  return fs.readdirSync('/proc/self/task').length;
}

describe('devices never closed', () => {
  test('an idle blk device nobody references is collected, and its mock thread stops', T, async () => {
    const before = threads();
    const refs: WeakRef<object>[] = [];
    await (async () => {
      for (let i = 0; i < 4; i++) {
        const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20 } });
        await blk.write(0, new Uint8Array(4096));
        await blk.read(0, blk.allocBuffer(4096));
        refs.push(new WeakRef(blk), new WeakRef(blk.device));
      }
    })();
    assert.ok(threads() >= before + 4, 'each mock device runs a thread');
    for (let i = 0; i < 10 && refs.some((r) => r.deref() !== undefined); i++) {
      await tick();
      collectGarbage();
    }
    assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'devices still reachable');
    // The finalizers run the device's teardown: the mock threads are joined.
    for (let i = 0; i < 50 && threads() > before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(threads(), before, 'mock threads left running');
  });

  test('a device with requests in flight is not collected: they still settle', T, async () => {
    const { device, reads } = await (async () => {
      const blk = await openBlk('mock:blk', { mock: { capacity: 1 << 20, completionDelayMs: 300 } });
      return {
        device: new WeakRef(blk.device),
        reads: Array.from({ length: 8 }, (_, i) => blk.read(i * 4096, new Uint8Array(4096))),
      };
    })();
    const settled = Promise.allSettled(reads);
    // Only the promises are kept from here on: collect while the device still holds the reads.
    await (async () => {
      for (let i = 0; i < 5; i++) {
        await tick();
        collectGarbage();
      }
    })();
    assert.ok(device.deref() !== undefined, 'collected with requests in flight');
    assert.deepEqual(
      (await settled).map((r) => r.status),
      reads.map(() => 'fulfilled'),
    );
  });
});
