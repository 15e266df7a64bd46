// vDPA management: create, inspect and delete vdpa devices over the kernel's `vdpa` generic netlink
// family, and move devices between drivers through sysfs. Every kernel round trip runs off the JS
// thread (netlink on the addon's threadpool worker, sysfs through fs.promises).
import fs from 'node:fs';
import path from 'node:path';
import { type DeviceEntry, listDevices } from './discovery';
import {
  type NlAttr,
  NlFlag,
  attrBytes,
  attrString,
  attrU16,
  attrU32,
  attrU64,
  genlTransact,
  resolveFamily,
} from './netlink';
import { bindPci, isPciAddress } from './pci-bind';
import { kernelProducts } from './sysfs-devices';
import {
  BIND_TIMEOUT_MS,
  assertNetdevDown,
  assertDriverLoaded,
  assertNotInUse,
  exists,
  readLinkName,
  sysError,
  sysfsWrite,
  waitFor,
} from './sysfs-ops';
import {
  type DeviceConfig,
  type ManagementDevice,
  type QueueStats,
  type VdpaDeviceAttributes,
  VDPA_GENL_NAME,
  VDPA_GENL_VERSION,
  VdpaAttr,
  VdpaCmd,
  decodeConfig,
  decodeDevice,
  decodeManagementDevice,
  decodeStats,
} from './vdpa-protocol';
import { checkInteger, checkObject } from './validate';

export type {
  BlkDeviceConfig,
  DeviceConfig,
  ManagementDevice,
  NetDeviceConfig,
  OtherDeviceConfig,
  QueueStats,
  VdpaDeviceAttributes,
} from './vdpa-protocol';

const CMD_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(VdpaCmd).map(([k, v]) => [v, `VDPA_CMD_${k}`]),
);

const NO_FAMILY_HINT = 'the vdpa module is not loaded: modprobe vdpa (vhost_vdpa, virtio_vdpa and vduse load it too)';

async function vdpaRequest(
  cmd: number,
  attrs: NlAttr[],
  target: string | undefined,
  opts: { dump?: boolean; hints?: Partial<Record<string, string>> } = {},
) {
  const family = await resolveFamily(VDPA_GENL_NAME, NO_FAMILY_HINT);
  return genlTransact(
    { family, cmd, version: VDPA_GENL_VERSION, flags: opts.dump ? NlFlag.DUMP : 0, attrs },
    { syscall: `netlink(${CMD_NAMES[cmd]})`, ...(target !== undefined && { path: target }), hints: opts.hints },
  );
}

// ---- argument checks

function checkName(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string, got ${typeof v}`);
  if (v.length === 0 || v.length > 255 || /[/\0\s]/.test(v))
    throw new RangeError(`${what} must be 1 to 255 characters without '/', NUL or spaces, got ${JSON.stringify(v)}`);
  return v;
}

function checkMgmtDev(v: unknown): { bus: string | undefined; dev: string } {
  if (typeof v !== 'string') throw new TypeError(`mgmtdev must be a string, got ${typeof v}`);
  const slash = v.indexOf('/');
  const bus = slash < 0 ? undefined : v.slice(0, slash);
  const dev = slash < 0 ? v : v.slice(slash + 1);
  if (dev.length === 0 || bus === '' || /[/\0\s]/.test(dev))
    throw new RangeError(
      `mgmtdev must be 'NAME' or 'BUS/NAME' (e.g. 'vduse', 'pci/0000:03:00.2'), got ${JSON.stringify(v)}`,
    );
  return { bus, dev };
}

/** A MAC address as 6 bytes, from `'52:54:00:00:00:01'` or 6 bytes. */
export function parseMac(v: unknown, what = 'mac'): Uint8Array {
  if (v instanceof Uint8Array) {
    if (v.length !== 6) throw new RangeError(`${what} must be 6 bytes, got ${v.length}`);
    return Uint8Array.from(v);
  }
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string or a Uint8Array`);
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(v))
    throw new RangeError(`${what} must look like '52:54:00:00:00:01', got ${JSON.stringify(v)}`);
  return Uint8Array.from(v.split(':'), (x) => Number.parseInt(x, 16));
}

// ---- netlink commands

/**
 * The vdpa management devices (`vdpa mgmtdev show`): what {@link createDevice} can create devices
 * on, e.g. `{ name: 'vduse', classes: ['net', 'blk'], ... }`. Needs no privileges.
 */
export async function listManagementDevices(): Promise<ManagementDevice[]> {
  const msgs = await vdpaRequest(VdpaCmd.MGMTDEV_GET, [], undefined, { dump: true });
  return msgs.map(decodeManagementDevice);
}

/** What {@link createDevice} creates. */
export interface CreateDeviceOptions {
  /** Name of the new vdpa device (its /sys/bus/vdpa/devices entry). */
  name: string;
  /** Management device handle from {@link listManagementDevices}: `'vduse'`, `'pci/0000:03:00.2'`. */
  mgmtdev: string;
  /** virtio-net only: MAC address, `'52:54:00:00:00:01'` or 6 bytes. */
  mac?: string | Uint8Array;
  /** virtio-net only: MTU (68 to 65535). */
  mtu?: number;
  /** virtio-net only: number of queue pairs (1 to 32768). */
  maxVqPairs?: number;
  /** Virtio features to provision the device with (a subset of the management device's). */
  features?: bigint;
}

/**
 * Creates a vdpa device (VDPA_CMD_DEV_NEW; `vdpa dev add`). The kernel binds it to the first vdpa
 * driver that matches (usually vhost_vdpa): see {@link bindDriver}. Needs CAP_NET_ADMIN. For vduse the
 * VDUSE device of the same name must exist (created by its userspace daemon). Resolves with its entry.
 */
export async function createDevice(options: CreateDeviceOptions): Promise<DeviceEntry> {
  checkObject(options, 'options');
  const name = checkName(options.name, 'name');
  const { bus, dev } = checkMgmtDev(options.mgmtdev);
  const attrs: NlAttr[] = [];
  if (bus !== undefined) attrs.push(attrString(VdpaAttr.MGMTDEV_BUS_NAME, bus));
  attrs.push(attrString(VdpaAttr.MGMTDEV_DEV_NAME, dev), attrString(VdpaAttr.DEV_NAME, name));
  if (options.mac !== undefined) attrs.push(attrBytes(VdpaAttr.DEV_NET_CFG_MACADDR, parseMac(options.mac)));
  if (options.mtu !== undefined)
    attrs.push(attrU16(VdpaAttr.DEV_NET_CFG_MTU, checkInteger(options.mtu, 'mtu', 68, 65535)));
  if (options.maxVqPairs !== undefined)
    attrs.push(attrU16(VdpaAttr.DEV_NET_CFG_MAX_VQP, checkInteger(options.maxVqPairs, 'maxVqPairs', 1, 0x8000)));
  if (options.features !== undefined) {
    if (typeof options.features !== 'bigint') throw new TypeError('features must be a bigint');
    if (options.features < 0n || options.features >= 1n << 64n) throw new RangeError('features must fit in 64 bits');
    attrs.push(attrU64(VdpaAttr.DEV_FEATURES, options.features));
  }
  await vdpaRequest(VdpaCmd.DEV_NEW, attrs, name, {
    hints: {
      EEXIST: `a vdpa device named '${name}' exists: pick another name or deleteDevice('${name}') first`,
      ENODEV: `no management device '${options.mgmtdev}': listManagementDevices() shows what there is`,
      EINVAL:
        dev === 'vduse'
          ? `vduse needs its VDUSE device /dev/vduse/${name} created first (e.g. by qemu-storage-daemon --export vduse-blk)`
          : undefined,
    },
  });
  const entry = await waitFor(() => getDevice(name), BIND_TIMEOUT_MS, `vdpa device ${name} appearing`, name);
  return entry;
}

/** The entry {@link listDevices} has for a vdpa device or PCI function, or undefined. */
export async function getDevice(name: string): Promise<DeviceEntry | undefined> {
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
  return (await listDevices()).find((e) => e.name === name);
}

/** What VDPA_CMD_DEV_GET reports of a vdpa device (`vdpa dev show`): ids, queue limits, management device. */
export async function deviceAttributes(name: string): Promise<VdpaDeviceAttributes> {
  checkName(name, 'name');
  const [m] = await vdpaRequest(VdpaCmd.DEV_GET, [attrString(VdpaAttr.DEV_NAME, name)], name);
  if (!m) throw sysError(71, 'netlink(VDPA_CMD_DEV_GET)', name, 'empty answer');
  return decodeDevice(m);
}

/**
 * A vdpa device's configuration space as the kernel decodes it (VDPA_CMD_DEV_CONFIG_GET; `vdpa dev
 * config show`): `{ type: 'net', mac, linkUp, mtu, maxVqPairs, negotiatedFeatures, ... }` or
 * `{ type: 'blk', capacity, blockSize, segMax, ... }`.
 */
export async function deviceConfig(name: string): Promise<DeviceConfig> {
  checkName(name, 'name');
  const [m] = await vdpaRequest(VdpaCmd.DEV_CONFIG_GET, [attrString(VdpaAttr.DEV_NAME, name)], name);
  if (!m) throw sysError(71, 'netlink(VDPA_CMD_DEV_CONFIG_GET)', name, 'empty answer');
  return decodeConfig(m);
}

/**
 * Vendor statistics of virtqueue `queueIndex` (VDPA_CMD_DEV_VSTATS_GET; `vdpa dev vstats show`).
 * EOPNOTSUPP from parents without them (vduse has none); the kernel only answers once the driver
 * negotiated features.
 */
export async function deviceStats(name: string, queueIndex: number): Promise<QueueStats> {
  checkName(name, 'name');
  checkInteger(queueIndex, 'queueIndex', 0, 0xffff);
  const [m] = await vdpaRequest(
    VdpaCmd.DEV_VSTATS_GET,
    [attrString(VdpaAttr.DEV_NAME, name), attrU32(VdpaAttr.DEV_QUEUE_INDEX, queueIndex)],
    name,
    { hints: { EOPNOTSUPP: `the parent of '${name}' keeps no vendor queue statistics` } },
  );
  if (!m) throw sysError(71, 'netlink(VDPA_CMD_DEV_VSTATS_GET)', name, 'empty answer');
  return decodeStats(m);
}

/** Attributes {@link setDeviceAttributes} changes. */
export interface DeviceAttributes {
  /** New MAC address of a virtio-net device. */
  mac?: string | Uint8Array;
}

/**
 * Changes attributes of an existing device (VDPA_CMD_DEV_ATTR_SET; `vdpa dev set`). EOPNOTSUPP
 * when the kernel or the management device lacks it. Needs CAP_NET_ADMIN.
 */
export async function setDeviceAttributes(name: string, attributes: DeviceAttributes): Promise<void> {
  checkName(name, 'name');
  checkObject(attributes, 'attributes');
  const attrs = [attrString(VdpaAttr.DEV_NAME, name)];
  if (attributes.mac !== undefined) attrs.push(attrBytes(VdpaAttr.DEV_NET_CFG_MACADDR, parseMac(attributes.mac)));
  if (attrs.length === 1) throw new TypeError('attributes names nothing to set (expected mac)');
  await vdpaRequest(VdpaCmd.DEV_ATTR_SET, attrs, name, {
    hints: { EOPNOTSUPP: 'this kernel or this management device cannot change the attribute of an existing device' },
  });
}

async function vhostNode(sysfs: string, name: string): Promise<string | undefined> {
  const e = await readDirSafe(path.join(sysfs, 'bus', 'vdpa', 'devices', name));
  const n = e.find((x) => /^vhost-vdpa-\d+$/.test(x));
  return n === undefined ? undefined : `/dev/${n}`;
}

async function readDirSafe(dir: string): Promise<string[]> {
  try {
    return await fs.promises.readdir(dir);
  } catch {
    return [];
  }
}

/** Refuses (EBUSY) to take a vdpa device from its driver while a user holds what it became. */
async function assertVdpaIdle(sysfs: string, name: string, driver: string | undefined): Promise<void> {
  if (sysfs !== '/sys') return; // a test tree: its /dev names are not the host's
  if (driver === 'vhost_vdpa') {
    const node = await vhostNode(sysfs, name);
    if (node) await assertNotInUse(node, 'exclusive-open', `${node} (vdpa device ${name})`);
  } else if (driver === 'virtio_vdpa') {
    const { blockDevice, netdev } = await kernelProducts(path.join(sysfs, 'bus', 'vdpa', 'devices', name));
    if (blockDevice) await assertNotInUse(blockDevice, 'block', `${blockDevice} (vdpa device ${name})`);
    if (netdev) await assertNetdevDown(netdev, `${netdev} (vdpa device ${name})`);
  }
}

/**
 * Deletes a vdpa device (VDPA_CMD_DEV_DEL; `vdpa dev del`) and waits until it is gone. EBUSY, without
 * deleting, while its /dev/vhost-vdpa-N is open or its block device mounted (the kernel would wait
 * for it). Needs CAP_NET_ADMIN.
 */
export async function deleteDevice(name: string): Promise<void> {
  checkName(name, 'name');
  const dir = path.join('/sys', 'bus', 'vdpa', 'devices', name);
  await assertVdpaIdle('/sys', name, await readLinkName(path.join(dir, 'driver')));
  await vdpaRequest(VdpaCmd.DEV_DEL, [attrString(VdpaAttr.DEV_NAME, name)], name, {
    hints: { ENODEV: `no vdpa device '${name}': listDevices() shows what there is` },
  });
  await waitFor(
    async () => ((await exists(dir)) ? undefined : true),
    BIND_TIMEOUT_MS,
    `vdpa device ${name} going away`,
    name,
  );
}

// ---- binding

/** Drivers a vdpa device can be bound to. */
export type VdpaDriver = 'virtio_vdpa' | 'vhost_vdpa';
/** Drivers a virtio PCI function can be bound to; null gives it back the driver it had before. */
export type PciDriver = 'vfio-pci' | 'virtio-pci' | null;

/** Options of {@link bindDriver}. */
export interface BindOptions {
  /** Bound on each wait for the kernel, in ms (default 30000). */
  timeoutMs?: number;
  /** Where sysfs is mounted (for tests). Default `/sys`. */
  sysfs?: string;
}

/** Resolves once the driver has made its product: /dev/vhost-vdpa-N, a netdev or a /dev/vdX. */
async function vdpaProduct(sysfs: string, name: string, driver: VdpaDriver): Promise<true | undefined> {
  const dir = path.join(sysfs, 'bus', 'vdpa', 'devices', name);
  if (driver === 'vhost_vdpa') {
    const node = await vhostNode(sysfs, name);
    return node && (sysfs !== '/sys' || (await exists(node))) ? true : undefined;
  }
  const { netdev, blockDevice } = await kernelProducts(dir);
  if (netdev) return true;
  if (blockDevice) return sysfs !== '/sys' || (await exists(blockDevice)) ? true : undefined;
  return undefined;
}

async function bindVdpa(name: string, driver: VdpaDriver, sysfs: string, timeoutMs: number): Promise<void> {
  const bus = path.join(sysfs, 'bus', 'vdpa');
  const dir = path.join(bus, 'devices', name);
  if (!(await exists(dir)))
    throw sysError(
      19,
      'bind',
      dir,
      `no vdpa device '${name}'`,
      'createDevice() makes one; listDevices() shows what there is',
    );
  await assertDriverLoaded(bus, driver);
  const current = await readLinkName(path.join(dir, 'driver'));
  if (current !== driver) {
    await assertVdpaIdle(sysfs, name, current);
    await sysfsWrite(path.join(dir, 'driver_override'), `${driver}\n`, timeoutMs);
    if (current !== undefined) await sysfsWrite(path.join(bus, 'drivers', current, 'unbind'), name, timeoutMs);
    await sysfsWrite(path.join(bus, 'drivers_probe'), name, timeoutMs);
    const now = await readLinkName(path.join(dir, 'driver'));
    if (now !== driver)
      throw sysError(
        19,
        'bind',
        dir,
        `${driver} did not take vdpa device '${name}' (bound: ${now ?? 'none'})`,
        'see dmesg',
      );
  }
  await waitFor(() => vdpaProduct(sysfs, name, driver), timeoutMs, `${driver} setting up ${name}`, dir);
}

/**
 * Binds a vdpa device to `'virtio_vdpa'` (the kernel's own virtio-net / virtio-blk take it: the entry
 * gets `netdev` or `blockDevice`) or `'vhost_vdpa'` (userspace: the entry's `path` is
 * /dev/vhost-vdpa-N); or a virtio PCI function (`'0000:00:03.0'`) to `'vfio-pci'`, `'virtio-pci'`, or
 * back to the driver it had before (null), through driver_override, unbind and drivers_probe.
 * Waits, bounded, until the kernel has finished (the /dev node or netdev exists) and resolves with
 * the device's entry. EBUSY while what it is bound as is in use; ENODEV naming the module when the
 * driver is not loaded; for vfio-pci, an error naming the other devices of a non-viable IOMMU group.
 * Needs root.
 */
export async function bindDriver(device: string, driver: VdpaDriver, options?: BindOptions): Promise<DeviceEntry>;
export async function bindDriver(pciAddress: string, driver: PciDriver, options?: BindOptions): Promise<DeviceEntry>;
export async function bindDriver(
  device: string,
  driver: VdpaDriver | PciDriver,
  options: BindOptions = {},
): Promise<DeviceEntry> {
  if (typeof device !== 'string') throw new TypeError(`device must be a string, got ${typeof device}`);
  checkObject(options, 'options');
  const timeoutMs =
    options.timeoutMs === undefined ? BIND_TIMEOUT_MS : checkInteger(options.timeoutMs, 'timeoutMs', 1, 3_600_000);
  const sysfs = options.sysfs ?? '/sys';
  if (typeof sysfs !== 'string') throw new TypeError('sysfs must be a string');
  if (driver === 'virtio_vdpa' || driver === 'vhost_vdpa') {
    checkName(device, 'device');
    await bindVdpa(device, driver, sysfs, timeoutMs);
  } else if (driver === null || driver === 'vfio-pci' || driver === 'virtio-pci') {
    if (!isPciAddress(device))
      throw new RangeError(
        `${String(driver)} binds a PCI function: expected an address like '0000:00:03.0', got ${JSON.stringify(device)}`,
      );
    await bindPci(device, driver, sysfs, timeoutMs);
  } else {
    throw new RangeError(
      `driver must be 'virtio_vdpa', 'vhost_vdpa', 'vfio-pci', 'virtio-pci' or null, got ${JSON.stringify(driver)}`,
    );
  }
  const entry = (await listDevices(sysfs)).find((e) => e.name === device);
  if (!entry) throw sysError(19, 'bind', device, `${device} vanished after binding`);
  return entry;
}
