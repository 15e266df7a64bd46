// `list` (what devices this machine has) and `info DEVICE` (identity, features by name, the decoded
// configuration space and the queues of one device, opened without bringing a driver up).
import { BIN, type Command, type CommandContext, hex, humanBytes, macString, table, toJson } from './cli-common';
import { BlkConfig, ConfigView, NetConfig, type Field } from './config';
import { BlkFeature, DeviceType, NetFeature, featureNames } from './constants';
import { openDevice, type Device } from './device';
import { listDevices } from './discovery';
import { BackendFeature, type VhostInfo } from './vhost';

async function list({ json, out }: CommandContext): Promise<void> {
  const devices = await listDevices();
  if (json) return out(toJson(devices));
  if (devices.length === 0) return out('no vDPA devices and no virtio PCI functions on this machine');
  out(
    table(
      ['DEVICE', 'NAME', 'TYPE', 'PARENT', 'DRIVER', 'KERNEL'],
      devices.map((d) => [
        d.path ?? '-',
        d.name,
        d.deviceType,
        d.transport === 'vfio'
          ? `pci, ${d.iommuGroup === undefined ? 'no iommu group' : `iommu group ${d.iommuGroup}`}`
          : (d.mgmtDev ?? '-'),
        d.driver ?? '-',
        d.netdev ?? d.blockDevice ?? '-',
      ]),
    ),
  );
}

/** A configuration field, the feature that makes it exist (virtio 1.x 5.1.4, 5.2.4), how to show it. */
interface ConfigField {
  name: string;
  field: Field;
  feature?: bigint;
  show?: (v: number) => string;
}

const byteField = (offset: number): Field => ({ offset, bytes: 1 });
const wordField = (offset: number): Field => ({ offset, bytes: 2 });
const bytesShown = (v: number): string => `${v} (${humanBytes(v)})`;
/** VIRTIO_NET_F_SPEED_DUPLEX: speed and duplex in config. */
const SPEED_DUPLEX = 1n << 63n;

const BLK_FIELDS: ConfigField[] = [
  { name: 'capacity', field: BlkConfig.capacity, show: (v) => `${v} sectors (${humanBytes(v * 512)})` },
  { name: 'sizeMax', field: BlkConfig.sizeMax, feature: BlkFeature.SIZE_MAX, show: bytesShown },
  { name: 'segMax', field: BlkConfig.segMax, feature: BlkFeature.SEG_MAX },
  { name: 'cylinders', field: wordField(16), feature: BlkFeature.GEOMETRY },
  { name: 'heads', field: byteField(18), feature: BlkFeature.GEOMETRY },
  { name: 'sectors', field: byteField(19), feature: BlkFeature.GEOMETRY },
  { name: 'blkSize', field: BlkConfig.blkSize, feature: BlkFeature.BLK_SIZE },
  { name: 'physicalBlockExp', field: byteField(24), feature: BlkFeature.TOPOLOGY },
  { name: 'alignmentOffset', field: byteField(25), feature: BlkFeature.TOPOLOGY },
  { name: 'minIoSize', field: wordField(26), feature: BlkFeature.TOPOLOGY },
  { name: 'optIoSize', field: { offset: 28, bytes: 4 }, feature: BlkFeature.TOPOLOGY },
  { name: 'writeback', field: BlkConfig.writeback, feature: BlkFeature.CONFIG_WCE },
  { name: 'numQueues', field: BlkConfig.numQueues, feature: BlkFeature.MQ },
  { name: 'maxDiscardSectors', field: BlkConfig.maxDiscardSectors, feature: BlkFeature.DISCARD },
  { name: 'maxDiscardSeg', field: BlkConfig.maxDiscardSeg, feature: BlkFeature.DISCARD },
  { name: 'discardSectorAlignment', field: BlkConfig.discardSectorAlignment, feature: BlkFeature.DISCARD },
  { name: 'maxWriteZeroesSectors', field: BlkConfig.maxWriteZeroesSectors, feature: BlkFeature.WRITE_ZEROES },
  { name: 'maxWriteZeroesSeg', field: BlkConfig.maxWriteZeroesSeg, feature: BlkFeature.WRITE_ZEROES },
  { name: 'writeZeroesMayUnmap', field: BlkConfig.writeZeroesMayUnmap, feature: BlkFeature.WRITE_ZEROES },
];

const NET_FIELDS: ConfigField[] = [
  {
    name: 'status',
    field: NetConfig.status,
    feature: NetFeature.STATUS,
    show: (v) => `${hex(v)} (link ${v & 1 ? 'up' : 'down'}${v & 2 ? ', announce' : ''})`,
  },
  { name: 'maxVirtqueuePairs', field: NetConfig.maxVirtqueuePairs, feature: NetFeature.MQ },
  { name: 'mtu', field: NetConfig.mtu, feature: NetFeature.MTU },
  {
    name: 'speed',
    field: NetConfig.speed,
    feature: SPEED_DUPLEX,
    show: (v) => (v === 0xffffffff ? 'unknown' : `${v} Mb/s`),
  },
  {
    name: 'duplex',
    field: NetConfig.duplex,
    feature: SPEED_DUPLEX,
    show: (v) => ({ 0: 'half', 1: 'full' })[v] ?? 'unknown',
  },
];

/** The fields of the configuration space that exist with the features the device offers. */
function decodeConfig(device: Device): { json: Record<string, number | string>; rows: string[][] } {
  const fields = device.deviceId === DeviceType.blk ? BLK_FIELDS : device.deviceId === DeviceType.net ? NET_FIELDS : [];
  const cfg = new ConfigView(device.readConfig(0, Math.min(device.configSize, 64)));
  const json: Record<string, number | string> = {};
  const rows: string[][] = [];
  if (device.deviceId === DeviceType.net && device.deviceFeatures & NetFeature.MAC && cfg.has(NetConfig.mac)) {
    json.mac = macString(cfg.bytes(NetConfig.mac));
    rows.push(['mac', json.mac]);
  }
  for (const f of fields) {
    if ((f.feature !== undefined && !(device.deviceFeatures & f.feature)) || !cfg.has(f.field)) continue;
    const v = cfg.get(f.field);
    json[f.name] = f.name === 'capacity' ? v * 512 : v;
    rows.push([f.name, f.show ? f.show(v) : String(v)]);
  }
  return { json, rows };
}

/** What queue `index` is for: blk request queues; net rx/tx pairs, then the control queue. */
function queueRole(device: Device, index: number): string {
  if (device.deviceId === DeviceType.blk) return 'request';
  if (device.deviceId !== DeviceType.net) return '-';
  const ctrl = (device.deviceFeatures & NetFeature.CTRL_VQ) !== 0n && device.maxQueues % 2 === 1;
  if (ctrl && index === device.maxQueues - 1) return 'control';
  return `${index % 2 === 0 ? 'rx' : 'tx'}${Math.floor(index / 2)}`;
}

interface QueueInfo {
  index: number;
  role: string;
  maxSize: number;
  /** vhost-vdpa only: its virtqueue group. */
  group?: number;
}

async function info({ positionals, json, out }: CommandContext): Promise<void> {
  const spec = positionals[0];
  const device = await openDevice(spec);
  try {
    const vhost: VhostInfo | undefined = device.vhost?.info();
    const queues: QueueInfo[] = [];
    for (let index = 0; index < device.maxQueues; index++) {
      const q: QueueInfo = { index, role: queueRole(device, index), maxSize: device.maxQueueSize(index) };
      if (device.vhost && vhost && vhost.groupCount > 1) q.group = device.vhost.vqGroup(index);
      queues.push(q);
    }
    const config = decodeConfig(device);
    const features = featureNames(device.deviceFeatures, device.deviceId);
    if (json) {
      return out(
        toJson({
          path: device.path,
          transport: device.transport,
          deviceType: device.deviceType,
          deviceId: device.deviceId,
          vendorId: device.vendorId,
          status: device.status(),
          maxQueues: device.maxQueues,
          configSize: device.configSize,
          features: { mask: device.deviceFeatures, names: features },
          config: config.json,
          queues,
          vhost,
        }),
      );
    }
    const identity = [
      ['device', device.path],
      ['transport', device.transport],
      ['type', `${device.deviceType} (virtio device id ${device.deviceId})`],
      ['vendor', hex(device.vendorId)],
      ['status', hex(device.status())],
      ['queues', String(device.maxQueues)],
      ['config', `${device.configSize} bytes`],
      ['features', `${hex(device.deviceFeatures)} ${features.join(' ')}`],
    ];
    if (vhost) {
      const backend = Object.entries(BackendFeature)
        .filter(([, bit]) => vhost.offeredBackendFeatures & bit)
        .map(([n]) => n);
      identity.push(
        ['backend', `${hex(vhost.offeredBackendFeatures)} ${backend.join(' ')}`],
        ['iova range', `${hex(vhost.iovaRange.first)}-${hex(vhost.iovaRange.last)}`],
        ['groups', `${vhost.groupCount} group(s), ${vhost.asidCount} address space(s)`],
      );
    }
    const queueHeader = ['QUEUE', 'ROLE', 'MAX_SIZE', ...(queues.some((q) => q.group !== undefined) ? ['GROUP'] : [])];
    out(
      [
        table(['FIELD', 'VALUE'], identity),
        '',
        config.rows.length ? table(['CONFIG', 'VALUE'], config.rows) : 'CONFIG  (no fields this CLI decodes)',
        '',
        table(
          queueHeader,
          queues.map((q) => [
            String(q.index),
            q.role,
            String(q.maxSize),
            ...(q.group === undefined ? [] : [String(q.group)]),
          ]),
        ),
      ].join('\n'),
    );
  } finally {
    await device.close();
  }
}

/** `list` and `info`. */
export const inspectionCommands: Command[] = [
  {
    name: 'list',
    synopsis: ['list [--json]'],
    summary: 'list the vDPA devices and virtio PCI functions on this machine',
    details: [
      'DEVICE is what info, bench and the library open: /dev/vhost-vdpa-N (a vdpa device on',
      'vhost_vdpa) or vfio:ADDRESS (a virtio PCI function on vfio-pci); "-" while a kernel driver',
      `has it (KERNEL: its netdev or /dev/vdX). Bind one with '${BIN} bind'. Reads sysfs only: no privileges.`,
    ],
    positionals: { min: 0, max: 0 },
    run: list,
  },
  {
    name: 'info',
    synopsis: ['info DEVICE [--json]'],
    summary: 'show one device: identity, features, decoded config, queues',
    details: [
      'DEVICE: mock:blk, mock:net, /dev/vhost-vdpa-N or vfio:0000:00:03.0. Opens the device without',
      'bringing a driver up (the feature bits are those it offers), then resets and closes it.',
    ],
    positionals: { min: 1, max: 1 },
    run: info,
  },
];
