// A closed device can be garbage-collected: the callbacks native code keeps (in persistent
// references) reach the device only through relays that close() clears.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openBlk, openDevice, openNet } from '../../lib';
import { TEST_TIMEOUT, tick } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.equal(typeof gc, 'function', 'run the tests with node --expose-gc');
  (gc as () => void)();
}

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
      collect();
    }
    const alive = refs.filter(([, r]) => r.deref() !== undefined).map(([name]) => name);
    assert.deepEqual(alive, [], `still reachable after close(): ${alive.join(', ')}`);
  });
});
