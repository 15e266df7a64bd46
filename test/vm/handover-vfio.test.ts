// Hand-over between two VFIO functions in the guest (issue 12): two virtio-blk-pci functions on one
// image file (QEMU share-rw=on; serials ho-vfio-a and ho-vfio-b, added by scripts/vm/test-vm.sh), both
// bound to vfio-pci here. A seeded random write/read load at depth 32 runs while the driver moves
// A -> B -> A and then 20 more times; zero failed requests, every read matches the model, and the host
// checks every byte of handover-vfio.img (manifest handover-vfio.json). VFIO offers no suspend: each
// old function is drained. The pause per switch is printed as '# handover-vfio pause ...'.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { openBlk, type HandOverResult } from '../../lib';
import { progress, startLoad } from '../helpers/blk-load';
import { median, writeManifest } from './handover-oracle';
import { PCI, bindVfio } from './vfio-env';
import { IN_VM, SKIP_REASON, image, within } from './vm-env';

const BLOCKS = 2048;
const SWITCHES = Number(process.env.VDPA_HANDOVER_SWITCHES ?? 20);

/** The virtio-blk-pci function whose disk has `serial` (read while virtio-pci still has it). */
function functionWithSerial(serial: string): string {
  for (const bdf of fs.readdirSync(PCI)) {
    const dir = `${PCI}/${bdf}`;
    for (const v of fs.readdirSync(dir).filter((n) => n.startsWith('virtio'))) {
      const blockDir = `${dir}/${v}/block`;
      if (!fs.existsSync(blockDir)) continue;
      for (const disk of fs.readdirSync(blockDir))
        if (fs.readFileSync(`${blockDir}/${disk}/serial`, 'utf8').trim() === serial) return bdf;
    }
  }
  throw new Error(`no virtio-blk-pci function with serial ${serial}: boot with scripts/vm/test-vm.sh`);
}

if (!IN_VM) {
  test('vm hand-over between VFIO functions', { skip: SKIP_REASON }, () => {});
} else {
  test('hand-over between two VFIO virtio-blk-pci functions on one image, under load', async () => {
    const img = image('handover-vfio.img');
    const a = `vfio:${functionWithSerial('ho-vfio-a')}`;
    const b = `vfio:${functionWithSerial('ho-vfio-b')}`;
    for (const f of [a, b]) bindVfio(f.slice('vfio:'.length));
    const seed = Number(process.env.VDPA_HANDOVER_SEED ?? (Date.now() ^ (process.pid << 8)) >>> 0);
    console.log(`# hand-over (VFIO) seed ${seed}`);
    const blk = await openBlk(a, { queueSize: 64 });
    const load = startLoad(blk, seed, BLOCKS);
    const results: HandOverResult[] = [];
    try {
      await progress(load, 2000);
      results.push(await within(blk.handOver(b), 120_000, 'hand-over A -> B'));
      assert.equal(blk.device.path, b);
      await progress(load, 2000);
      results.push(await within(blk.handOver(a), 120_000, 'hand-over B -> A'));
      assert.equal(blk.device.path, a);
      const pauses: number[] = [];
      for (let i = 0; i < SWITCHES; i++) {
        const r = await within(blk.handOver(i % 2 === 0 ? b : a), 120_000, `hand-over ${i}`);
        results.push(r);
        pauses.push(r.pausedMs);
        await progress(load, 300);
      }
      if (pauses.length > 0)
        console.log(
          `# handover-vfio pause over ${pauses.length} switches: median ${median(pauses).toFixed(2)} ms, max ${Math.max(...pauses).toFixed(2)} ms; reissued total ${results.reduce((n, r) => n + r.reissued, 0)}; requests ${load.done}`,
        );
    } finally {
      await load.stop();
      await blk.close();
    }
    assert.deepEqual(load.failures, [], 'no request failed');
    assert.deepEqual(load.mismatches, [], 'every read matched the model');
    for (const r of results) assert.equal(r.method, 'drain');
    writeManifest('handover-vfio', img, load.version, seed);
  });
}
