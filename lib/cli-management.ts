// The management commands of the `vdpa` CLI (iproute2-like words): `mgmtdev`, `dev add|del|show|
// config|stats`, `bind DEVICE DRIVER`. Aligned tables by default, `--json` for scripts.
import type { DeviceEntry } from './discovery';
import { listDevices } from './discovery';
import {
  type CreateDeviceOptions,
  bindDriver,
  createDevice,
  deleteDevice,
  deviceConfig,
  deviceStats,
  listManagementDevices,
} from './management';

/** Renders rows as columns padded to their widest cell (the last column is not padded). */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** JSON with bigints as hex strings (feature masks) and undefined fields left out. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x), 2);
}

const hex = (v: bigint | undefined): string => (v === undefined ? '-' : `0x${v.toString(16)}`);

function where(d: DeviceEntry): string {
  return d.path ?? d.netdev ?? d.blockDevice ?? '-';
}

function devicesTable(list: DeviceEntry[]): string {
  return table(
    ['NAME', 'TYPE', 'MGMTDEV', 'DRIVER', 'NODE'],
    list.map((d) => [d.name, d.deviceType, d.mgmtDev ?? (d.pciAddress ? 'pci' : '-'), d.driver ?? '-', where(d)]),
  );
}

/** `dev add NAME mgmtdev M [mac X] [mtu N] [max_vqp N]` words as createDevice options. */
export function parseDevAdd(words: string[]): CreateDeviceOptions {
  const [name, ...rest] = words;
  if (name === undefined)
    throw new RangeError('usage: vdpa dev add NAME mgmtdev MGMTDEV [mac MAC] [mtu N] [max_vqp N]');
  const opts: Partial<CreateDeviceOptions> = { name };
  for (let i = 0; i < rest.length; i += 2) {
    const [key, value] = [rest[i], rest[i + 1]];
    if (value === undefined) throw new RangeError(`dev add: ${key} needs a value`);
    const int = (): number => {
      if (!/^\d+$/.test(value)) throw new RangeError(`dev add: ${key} must be a whole number, got ${value}`);
      return Number(value);
    };
    if (key === 'mgmtdev') opts.mgmtdev = value;
    else if (key === 'mac') opts.mac = value;
    else if (key === 'mtu') opts.mtu = int();
    else if (key === 'max_vqp') opts.maxVqPairs = int();
    else throw new RangeError(`dev add: unknown attribute ${key} (mgmtdev, mac, mtu, max_vqp)`);
  }
  if (opts.mgmtdev === undefined) throw new RangeError('dev add: mgmtdev is required');
  return opts as CreateDeviceOptions;
}

/** Output of one management command, or undefined when `argv` is not one. Throws on bad usage. */
export async function runManagementCommand(argv: string[]): Promise<string | undefined> {
  const json = argv.includes('--json');
  const [cmd, sub, ...args] = argv.filter((a) => a !== '--json');
  if (cmd === 'mgmtdev') {
    const list = await listManagementDevices();
    if (json) return toJson(list);
    return table(
      ['NAME', 'CLASSES', 'MAX_VQS', 'SUPPORTED_FEATURES'],
      list.map((m) => [m.name, m.classes.join(',') || '-', m.maxVqs?.toString() ?? '-', hex(m.supportedFeatures)]),
    );
  }
  if (cmd === 'bind') {
    const [device, driver] = [sub, args[0]];
    if (device === undefined || driver === undefined)
      throw new RangeError('usage: vdpa bind DEVICE vhost_vdpa|virtio_vdpa|vfio-pci|virtio-pci|none');
    const entry = await bindDriver(device, (driver === 'none' ? null : driver) as never);
    return json ? toJson(entry) : devicesTable([entry]);
  }
  if (cmd !== 'dev') return undefined;
  const name = args[0];
  switch (sub) {
    case 'add': {
      const entry = await createDevice(parseDevAdd(args));
      return json ? toJson(entry) : devicesTable([entry]);
    }
    case 'del':
      if (name === undefined) throw new RangeError('usage: vdpa dev del NAME');
      await deleteDevice(name);
      return json ? toJson({ deleted: name }) : `deleted ${name}`;
    case undefined:
    case 'show': {
      const list = (await listDevices()).filter((d) => name === undefined || d.name === name);
      return json ? toJson(list) : devicesTable(list);
    }
    case 'config': {
      if (name === undefined) throw new RangeError('usage: vdpa dev config NAME');
      const cfg = await deviceConfig(name);
      if (json) return toJson(cfg);
      const rows = Object.entries(cfg)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, typeof v === 'bigint' && /eatures$/.test(k) ? hex(v) : String(v)]);
      return table(['FIELD', 'VALUE'], rows);
    }
    case 'stats': {
      const q = args[1];
      if (name === undefined || q === undefined || !/^\d+$/.test(q))
        throw new RangeError('usage: vdpa dev stats NAME QUEUE');
      const s = await deviceStats(name, Number(q));
      if (json) return toJson(s);
      return table(
        ['NAME', 'VALUE'],
        s.values.map((v) => [v.name, v.value.toString()]),
      );
    }
    default:
      throw new RangeError(`unknown command: dev ${sub} (add, del, show, config, stats)`);
  }
}

/** Usage lines for the management commands. */
export const MANAGEMENT_USAGE = [
  'vdpa mgmtdev [--json]',
  'vdpa dev add NAME mgmtdev MGMTDEV [mac MAC] [mtu N] [max_vqp N] [--json]',
  'vdpa dev del NAME',
  'vdpa dev [show [NAME]] [--json] | dev config NAME [--json] | dev stats NAME QUEUE [--json]',
  'vdpa bind DEVICE vhost_vdpa|virtio_vdpa|vfio-pci|virtio-pci|none [--json]',
];
