// The reset-in-flight mock fault: the device sets DEVICE_NEEDS_RESET with requests in flight. Run in
// a child process: a failure in the config-change path can crash or wedge the whole process.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeExit, runChild } from '../helpers/child';
import { TEST_TIMEOUT } from '../helpers/util';

const SCRIPT = `
const { openBlk, VdpaError } = require(LIB);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
(async () => {
  const blk = await openBlk('mock:blk', { numQueues: 2, queueSize: 64, mock: { capacity: 16 << 20, numQueues: 2, fault: 'reset-in-flight', faultAfter: 4 } });
  const a = new Uint8Array(4096).fill(1), b = new Uint8Array(4096).fill(2), back = new Uint8Array(4096);
  await blk.write(0, a); await blk.write(8192, b);
  await blk.read(0, back); const okA = back.every((x) => x === 1);
  await blk.read(8192, back); const okB = back.every((x) => x === 2);
  out({ prefix: okA && okB });
  const event = new Promise((resolve) => blk.device.once('needsReset', (e) => resolve(e)));
  const reqs = [blk.read(0, new Uint8Array(4096)), blk.read(0, blk.allocBuffer(4096)), blk.write(4096, new Uint8Array(4096))];
  const settled = await Promise.allSettled(reqs);
  out({ requests: settled.map((r) => r.status === 'rejected' ? (r.reason instanceof VdpaError ? r.reason.code : String(r.reason)) : 'resolved') });
  const e = await event;
  out({ event: e instanceof VdpaError ? e.code : String(e), status: blk.device.status() });
  const later = await blk.read(0, new Uint8Array(512)).then(() => 'resolved', (e) => e.code || String(e));
  out({ later });
  await blk.close();
  out({ closed: true });
})().catch((e) => { out({ error: String(e && e.stack || e) }); process.exitCode = 1; });
`;

describe('mock fault reset-in-flight', () => {
  test(
    'requests fail with EIO, needsReset fires, later requests fail, close works',
    { timeout: TEST_TIMEOUT + 5000 },
    async () => {
      const r = await runChild(SCRIPT, TEST_TIMEOUT);
      const lines = r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const get = (k: string): unknown => lines.find((l) => k in l)?.[k];
      assert.equal(get('error'), undefined, describeExit(r));
      assert.equal(get('prefix'), true, `the first 4 completions succeed; ${describeExit(r)}`);
      assert.deepEqual(get('requests'), ['EIO', 'EIO', 'EIO'], describeExit(r));
      assert.equal(get('event'), 'EIO', `needsReset event; ${describeExit(r)}`);
      const status = get('status');
      assert.ok(typeof status === 'number' && (status & 64) !== 0, 'DEVICE_NEEDS_RESET is set');
      assert.equal(get('later'), 'EIO', 'a later request fails');
      assert.equal(get('closed'), true, describeExit(r));
      assert.equal(r.code, 0, describeExit(r));
    },
  );
});
