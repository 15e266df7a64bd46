// Moving a virtio PCI function between vfio-pci (userspace, this library) and virtio-pci (the
// kernel's own drivers): driver_override, unbind, drivers_probe, then a bounded wait for what the new
// driver makes. The driver a function had before the first move is recorded, so that null restores it.
import fs from 'node:fs';
import path from 'node:path';
import { type PreviousBinding, kernelProducts, previousBinding, previousBindingFile } from './sysfs-devices';
import {
  assertDriverLoaded,
  assertNetdevDown,
  assertNotInUse,
  exists,
  readLinkName,
  readText,
  sysError,
  sysfsWrite,
  waitFor,
} from './sysfs-ops';

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** `'0000:00:03.0'` (domain:bus:device.function, lower-case hex, as sysfs spells it). */
export function isPciAddress(s: string): boolean {
  return PCI_ADDRESS.test(s);
}

/** Drivers VFIO accepts next to vfio-pci in one IOMMU group (besides none). */
const VFIO_GROUP_OK = new Set(['vfio-pci', 'pci-stub', 'pcieport']);

/**
 * Refuses a vfio-pci bind that could not be used: VFIO only hands out a group whose every device is
 * unbound or on a VFIO-compatible driver. The error names the others and their drivers.
 */
async function assertGroupViable(sysfs: string, address: string): Promise<void> {
  const dir = path.join(sysfs, 'bus', 'pci', 'devices', address);
  const group = await readLinkName(path.join(dir, 'iommu_group'));
  if (group === undefined)
    throw sysError(
      22,
      'bind',
      dir,
      `${address} has no IOMMU group`,
      'enable VT-d / AMD-Vi in the firmware; on Intel also boot with intel_iommu=on',
    );
  let members: string[];
  try {
    members = (await fs.promises.readdir(path.join(dir, 'iommu_group', 'devices'))).sort();
  } catch {
    return;
  }
  const blockers: string[] = [];
  for (const m of members) {
    if (m === address) continue;
    const d = await readLinkName(path.join(sysfs, 'bus', 'pci', 'devices', m, 'driver'));
    if (d !== undefined && !VFIO_GROUP_OK.has(d)) blockers.push(`${m} (${d})`);
  }
  if (blockers.length > 0)
    throw sysError(
      16,
      'bind',
      dir,
      `IOMMU group ${group} is not viable: it also holds ${blockers.join(', ')}`,
      `bind those to vfio-pci too (or unbind them) before ${address}`,
    );
}

async function recordPrevious(address: string, prev: PreviousBinding): Promise<void> {
  const file = previousBindingFile(address);
  if (await exists(file)) return; // the first move's record is the one to give back
  try {
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    await fs.promises.writeFile(file, JSON.stringify(prev));
  } catch {
    // Best effort: without the record, null falls back to the kernel's own choice.
  }
}

const VIRTIO_BLK = new Set([0x1001, 0x1042]);
const VIRTIO_NET = new Set([0x1000, 0x1041]);

/** Resolves once `driver` has made its product: /dev/vfio/N, or the virtio device's netdev / disk. */
async function pciProduct(sysfs: string, address: string, driver: string): Promise<true | undefined> {
  const dir = path.join(sysfs, 'bus', 'pci', 'devices', address);
  if (driver === 'vfio-pci') {
    const group = await readLinkName(path.join(dir, 'iommu_group'));
    return group !== undefined && (sysfs !== '/sys' || (await exists(`/dev/vfio/${group}`))) ? true : undefined;
  }
  if (driver !== 'virtio-pci') return true;
  const id = Number.parseInt((await readText(path.join(dir, 'device'))) ?? '', 16);
  const { netdev, blockDevice } = await kernelProducts(dir);
  if (VIRTIO_NET.has(id)) return netdev ? true : undefined;
  if (VIRTIO_BLK.has(id)) return blockDevice && (sysfs !== '/sys' || (await exists(blockDevice))) ? true : undefined;
  return true; // another virtio type: the bind itself is all there is to wait for
}

/** Refuses (EBUSY) to take a function from its driver while it is in use. */
async function assertPciIdle(sysfs: string, address: string, current: string | undefined): Promise<void> {
  const dir = path.join(sysfs, 'bus', 'pci', 'devices', address);
  if (current === 'vfio-pci') {
    const group = await readLinkName(path.join(dir, 'iommu_group'));
    if (group !== undefined && sysfs === '/sys')
      await assertNotInUse(`/dev/vfio/${group}`, 'exclusive-open', `VFIO group ${group} (${address})`);
  } else if (current === 'virtio-pci') {
    const { blockDevice, netdev } = await kernelProducts(dir);
    if (sysfs !== '/sys') return; // a test tree: its /dev and netdev names are not the host's
    if (blockDevice) await assertNotInUse(blockDevice, 'block', `${blockDevice} (${address})`);
    if (netdev) await assertNetdevDown(netdev, `${netdev} (${address})`);
  }
}

export async function bindPci(
  address: string,
  wanted: 'vfio-pci' | 'virtio-pci' | null,
  sysfs: string,
  timeoutMs: number,
): Promise<void> {
  const pci = path.join(sysfs, 'bus', 'pci');
  const dir = path.join(pci, 'devices', address);
  if (!(await exists(dir)))
    throw sysError(19, 'bind', dir, `no PCI function ${address}`, 'listDevices() shows the virtio functions');
  const current = await readLinkName(path.join(dir, 'driver'));
  const record = wanted === null ? await previousBinding(address) : undefined;
  // null without a record: clear any override and let the kernel choose, as at boot.
  const target = wanted ?? record?.driver ?? null;
  if (target !== null) await assertDriverLoaded(pci, target);
  if (target === 'vfio-pci') await assertGroupViable(sysfs, address);

  if (current !== target || target === null) {
    await assertPciIdle(sysfs, address, current);
    if (wanted !== null)
      await recordPrevious(address, {
        driver: current ?? null,
        driverOverride: (await readText(path.join(dir, 'driver_override'))) ?? '',
      });
    await sysfsWrite(path.join(dir, 'driver_override'), `${target ?? ''}\n`, timeoutMs);
    if (current !== undefined) await sysfsWrite(path.join(dir, 'driver', 'unbind'), address, timeoutMs);
    await sysfsWrite(path.join(pci, 'drivers_probe'), address, timeoutMs);
    const now = await readLinkName(path.join(dir, 'driver'));
    if (target !== null && now !== target)
      throw sysError(19, 'bind', dir, `${target} did not take ${address} (bound: ${now ?? 'none'})`, 'see dmesg');
    if (wanted === null && record) {
      // Give back the override it had (usually none), so the kernel's choice is its own again.
      const old = record.driverOverride === '(null)' ? '' : record.driverOverride;
      await sysfsWrite(path.join(dir, 'driver_override'), `${old}\n`, timeoutMs);
      await fs.promises.rm(previousBindingFile(address), { force: true });
    }
  }
  const bound = await readLinkName(path.join(dir, 'driver'));
  if (bound !== undefined)
    await waitFor(() => pciProduct(sysfs, address, bound), timeoutMs, `${bound} setting up ${address}`, dir);
}
