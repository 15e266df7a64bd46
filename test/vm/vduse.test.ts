// A virtio-blk device served by this library through VDUSE, with the kernel's own virtio_blk (through
// virtio_vdpa) as its driver: mkfs.ext4, mount, files written, unmount, e2fsck clean; then the device is
// made again on the same image, read-only, and the files read back. After the guest exits, test-vm.sh
// checks the image on the host without the library (e2fsck, debugfs) against vduse-ext4.expected.json.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { VdpaError, createVduseBlk, getDevice, openBlk, type VduseBlkDevice } from '../../lib';
import { IN_VM, ROOT, SKIP_REASON, fillRandom, image, prng, resultsDir, within } from './vm-env';

const NAME = 'nodeblk0';
const SERVE = path.join(ROOT, 'dist', 'test', 'vm', 'vduse-serve.js');
const MNT = '/tmp/vduse-mnt';
const HELLO = 'hello from a virtio-blk device written in Node\n';
const T = { timeout: 300_000 };

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

function unmountQuietly(): void {
  spawnSync('umount', [MNT], { stdio: 'ignore', timeout: 60_000 });
}

function sysBlock(dev: string, file: string): string {
  return fs.readFileSync(path.join('/sys/block', path.basename(dev), file), 'utf8').trim();
}

async function closeQuietly(disk: VduseBlkDevice): Promise<void> {
  unmountQuietly();
  await within(disk.close(), 120_000, 'close').catch((e: unknown) => console.log(`# close failed: ${String(e)}`));
}

/** mkfs.ext4 on DEV, mount, the test's files written, unmount, e2fsck -fn clean; mounted again, read back. */
function ext4RoundTrip(dev: string, data: Uint8Array): void {
  run('mkfs.ext4', ['-q', '-F', '-L', 'nodevduse', dev]);
  fs.mkdirSync(MNT, { recursive: true });
  run('mount', ['-t', 'ext4', dev, MNT]);
  try {
    fs.writeFileSync(path.join(MNT, 'hello.txt'), HELLO);
    fs.mkdirSync(path.join(MNT, 'dir'));
    fs.writeFileSync(path.join(MNT, 'dir', 'data.bin'), data);
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(MNT, 'dir', `small-${i}`), `file ${i}\n`.repeat(i + 1));
    run('sync', []);
  } finally {
    run('umount', [MNT]);
  }
  // -f: check even though it is clean; -n: change nothing. Exit 0 only when nothing is wrong.
  const fsck = spawnSync('e2fsck', ['-fn', dev], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(fsck.status, 0, `e2fsck -fn ${dev}: ${fsck.stdout}${fsck.stderr}`);
  // Read back through a fresh mount (the page cache dropped with the unmount).
  run('mount', ['-t', 'ext4', '-o', 'ro', dev, MNT]);
  try {
    assert.equal(fs.readFileSync(path.join(MNT, 'hello.txt'), 'utf8'), HELLO);
    assert.ok(Buffer.from(data).equals(fs.readFileSync(path.join(MNT, 'dir', 'data.bin'))), 'data.bin read back');
  } finally {
    run('umount', [MNT]);
  }
}

/** /sys/block/DEV/size once it reads `want` sectors (the kernel resizes from a work queue), or what it says after 20 s. */
async function sysfsSize(dev: string, want: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  let now = Number(sysBlock(dev, 'size'));
  while (now !== want && Date.now() < deadline) {
    await sleep(50);
    now = Number(sysBlock(dev, 'size'));
  }
  return now;
}

/** An image in the results dir made anew (sparse, all zeroes): a run before may have left one. */
function freshImage(name: string, size: number): string {
  fs.rmSync(path.join(resultsDir(), name), { force: true });
  return image(name, size);
}

/** The capacity field of a blk device's config space, in bytes. */
function configCapacity(blk: { device: { readConfig(offset: number, length: number): Uint8Array } }): number {
  return Number(Buffer.from(blk.device.readConfig(0, 8)).readBigUInt64LE(0)) * 512;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function dmesgTail(lines: number): string {
  const r = spawnSync('dmesg', [], { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout ?? '').trim().split('\n').slice(-lines).join(' | ');
}

interface Served {
  proc: ReturnType<typeof spawn>;
  /** The first line vduse-serve.js prints: the block device or vhost node. */
  device: Promise<string>;
  exited: Promise<number | null>;
  stderr(): string;
  /** SIGTERM, and its exit code must be 0 (it closed the device). */
  stop(): Promise<void>;
}

/** Runs test/vm/vduse-serve.ts with ARGS: a Node VDUSE device in its own process. */
function serve(args: string[]): Served {
  const proc = spawn(process.execPath, [SERVE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const device = new Promise<string>((resolve, reject) => {
    proc.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
    });
    void exited.then((code) => reject(new Error(`vduse-serve ${args.join(' ')} exited ${code}: ${err}`)));
  });
  device.catch(() => undefined);
  return {
    proc,
    device,
    exited,
    stderr: () => err,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      assert.equal(await within(exited, 120_000, 'vduse-serve closing'), 0, `vduse-serve: ${err}`);
    },
  };
}

describe('VDUSE blk served by Node, the kernel virtio_blk as its driver', { skip: IN_VM ? false : SKIP_REASON }, () => {
  const data = new Uint8Array(3 << 20);
  fillRandom(prng(0x5eed), data);
  const dataSha = crypto.createHash('sha256').update(data).digest('hex');

  test('file-backed: mkfs.ext4, files, e2fsck clean; stats count the requests', T, async () => {
    const img = image('vduse-ext4.img', 64 << 20);
    const disk = await createVduseBlk({ name: NAME, file: img, numQueues: 2, queueSize: 128, serial: 'node-vduse-0' });
    try {
      assert.equal(disk.name, NAME);
      assert.equal(disk.capacity, 64 << 20);
      const entry = await within(disk.attach('virtio_vdpa'), 120_000, 'attach');
      const dev = entry.blockDevice ?? '';
      assert.match(dev, /^\/dev\/vd[a-z]+$/, `blockDevice ${String(entry.blockDevice)}`);
      assert.equal(entry.driver, 'virtio_vdpa');
      assert.equal(entry.mgmtDev, 'vduse');
      assert.equal(sysBlock(dev, 'serial'), 'node-vduse-0');
      assert.equal(Number(sysBlock(dev, 'size')) * 512, 64 << 20);
      assert.equal(sysBlock(dev, 'ro'), '0');
      // Two request queues: the kernel made two hardware contexts.
      assert.equal(fs.readdirSync(path.join('/sys/block', path.basename(dev), 'mq')).length, 2);

      ext4RoundTrip(dev, data);

      const stats = disk.stats;
      assert.equal(stats.length, 2);
      const total = stats.reduce((a, s) => a + s.requests, 0);
      const read = stats.reduce((a, s) => a + s.readBytes, 0);
      assert.ok(total > 0, 'requests counted');
      assert.ok(read > data.length, `bytes the driver sent (${read}) include the data file`);
      console.log(`# stats after mkfs/mount/write/e2fsck: ${JSON.stringify(stats)}`);

      // The name is the kernel's: a second device of the same name is EEXIST, with a hint.
      await assert.rejects(
        createVduseBlk({ name: NAME, capacity: 1 << 20 }),
        (e: unknown) => e instanceof VdpaError && e.code === 'EEXIST' && /exists/.test(e.hint ?? ''),
      );
    } finally {
      await closeQuietly(disk);
    }
    assert.equal(await getDevice(NAME), undefined, 'the vdpa device is gone after close()');
    assert.equal(fs.existsSync(`/dev/vduse/${NAME}`), false, 'the VDUSE device is gone after close()');
    fs.writeFileSync(
      path.join(resultsDir(), 'vduse-ext4.expected.json'),
      JSON.stringify({ image: img, files: { '/hello.txt': HELLO }, sha256: { '/dir/data.bin': dataSha } }),
    );
  });

  test('a JS handler RAM disk served by another process: ext4 round trip through the handler', T, async () => {
    const served = serve([
      'nodeblk2',
      'virtio_vdpa',
      `capacity=${32 << 20}`,
      'numQueues=2',
      'serial=node-js',
      'handler=js',
    ]);
    try {
      const dev = await within(served.device, 120_000, 'vduse-serve attaching');
      assert.match(dev, /^\/dev\/vd[a-z]+$/);
      assert.equal(sysBlock(dev, 'serial'), 'node-js');
      ext4RoundTrip(dev, data.subarray(0, 1 << 20));
    } finally {
      unmountQuietly();
      await served.stop();
    }
    const err = served.stderr();
    console.log(`# ${err.trim().split('\n').join('; ')}`);
    const calls = JSON.parse(/handler calls (\{.*\})/.exec(err)?.[1] ?? '{}') as Record<string, number>;
    assert.ok((calls.read ?? 0) > 0 && (calls.write ?? 0) > 0, `the handler read and wrote: ${err}`);
  });

  test(
    'the device process SIGKILLed under fio: the I/O waits; a new process reconnects, fio --verify passes',
    T,
    async () => {
      const img = image('vduse-kill.img', 64 << 20);
      const first = serve(['nodeblk3', 'virtio_vdpa', `file=${img}`]);
      const dev = await within(first.device, 120_000, 'vduse-serve attaching');
      const fio = spawn(
        'fio',
        [
          '--name=kill',
          `--filename=${dev}`,
          '--direct=1',
          '--ioengine=io_uring',
          '--iodepth=32',
          '--rw=randwrite',
          '--bs=4k',
          '--size=32M',
          '--verify=crc32c',
          '--verify_fatal=1',
          '--do_verify=1',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let fioOut = '';
      fio.stdout.on('data', (b: Buffer) => (fioOut += b.toString()));
      fio.stderr.on('data', (b: Buffer) => (fioOut += b.toString()));
      const fioDone = new Promise<number | null>((resolve) => fio.on('exit', (code) => resolve(code)));
      let second: Served | undefined;
      try {
        await sleep(3000);
        assert.equal(fio.exitCode, null, `fio is still writing when the device dies: ${fioOut}`);
        first.proc.kill('SIGKILL');
        await within(first.exited, 30_000, 'the killed device process exiting');
        // Nobody answers the kernel now: the requests in flight stay in flight (virtio_blk has no
        // timeout), and fio waits.
        await sleep(5000);
        assert.equal(fio.exitCode, null, 'fio waits for the requests the dead device had');
        console.log(`# after SIGKILL: fio still waiting; kernel: ${dmesgTail(12)}`);
        second = serve(['nodeblk3', 'virtio_vdpa', `file=${img}`, 'reconnect=1']);
        assert.equal(await within(second.device, 60_000, 'reconnecting'), dev, 'the same block device is served');
        const code = await within(fioDone, 240_000, 'fio finishing after the reconnect');
        assert.equal(code, 0, `fio --verify after the reconnect: ${fioOut}`);
        console.log(`# fio after the reconnect: ${/WRITE:.*$/m.exec(fioOut)?.[0] ?? ''}`);
      } finally {
        if (fio.exitCode === null) fio.kill('SIGKILL');
        await second?.stop();
      }
      assert.equal(await getDevice('nodeblk3'), undefined, 'the vdpa device is gone after the second close()');
    },
  );

  test('driver and device in one process: openBlk over vhost_vdpa on a Node VDUSE RAM disk', T, async () => {
    const vendorId = 0x1af4; // any non-zero id: qemu-storage-daemon's devices report 0
    await using disk = await createVduseBlk({
      name: 'nodeblk4',
      capacity: 16 << 20,
      numQueues: 2,
      queueSize: 64,
      vendorId,
    });
    const { path: node } = await within(disk.attach('vhost_vdpa'), 120_000, 'attach');
    assert.match(node ?? '', /^\/dev\/vhost-vdpa-\d+$/);
    const blk = await within(openBlk(node ?? '', { numQueues: 2, queueSize: 64 }), 60_000, 'openBlk');
    // Four times the rings' worth in flight at once: the device thread must answer while this thread waits.
    const n = 4 * 64 * 2;
    try {
      assert.equal(blk.capacity, 16 << 20);
      // The vhost uAPI has no vendor id: the library asks VDPA_CMD_DEV_GET for the device behind the node.
      assert.equal(blk.device.vendorId, vendorId);
      const bufs = Array.from({ length: n }, (_, i) => {
        const b = i % 2 ? blk.allocBuffer(4096) : new Uint8Array(4096);
        b.set(data.subarray(i * 4096, (i + 1) * 4096));
        return b;
      });
      await within(Promise.all(bufs.map((b, i) => blk.write(i * 8192, b))), 120_000, 'writes');
      await within(blk.flush(), 30_000, 'flush');
      for (const b of bufs) b.fill(0);
      await within(Promise.all(bufs.map((b, i) => blk.read(i * 8192, b))), 120_000, 'reads');
      bufs.forEach((b, i) => assert.ok(Buffer.from(b).equals(data.subarray(i * 4096, (i + 1) * 4096)), `block ${i}`));
    } finally {
      await blk.close();
    }
    const served = disk.stats.reduce((a, s) => a + s.requests, 0);
    assert.ok(served >= 2 * n, `the device served the ${2 * n} requests (stats: ${served})`);
  });

  test('a reset while the device holds a request is answered at once: openBlk closes, the read fails', T, async () => {
    // Another process serves the disk with a JS handler that never answers reads; the driver here
    // gives up on the read when it closes, and its reset reaches the device while the read is held.
    const served = serve(['nodeblk5', 'vhost_vdpa', `capacity=${16 << 20}`, 'handler=js-hold']);
    try {
      const node = await within(served.device, 120_000, 'vduse-serve attaching');
      const blk = await within(openBlk(node, { queueSize: 64 }), 60_000, 'openBlk');
      const read = blk.read(0, new Uint8Array(4096));
      read.catch(() => undefined);
      await sleep(1000);
      // qemu-storage-daemon leaves such a reset unanswered until the kernel gives up (about 30 s).
      await within(blk.close(), 20_000, 'close (reset) with a read held by the device');
      await assert.rejects(read);
    } finally {
      await served.stop();
    }
    const calls = JSON.parse(/handler calls (\{.*\})/.exec(served.stderr())?.[1] ?? '{}') as Record<string, number>;
    assert.ok((calls.read ?? 0) >= 1, `the read reached the handler: ${served.stderr()}`);
  });

  for (const backend of ['RAM', 'file'] as const)
    test(`${backend}-backed, 4 queues: fio --verify=crc32c at depth 32 (io_uring, O_DIRECT)`, T, async () => {
      // The file backend runs its requests on I/O threads and answers them in ring order per queue.
      const where = backend === 'RAM' ? { capacity: 64 << 20 } : { file: freshImage('vduse-verify.img', 64 << 20) };
      await using disk = await createVduseBlk({ name: 'nodeblk1', ...where, numQueues: 4, queueSize: 256 });
      const { blockDevice } = await within(disk.attach('virtio_vdpa'), 120_000, 'attach');
      const dev = blockDevice ?? '';
      assert.match(dev, /^\/dev\/vd[a-z]+$/);
      // Random writes of 4 to 128 KiB, each block carrying a crc32c header, then all read back and checked.
      const fio = spawnSync(
        'fio',
        [
          '--name=verify',
          `--filename=${dev}`,
          '--direct=1',
          '--ioengine=io_uring',
          '--iodepth=32',
          '--rw=randwrite',
          '--bsrange=4k-128k',
          '--size=32M',
          '--verify=crc32c',
          '--verify_fatal=1',
          '--do_verify=1',
          '--output-format=json',
        ],
        { encoding: 'utf8', timeout: 240_000 },
      );
      assert.equal(fio.status, 0, `fio exited ${fio.status}: ${fio.stderr}${fio.stdout.slice(-2000)}`);
      const job = (JSON.parse(fio.stdout) as { jobs: { error: number; write: { io_bytes: number; iops: number } }[] })
        .jobs[0];
      assert.ok(job, 'fio reported a job');
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, 32 << 20, 'fio wrote the whole range');
      const stats = disk.stats;
      console.log(`# fio verify: write ${Math.round(job.write.iops)} IOPS; stats ${JSON.stringify(stats)}`);
      const sent = stats.reduce((a, s) => a + s.readBytes, 0);
      assert.ok(sent >= 32 << 20, `the device received the 32 MiB fio wrote (stats say ${sent} bytes)`);
    });

  test('resize on virtio_vdpa: the file grows, the kernel sees the new size; bad sizes refused', T, async () => {
    const img = freshImage('vduse-resize.img', 32 << 20);
    await using disk = await createVduseBlk({ name: 'nodeblk6', file: img });
    const { blockDevice } = await within(disk.attach('virtio_vdpa'), 120_000, 'attach');
    const dev = blockDevice ?? '';
    assert.match(dev, /^\/dev\/vd[a-z]+$/);
    assert.equal(Number(sysBlock(dev, 'size')), (32 << 20) / 512);

    await within(disk.resize(96 << 20), 30_000, 'resize up');
    assert.equal(disk.capacity, 96 << 20);
    assert.equal(fs.statSync(img).size, 96 << 20, 'the file grew');
    // The config interrupt reaches virtio_blk, which resizes the disk from a work queue.
    assert.equal(await sysfsSize(dev, (96 << 20) / 512), (96 << 20) / 512, '/sys/block size after growing');
    console.log(`# kernel: ${dmesgTail(3)}`);
    // The new end is usable: a block written there through the kernel comes back from the file.
    const block = Buffer.alloc(4096, 0xa5);
    const at = (96 << 20) - 4096;
    const fd = fs.openSync(dev, 'r+');
    try {
      assert.equal(fs.writeSync(fd, block, 0, 4096, at), 4096);
      fs.fsyncSync(fd); // through the page cache of /dev/vdX to the device
    } finally {
      fs.closeSync(fd);
    }
    const back = Buffer.alloc(4096);
    const imgFd = fs.openSync(img, 'r');
    fs.readSync(imgFd, back, 0, 4096, at);
    fs.closeSync(imgFd);
    assert.ok(back.equals(block), 'the block past the old end is in the file');

    assert.throws(() => disk.resize(1000), RangeError, 'not whole sectors');
    assert.throws(() => disk.resize(0), RangeError, 'zero');
    assert.throws(() => disk.resize('1G' as never), TypeError, 'a string');
    assert.throws(() => disk.resize(64 << 20, { shrink: 'yes' as never }), TypeError, 'shrink a string');
    await assert.rejects(disk.resize(64 << 20), RangeError, 'shrinking without { shrink: true }');
    assert.equal(disk.capacity, 96 << 20);

    await within(disk.resize(64 << 20, { shrink: true }), 30_000, 'resize down');
    assert.equal(await sysfsSize(dev, (64 << 20) / 512), (64 << 20) / 512, '/sys/block size after shrinking');
    assert.equal(fs.statSync(img).size, 96 << 20, 'shrinking leaves the file as it was');
    await disk.close();
    await assert.rejects(disk.resize(128 << 20), (e: unknown) => e instanceof VdpaError && e.code === 'EBADF');
  });

  test(
    'resize over vhost_vdpa: the config space openBlk reads holds the new capacity; RAM keeps its data',
    T,
    async () => {
      await using disk = await createVduseBlk({ name: 'nodeblk7', capacity: 16 << 20 });
      const { path: node } = await within(disk.attach('vhost_vdpa'), 120_000, 'attach');
      const blk = await within(openBlk(node ?? '', { queueSize: 64 }), 60_000, 'openBlk');
      try {
        assert.equal(configCapacity(blk), 16 << 20);
        const b = blk.allocBuffer(4096);
        b.fill(7);
        await within(blk.write(8192, b), 30_000, 'write');
        await within(disk.resize(48 << 20), 30_000, 'resize');
        // VHOST_VDPA_GET_CONFIG reads the kernel's copy, which VDUSE_DEV_SET_CONFIG replaced.
        assert.equal(configCapacity(blk), 48 << 20, 'the config space holds the new capacity');
        await within(disk.resize(8 << 20, { shrink: true }), 30_000, 'shrink');
        assert.equal(configCapacity(blk), 8 << 20);
        b.fill(0);
        await within(blk.read(8192, b), 30_000, 'read');
        assert.ok(
          b.every((v) => v === 7),
          'the RAM disk kept its data across the remaps',
        );
      } finally {
        await blk.close();
      }
    },
  );

  test("resize over vhost_vdpa: openBlk's configChange event fires and blk.capacity follows", T, async () => {
    await using disk = await createVduseBlk({ name: 'nodeblk8', capacity: 16 << 20 });
    const { path: node } = await within(disk.attach('vhost_vdpa'), 120_000, 'attach');
    const blk = await within(openBlk(node ?? '', { queueSize: 64 }), 60_000, 'openBlk');
    try {
      const changed = new Promise<void>((resolve) => blk.once('configChange', resolve));
      await within(disk.resize(48 << 20), 30_000, 'resize');
      await within(changed, 10_000, "openBlk's configChange event");
      assert.equal(blk.capacity, 48 << 20);
    } finally {
      await blk.close();
    }
  });

  test('made again on the same image, read-only: the files are still there', T, async () => {
    const img = image('vduse-ext4.img');
    await using disk = await createVduseBlk({ name: NAME, file: img, readOnly: true, serial: 'node-vduse-ro' });
    const { blockDevice } = await within(disk.attach('virtio_vdpa'), 120_000, 'attach');
    const dev = blockDevice ?? '';
    assert.match(dev, /^\/dev\/vd[a-z]+$/);
    assert.equal(sysBlock(dev, 'ro'), '1', 'VIRTIO_BLK_F_RO made a read-only disk');
    fs.mkdirSync(MNT, { recursive: true });
    run('mount', ['-t', 'ext4', '-o', 'ro', dev, MNT]);
    try {
      assert.equal(fs.readFileSync(path.join(MNT, 'hello.txt'), 'utf8'), HELLO);
      const back = fs.readFileSync(path.join(MNT, 'dir', 'data.bin'));
      assert.equal(crypto.createHash('sha256').update(back).digest('hex'), dataSha, 'data.bin read back');
      for (let i = 0; i < 20; i++)
        assert.equal(fs.readFileSync(path.join(MNT, 'dir', `small-${i}`), 'utf8'), `file ${i}\n`.repeat(i + 1));
    } finally {
      unmountQuietly();
    }
    const fsck = spawnSync('e2fsck', ['-fn', dev], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(fsck.status, 0, `e2fsck -fn ${dev}: ${fsck.stdout}${fsck.stderr}`);
  });
});
