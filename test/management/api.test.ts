// The management API on any Linux: argument checks (before anything reaches the kernel), bindDriver's
// refusals on a fake sysfs tree (non-viable IOMMU group, driver not loaded, unknown device), and the
// real netlink socket against the always-present generic netlink controller.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  VdpaError,
  bindDriver,
  createDevice,
  deleteDevice,
  deviceConfig,
  deviceStats,
  listDevices,
  listManagementDevices,
  setDeviceAttributes,
} from '../../lib';
import { GenlCtrl, encodeGenl, rawTransact, resolveFamily } from '../../lib/netlink';
import { native } from '../../lib/native';

type Err = NodeJS.ErrnoException & { hint?: string };
const isVdpa = (code: string, re?: RegExp) => (e: unknown) =>
  e instanceof VdpaError && e.code === code && (re === undefined || re.test(`${e.message} ${e.hint ?? ''}`));

describe('management: arguments are checked first', () => {
  it('createDevice', async () => {
    await assert.rejects(createDevice(undefined as never), TypeError);
    await assert.rejects(createDevice({ name: 7 as never, mgmtdev: 'vduse' }), TypeError);
    await assert.rejects(createDevice({ name: '', mgmtdev: 'vduse' }), RangeError);
    await assert.rejects(createDevice({ name: 'a/b', mgmtdev: 'vduse' }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'pci/' }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', mac: '52:54:00:00:00' }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', mac: new Uint8Array(5) }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', mac: 5 as never }), TypeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', mtu: 67 }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', mtu: '1500' as never }), TypeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', maxVqPairs: 0 }), RangeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', features: 1 as never }), TypeError);
    await assert.rejects(createDevice({ name: 'v0', mgmtdev: 'vduse', features: 1n << 64n }), RangeError);
  });

  it('the other calls', async () => {
    await assert.rejects(deleteDevice(3 as never), TypeError);
    await assert.rejects(deviceConfig(''), RangeError);
    await assert.rejects(deviceStats('v0', -1), RangeError);
    await assert.rejects(deviceStats('v0', 1.5), RangeError);
    await assert.rejects(setDeviceAttributes('v0', {}), TypeError);
    await assert.rejects(setDeviceAttributes('v0', { mac: 'nope' }), RangeError);
    await assert.rejects(bindDriver('v0', 'nvme' as never), RangeError);
    await assert.rejects(bindDriver('v0', 'vfio-pci'), RangeError, 'a vdpa name is not a PCI address');
    await assert.rejects(bindDriver(1 as never, 'vhost_vdpa'), TypeError);
    await assert.rejects(bindDriver('v0', 'vhost_vdpa', { timeoutMs: 0 }), RangeError);
  });
});

// A sysfs tree with two PCI functions in IOMMU group 5: a virtio-blk on virtio-pci and a NIC on e1000e.
function fakeSysfs(root: string): void {
  const pci = path.join(root, 'bus', 'pci');
  const group = path.join(root, 'kernel', 'iommu_groups', '5', 'devices');
  fs.mkdirSync(group, { recursive: true });
  for (const d of ['virtio-pci', 'vfio-pci', 'e1000e']) {
    fs.mkdirSync(path.join(pci, 'drivers', d), { recursive: true });
    fs.writeFileSync(path.join(pci, 'drivers', d, 'unbind'), '');
  }
  fs.writeFileSync(path.join(pci, 'drivers_probe'), '');
  const fn = (bdf: string, vendor: string, device: string, driver: string) => {
    const dir = path.join(pci, 'devices', bdf);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'vendor'), `${vendor}\n`);
    fs.writeFileSync(path.join(dir, 'device'), `${device}\n`);
    fs.writeFileSync(path.join(dir, 'driver_override'), '(null)\n');
    fs.symlinkSync(path.join(pci, 'drivers', driver), path.join(dir, 'driver'));
    fs.symlinkSync(path.join(root, 'kernel', 'iommu_groups', '5'), path.join(dir, 'iommu_group'));
    fs.symlinkSync(dir, path.join(group, bdf));
  };
  fn('0000:00:03.0', '0x1af4', '0x1042', 'virtio-pci');
  fn('0000:00:04.0', '0x8086', '0x10d3', 'e1000e');
  fs.mkdirSync(path.join(root, 'bus', 'vdpa', 'devices', 'v0'), { recursive: true });
  fs.mkdirSync(path.join(root, 'bus', 'vdpa', 'drivers', 'vhost_vdpa'), { recursive: true });
}

describe('management: bindDriver on a fake sysfs', () => {
  let root = '';
  let state = '';
  const saved = process.env.VDPA_STATE_DIR;
  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-sysfs-'));
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-state-'));
    process.env.VDPA_STATE_DIR = state;
    fakeSysfs(root);
  });
  after(() => {
    if (saved === undefined) delete process.env.VDPA_STATE_DIR;
    else process.env.VDPA_STATE_DIR = saved;
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  });
  const fnDir = () => path.join(root, 'bus', 'pci', 'devices', '0000:00:03.0');

  it('listDevices lists a virtio function still on virtio-pci, without a path', async () => {
    const [e, ...rest] = (await listDevices(root)).filter((d) => d.transport === 'vfio');
    assert.equal(rest.length, 0, 'the NIC is not virtio');
    assert.equal(e.name, '0000:00:03.0');
    assert.equal(e.pciAddress, '0000:00:03.0');
    assert.equal(e.path, undefined);
    assert.equal(e.driver, 'virtio-pci');
    assert.equal(e.deviceType, 'blk');
    assert.equal(e.previousDriver, undefined);
  });

  it('vfio-pci into a non-viable IOMMU group: the other device and its driver are named, nothing is changed', async () => {
    await assert.rejects(bindDriver('0000:00:03.0', 'vfio-pci', { sysfs: root }), (e: Err) => {
      assert.ok(isVdpa('EBUSY', /IOMMU group 5 is not viable: it also holds 0000:00:04\.0 \(e1000e\)/)(e), String(e));
      assert.equal(e.syscall, 'bind');
      return true;
    });
    assert.equal(fs.readFileSync(path.join(fnDir(), 'driver_override'), 'utf8'), '(null)\n');
  });

  it('vfio-pci not loaded: ENODEV with the modprobe hint', async () => {
    fs.renameSync(path.join(root, 'bus', 'pci', 'drivers', 'vfio-pci'), path.join(root, 'vfio-pci.away'));
    try {
      await assert.rejects(
        bindDriver('0000:00:03.0', 'vfio-pci', { sysfs: root }),
        isVdpa('ENODEV', /modprobe vfio-pci/),
      );
    } finally {
      fs.renameSync(path.join(root, 'vfio-pci.away'), path.join(root, 'bus', 'pci', 'drivers', 'vfio-pci'));
    }
  });

  it('a viable group: override, unbind, drivers_probe are written and the previous driver recorded', async () => {
    const nic = path.join(root, 'bus', 'pci', 'devices', '0000:00:04.0', 'driver');
    fs.rmSync(nic);
    fs.symlinkSync(path.join(root, 'bus', 'pci', 'drivers', 'vfio-pci'), nic);
    // No kernel behind the tree: the driver link stays, so the library must say the bind did not happen.
    await assert.rejects(
      bindDriver('0000:00:03.0', 'vfio-pci', { sysfs: root, timeoutMs: 2000 }),
      isVdpa('ENODEV', /vfio-pci did not take 0000:00:03\.0 \(bound: virtio-pci\)/),
    );
    assert.equal(fs.readFileSync(path.join(fnDir(), 'driver_override'), 'utf8'), 'vfio-pci\n');
    assert.equal(
      fs.readFileSync(path.join(root, 'bus', 'pci', 'drivers', 'virtio-pci', 'unbind'), 'utf8'),
      '0000:00:03.0',
    );
    assert.equal(fs.readFileSync(path.join(root, 'bus', 'pci', 'drivers_probe'), 'utf8'), '0000:00:03.0');
    const e = (await listDevices(root)).find((d) => d.name === '0000:00:03.0');
    assert.equal(e?.previousDriver, 'virtio-pci');
  });

  it('vdpa devices: unknown device, driver not loaded', async () => {
    await assert.rejects(bindDriver('nope', 'vhost_vdpa', { sysfs: root }), isVdpa('ENODEV', /no vdpa device 'nope'/));
    await assert.rejects(bindDriver('v0', 'virtio_vdpa', { sysfs: root }), isVdpa('ENODEV', /modprobe virtio_vdpa/));
    await assert.rejects(
      bindDriver('0000:00:09.0', 'virtio-pci', { sysfs: root }),
      isVdpa('ENODEV', /no PCI function/),
    );
  });
});

describe('management: the netlink socket against the running kernel', () => {
  it('resolves the generic netlink controller itself (always present)', async () => {
    assert.equal(await resolveFamily('nlctrl', 'x'), GenlCtrl.ID);
  });

  it('an unknown family: ENOENT with the hint', async () => {
    await assert.rejects(
      resolveFamily('no-such-family', 'modprobe it'),
      isVdpa('ENOENT', /no generic netlink family 'no-such-family'.*modprobe it/),
    );
  });

  it('a request that would never end (no ack, no dump) is refused before it is sent', async () => {
    const bytes = encodeGenl({
      family: GenlCtrl.ID,
      cmd: GenlCtrl.CMD_GETFAMILY,
      version: 1,
      flags: 0,
      seq: 1,
      attrs: [],
    });
    new DataView(bytes.buffer).setUint16(6, 1, true); // NLM_F_REQUEST only
    const addon = native as unknown as { netlinkTransact(b: unknown, t: unknown): Promise<Uint8Array[]> };
    await assert.rejects(addon.netlinkTransact(bytes, 1000), RangeError);
    assert.throws(() => addon.netlinkTransact('x', 1000), TypeError);
    await assert.rejects(addon.netlinkTransact(bytes.subarray(0, 8), 1000), RangeError);
  });

  it('a dump of the controller ends (multi-part answer, NLMSG_DONE)', async () => {
    const replies = await rawTransact({
      family: GenlCtrl.ID,
      cmd: GenlCtrl.CMD_GETFAMILY,
      version: 1,
      flags: 0x300,
      attrs: [],
    });
    assert.ok(replies.length >= 2, 'every family, then NLMSG_DONE');
    assert.equal(new DataView(replies[replies.length - 1].buffer).getUint16(4, true), 3);
  });

  it('listManagementDevices: a list, or ENOENT naming modprobe when this kernel has no vdpa module loaded', async () => {
    try {
      const list = await listManagementDevices();
      for (const m of list) assert.equal(typeof m.name, 'string');
    } catch (e) {
      assert.ok(isVdpa('ENOENT', /modprobe vdpa/)(e), String(e));
    }
  });
});
