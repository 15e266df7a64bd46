// The management commands of the CLI, in iproute2's words: `mgmtdev`, `dev add|del|show|config|stats`,
// `bind DEVICE DRIVER`. Aligned tables by default, `--json` for scripts.
import { BIN, type Command, type CommandContext, UsageError, hex, parseInteger, table, toJson } from './cli-common';
import type { DeviceEntry } from './discovery';
import { listDevices } from './discovery';
import {
  type CreateDeviceOptions,
  type PciDriver,
  type VdpaDriver,
  bindDriver,
  createDevice,
  deleteDevice,
  deviceConfig,
  deviceStats,
  listManagementDevices,
} from './management';

const DEV_ADD = 'dev add NAME mgmtdev MGMTDEV [mac MAC] [mtu N] [max_vqp N]';

/** The devices table `dev show`, `dev add` and `bind` print. */
export function devicesTable(list: DeviceEntry[]): string {
  return table(
    ['NAME', 'TYPE', 'MGMTDEV', 'DRIVER', 'NODE'],
    list.map((d) => [
      d.name,
      d.deviceType,
      d.mgmtDev ?? (d.pciAddress ? 'pci' : '-'),
      d.driver ?? '-',
      d.path ?? d.netdev ?? d.blockDevice ?? '-',
    ]),
  );
}

/**
 * `dev add` words as createDevice options: `NAME mgmtdev M [mac X] [mtu N] [max_vqp N]`, or
 * iproute2's own `name NAME mgmtdev M ...` (told apart by the count: attributes come in pairs).
 */
export function parseDevAdd(words: string[]): CreateDeviceOptions {
  const named = words[0] === 'name' && words.length % 2 === 0;
  const [name, ...rest] = named ? words.slice(1) : words;
  if (name === undefined) throw new UsageError(`usage: ${BIN} ${DEV_ADD}`, 'dev');
  const opts: Partial<CreateDeviceOptions> = { name };
  for (let i = 0; i < rest.length; i += 2) {
    const [key, value] = [rest[i], rest[i + 1]];
    if (value === undefined) throw new UsageError(`dev add: ${key} needs a value`, 'dev');
    if (key === 'mgmtdev') opts.mgmtdev = value;
    else if (key === 'mac') opts.mac = value;
    else if (key === 'mtu') opts.mtu = parseInteger(value, 'dev add: mtu', 'dev', 68, 65535);
    else if (key === 'max_vqp') opts.maxVqPairs = parseInteger(value, 'dev add: max_vqp', 'dev', 1, 0x8000);
    else throw new UsageError(`dev add: unknown attribute ${key} (mgmtdev, mac, mtu, max_vqp)`, 'dev');
  }
  if (opts.mgmtdev === undefined) throw new UsageError('dev add: mgmtdev is required', 'dev');
  return opts as CreateDeviceOptions;
}

async function mgmtdev({ positionals, json, out }: CommandContext): Promise<void> {
  if (positionals.length > 0 && !(positionals.length === 1 && positionals[0] === 'show'))
    throw new UsageError(`mgmtdev takes no arguments but 'show', got '${positionals.join(' ')}'`, 'mgmtdev');
  const list = await listManagementDevices();
  if (json) return out(toJson(list));
  out(
    table(
      ['NAME', 'CLASSES', 'MAX_VQS', 'SUPPORTED_FEATURES'],
      list.map((m) => [m.name, m.classes.join(',') || '-', m.maxVqs?.toString() ?? '-', hex(m.supportedFeatures)]),
    ),
  );
}

const DRIVERS = ['vhost_vdpa', 'virtio_vdpa', 'vfio-pci', 'virtio-pci', 'none'];

async function bind({ positionals, values, json, out }: CommandContext): Promise<void> {
  const [device, driver] = positionals;
  if (device === undefined || driver === undefined)
    throw new UsageError(`usage: ${BIN} bind DEVICE ${DRIVERS.join('|')}`, 'bind');
  if (!DRIVERS.includes(driver))
    throw new UsageError(`bind: unknown driver '${driver}' (${DRIVERS.join(', ')})`, 'bind');
  const timeout = values.timeout;
  const options =
    typeof timeout === 'string' ? { timeoutMs: parseInteger(timeout, '--timeout', 'bind', 1, 3_600_000) } : {};
  const entry =
    driver === 'vhost_vdpa' || driver === 'virtio_vdpa'
      ? await bindDriver(device, driver as VdpaDriver, options)
      : await bindDriver(device, (driver === 'none' ? null : driver) as PciDriver, options);
  out(json ? toJson(entry) : devicesTable([entry]));
}

async function dev({ positionals, json, out }: CommandContext): Promise<void> {
  const [sub, ...args] = positionals;
  const name = args[0];
  const needName = (usage: string): string => {
    if (name === undefined || args.length > 1) throw new UsageError(`usage: ${BIN} ${usage}`, 'dev');
    return name;
  };
  switch (sub) {
    case 'add': {
      const entry = await createDevice(parseDevAdd(args));
      return out(json ? toJson(entry) : devicesTable([entry]));
    }
    case 'del': {
      const n = needName('dev del NAME');
      await deleteDevice(n);
      return out(json ? toJson({ deleted: n }) : `deleted ${n}`);
    }
    case undefined:
    case 'show':
    case 'list': {
      if (args.length > 1) throw new UsageError(`usage: ${BIN} dev show [NAME]`, 'dev');
      const list = (await listDevices()).filter((d) => name === undefined || d.name === name);
      if (name !== undefined && list.length === 0)
        throw new Error(`dev show: no device named '${name}' (${BIN} list shows what there is)`);
      return out(json ? toJson(list) : devicesTable(list));
    }
    case 'config': {
      // iproute2 says `dev config show NAME`
      if (args[0] === 'show') args.shift();
      if (args.length !== 1) throw new UsageError(`usage: ${BIN} dev config [show] NAME`, 'dev');
      const cfg = await deviceConfig(args[0]);
      if (json) return out(toJson(cfg));
      const rows = Object.entries(cfg)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, typeof v === 'bigint' && /eatures$/.test(k) ? hex(v) : String(v)]);
      return out(table(['FIELD', 'VALUE'], rows));
    }
    case 'stats': {
      if (args.length !== 2) throw new UsageError(`usage: ${BIN} dev stats NAME QUEUE`, 'dev');
      const s = await deviceStats(args[0], parseInteger(args[1], 'dev stats: QUEUE', 'dev', 0, 0xffff));
      if (json) return out(toJson(s));
      return out(
        table(
          ['NAME', 'VALUE'],
          s.values.map((v) => [v.name, v.value.toString()]),
        ),
      );
    }
    default:
      throw new UsageError(`unknown command: dev ${sub} (add, del, show, config, stats)`, 'dev');
  }
}

/** `mgmtdev`, `dev` and `bind`. */
export const managementCommands: Command[] = [
  {
    name: 'mgmtdev',
    synopsis: ['mgmtdev [show] [--json]'],
    summary: 'list the vdpa management devices (parents that can create vdpa devices)',
    details: ['Needs the vdpa module (modprobe vdpa); no privileges.'],
    positionals: { min: 0, max: 1 },
    run: mgmtdev,
  },
  {
    name: 'dev',
    synopsis: [
      `${DEV_ADD} [--json]`,
      'dev del NAME [--json]',
      'dev [show [NAME]] [--json]',
      'dev config [show] NAME [--json]',
      'dev stats NAME QUEUE [--json]',
    ],
    summary: 'create, delete and inspect vdpa devices (iproute2 syntax)',
    details: [
      "add      creates a vdpa device on a management device (VDPA_CMD_DEV_NEW); iproute2's",
      "         'dev add name NAME mgmtdev ...' is accepted too. For vduse, the VDUSE device",
      '         /dev/vduse/NAME must exist first (made by a VDUSE daemon).',
      'del      deletes it',
      'show     lists vdpa devices and virtio PCI functions, or one by name',
      'config   the device configuration the kernel reports (VDPA_CMD_DEV_CONFIG_GET)',
      "stats    a queue's vendor statistics (VDPA_CMD_DEV_VSTATS_GET)",
      'add and del need root (CAP_NET_ADMIN): without it the kernel answers EPERM.',
    ],
    positionals: { min: 0, max: 16 },
    run: dev,
  },
  {
    name: 'bind',
    synopsis: [`bind DEVICE ${DRIVERS.join('|')} [--timeout MS] [--json]`],
    summary: 'bind a vdpa device or a virtio PCI function to a driver',
    details: [
      'A vdpa device (by name) to vhost_vdpa (userspace: /dev/vhost-vdpa-N) or virtio_vdpa (the',
      "kernel's virtio-blk/net: /dev/vdX or a netdev); a PCI function (0000:00:03.0) to vfio-pci,",
      'virtio-pci, or none (back to the driver it had before). Waits until the kernel has made the',
      'node, then prints the device (with --json: the DeviceEntry bindDriver() returns). Needs root.',
    ],
    options: {
      timeout: { type: 'string', arg: 'MS', help: 'bound on each wait for the kernel (default 30000)' },
    },
    positionals: { min: 2, max: 2 },
    run: bind,
  },
];
