// Hand-over in the guest (issue 12): a seeded random write/read load at depth 32 runs while the
// driver moves from qemu-storage-daemon's VDUSE device A to a Node VDUSE device B served by another
// process on the same image file, qemu-storage-daemon is stopped and started again (A re-created:
// "unload and load the driver"), and the driver moves back to the new A. Zero failed requests,
// every read matches the model, and the host checks every byte of the image after the guest exits
// (scripts/vm/oracle-check.py, manifest handover.json). Then 20 more switches between A and B
// under the same load give the pause per hand-over (printed as '# handover pause ...').
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { openBlk, type HandOverResult } from '../../lib';
import { progress, startLoad } from '../helpers/blk-load';
import { median, writeManifest } from './handover-oracle';
import { IN_VM, ROOT, SKIP_REASON, image, startBlk, stopBlk, within } from './vm-env';

const SERVE = path.join(ROOT, 'dist', 'test', 'vm', 'vduse-serve.js');
const IMAGE_SIZE = 16 << 20; // when the harness made none (test-vm.sh makes 64 MiB)
const BLOCKS = 2048; // the load's 8 MiB; the rest of the image must stay zero
const SWITCHES = Number(process.env.VDPA_HANDOVER_SWITCHES ?? 20);

/** A Node VDUSE blk device on `img` in its own process; resolves to its /dev/vhost-vdpa-N and a stop. */
async function serveB(img: string): Promise<{ path: string; stop: () => Promise<void> }> {
  const proc = spawn(process.execPath, [SERVE, 'hoB', 'vhost_vdpa', `file=${img}`, 'numQueues=1', 'queueSize=256'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const dev = await within(
    new Promise<string>((resolve, reject) => {
      proc.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
      });
      void exited.then((code) => reject(new Error(`vduse-serve exited ${code}: ${err}`)));
    }),
    120_000,
    'vduse-serve start',
  );
  return {
    path: dev,
    stop: async () => {
      proc.kill('SIGTERM');
      assert.equal(await within(exited, 120_000, 'vduse-serve closing'), 0, `vduse-serve: ${err}`);
    },
  };
}

if (!IN_VM) {
  test('vm hand-over', { skip: SKIP_REASON }, () => {});
} else {
  test('hand-over A (qemu-storage-daemon) -> B (Node VDUSE) -> restarted A under load', async () => {
    const img = image('handover.img', IMAGE_SIZE);
    const seed = Number(process.env.VDPA_HANDOVER_SEED ?? (Date.now() ^ (process.pid << 8)) >>> 0);
    console.log(`# hand-over seed ${seed}`);
    let devA = startBlk('hoA', img, 1, 256);
    const b = await serveB(img);
    const blk = await openBlk(devA, { queueSize: 64 });
    const load = startLoad(blk, seed, BLOCKS);
    const results: HandOverResult[] = [];
    const events: HandOverResult[] = [];
    blk.on('handOver', (r) => events.push(r));
    try {
      await progress(load, 2000);
      // (1) A -> B
      results.push(await within(blk.handOver(b.path), 120_000, 'hand-over A -> B'));
      assert.equal(blk.device.path, b.path);
      await progress(load, 2000);
      // (2) the "driver upgrade": qemu-storage-daemon stopped, started again, A re-created.
      stopBlk('hoA');
      await progress(load, 1000);
      devA = startBlk('hoA', img, 1, 256);
      await progress(load, 1000);
      // (3) B -> the new A
      results.push(await within(blk.handOver(devA), 120_000, 'hand-over B -> A'));
      assert.equal(blk.device.path, devA);
      await progress(load, 2000);
      // The benchmark: SWITCHES more, alternating, under the same load.
      const pauses: number[] = [];
      for (let i = 0; i < SWITCHES; i++) {
        const to = i % 2 === 0 ? b.path : devA;
        const r = await within(blk.handOver(to), 120_000, `hand-over ${i} -> ${to}`);
        results.push(r);
        pauses.push(r.pausedMs);
        await progress(load, 300);
      }
      if (pauses.length > 0)
        console.log(
          `# handover pause over ${pauses.length} switches: median ${median(pauses).toFixed(2)} ms, max ${Math.max(...pauses).toFixed(2)} ms; methods ${[...new Set(results.map((r) => r.method))].join(',')}; reissued total ${results.reduce((n, r) => n + r.reissued, 0)}; requests ${load.done}`,
        );
    } finally {
      await load.stop();
      await blk.close();
      await b.stop();
      stopBlk('hoA');
    }
    assert.deepEqual(load.failures, [], 'no request failed');
    assert.deepEqual(load.mismatches, [], 'every read matched the model');
    assert.deepEqual(events, results, "every hand-over emitted 'handOver'");
    for (const r of results) assert.equal(r.method, 'drain', 'VDUSE offers no suspend: each old device was drained');
    writeManifest('handover', img, load.version, seed);
  });
}
