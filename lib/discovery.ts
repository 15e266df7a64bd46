import fs from 'node:fs';
import path from 'node:path';
import { DeviceType } from './constants';
import { deviceAttributes } from './management';
import { entries, kernelProducts, previousBinding } from './sysfs-devices';
import type { VdpaDeviceAttributes } from './vdpa-protocol';

/** A device {@link listDevices} found. */
export interface DeviceEntry {
  /** What to pass to openDevice/openBlk/openNet; undefined when the device is not bound for userspace. */
  path: string | undefined;
  transport: 'vhost-vdpa' | 'vfio';
  /** vdpa device name (`vdpa dev show`), or the PCI address for VFIO. */
  name: string;
  /** `'blk'`, `'net'`, or `'unknown(N)'`. */
  deviceType: string;
  deviceId: number | undefined;
  vendorId: number | undefined;
  /** vdpa management device (`'vduse'`, `'pci/0000:03:00.2'`); undefined for VFIO. */
  mgmtDev: string | undefined;
  /** Bound kernel driver (`'vhost_vdpa'`, `'virtio_vdpa'`, `'vfio-pci'`), undefined when unbound. */
  driver: string | undefined;
  /** VFIO only: the IOMMU group. */
  iommuGroup: number | undefined;
  /** Network interface (`'eth1'`) the kernel's virtio-net made of it (bound to virtio_vdpa / virtio-pci). */
  netdev: string | undefined;
  /** Block device (`'/dev/vda'`) the kernel's virtio-blk made of it (bound to virtio_vdpa / virtio-pci). */
  blockDevice: string | undefined;
  /** PCI address of the function (VFIO), or of a vdpa device's PCI parent. */
  pciAddress: string | undefined;
  /**
   * PCI functions the library moved with bindDriver(): the driver they had before (null: none), which
   * bindDriver(address, null) restores. Undefined when the library did not move it.
   */
  previousDriver: string | null | undefined;
}

function typeName(id: number | undefined): string {
  if (id === undefined) return 'unknown';
  return Object.entries(DeviceType).find(([, v]) => v === id)?.[0] ?? `unknown(${id})`;
}

async function linkName(p: string): Promise<string | undefined> {
  try {
    return path.basename(await fs.promises.readlink(p));
  } catch {
    return undefined;
  }
}

/** What the kernel's vdpa netlink family says of `name`; undefined when it cannot answer. */
async function vdpaAttributes(name: string): Promise<VdpaDeviceAttributes | undefined> {
  try {
    return await deviceAttributes(name);
  } catch {
    return undefined; // listing needs no privileges and no vdpa module: sysfs alone still answers
  }
}

async function vdpaDevice(base: string, name: string): Promise<DeviceEntry> {
  const dir = path.join(base, name);
  const [children, attrs, driver, products] = await Promise.all([
    entries(dir),
    vdpaAttributes(name),
    linkName(path.join(dir, 'driver')),
    kernelProducts(dir),
  ]);
  const node = children.find((e) => /^vhost-vdpa-\d+$/.test(e));
  return {
    path: node ? `/dev/${node}` : undefined,
    transport: 'vhost-vdpa' as const,
    name,
    deviceType: typeName(attrs?.deviceId),
    deviceId: attrs?.deviceId,
    vendorId: attrs?.vendorId,
    mgmtDev: attrs?.mgmtDev,
    driver,
    iommuGroup: undefined,
    ...products,
    pciAddress: attrs?.mgmtDev.startsWith('pci/') ? attrs.mgmtDev.slice(4) : undefined,
    previousDriver: undefined,
  };
}

async function vdpaDevices(sysfs: string): Promise<DeviceEntry[]> {
  const base = path.join(sysfs, 'bus', 'vdpa', 'devices');
  return Promise.all((await entries(base)).map((name) => vdpaDevice(base, name)));
}

const VIRTIO_PCI_VENDOR = 0x1af4;

function virtioPciType(pciDevice: number): number | undefined {
  if (pciDevice >= 0x1040 && pciDevice <= 0x107f) return pciDevice - 0x1040; // modern
  const transitional: Record<number, number> = { 0x1000: 1, 0x1001: 2 };
  return transitional[pciDevice];
}

async function pciFunction(base: string, bdf: string): Promise<DeviceEntry | undefined> {
  const dir = path.join(base, bdf);
  const read = async (f: string): Promise<number> =>
    Number.parseInt((await fs.promises.readFile(path.join(dir, f), 'utf8')).trim(), 16);
  let vendor: number, device: number;
  try {
    [vendor, device] = await Promise.all([read('vendor'), read('device')]);
  } catch {
    return undefined;
  }
  if (vendor !== VIRTIO_PCI_VENDOR) return undefined;
  const driver = await linkName(path.join(dir, 'driver'));
  // Functions on vfio-pci, and virtio-blk / virtio-net functions still elsewhere (what a user binds next).
  const id = virtioPciType(device);
  if (driver !== 'vfio-pci' && !Object.values(DeviceType).some((t) => t === id)) return undefined;
  const [group, products, previous] = await Promise.all([
    linkName(path.join(dir, 'iommu_group')),
    kernelProducts(dir),
    previousBinding(bdf),
  ]);
  return {
    path: driver === 'vfio-pci' ? `vfio:${bdf}` : undefined,
    transport: 'vfio',
    name: bdf,
    deviceType: typeName(id),
    deviceId: id,
    vendorId: vendor,
    mgmtDev: undefined,
    driver,
    iommuGroup: group === undefined ? undefined : Number(group),
    ...products,
    pciAddress: bdf,
    previousDriver: previous?.driver,
  };
}

async function vfioDevices(sysfs: string): Promise<DeviceEntry[]> {
  const base = path.join(sysfs, 'bus', 'pci', 'devices');
  const found = await Promise.all((await entries(base)).map((bdf) => pciFunction(base, bdf)));
  return found.filter((e): e is DeviceEntry => e !== undefined);
}

/**
 * Lists vDPA devices (every device on the vdpa bus; `path` is its `/dev/vhost-vdpa-N` when bound to
 * vhost_vdpa) and virtio-pci functions (`path` is `vfio:ADDRESS` when bound to vfio-pci, undefined
 * while a kernel driver has them), from sysfs. Needs no privileges.
 *
 * @param sysfs Where sysfs is mounted (for tests). Default `/sys`.
 */
export async function listDevices(sysfs = '/sys'): Promise<DeviceEntry[]> {
  if (typeof sysfs !== 'string') throw new TypeError('sysfs must be a string');
  const [vdpa, vfio] = await Promise.all([vdpaDevices(sysfs), vfioDevices(sysfs)]);
  return [...vdpa, ...vfio];
}
