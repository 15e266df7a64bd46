// Byte layouts of the virtio structures the drivers read and write (virtio 1.x, little-endian):
// device configuration spaces and request headers. Named fields instead of bare offsets.

/** One field of a virtio structure: its byte offset and width. */
export interface Field {
  readonly offset: number;
  readonly bytes: number;
}

/** struct virtio_blk_config (virtio 1.x section 5.2.4). */
export const BlkConfig = {
  capacity: { offset: 0, bytes: 8 },
  sizeMax: { offset: 8, bytes: 4 },
  segMax: { offset: 12, bytes: 4 },
  geometry: { offset: 16, bytes: 4 },
  blkSize: { offset: 20, bytes: 4 },
  topology: { offset: 24, bytes: 8 },
  writeback: { offset: 32, bytes: 1 },
  numQueues: { offset: 34, bytes: 2 },
  maxDiscardSectors: { offset: 36, bytes: 4 },
  maxDiscardSeg: { offset: 40, bytes: 4 },
  discardSectorAlignment: { offset: 44, bytes: 4 },
  maxWriteZeroesSectors: { offset: 48, bytes: 4 },
  maxWriteZeroesSeg: { offset: 52, bytes: 4 },
  writeZeroesMayUnmap: { offset: 56, bytes: 1 },
} as const satisfies Record<string, Field>;
/** Bytes of struct virtio_blk_config up to the last field this library knows. */
export const BLK_CONFIG_SIZE = 60;

/** struct virtio_blk_outhdr: the header every virtio-blk request starts with. */
export const BlkRequestHeader = {
  type: { offset: 0, bytes: 4 },
  ioprio: { offset: 4, bytes: 4 },
  sector: { offset: 8, bytes: 8 },
} as const satisfies Record<string, Field>;
export const BLK_REQUEST_HEADER_SIZE = 16;

/** struct virtio_blk_discard_write_zeroes: one range of a discard or write-zeroes request. */
export const BlkDiscardSegment = {
  sector: { offset: 0, bytes: 8 },
  numSectors: { offset: 8, bytes: 4 },
  flags: { offset: 12, bytes: 4 },
} as const satisfies Record<string, Field>;
export const BLK_DISCARD_SEGMENT_SIZE = 16;

/** The status byte a virtio-blk device writes last (VIRTIO_BLK_S_*). */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** Bytes of the ID a VIRTIO_BLK_T_GET_ID request returns. */
export const BLK_ID_BYTES = 20;

/** struct virtio_net_config (virtio 1.x section 5.1.4). */
export const NetConfig = {
  mac: { offset: 0, bytes: 6 },
  status: { offset: 6, bytes: 2 },
  maxVirtqueuePairs: { offset: 8, bytes: 2 },
  mtu: { offset: 10, bytes: 2 },
  speed: { offset: 12, bytes: 4 },
  duplex: { offset: 16, bytes: 1 },
  rssMaxKeySize: { offset: 17, bytes: 1 },
  rssMaxIndirectionTableLength: { offset: 18, bytes: 2 },
  supportedHashTypes: { offset: 20, bytes: 4 },
} as const satisfies Record<string, Field>;
/** Bytes of struct virtio_net_config up to the last field this library knows. */
export const NET_CONFIG_SIZE = 24;

/** VIRTIO_NET_S_LINK_UP in the status field. */
export const NET_STATUS_LINK_UP = 1;
/** VIRTIO_NET_S_ANNOUNCE in the status field: the device asks the driver to announce itself. */
export const NET_STATUS_ANNOUNCE = 2;

/** struct virtio_net_hdr_v1: the header in front of every frame (VERSION_1 without MRG_RXBUF). */
export const NET_HEADER_SIZE = 12;

/** struct virtio_net_hdr_v1_hash: the header with hash_value, hash_report and padding (VIRTIO_NET_F_HASH_REPORT). */
export const NET_HASH_HEADER_SIZE = 20;

/** Little-endian reads of named fields over a copy of (the start of) a configuration space. */
export class ConfigView {
  private readonly view: DataView;

  constructor(bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** True when the space the device reported is long enough to hold `field`. */
  has(field: Field): boolean {
    return field.offset + field.bytes <= this.view.byteLength;
  }

  /** An integer field of 1, 2, 4 or 8 bytes (8-byte values above 2^53 lose precision). */
  get(field: Field): number {
    if (!this.has(field)) throw new RangeError(`config field at ${field.offset} is past the config space`);
    switch (field.bytes) {
      case 1:
        return this.view.getUint8(field.offset);
      case 2:
        return this.view.getUint16(field.offset, true);
      case 4:
        return this.view.getUint32(field.offset, true);
      case 8:
        return Number(this.view.getBigUint64(field.offset, true));
      default:
        throw new RangeError(`config field at ${field.offset} is ${field.bytes} bytes, not an integer`);
    }
  }

  /** The raw bytes of `field` (a copy). */
  bytes(field: Field): Uint8Array {
    if (!this.has(field)) throw new RangeError(`config field at ${field.offset} is past the config space`);
    return new Uint8Array(
      this.view.buffer.slice(this.view.byteOffset + field.offset, this.view.byteOffset + field.offset + field.bytes),
    );
  }
}
