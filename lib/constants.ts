/** Virtio device type IDs (virtio 1.x section 5). */
export const DeviceType = {
  net: 1,
  blk: 2,
} as const;
/** A virtio device type name this library knows. */
export type DeviceTypeName = keyof typeof DeviceType;

/** Device status bits (virtio 1.x section 2.1). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** Feature bits shared by all device types, as bit masks. */
export const Feature = {
  RING_INDIRECT_DESC: 1n << 28n,
  RING_EVENT_IDX: 1n << 29n,
  VERSION_1: 1n << 32n,
  ACCESS_PLATFORM: 1n << 33n,
  RING_PACKED: 1n << 34n,
  IN_ORDER: 1n << 35n,
} as const;

/** virtio-blk feature bits, as bit masks. */
export const BlkFeature = {
  SIZE_MAX: 1n << 1n,
  SEG_MAX: 1n << 2n,
  GEOMETRY: 1n << 4n,
  RO: 1n << 5n,
  BLK_SIZE: 1n << 6n,
  FLUSH: 1n << 9n,
  TOPOLOGY: 1n << 10n,
  CONFIG_WCE: 1n << 11n,
  MQ: 1n << 12n,
  DISCARD: 1n << 13n,
  WRITE_ZEROES: 1n << 14n,
} as const;

/** virtio-net feature bits, as bit masks. */
export const NetFeature = {
  CSUM: 1n << 0n,
  GUEST_CSUM: 1n << 1n,
  MTU: 1n << 3n,
  MAC: 1n << 5n,
  GUEST_TSO4: 1n << 7n,
  GUEST_TSO6: 1n << 8n,
  HOST_TSO4: 1n << 11n,
  HOST_TSO6: 1n << 12n,
  MRG_RXBUF: 1n << 15n,
  STATUS: 1n << 16n,
  CTRL_VQ: 1n << 17n,
  CTRL_RX: 1n << 18n,
  CTRL_VLAN: 1n << 19n,
  CTRL_RX_EXTRA: 1n << 20n,
  GUEST_ANNOUNCE: 1n << 21n,
  MQ: 1n << 22n,
  CTRL_MAC_ADDR: 1n << 23n,
  GUEST_USO4: 1n << 54n,
  GUEST_USO6: 1n << 55n,
  HOST_USO: 1n << 56n,
  HASH_REPORT: 1n << 57n,
  RSS: 1n << 60n,
} as const;

/**
 * Names of the feature bits set in `features`, lowest bit first, for logs and CLIs. A bit this
 * library has no name for (or one specific to another device type, or any device-specific bit
 * when `deviceType` is not given) is named by its number: `'bit41'`. Nothing set is left out.
 */
export function featureNames(features: bigint, deviceType?: number): string[] {
  if (typeof features !== 'bigint') throw new TypeError('features must be a bigint');
  if (features < 0n) throw new RangeError('features must not be negative');
  const known = new Map<bigint, string>();
  const tables: Record<string, bigint>[] = [Feature];
  if (deviceType === DeviceType.blk) tables.push(BlkFeature);
  if (deviceType === DeviceType.net) tables.push(NetFeature);
  for (const table of tables) for (const [name, mask] of Object.entries(table)) known.set(mask, name);
  const names: string[] = [];
  for (let bit = 0n; features >> bit !== 0n; bit++) {
    const mask = 1n << bit;
    if (features & mask) names.push(known.get(mask) ?? `bit${bit}`);
  }
  return names;
}
