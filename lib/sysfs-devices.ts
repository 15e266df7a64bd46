// What the kernel made of a device, read from sysfs: the netdev or block device its virtio driver
// created, and (for a PCI function the library moved) the driver it had before. Shared by
// listDevices() and the management API.
import fs from 'node:fs';
import path from 'node:path';

/** The kernel objects a virtio device became once a kernel driver took it. */
export interface KernelProducts {
  /** Network interface (`'eth1'`) of a virtio-net device bound to a kernel driver. */
  netdev: string | undefined;
  /** Block device (`'/dev/vda'`) of a virtio-blk device bound to a kernel driver. */
  blockDevice: string | undefined;
}

/** The names in `dir`, sorted; none when it cannot be read. Off the JS thread like every sysfs read here. */
export async function entries(dir: string): Promise<string[]> {
  try {
    return (await fs.promises.readdir(dir)).sort();
  } catch {
    return [];
  }
}

/**
 * The netdev / block device under a device directory that has virtioN children: a vdpa device
 * bound to virtio_vdpa, or a PCI function bound to virtio-pci.
 */
export async function kernelProducts(deviceDir: string): Promise<KernelProducts> {
  let netdev: string | undefined;
  let blockDevice: string | undefined;
  for (const v of (await entries(deviceDir)).filter((e) => /^virtio\d+$/.test(e))) {
    netdev ??= (await entries(path.join(deviceDir, v, 'net')))[0];
    const disk = (await entries(path.join(deviceDir, v, 'block')))[0];
    if (disk !== undefined) blockDevice ??= `/dev/${disk}`;
  }
  return { netdev, blockDevice };
}

/** The driver a PCI function had before the library moved it, so that it can be given back. */
export interface PreviousBinding {
  /** Driver name (`'virtio-pci'`), or null when it was unbound. */
  driver: string | null;
  /** Its driver_override then (usually empty). */
  driverOverride: string;
}

/**
 * Where those records live: tmpfs, like the bindings themselves, which a reboot also forgets.
 * VDPA_STATE_DIR overrides it (tests).
 */
export function stateDir(): string {
  return process.env.VDPA_STATE_DIR ?? '/run/vdpa';
}

export function previousBindingFile(pciAddress: string): string {
  return path.join(stateDir(), 'pci', `${pciAddress}.json`);
}

/** The recorded previous binding of `pciAddress`, if the library moved it. */
export async function previousBinding(pciAddress: string): Promise<PreviousBinding | undefined> {
  try {
    const text = await fs.promises.readFile(previousBindingFile(pciAddress), 'utf8');
    const v = JSON.parse(text) as Partial<PreviousBinding>;
    if (v.driver !== null && typeof v.driver !== 'string') return undefined;
    return { driver: v.driver, driverOverride: typeof v.driverOverride === 'string' ? v.driverOverride : '' };
  } catch {
    return undefined;
  }
}

/**
 * The vdpa bus device behind a `/dev/vhost-vdpa-N` node (`'vdpa0'`), through the node's device number:
 * `/sys/dev/char/MAJ:MIN` is the vhost-vdpa device, whose parent directory is the vdpa device (it has
 * no `device` link: vhost-vdpa devices have no class). A renamed or linked node still resolves;
 * undefined when it cannot be told or the parent is not on the vdpa bus.
 */
export async function vdpaNameOfVhostNode(devPath: string, sysfs = '/sys'): Promise<string | undefined> {
  try {
    const { rdev } = await fs.promises.stat(devPath, { bigint: true });
    // glibc's gnu_dev_major / gnu_dev_minor split of a 64-bit dev_t
    const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
    const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
    const node = await fs.promises.realpath(path.join(sysfs, 'dev', 'char', `${major}:${minor}`));
    const name = path.basename(path.dirname(node));
    await fs.promises.access(path.join(sysfs, 'bus', 'vdpa', 'devices', name));
    return name;
  } catch {
    return undefined;
  }
}
