// The vdpa generic netlink family: command and attribute numbers (facts from linux
// include/uapi/linux/vdpa.h) and the decoders that turn its answers into typed objects.
import { DeviceType } from './constants';
import { Attrs, GenlMessage } from './netlink';

export const VDPA_GENL_NAME = 'vdpa';
export const VDPA_GENL_VERSION = 1;

export const VdpaCmd = {
  MGMTDEV_GET: 2,
  DEV_NEW: 3,
  DEV_DEL: 4,
  DEV_GET: 5,
  DEV_CONFIG_GET: 6,
  DEV_VSTATS_GET: 7,
  DEV_ATTR_SET: 8,
} as const;

export const VdpaAttr = {
  MGMTDEV_BUS_NAME: 1,
  MGMTDEV_DEV_NAME: 2,
  MGMTDEV_SUPPORTED_CLASSES: 3,
  DEV_NAME: 4,
  DEV_ID: 5,
  DEV_VENDOR_ID: 6,
  DEV_MAX_VQS: 7,
  DEV_MAX_VQ_SIZE: 8,
  DEV_MIN_VQ_SIZE: 9,
  DEV_NET_CFG_MACADDR: 10,
  DEV_NET_STATUS: 11,
  DEV_NET_CFG_MAX_VQP: 12,
  DEV_NET_CFG_MTU: 13,
  DEV_NEGOTIATED_FEATURES: 14,
  DEV_MGMTDEV_MAX_VQS: 15,
  DEV_SUPPORTED_FEATURES: 16,
  DEV_QUEUE_INDEX: 17,
  DEV_VENDOR_ATTR_NAME: 18,
  DEV_VENDOR_ATTR_VALUE: 19,
  DEV_FEATURES: 20,
  DEV_BLK_CFG_CAPACITY: 21,
  DEV_BLK_CFG_SIZE_MAX: 22,
  DEV_BLK_CFG_BLK_SIZE: 23,
  DEV_BLK_CFG_SEG_MAX: 24,
  DEV_BLK_CFG_NUM_QUEUES: 25,
  DEV_BLK_CFG_PHY_BLK_EXP: 26,
  DEV_BLK_CFG_ALIGN_OFFSET: 27,
  DEV_BLK_CFG_MIN_IO_SIZE: 28,
  DEV_BLK_CFG_OPT_IO_SIZE: 29,
  DEV_BLK_CFG_MAX_DISCARD_SEC: 30,
  DEV_BLK_CFG_MAX_DISCARD_SEG: 31,
  DEV_BLK_CFG_DISCARD_SEC_ALIGN: 32,
  DEV_BLK_CFG_MAX_WRITE_ZEROES_SEC: 33,
  DEV_BLK_CFG_MAX_WRITE_ZEROES_SEG: 34,
  DEV_BLK_READ_ONLY: 35,
  DEV_BLK_FLUSH: 36,
} as const;

/** A vdpa management device: what can create vdpa devices (`vdpa mgmtdev show`). */
export interface ManagementDevice {
  /** The handle {@link createDevice} takes: `'vduse'`, or `'pci/0000:03:00.2'` for a bus device. */
  name: string;
  /** Bus of the parent device (`'pci'`), undefined for bus-less ones such as vduse. */
  bus: string | undefined;
  /** The parent device's name on its bus (`'vduse'`, `'0000:03:00.2'`). */
  devName: string;
  /** Device classes it can create: `'net'`, `'blk'`, or `'unknown(N)'` (virtio device ids). */
  classes: string[];
  /** Most virtqueues a device it creates can have; undefined when the kernel does not say. */
  maxVqs: number | undefined;
  /** Virtio feature bits its devices can offer; undefined when the kernel does not say. */
  supportedFeatures: bigint | undefined;
}

function typeName(id: number): string {
  return Object.entries(DeviceType).find(([, v]) => v === id)?.[0] ?? `unknown(${id})`;
}

/** The `bus/dev` (or just `dev`) handle of a management device. */
export function mgmtHandle(bus: string | undefined, dev: string): string {
  return bus ? `${bus}/${dev}` : dev;
}

export function decodeManagementDevice(m: GenlMessage): ManagementDevice {
  const a = m.attrs;
  const bus = a.string(VdpaAttr.MGMTDEV_BUS_NAME) || undefined;
  const devName = a.string(VdpaAttr.MGMTDEV_DEV_NAME) ?? '';
  const mask = a.u64(VdpaAttr.MGMTDEV_SUPPORTED_CLASSES) ?? 0n;
  const classes: string[] = [];
  for (let id = 0; id < 64; id++) if (mask & (1n << BigInt(id))) classes.push(typeName(id));
  return {
    name: mgmtHandle(bus, devName),
    bus,
    devName,
    classes,
    maxVqs: a.uint(VdpaAttr.DEV_MGMTDEV_MAX_VQS),
    supportedFeatures: a.u64(VdpaAttr.DEV_SUPPORTED_FEATURES),
  };
}

/** What VDPA_CMD_DEV_GET says of a vdpa device (`vdpa dev show`). */
export interface VdpaDeviceAttributes {
  /** vdpa device name. */
  name: string;
  /** Virtio device id (1 net, 2 blk). */
  deviceId: number | undefined;
  /** Virtio vendor id. */
  vendorId: number | undefined;
  /** Number of virtqueues. */
  maxVqs: number | undefined;
  /** Largest / smallest queue size the device accepts. */
  maxVqSize: number | undefined;
  minVqSize: number | undefined;
  /** Handle of its management device (`'vduse'`, `'pci/0000:03:00.2'`). */
  mgmtDev: string;
}

export function decodeDevice(m: GenlMessage): VdpaDeviceAttributes {
  const a = m.attrs;
  return {
    name: a.string(VdpaAttr.DEV_NAME) ?? '',
    deviceId: a.uint(VdpaAttr.DEV_ID),
    vendorId: a.uint(VdpaAttr.DEV_VENDOR_ID),
    maxVqs: a.uint(VdpaAttr.DEV_MAX_VQS),
    maxVqSize: a.uint(VdpaAttr.DEV_MAX_VQ_SIZE),
    minVqSize: a.uint(VdpaAttr.DEV_MIN_VQ_SIZE),
    mgmtDev: mgmtHandle(a.string(VdpaAttr.MGMTDEV_BUS_NAME) || undefined, a.string(VdpaAttr.MGMTDEV_DEV_NAME) ?? ''),
  };
}

/** Fields every decoded device configuration has. */
interface ConfigBase {
  /** vdpa device name. */
  name: string;
  /** Virtio features the device offers (VDPA_ATTR_DEV_FEATURES); undefined on older kernels. */
  deviceFeatures: bigint | undefined;
  /** Features the driver accepted; undefined until feature negotiation is done (FEATURES_OK). */
  negotiatedFeatures: bigint | undefined;
}

/** A virtio-net device's configuration (VDPA_CMD_DEV_CONFIG_GET). Fields the device lacks are undefined. */
export interface NetDeviceConfig extends ConfigBase {
  type: 'net';
  /** `'52:54:00:00:00:01'`. */
  mac: string | undefined;
  /** From the config status field (VIRTIO_NET_S_LINK_UP). */
  linkUp: boolean | undefined;
  mtu: number | undefined;
  maxVqPairs: number | undefined;
}

/** A virtio-blk device's configuration (VDPA_CMD_DEV_CONFIG_GET). Fields the device lacks are undefined. */
export interface BlkDeviceConfig extends ConfigBase {
  type: 'blk';
  /** In 512-byte sectors. */
  capacity: bigint | undefined;
  blockSize: number | undefined;
  sizeMax: number | undefined;
  segMax: number | undefined;
  numQueues: number | undefined;
  physicalBlockExp: number | undefined;
  alignmentOffset: number | undefined;
  minIoSize: number | undefined;
  optIoSize: number | undefined;
  maxDiscardSectors: number | undefined;
  maxDiscardSeg: number | undefined;
  discardSectorAlignment: number | undefined;
  maxWriteZeroesSectors: number | undefined;
  maxWriteZeroesSeg: number | undefined;
  readOnly: boolean | undefined;
  flush: boolean | undefined;
}

/** Another device type: only what every configuration has. */
export interface OtherDeviceConfig extends ConfigBase {
  type: 'other';
  /** `'unknown(N)'`, or `'unknown'` when the kernel gave no device id. */
  deviceType: string;
  deviceId: number | undefined;
}

export type DeviceConfig = NetDeviceConfig | BlkDeviceConfig | OtherDeviceConfig;

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, '0')).join(':');
}

const flag = (a: Attrs, t: number): boolean | undefined => (a.has(t) ? a.uint(t) !== 0 : undefined);

export function decodeConfig(m: GenlMessage): DeviceConfig {
  const a = m.attrs;
  const deviceId = a.uint(VdpaAttr.DEV_ID);
  const base = {
    name: a.string(VdpaAttr.DEV_NAME) ?? '',
    deviceFeatures: a.u64(VdpaAttr.DEV_FEATURES),
    negotiatedFeatures: a.u64(VdpaAttr.DEV_NEGOTIATED_FEATURES),
  };
  if (deviceId === DeviceType.net) {
    const mac = a.get(VdpaAttr.DEV_NET_CFG_MACADDR);
    const status = a.uint(VdpaAttr.DEV_NET_STATUS);
    return {
      type: 'net',
      ...base,
      mac: mac && mac.length >= 6 ? formatMac(mac) : undefined,
      linkUp: status === undefined ? undefined : (status & 1) !== 0,
      mtu: a.uint(VdpaAttr.DEV_NET_CFG_MTU),
      maxVqPairs: a.uint(VdpaAttr.DEV_NET_CFG_MAX_VQP),
    };
  }
  if (deviceId === DeviceType.blk) {
    return {
      type: 'blk',
      ...base,
      capacity: a.u64(VdpaAttr.DEV_BLK_CFG_CAPACITY),
      blockSize: a.uint(VdpaAttr.DEV_BLK_CFG_BLK_SIZE),
      sizeMax: a.uint(VdpaAttr.DEV_BLK_CFG_SIZE_MAX),
      segMax: a.uint(VdpaAttr.DEV_BLK_CFG_SEG_MAX),
      numQueues: a.uint(VdpaAttr.DEV_BLK_CFG_NUM_QUEUES),
      physicalBlockExp: a.uint(VdpaAttr.DEV_BLK_CFG_PHY_BLK_EXP),
      alignmentOffset: a.uint(VdpaAttr.DEV_BLK_CFG_ALIGN_OFFSET),
      minIoSize: a.uint(VdpaAttr.DEV_BLK_CFG_MIN_IO_SIZE),
      optIoSize: a.uint(VdpaAttr.DEV_BLK_CFG_OPT_IO_SIZE),
      maxDiscardSectors: a.uint(VdpaAttr.DEV_BLK_CFG_MAX_DISCARD_SEC),
      maxDiscardSeg: a.uint(VdpaAttr.DEV_BLK_CFG_MAX_DISCARD_SEG),
      discardSectorAlignment: a.uint(VdpaAttr.DEV_BLK_CFG_DISCARD_SEC_ALIGN),
      maxWriteZeroesSectors: a.uint(VdpaAttr.DEV_BLK_CFG_MAX_WRITE_ZEROES_SEC),
      maxWriteZeroesSeg: a.uint(VdpaAttr.DEV_BLK_CFG_MAX_WRITE_ZEROES_SEG),
      readOnly: flag(a, VdpaAttr.DEV_BLK_READ_ONLY),
      flush: flag(a, VdpaAttr.DEV_BLK_FLUSH),
    };
  }
  return { type: 'other', deviceType: deviceId === undefined ? 'unknown' : typeName(deviceId), deviceId, ...base };
}

/** Vendor statistics of one virtqueue (VDPA_CMD_DEV_VSTATS_GET). */
export interface QueueStats {
  /** vdpa device name. */
  name: string;
  /** The queue these are for. */
  queueIndex: number | undefined;
  /** Features the driver accepted. */
  negotiatedFeatures: bigint | undefined;
  /** The vendor's name/value pairs, in the order the kernel gave them. */
  values: { name: string; value: bigint }[];
}

export function decodeStats(m: GenlMessage): QueueStats {
  const a = m.attrs;
  const values: { name: string; value: bigint }[] = [];
  let pending: string | undefined;
  for (const attr of a.list) {
    if (attr.type === VdpaAttr.DEV_VENDOR_ATTR_NAME) {
      pending = new Attrs([attr]).string(attr.type);
    } else if (attr.type === VdpaAttr.DEV_VENDOR_ATTR_VALUE && pending !== undefined) {
      values.push({ name: pending, value: new Attrs([attr]).u64(attr.type) ?? 0n });
      pending = undefined;
    }
  }
  return {
    name: a.string(VdpaAttr.DEV_NAME) ?? '',
    queueIndex: a.uint(VdpaAttr.DEV_QUEUE_INDEX),
    negotiatedFeatures: a.u64(VdpaAttr.DEV_NEGOTIATED_FEATURES),
    values,
  };
}
