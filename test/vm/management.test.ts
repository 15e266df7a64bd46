// vDPA management against the guest kernel: qemu-storage-daemon creates the VDUSE device, the library
// does the rest (VDPA_CMD_DEV_NEW, binding to virtio_vdpa and vhost_vdpa, deleting), with data written
// through the kernel's virtio_blk (O_DIRECT) read back through openBlk; and a virtio-blk-pci function
// moved between virtio-pci and vfio-pci, its data visible each way.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  bindDriver,
  createDevice,
  createVduseNet,
  deleteDevice,
  deviceConfig,
  deviceStats,
  getDevice,
  listDevices,
  listManagementDevices,
  openBlk,
  setDeviceAttributes,
  type VduseNetDevice,
} from '../../lib';
import { IN_VM, ROOT, SKIP_REASON, VDUSE_BLK, fillRandom, image, prng, startVduseExport, within } from './vm-env';

type Err = NodeJS.ErrnoException & { hint?: string };

/** Removes the vdpa device if left over and stops the daemon (vduse-blk.sh stop). */
function stopExport(name: string): void {
  execFileSync('timeout', ['-k', '5', '90', VDUSE_BLK, 'stop', name], { stdio: 'inherit' });
}

function dd(args: string[]): void {
  execFileSync('dd', [...args, 'status=none'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 });
}

const CHUNK = 64 * 1024;

if (!IN_VM) {
  it('vm management', { skip: SKIP_REASON }, () => {});
} else {
  describe('vm management: vdpa devices over VDUSE', () => {
    const started: string[] = [];
    after(() => {
      for (const n of started) stopExport(n);
    });

    it('listManagementDevices() shows vduse with net and blk', async () => {
      const mgmt = await listManagementDevices();
      console.log(
        `# management devices: ${JSON.stringify(mgmt, (_, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`,
      );
      const vduse = mgmt.find((m) => m.name === 'vduse');
      assert.ok(vduse, 'no vduse management device');
      assert.equal(vduse.bus, undefined);
      assert.ok(vduse.classes.includes('net') && vduse.classes.includes('blk'), `classes ${vduse.classes}`);
    });

    it('createDevice, virtio_vdpa (O_DIRECT writes on /dev/vdX), vhost_vdpa (openBlk reads them), deleteDevice', async () => {
      const name = 'mgmt0';
      const img = image('mgmt0.img');
      startVduseExport(name, img);
      started.push(name);
      const entry = await within(createDevice({ name, mgmtdev: 'vduse' }), 60_000, 'createDevice');
      assert.equal(entry.name, name);
      assert.equal(entry.mgmtDev, 'vduse');
      assert.equal(entry.deviceType, 'blk');
      assert.deepEqual(await getDevice(name), entry);

      const cfg = await deviceConfig(name);
      assert.equal(cfg.type, 'blk');
      if (cfg.type === 'blk') assert.equal(cfg.capacity, BigInt(fs.statSync(img).size / 512));

      await assert.rejects(createDevice({ name, mgmtdev: 'vduse' }), (e: Err) => {
        console.log(`# duplicate: ${e.message}`);
        return e.name === 'VdpaError' && e.code === 'EEXIST' && e.path === name && /deleteDevice/.test(e.hint ?? '');
      });

      const onKernel = await within(bindDriver(name, 'virtio_vdpa'), 60_000, 'bindDriver(virtio_vdpa)');
      assert.equal(onKernel.driver, 'virtio_vdpa');
      assert.equal(onKernel.path, undefined);
      assert.match(onKernel.blockDevice ?? '', /^\/dev\/vd[a-z]+$/);
      const pattern = new Uint8Array(CHUNK);
      fillRandom(prng(0x9e3779b9), pattern);
      const src = path.join(fs.mkdtempSync('/tmp/mgmt-'), 'pattern');
      fs.writeFileSync(src, pattern);
      dd([
        `if=${src}`,
        `of=${onKernel.blockDevice}`,
        `bs=${CHUNK}`,
        'seek=16',
        'count=1',
        'oflag=direct',
        'conv=fsync',
      ]);

      const onVhost = await within(bindDriver(name, 'vhost_vdpa'), 60_000, 'bindDriver(vhost_vdpa)');
      assert.equal(onVhost.driver, 'vhost_vdpa');
      assert.equal(onVhost.blockDevice, undefined);
      assert.match(onVhost.path ?? '', /^\/dev\/vhost-vdpa-\d+$/);
      const blk = await openBlk(onVhost.path as string, { queueSize: 64 });
      try {
        const buf = blk.allocBuffer(CHUNK);
        await within(blk.read(16 * CHUNK, buf), 30_000, 'read through vhost-vdpa');
        assert.ok(
          Buffer.from(buf).equals(Buffer.from(pattern)),
          'bytes written through /dev/vdX differ from what openBlk read',
        );
        // Held open: taking the device away would block in the kernel; the library refuses instead.
        await assert.rejects(within(deleteDevice(name), 20_000, 'deleteDevice while open'), (e: Err) => {
          console.log(`# in use: ${e.message}`);
          return e.code === 'EBUSY';
        });
        await assert.rejects(
          within(bindDriver(name, 'virtio_vdpa'), 20_000, 'bind while open'),
          (e: Err) => e.code === 'EBUSY',
        );
      } finally {
        await blk.close();
      }

      await assert.rejects(deviceStats(name, 0), (e: Err) => {
        console.log(`# vstats: ${e.message}`);
        return e.name === 'VdpaError' && typeof e.code === 'string' && /VDPA_CMD_DEV_VSTATS_GET/.test(e.syscall ?? '');
      });
      await assert.rejects(setDeviceAttributes(name, { mac: '52:54:00:00:00:09' }), (e: Err) => {
        console.log(`# attr set: ${e.message}`);
        return e.name === 'VdpaError' && e.code === 'EOPNOTSUPP';
      });

      await within(deleteDevice(name), 60_000, 'deleteDevice');
      assert.equal(await getDevice(name), undefined);
      assert.ok(!(await listDevices()).some((e) => e.name === name), 'still listed after deleteDevice');
      await assert.rejects(deleteDevice(name), (e: Err) => e.code === 'ENODEV');
    });

    it('an unknown management device: ENODEV carrying the kernel message', async () => {
      await assert.rejects(createDevice({ name: 'mgmtx', mgmtdev: 'no-such-parent' }), (e: Err) => {
        console.log(`# unknown mgmtdev: ${e.message}`);
        return e.code === 'ENODEV' && /management device/i.test(e.message) && e.path === 'mgmtx';
      });
    });

    it('a caller without CAP_NET_ADMIN: EPERM with the hint', () => {
      const script =
        `require(${JSON.stringify(path.join(ROOT, 'dist', 'lib'))}).createDevice({ name: 'mgmtp', mgmtdev: 'vduse' })` +
        `.then(() => console.log(JSON.stringify({ created: true })),` +
        ` e => console.log(JSON.stringify({ name: e.name, code: e.code, errno: e.errno, path: e.path, hint: e.hint, message: e.message })))`;
      const r = spawnSync(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
        {
          cwd: '/',
          encoding: 'utf8',
          timeout: 60_000,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        },
      );
      assert.equal(r.status, 0, `setpriv/node failed: ${r.stderr}`);
      const e = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
      console.log(`# as nobody: ${String(e.message)}`);
      assert.equal(e.name, 'VdpaError');
      assert.equal(e.code, 'EPERM');
      assert.equal(e.errno, -1);
      assert.match(String(e.hint), /CAP_NET_ADMIN/);
    });
  });

  describe('vm management: a VDUSE virtio-net device (createVduseNet)', () => {
    let nic: VduseNetDevice | undefined;
    after(async () => {
      await nic?.close();
    });

    it('createDevice, deviceConfig (mac, mtu, link), virtio_vdpa makes a netdev, vhost_vdpa a char device', async () => {
      const name = 'mgmtn';
      nic = await createVduseNet({ name, mac: '52:54:00:12:34:56', mtu: 1400 });
      await assert.rejects(createDevice({ name: 'mgmtn2', mgmtdev: 'vduse', mac: '52:54:00:00:00:07' }), (e: Err) => {
        console.log(`# mac on vduse: ${e.message}`);
        return e.name === 'VdpaError' && e.code === 'EOPNOTSUPP' && /not supported/.test(e.message);
      });
      const entry = await within(createDevice({ name, mgmtdev: 'vduse' }), 60_000, 'createDevice(net)');
      assert.equal(entry.deviceType, 'net');
      const cfg = await deviceConfig(name);
      assert.equal(cfg.type, 'net');
      if (cfg.type === 'net') {
        assert.equal(cfg.mac, '52:54:00:12:34:56');
        assert.equal(cfg.mtu, 1400);
        assert.equal(cfg.linkUp, true);
      }
      const onKernel = await within(bindDriver(name, 'virtio_vdpa'), 60_000, 'bindDriver(net, virtio_vdpa)');
      assert.ok(onKernel.netdev, 'no netdev');
      assert.ok(fs.existsSync(`/sys/class/net/${onKernel.netdev}`), `${onKernel.netdev} not in /sys/class/net`);
      assert.equal(fs.readFileSync(`/sys/class/net/${onKernel.netdev}/address`, 'utf8').trim(), '52:54:00:12:34:56');
      const negotiated = await deviceConfig(name);
      assert.ok(negotiated.negotiatedFeatures !== undefined, 'virtio-net negotiated features');
      const onVhost = await within(bindDriver(name, 'vhost_vdpa'), 60_000, 'bindDriver(net, vhost_vdpa)');
      assert.match(onVhost.path ?? '', /^\/dev\/vhost-vdpa-\d+$/);
      assert.equal(onVhost.netdev, undefined);
      await within(deleteDevice(name), 60_000, 'deleteDevice(net)');
      assert.equal(await getDevice(name), undefined);
    });
  });

  /** The virtio-blk-pci function (on virtio-pci) whose disk has `serial` (set by scripts/vm/test-vm.sh). */
  function functionWithSerial(serial: string): string {
    for (const bdf of fs.readdirSync('/sys/bus/pci/devices')) {
      const dir = `/sys/bus/pci/devices/${bdf}`;
      for (const v of fs.readdirSync(dir).filter((e) => /^virtio\d+$/.test(e))) {
        for (const disk of fs.existsSync(`${dir}/${v}/block`) ? fs.readdirSync(`${dir}/${v}/block`) : []) {
          if (fs.readFileSync(`${dir}/${v}/block/${disk}/serial`, 'utf8').trim() === serial) return bdf;
        }
      }
    }
    throw new Error(`no virtio-blk-pci function with serial ${serial} on virtio-pci (boot with scripts/vm/test-vm.sh)`);
  }

  describe('vm management: vfio-pci refused for a function whose IOMMU group is not viable', () => {
    // test-vm.sh makes these two functions of one multifunction slot: without ACS the kernel puts
    // both in one IOMMU group, and VFIO hands out a group only when every member is on vfio-pci
    // (or on no driver).
    it('each of the two is refused, naming the other and its driver, and stays where it was', async () => {
      const a = functionWithSerial('grp-a');
      const b = functionWithSerial('grp-b');
      const group = (bdf: string): string => path.basename(fs.readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`));
      assert.equal(group(a), group(b), `${a} and ${b} should share an IOMMU group`);
      for (const [bdf, other] of [
        [a, b],
        [b, a],
      ]) {
        await assert.rejects(bindDriver(bdf, 'vfio-pci'), (e: Err) => {
          assert.equal(e.code, 'EBUSY');
          assert.match(e.message, new RegExp(`IOMMU group ${group(bdf)} is not viable`));
          assert.ok(e.message.includes(`${other} (virtio-pci)`), e.message);
          return true;
        });
        const entry = await getDevice(bdf);
        assert.equal(entry?.driver, 'virtio-pci', `${bdf} was moved`);
        assert.match(entry?.blockDevice ?? '', /^\/dev\/vd[a-z]+$/);
        assert.equal(entry?.previousDriver, undefined, 'nothing recorded for a refused bind');
        assert.equal(fs.readFileSync(`/sys/bus/pci/devices/${bdf}/driver_override`, 'utf8').trim(), '(null)');
      }
    });
  });

  describe('vm management: a virtio-blk-pci function moved between virtio-pci and vfio-pci', () => {
    // scripts/vm/test-vm.sh gives the guest a function with this serial for this test alone.
    const findFunction = (): string => functionWithSerial('mgmt-pci');
    const tmp = fs.mkdtempSync('/tmp/mgmt-pci-');
    const pattern = (seed: number): Uint8Array => {
      const b = new Uint8Array(CHUNK);
      fillRandom(prng(seed), b);
      return b;
    };
    async function readVfio(spec: string, chunk: number): Promise<Buffer> {
      const blk = await openBlk(spec);
      try {
        const buf = blk.allocBuffer(CHUNK);
        await within(blk.read(chunk * CHUNK, buf), 30_000, `read through ${spec}`);
        return Buffer.from(buf);
      } finally {
        await blk.close();
      }
    }

    it('virtio-pci -> vfio-pci -> virtio-pci -> vfio-pci -> back (null), data visible each way', async () => {
      const bdf = findFunction();
      const start = await getDevice(bdf);
      assert.ok(start, `${bdf} not listed`);
      assert.equal(start.driver, 'virtio-pci');
      assert.equal(start.path, undefined);
      assert.match(start.blockDevice ?? '', /^\/dev\/vd[a-z]+$/);
      const a = pattern(0xa11ce);
      fs.writeFileSync(`${tmp}/a`, a);
      dd([`if=${tmp}/a`, `of=${start.blockDevice}`, `bs=${CHUNK}`, 'seek=32', 'count=1', 'oflag=direct', 'conv=fsync']);

      const onVfio = await within(bindDriver(bdf, 'vfio-pci'), 60_000, 'bindDriver(vfio-pci)');
      assert.equal(onVfio.driver, 'vfio-pci');
      assert.equal(onVfio.path, `vfio:${bdf}`);
      assert.equal(onVfio.blockDevice, undefined);
      assert.equal(onVfio.previousDriver, 'virtio-pci');
      assert.ok(
        (await readVfio(onVfio.path as string, 32)).equals(Buffer.from(a)),
        'vfio read differs from the /dev/vdX write',
      );
      const b = pattern(0xb0b);
      {
        const blk = await openBlk(onVfio.path as string);
        const buf = blk.allocBuffer(CHUNK);
        buf.set(b);
        await within(blk.write(48 * CHUNK, buf), 30_000, 'write through vfio');
        await within(blk.flush(), 30_000, 'flush through vfio');
        // Held open: unbinding would block in the kernel until it is closed; refused instead.
        await assert.rejects(bindDriver(bdf, 'virtio-pci'), (e: Err) => e.code === 'EBUSY');
        await blk.close();
      }

      const onKernel = await within(bindDriver(bdf, 'virtio-pci'), 60_000, 'bindDriver(virtio-pci)');
      assert.equal(onKernel.driver, 'virtio-pci');
      assert.match(onKernel.blockDevice ?? '', /^\/dev\/vd[a-z]+$/);
      dd([`if=${onKernel.blockDevice}`, `of=${tmp}/b`, `bs=${CHUNK}`, 'skip=48', 'count=1', 'iflag=direct']);
      assert.ok(fs.readFileSync(`${tmp}/b`).equals(Buffer.from(b)), 'the kernel reads other bytes than vfio wrote');

      const again = await within(bindDriver(bdf, 'vfio-pci'), 60_000, 'bindDriver(vfio-pci) again');
      assert.ok((await readVfio(again.path as string, 48)).equals(Buffer.from(b)));

      const restored = await within(bindDriver(bdf, null), 60_000, 'bindDriver(null)');
      assert.equal(restored.driver, 'virtio-pci');
      assert.equal(restored.previousDriver, undefined, 'the record is dropped once given back');
      assert.equal(fs.readFileSync(`/sys/bus/pci/devices/${bdf}/driver_override`, 'utf8').trim(), '(null)');
    });
  });
}
