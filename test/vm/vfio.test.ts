// VFIO in the VM: virtio-pci functions (QEMU virtio-blk-pci split + packed, a virtio-net-pci pair)
// bound to vfio-pci by scripts/vm/guest-tests.sh, driven by the library as their only driver.
//  - data oracle: random extents on both blk functions at once, read back here, manifests for the
//    host (scripts/vm/oracle-check.py checks each image file byte for byte after the guest exits);
//  - four functions open in one process at once (2 blk + 2 net), MAC and link from config;
//  - faults, each in a child process with a timeout: the device reset (device_status = 0 written
//    to the BAR behind the library's back) and the function unbound from vfio-pci with I/O in flight;
//  - opening a function that is not bound to vfio-pci gives a hint that says how to bind it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Feature, openBlk, openNet, type BlkDevice, type NetDevice } from '../../lib';
import { bindKernel, bindVfio, driverOf, resetFunction, vfioFunctions, type VfioFunctions } from './vfio-env';
import { IN_VM, SKIP_REASON, fillRandom, prng, resultsDir, runFaultChild, within, type FaultChildRun } from './vm-env';

const MiB = 1 << 20;
const CHUNK = 2 * MiB;
const EXTENTS = 16;
const IN_FLIGHT = 4;
const SCRATCH = 4 * MiB; // the fault child's zero writes go to the last 4 MiB; the oracle stays out of it
const MACS = ['52:54:00:12:34:50', '52:54:00:12:34:51']; // scripts/vm/run.sh --net-pair

interface Extent {
  offset: number;
  length: number;
  dataOffset: number;
  kind: 'dma' | 'plain' | 'plain-subarray';
  sha256: string;
}

async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

const hex = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

/** Writes random extents to BLK, reads them back, checks; saves data + manifest for the host. */
async function oracle(blk: BlkDevice, serial: string, seed: number): Promise<string> {
  const res = resultsDir();
  const img = path.join(res, `${serial}.img`);
  const imageSize = fs.statSync(img).size;
  assert.equal(blk.capacity, imageSize, `${blk.device.path}: capacity vs ${img}`);
  // The blk conformance suites ran on this function first: make the whole image zero again
  // (1 MiB zero writes, through the library), so the host can require zeroes outside the extents.
  const zeroes = blk.allocBuffer(MiB).fill(0);
  const starts = Array.from({ length: Math.ceil(imageSize / MiB) }, (_, i) => i * MiB);
  await pool(starts, IN_FLIGHT, (at) =>
    blk.write(at, at + MiB <= imageSize ? zeroes : zeroes.subarray(0, imageSize - at)),
  );
  await blk.flush();
  blk.device.freeBuffer(zeroes);
  const rnd = prng(seed);
  const usable = Math.floor((imageSize - SCRATCH) / CHUNK);
  const chunks = Array.from({ length: usable }, (_, i) => i);
  for (let i = chunks.length - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    [chunks[i], chunks[j]] = [chunks[j] as number, chunks[i] as number];
  }
  const extents: Extent[] = [];
  let dataOffset = 0;
  for (let i = 0; i < EXTENTS; i++) {
    const length = i === 0 ? 1.5 * MiB : 4096 * (1 + (rnd() % 128));
    const offset = (chunks[i] as number) * CHUNK + 4096 * (rnd() % ((CHUNK - length) / 4096 + 1));
    const kind = i % 3 === 0 ? 'dma' : i % 3 === 1 ? 'plain' : 'plain-subarray';
    extents.push({ offset, length, dataOffset, kind, sha256: '' });
    dataOffset += length;
  }
  const data = new Uint8Array(dataOffset);
  fillRandom(rnd, data);
  for (const e of extents)
    e.sha256 = createHash('sha256')
      .update(data.subarray(e.dataOffset, e.dataOffset + e.length))
      .digest('hex');
  const bufferFor = (e: Extent): Uint8Array => {
    if (e.kind === 'dma') return blk.allocBuffer(e.length);
    if (e.kind === 'plain') return new Uint8Array(e.length);
    return new Uint8Array(e.length + 1024).subarray(512, 512 + e.length);
  };
  await pool(extents, IN_FLIGHT, async (e) => {
    const buf = bufferFor(e);
    buf.set(data.subarray(e.dataOffset, e.dataOffset + e.length));
    await blk.write(e.offset, buf);
    if (e.kind === 'dma') blk.device.freeBuffer(buf);
  });
  await blk.flush();
  await pool(extents, IN_FLIGHT, async (e) => {
    const buf = bufferFor(e).fill(0xa5);
    await blk.read(e.offset, buf);
    const want = data.subarray(e.dataOffset, e.dataOffset + e.length);
    if (Buffer.compare(Buffer.from(buf.buffer, buf.byteOffset, buf.length), Buffer.from(want)) !== 0)
      assert.fail(
        `${serial}: extent @${e.offset} (+${e.length}, ${e.kind}) differs at byte ${buf.findIndex((v, k) => v !== want[k])}`,
      );
    if (e.kind === 'dma') blk.device.freeBuffer(buf);
  });
  const unused = (chunks[EXTENTS] as number) * CHUNK;
  const zero = blk.allocBuffer(64 * 1024).fill(0x5a);
  await blk.read(unused, zero);
  assert.ok(
    zero.every((v) => v === 0),
    `${serial}: never-written range @${unused} does not read as zeroes`,
  );
  blk.device.freeBuffer(zero);

  const dataFile = path.join(res, `oracle-${serial}-data.bin`);
  fs.writeFileSync(dataFile, data);
  const manifest = {
    seed,
    prng: 'mulberry32, little-endian u32 words (test/vm/vm-env.ts)',
    device: blk.device.path,
    packed: Boolean(blk.device.features & Feature.RING_PACKED),
    image: img,
    imageSize,
    dataFile,
    dataSha256: createHash('sha256').update(data).digest('hex'),
    extents,
  };
  fs.writeFileSync(path.join(res, `oracle-${serial}.json`), JSON.stringify(manifest, null, 1));
  return `${serial}: ${extents.length} extents, ${(dataOffset / MiB).toFixed(2)} MiB (seed ${seed})`;
}

interface ChildResult {
  inFlightAtFault: number;
  statusAfterFault: number | string;
  settledAlone: boolean;
  pendingAtClose: number;
  closeMs: number;
  closeError?: string;
  ok: number;
  errors: { code?: string; message: string; phase: string }[];
}

/**
 * Runs vfio-fault-child.js on SPEC; once it is READY calls `fault()` (which may return a promise
 * that settles later), tells the child, and waits for it to exit by itself.
 */
async function faultInChild(spec: string, options: object, fault: () => void): Promise<FaultChildRun<ChildResult>> {
  return runFaultChild<ChildResult>('vfio-fault-child.js', [spec, JSON.stringify(options), '5000'], 'FAULT', fault, {
    hardTimeoutMs: 120_000,
    exitTimeoutMs: 90_000,
  });
}

function checkChild(spec: string, o: Awaited<ReturnType<typeof faultInChild>>, what: string): void {
  const { r } = o;
  const codes = [...new Set(r.errors.map((e) => `${e.phase}:${e.code}`))];
  console.log(
    `# ${what}: ${r.inFlightAtFault} in flight at the fault, status after ${r.statusAfterFault}; settled without close: ` +
      `${r.settledAlone}; pending at close: ${r.pendingAtClose}; close() ${r.closeMs} ms; ok ${r.ok}; ` +
      `errors ${r.errors.length} [${codes.join(', ')}]; child exited ${o.code} ${o.exitMs} ms after the fault`,
  );
  if (r.errors[0]) console.log(`# first error: ${r.errors[0].message}`);
  assert.equal(o.code, 0, `child exit ${o.code}: ${o.stderr}`);
  assert.equal(r.closeError, undefined, `close() threw: ${r.closeError}`);
  if (what === 'unbind') {
    // The kernel's release request reaches the library before the parent says FAULT: the requests
    // in flight then fail with ENODEV and the library closes the device, letting the unbind finish.
    assert.ok(
      r.errors.some((e) => e.code === 'ENODEV'),
      `no request failed with ENODEV: ${JSON.stringify(r.errors.slice(0, 3))}`,
    );
  } else {
    assert.ok(r.inFlightAtFault > 0, 'nothing was in flight at the fault');
  }
  for (const e of r.errors) {
    assert.ok(e.code, `error without a code: ${e.message}`);
    assert.ok(e.message.includes(spec), `error does not name the device: ${e.message}`);
  }
  // A hang guard, not a speed check (close() waits at most 1 s for the device before resetting it).
  assert.ok(r.closeMs < 20_000, `close() took ${r.closeMs} ms`);
}

/** Open + one write/read round trip: the function works again. */
async function usable(spec: string, options: object): Promise<void> {
  const blk = await openBlk(spec, options);
  try {
    const at = blk.capacity - 4096; // inside the fault scratch range: zeroes only
    const b = blk.allocBuffer(4096).fill(0);
    await within(blk.write(at, b), 30_000, `${spec}: write after the fault`);
    b.fill(0x77);
    await within(blk.read(at, b), 30_000, `${spec}: read after the fault`);
    assert.ok(b.every((v) => v === 0));
  } finally {
    await blk.close();
  }
}

if (!IN_VM) {
  it('vm vfio', { skip: SKIP_REASON }, () => {});
} else {
  describe('vm vfio: virtio-pci functions bound to vfio-pci', () => {
    let fx: VfioFunctions;
    before(() => {
      fx = vfioFunctions();
      for (const b of [fx.split, fx.packed, ...fx.net]) bindVfio(b);
    });
    after(() => {
      // leave them as guest-tests.sh expects: bound to vfio-pci
      for (const b of [fx.split, fx.packed, ...fx.net]) if (driverOf(b) !== 'vfio-pci') bindVfio(b);
    });

    it('data oracle: random extents on the split and the packed function at once, manifests for the host', async () => {
      const seed0 = Number(process.env.VDPA_ORACLE_SEED ?? (Date.now() ^ (process.pid << 8)) >>> 0);
      const split = await openBlk(`vfio:${fx.split}`, { numQueues: 2, queueSize: 128 });
      const packed = await openBlk(`vfio:${fx.packed}`, { numQueues: 2, queueSize: 128, packed: true });
      try {
        assert.equal(split.device.transport, 'vfio');
        assert.equal(
          await within(split.getId(), 30_000, 'getId'),
          'vfio-split',
          `${fx.split} is not the split function`,
        );
        assert.equal(
          await within(packed.getId(), 30_000, 'getId'),
          'vfio-packed',
          `${fx.packed} is not the packed function`,
        );
        assert.equal(split.device.features & Feature.RING_PACKED, 0n, 'split function negotiated RING_PACKED');
        assert.ok(packed.device.features & Feature.RING_PACKED, 'packed: true did not negotiate RING_PACKED');
        const lines = await within(
          Promise.all([oracle(split, 'vfio-split', seed0), oracle(packed, 'vfio-packed', (seed0 + 1) >>> 0)]),
          240_000,
          'oracle on both functions',
        );
        for (const l of lines) console.log(`# oracle ${l}`);
      } finally {
        await split.close();
        await packed.close();
      }
    });

    it('two blk and two net functions open in one process at once; MAC and link from config', async () => {
      const a = await openBlk(`vfio:${fx.split}`);
      const b = await openBlk(`vfio:${fx.packed}`, { packed: true });
      const n0 = await openNet(`vfio:${fx.net[0]}`);
      const n1 = await openNet(`vfio:${fx.net[1]}`);
      const opened: (BlkDevice | NetDevice)[] = [a, b, n0, n1];
      try {
        assert.deepEqual([hex(n0.mac), hex(n1.mac)].sort(), MACS, 'MACs from config space');
        assert.equal(n0.linkUp, true, `${fx.net[0]} link`);
        assert.equal(n1.linkUp, true, `${fx.net[1]} link`);
        // I/O on every function at the same time: blk writes to the scratch tail (zeroes), reads
        // back; a frame each way on the wire.
        const blkIo = async (d: BlkDevice): Promise<void> => {
          const base = d.capacity - SCRATCH;
          const bufs = Array.from({ length: 32 }, () => d.allocBuffer(8192).fill(0));
          await Promise.all(bufs.map((x, i) => d.write(base + i * 8192, x)));
          for (const x of bufs) x.fill(0xee);
          await Promise.all(bufs.map((x, i) => d.read(base + i * 8192, x)));
          assert.ok(
            bufs.every((x) => x.every((v) => v === 0)),
            `${d.device.path}: read back`,
          );
        };
        const frameTo = async (from: NetDevice, to: NetDevice, tag: number): Promise<void> => {
          const f = new Uint8Array(200).fill(tag);
          f.set(to.mac, 0);
          f.set(from.mac, 6);
          f[12] = 0x88;
          f[13] = 0xb5;
          const got = (async () => {
            for (;;) {
              const r = await to.receive();
              if (r.length === f.length && r[12] === 0x88 && r[13] === 0xb5 && r[14] === tag) return r;
            }
          })();
          await from.send(f);
          assert.deepEqual(Buffer.from(await within(got, 30_000, `frame ${tag}`)), Buffer.from(f));
        };
        await within(
          Promise.all([blkIo(a), blkIo(b), frameTo(n0, n1, 0x31), frameTo(n1, n0, 0x32)]),
          120_000,
          'I/O on four functions',
        );
        // Close one; the others keep working; open it again while they are open.
        await a.close();
        await within(blkIo(b), 60_000, 'packed function after the other closed');
        const a2 = await openBlk(`vfio:${fx.split}`);
        opened.push(a2);
        await within(Promise.all([blkIo(a2), frameTo(n0, n1, 0x33)]), 60_000, 'reopened function');
      } finally {
        for (const d of opened) await d.close();
      }
    });

    it('device reset (device_status := 0 behind the driver) with I/O in flight: fails cleanly, the child exits', async () => {
      const spec = `vfio:${fx.split}`;
      let reset: { before: number; after: number } | undefined;
      const o = await faultInChild(spec, { queueSize: 64 }, () => {
        reset = resetFunction(fx.split);
      });
      console.log(`# reset: device_status ${reset?.before} -> ${reset?.after}`);
      assert.equal(reset?.before, 15, 'the function was live (ACK|DRIVER|DRIVER_OK|FEATURES_OK) before the reset');
      assert.equal(reset?.after, 0, 'reset did not complete');
      checkChild(spec, o, 'reset');
      await usable(spec, { queueSize: 64 });
    });

    it('unbound from vfio-pci with I/O in flight: fails cleanly, the child exits, the unbind completes', async () => {
      const bdf = fx.packed;
      const spec = `vfio:${bdf}`;
      let unbinder: ReturnType<typeof spawn> | undefined;
      let unbound: Promise<number | null> | undefined;
      let unboundAt = 0;
      try {
        const o = await faultInChild(spec, { queueSize: 64, packed: true }, () => {
          // The write blocks in the kernel until the device fd is released: a child of its own.
          unbinder = spawn('sh', ['-c', `echo ${bdf} > /sys/bus/pci/drivers/vfio-pci/unbind`], { stdio: 'inherit' });
          unbound = new Promise((resolve) =>
            unbinder?.on('exit', (code) => {
              unboundAt = Date.now();
              resolve(code);
            }),
          );
          // Give the kernel time to ask for the device back while requests are in flight.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
        });
        const childExit = Date.now();
        checkChild(spec, o, 'unbind');
        const code = await within(unbound as Promise<number | null>, 60_000, 'the unbind after the child exited');
        console.log(`# unbind finished ${unboundAt - childExit} ms after the child's result (exit ${code})`);
        assert.equal(code, 0, 'echo > vfio-pci/unbind failed');
        assert.equal(driverOf(bdf), undefined, `${bdf} still bound to ${driverOf(bdf)}`);
      } finally {
        if (unbinder && unbinder.exitCode === null) unbinder.kill('SIGKILL');
      }
      // An unbound function: a clear error with a hint.
      await assert.rejects(openBlk(spec), (e: NodeJS.ErrnoException & { hint?: string }) => {
        console.log(`# unbound: ${e.message}`);
        assert.ok(e.code, `no code: ${e.message}`);
        assert.match(String(e.hint), /vfio-pci/);
        return true;
      });
      bindVfio(bdf);
      await usable(spec, { queueSize: 64, packed: true });
    });

    it('a function still bound to virtio-pci: the error hint says how to bind it to vfio-pci', async () => {
      const bdf = fx.packed;
      const spec = `vfio:${bdf}`;
      bindKernel(bdf);
      try {
        assert.equal(driverOf(bdf), 'virtio-pci');
        await assert.rejects(openBlk(spec), (e: NodeJS.ErrnoException & { hint?: string; path?: string }) => {
          console.log(`# bound to virtio-pci: ${e.message}`);
          assert.ok(e.code, `no code: ${e.message}`);
          assert.equal(e.path, spec);
          assert.match(String(e.hint), /vfio-pci/, `hint: ${e.hint}`);
          assert.match(String(e.hint), /driver_override/, `hint: ${e.hint}`);
          return true;
        });
      } finally {
        bindVfio(bdf);
      }
      await usable(spec, { packed: true });
    });
  });
}
