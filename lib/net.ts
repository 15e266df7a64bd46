import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { Call, abortError, requestSignal, runCall, type RequestOptions } from './call';
import {
  ConfigView,
  NET_CONFIG_SIZE,
  NET_HASH_HEADER_SIZE,
  NET_HEADER_SIZE,
  NET_STATUS_ANNOUNCE,
  NET_STATUS_LINK_UP,
  NetConfig,
} from './config';
import { DeviceType, Feature, NetFeature } from './constants';
import {
  COMMON_FEATURES,
  forwardDeviceEvents,
  inspectLine,
  openForDriver,
  type Device,
  type DeviceEvents,
  type InspectStyling,
} from './device';
import { VdpaError, vdpaError } from './errors';
import { Fifo } from './fifo';
import { handOver, type HandOverOptions, type HandOverResult } from './handover';
import { deviceStats as vdpaDeviceStats } from './management';
import {
  forwardLoop,
  generateLoop,
  loopBusyError,
  sinkLoop,
  type LoopHolder,
  type LoopPair,
  type NetForwardOptions,
  type NetGenerateOptions,
  type NetLoop,
  type NetLoopOptions,
} from './net-loops';
import type { OpenOptions } from './options';
import { TokenWaiters, type QueueDriver } from './queue';
import { NetFrameStream, type NetFrameStreamOptions } from './streams';
import { vdpaNameOfVhostNode } from './sysfs-devices';
import type { QueueStats } from './vdpa-protocol';
import { checkBoolean, checkInteger, checkObject, checkPollMicros } from './validate';

/** Options for {@link openNet}. */
export interface NetOptions extends OpenOptions {
  /** Entries per queue (a power of two unless packed). Default 256, or the device's maximum if smaller. */
  queueSize?: number;
  /** Use the packed ring when the device offers it; default false. */
  packed?: boolean;
  /**
   * Polling mode, as {@link BlkOptions.pollMicros}: after each wake-up's completions, keep looking at
   * the used rings for up to this many microseconds (0 to 1,000,000) before waiting for the next
   * interrupt; the JS thread spins for that long. Default 0: interrupts only.
   */
  pollMicros?: number;
  /**
   * Use mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF) when the device offers them; default
   * true. Receive buffers are then {@link rxBufferSize} bytes and a frame may span several.
   */
  mergeable?: boolean;
  /**
   * Bytes per receive buffer with mergeable buffers (64 to 65536; default 2048, or more when the
   * queue would not hold one largest frame). Without them each buffer holds a whole frame (MTU + 30
   * bytes). A size with which the queue cannot hold one largest frame is a RangeError.
   */
  rxBufferSize?: number;
  /**
   * Use the control queue (VIRTIO_NET_F_CTRL_VQ and the control features, VIRTIO_NET_F_RSS among
   * them) when the device offers it; default true. Without it the control methods reject with
   * `'EOPNOTSUPP'`.
   */
  control?: boolean;
  /**
   * Queue pairs to use (1 up to the device's max_virtqueue_pairs; above 1 needs VIRTIO_NET_F_MQ
   * and the control queue). Default 1.
   */
  queuePairs?: number;
  /**
   * Let the device fill in checksums of frames sent with {@link SendOptions.checksum}
   * (VIRTIO_NET_F_CSUM, negotiated only when asked for). Default false.
   */
  txChecksum?: boolean;
  /**
   * Accept received frames whose checksum is left to the driver or already checked by the device
   * (VIRTIO_NET_F_GUEST_CSUM, negotiated only when asked for); {@link NetDevice.packets} tells which.
   * Default false.
   */
  rxChecksum?: boolean;
  /**
   * Let the device segment large frames sent with {@link SendOptions.gso} (VIRTIO_NET_F_HOST_TSO4,
   * HOST_TSO6 and, where offered, HOST_USO; negotiated only when asked for). Needs `txChecksum`.
   * Each transmit slot then holds a 64 KiB frame (queueSize x 64 KiB of DMA memory per pair).
   * Default false.
   */
  txGso?: boolean;
  /**
   * Accept large received frames the device did not segment (VIRTIO_NET_F_GUEST_TSO4, GUEST_TSO6
   * and, where offered, GUEST_USO4 + GUEST_USO6; negotiated only when asked for);
   * {@link PacketMeta.gsoType} tells which. Needs `rxChecksum`. With mergeable buffers such a frame
   * arrives over several of them; without, every receive buffer holds a 64 KiB frame (as Linux's
   * "big packets": queueSize x 64 KiB per pair). Default false.
   */
  rxGso?: boolean;
  /**
   * Ask the device for a hash of every received frame (VIRTIO_NET_F_HASH_REPORT, negotiated only
   * when asked for; needs the control queue): the header grows to virtio_net_hdr_v1_hash (20 bytes)
   * both ways and {@link PacketMeta.hash} / {@link PacketMeta.hashType} carry the hash, once
   * {@link NetDevice.setRss} or {@link NetDevice.setHashConfig} said what to hash. Default false.
   */
  hashReport?: boolean;
}

/**
 * A hash type of receive-side scaling and hash reports (VIRTIO_NET_RSS_HASH_TYPE_*): what the
 * Toeplitz hash covers. `'tcpv4'`: IPv4 addresses and TCP ports; `'ipv4'`: the addresses only
 * (also for a TCP or UDP packet whose own type is not enabled, and for fragments); the `ex` types
 * take IPv6 extension headers (home address, routing header) into account.
 */
export type NetHashType = 'ipv4' | 'tcpv4' | 'udpv4' | 'ipv6' | 'tcpv6' | 'udpv6' | 'ipv6ex' | 'tcpv6ex' | 'udpv6ex';

/** Bit of each hash type in hash_types and supported_hash_types; report value = index + 1. */
const HASH_TYPES: readonly NetHashType[] = [
  'ipv4',
  'tcpv4',
  'udpv4',
  'ipv6',
  'tcpv6',
  'udpv6',
  'ipv6ex',
  'tcpv6ex',
  'udpv6ex',
];

/** What a device's receive-side scaling takes (config space: rss_max_key_size and the rest). */
export interface RssLimits {
  /** Longest hash key, in bytes (rss_max_key_size). */
  maxKeySize: number;
  /** Most indirection table entries (rss_max_indirection_table_length); 0 without VIRTIO_NET_F_RSS. */
  maxIndirectionTableLength: number;
  /** The hash types the device computes (supported_hash_types). */
  hashTypes: NetHashType[];
}

/** The hash configuration of {@link NetDevice.setHashConfig}: what to hash, with which key. */
export interface HashConfig {
  /** The Toeplitz key: 1 to {@link RssLimits.maxKeySize} bytes (Microsoft's 40-byte default key is usual). */
  key: Uint8Array;
  /** What to hash; each one the device offers ({@link RssLimits.hashTypes}). Empty: hash nothing. */
  hashTypes: readonly NetHashType[];
}

/** The receive-side scaling configuration of {@link NetDevice.setRss}. */
export interface RssConfig extends HashConfig {
  /**
   * The queue pair of each hash bucket: a frame goes to `indirectionTable[hash % length]`. A power
   * of two entries, 1 up to {@link RssLimits.maxIndirectionTableLength} (and 512), each 0 to
   * {@link NetDevice.queuePairs} - 1.
   */
  indirectionTable: readonly number[];
  /** The queue pair of frames none of the hash types covers (ARP, non-IP, ...); default 0. */
  unclassifiedQueue?: number;
}

/** A segmentation offload type: TCP over IPv4 or IPv6, or UDP (VIRTIO_NET_HDR_GSO_UDP_L4). */
export type GsoType = 'tcpv4' | 'tcpv6' | 'udp';

/** A segmentation request ({@link SendOptions.gso}). */
export interface GsoRequest {
  type: GsoType;
  /** Transport payload bytes per segment (the MSS), 1 to 65535. */
  size: number;
  /**
   * Bytes of headers (Ethernet, IP, TCP or UDP) before the payload: hdr_len. Default: read from
   * the frame, `checksum.start` plus the TCP header's data offset (or 8 for UDP).
   */
  headerLength?: number;
}

/** Options of {@link NetDevice.send} and {@link NetDevice.sendBatch}. */
export interface SendOptions extends RequestOptions {
  /** The queue pair to send on (0 to queuePairs - 1); default: the pairs in turn, frame by frame. */
  queue?: number;
  /**
   * The device computes the Internet checksum from byte `start` to the end of the frame and stores
   * it at `start + offset` (e.g. a TCP checksum: start = the TCP header, offset 16; put the
   * pseudo-header sum there first). Needs {@link NetOptions.txChecksum} (else `'EOPNOTSUPP'`); for
   * sendBatch it applies to every frame.
   */
  checksum?: { start: number; offset: number };
  /**
   * The device cuts the frame (up to 65550 bytes: a 64 KiB IP packet and its Ethernet header) into
   * segments of `size` payload bytes, each with its own IP and TCP (or UDP) header and checksum,
   * or hands it whole to a receiver that takes it. Needs `checksum` on the transport checksum
   * (offset 16 for TCP, 6 for UDP) and {@link NetOptions.txGso} with the type's feature (else
   * `'EOPNOTSUPP'`). No ECN (HOST_ECN is not negotiated). For sendBatch it applies to every frame.
   */
  gso?: GsoRequest;
}

/** What the device said about a received frame ({@link NetDevice.packets}). */
export interface PacketMeta {
  /**
   * The checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM): the ones-complement sum from
   * `checksumStart` to the end still has to be stored at `checksumStart + checksumOffset`.
   */
  checksumNeeded: boolean;
  /** The device checked the frame's checksums (VIRTIO_NET_HDR_F_DATA_VALID). */
  checksumValid: boolean;
  checksumStart: number;
  checksumOffset: number;
  /** A frame larger than the wire carries, to be segmented like this ({@link NetOptions.rxGso}); else `'none'`. */
  gsoType: GsoType | 'none';
  /** Payload bytes per segment (gso_size); 0 when gsoType is `'none'`. */
  gsoSize: number;
  /** The device's hdr_len: bytes of headers before the payload (a hint); 0 when gsoType is `'none'`. */
  headerLength: number;
  /**
   * The device's hash of the frame (hash_value; {@link NetOptions.hashReport}); 0 when hashType is
   * `'none'`.
   */
  hash: number;
  /**
   * What the hash covers (hash_report), or `'none'`: not hashed (no hash report negotiated, no hash
   * type configured covers the frame, or a report value this library does not know).
   */
  hashType: NetHashType | 'none';
}

/** A received frame and what the device said about it. */
export interface Packet {
  frame: Uint8Array;
  meta: PacketMeta;
}

const PLAIN: PacketMeta = Object.freeze({
  checksumNeeded: false,
  checksumValid: false,
  checksumStart: 0,
  checksumOffset: 0,
  gsoType: 'none',
  gsoSize: 0,
  headerLength: 0,
  hash: 0,
  hashType: 'none',
});
const HDR_NEEDS_CSUM = 1;
const HDR_DATA_VALID = 2;
/** gso_type values (VIRTIO_NET_HDR_GSO_*) by name, and names by value. */
const GSO_TYPES: Record<GsoType, number> = { tcpv4: 1, tcpv6: 4, udp: 5 };
const GSO_NAMES: readonly (GsoType | undefined)[] = [undefined, 'tcpv4', undefined, undefined, 'tcpv6', 'udp'];
/** The transmit feature each type needs. */
const GSO_HOST_FEATURE: Record<GsoType, bigint> = {
  tcpv4: NetFeature.HOST_TSO4,
  tcpv6: NetFeature.HOST_TSO6,
  udp: NetFeature.HOST_USO,
};
/** Longest frame a segmentation request carries: 64 KiB of IP packet and its Ethernet header. */
const GSO_MAX_FRAME = 65536 + 14;
const TX_GSO_FEATURES = NetFeature.HOST_TSO4 | NetFeature.HOST_TSO6 | NetFeature.HOST_USO;
const RX_GSO_FEATURES = NetFeature.GUEST_TSO4 | NetFeature.GUEST_TSO6 | NetFeature.GUEST_USO4 | NetFeature.GUEST_USO6;

/** The MAC filter table of {@link NetDevice.setMacTable}: addresses received besides the device's own. */
export interface MacTable {
  /** Unicast addresses, as 6 bytes or `'52:54:00:12:34:56'` text. */
  unicast?: readonly (Uint8Array | string)[];
  /** Multicast addresses (low bit of the first byte set). */
  multicast?: readonly (Uint8Array | string)[];
}

/**
 * The events of a {@link NetDevice}: its {@link DeviceEvents}, plus `'link'` when the link status
 * in config space changed (`up` is the new {@link NetDevice.linkUp}), and `'announce'` when the
 * device asks the driver to announce itself (VIRTIO_NET_S_ANNOUNCE, e.g. after a migration): send
 * your gratuitous ARP / unsolicited neighbour advertisements, then call
 * {@link NetDevice.acknowledgeAnnounce}.
 */
export interface NetEvents extends DeviceEvents {
  link: [up: boolean];
  announce: [];
  /** A {@link NetDevice.handOver} finished: the driver runs on `result.to` now. */
  handOver: [result: HandOverResult];
}

/** The header without hash reports (20 bytes with them: NET_HASH_HEADER_SIZE). */
const HDR = NET_HEADER_SIZE;
const ETH_HEADER = 14;
const VLAN_TAG = 4;
const DEFAULT_RX_BUFFER = 2048;
/** Bytes per control command: class, command, data (a MAC table of 2 x 128 addresses), ack. */
const CTRL_SLOT = 2048;
const CTRL_ACK = CTRL_SLOT - 1;
const MAX_TABLE = 128;
const CTRL_QUEUE_SIZE = 64;
const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** Bytes of received frames kept for a slow reader; frames arriving past it are dropped (counted). */
const RX_BACKLOG_BYTES = 64 * 2 ** 20;

/** What a hand-over takes back from the old device's queues: frames, receive tokens, commands. */
type NetChain = TxFrame | number | CtrlCommand;

/** A frame on its way out: the call it belongs to (a send, or one of a sendBatch). */
interface TxFrame {
  call: Call;
  frame: Uint8Array;
  length: number;
  checksum: { start: number; offset: number } | undefined;
  /** gso_type, gso_size and hdr_len, as checked. */
  gso: { type: number; size: number; headerLength: number } | undefined;
  /** The queue pair it was placed on (a hand-over re-issues it on the same pair of the new device). */
  queue: number;
}

/** A control command: class, command, data, and the device path for errors. */
interface CtrlRequest {
  cls: number;
  cmd: number;
  name: string;
  data: Uint8Array;
  path: string;
}

/** A control command on its way: the call, the command, its slot in `bufs`. */
interface CtrlCommand {
  call: Call;
  req: CtrlRequest;
  bufs: { handle: number; bytes: Uint8Array };
  at: number;
}

/** A frame spread over several mergeable buffers, as far as it arrived. */
interface PartialFrame {
  parts: Uint8Array[];
  bytes: number;
  /** num_buffers from its header, and the buffers seen so far. */
  want: number;
  got: number;
  meta: PacketMeta;
}

/** A device's queues as the driver uses them: its queue pairs and its control queue, if any. */
interface Rings {
  pairs: QueuePair[];
  ctrl: QueueDriver<CtrlCommand> | undefined;
  ctrlBufs: CtrlCommand['bufs'] | undefined;
}

/** One receive/transmit queue pair. */
interface QueuePair {
  rx: QueueDriver<number>;
  tx: QueueDriver<TxFrame>;
  txWaiters: TokenWaiters;
  rxBufs: { handle: number; bytes: Uint8Array };
  txBufs: { handle: number; bytes: Uint8Array };
  partial: PartialFrame | undefined;
  stats: QueuePairStats;
  /** Set by a hand-over: the pair that took this one's place (frames waiting here move on to it). */
  movedTo?: QueuePair;
}

/** Counters of one queue pair since open ({@link NetDevice.stats}). */
export interface QueuePairStats {
  /** Frames (and their bytes) received on this pair's receive queue. */
  rxFrames: number;
  rxBytes: number;
  /** Frames received here and dropped because nobody read them fast enough (see {@link NetDevice.droppedFrames}). */
  rxDropped: number;
  /** Frames (and their bytes) the device took from this pair's transmit queue. */
  txFrames: number;
  txBytes: number;
}

interface Reader {
  resolve: (f: Uint8Array, meta: PacketMeta) => void;
  reject: (e: Error) => void;
  /** Settled already (aborted): skipped when a frame arrives. */
  done: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** Control classes and commands (virtio 1.x section 5.1.6.5) and the feature each needs. */
const Ctrl = {
  RX_PROMISC: { cls: 0, cmd: 0, name: 'VIRTIO_NET_CTRL_RX_PROMISC', feature: NetFeature.CTRL_RX },
  RX_ALLMULTI: { cls: 0, cmd: 1, name: 'VIRTIO_NET_CTRL_RX_ALLMULTI', feature: NetFeature.CTRL_RX },
  MAC_TABLE_SET: { cls: 1, cmd: 0, name: 'VIRTIO_NET_CTRL_MAC_TABLE_SET', feature: NetFeature.CTRL_RX },
  MAC_ADDR_SET: { cls: 1, cmd: 1, name: 'VIRTIO_NET_CTRL_MAC_ADDR_SET', feature: NetFeature.CTRL_MAC_ADDR },
  VLAN_ADD: { cls: 2, cmd: 0, name: 'VIRTIO_NET_CTRL_VLAN_ADD', feature: NetFeature.CTRL_VLAN },
  VLAN_DEL: { cls: 2, cmd: 1, name: 'VIRTIO_NET_CTRL_VLAN_DEL', feature: NetFeature.CTRL_VLAN },
  ANNOUNCE_ACK: { cls: 3, cmd: 0, name: 'VIRTIO_NET_CTRL_ANNOUNCE_ACK', feature: NetFeature.GUEST_ANNOUNCE },
  MQ_VQ_PAIRS_SET: { cls: 4, cmd: 0, name: 'VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET', feature: NetFeature.MQ },
  MQ_RSS_CONFIG: { cls: 4, cmd: 1, name: 'VIRTIO_NET_CTRL_MQ_RSS_CONFIG', feature: NetFeature.RSS },
  MQ_HASH_CONFIG: { cls: 4, cmd: 2, name: 'VIRTIO_NET_CTRL_MQ_HASH_CONFIG', feature: NetFeature.HASH_REPORT },
} as const;
type CtrlName = keyof typeof Ctrl;

/** The features the control queue brings, asked for only with it. */
const CONTROL_FEATURES =
  NetFeature.CTRL_VQ |
  NetFeature.CTRL_RX |
  NetFeature.CTRL_VLAN |
  NetFeature.GUEST_ANNOUNCE |
  NetFeature.CTRL_MAC_ADDR |
  NetFeature.MQ |
  NetFeature.RSS;

/** Yields what `next()` resolves with until the device is closed (ECANCELED, EBADF end it); other errors throw. */
async function* untilClosed<T>(next: () => Promise<T>): AsyncGenerator<T, void, undefined> {
  for (;;) {
    try {
      yield await next();
    } catch (e) {
      const code = (e as VdpaError).code;
      if (e instanceof VdpaError && (code === 'ECANCELED' || code === 'EBADF')) return;
      throw e;
    }
  }
}

/**
 * A virtio-net device: send frames, receive them as an async iterator or through an object-mode
 * Duplex ({@link createFrameStream}). Frames are whole Ethernet frames without FCS (14-byte header
 * + payload, at most MTU + 14 bytes to send, 65550 with {@link SendOptions.gso}; received frames
 * may carry a VLAN tag more, or be up to 64 KiB with {@link NetOptions.rxGso}). With mergeable
 * receive buffers (the default when offered) a frame arrives in buffers of
 * {@link NetOptions.rxBufferSize} bytes, so large MTUs cost no MTU-sized buffers; a device whose
 * `num_buffers` or lengths do not add up breaks the receive queue (`'EPROTO'`). With the control
 * queue, the receive filters, MAC address, VLAN filter, announce acknowledgement and queue pairs
 * are set through it. Every request takes a final {@link RequestOptions} with an AbortSignal.
 * Emits the {@link NetEvents}; `await using` closes it.
 */
export class NetDevice extends EventEmitter<NetEvents> implements AsyncDisposable {
  /** Largest payload; frames may be up to `mtu + 14` bytes. */
  readonly mtu: number;
  /** Entries per queue. */
  readonly queueSize: number;
  /** Queue pairs in use (see {@link NetOptions.queuePairs}). */
  readonly queuePairs: number;
  /** Bytes per receive buffer: {@link NetOptions.rxBufferSize} with mergeable buffers, else a whole frame. */
  readonly rxBufferSize: number;
  /** True when mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF) were negotiated. */
  readonly mergeable: boolean;
  /** True when the control queue (VIRTIO_NET_F_CTRL_VQ) was negotiated. */
  readonly hasControl: boolean;
  /** The underlying device (features, config space, `'timeout'` events); a new one after {@link handOver}. */
  get device(): Device {
    return this.current;
  }
  /**
   * Frames dropped because nobody read them fast enough: once unread frames hold 64 MiB, each new
   * one is dropped (the oldest are kept, in order).
   */
  droppedFrames = 0;

  // Set by bringUp(), before anyone else sees the device.
  private readonly pairs: QueuePair[] = [];
  private ctrl: QueueDriver<CtrlCommand> | undefined;
  private readonly ctrlWaiters = new TokenWaiters();
  private ctrlBufs: { handle: number; bytes: Uint8Array } | undefined;
  private readonly txSlot: number;
  private readonly pollMicros: number;
  private currentMac: Uint8Array;
  private lastLink: boolean;
  private nextPair = 0;
  private readonly received = new Fifo<Uint8Array>();
  /** Alongside `received` when VIRTIO_NET_F_GUEST_CSUM or HASH_REPORT was negotiated (else every frame is PLAIN). */
  private readonly receivedMeta = new Fifo<PacketMeta>();
  private readonly rxMeta: boolean;
  /** Bytes of the virtio-net header both ways: 12, or 20 with VIRTIO_NET_F_HASH_REPORT. */
  private readonly hdr: number;
  /** Bit n set: gso_type n was negotiated (GUEST_TSO4, GUEST_TSO6, GUEST_USO4/6); a received frame with another breaks the queue. */
  private readonly rxGsoTypes: number;
  private receivedBytes = 0;
  private readonly readers = new Fifo<Reader>();
  private waitingReaders = 0;
  private failure: Error | undefined;
  private current: Device;
  /** Stops following the current device's events (a hand-over moves on to the next one). */
  private unfollow: () => void;

  /** @internal Use {@link openNet}; `f` is what the device accepted of {@link netFeatures}. */
  constructor(device: Device, options: NetOptions, f: bigint) {
    super();
    this.current = device;
    this.unfollow = this.follow(device);
    const cfg = netConfig(device);
    this.currentMac = f & NetFeature.MAC && cfg.has(NetConfig.mac) ? cfg.bytes(NetConfig.mac) : new Uint8Array(6);
    this.mtu = f & NetFeature.MTU && cfg.has(NetConfig.mtu) ? cfg.get(NetConfig.mtu) : 1500;
    this.mergeable = (f & NetFeature.MRG_RXBUF) !== 0n;
    this.hasControl = (f & NetFeature.CTRL_VQ) !== 0n;
    this.hdr = f & NetFeature.HASH_REPORT ? NET_HASH_HEADER_SIZE : HDR;
    this.rxMeta = (f & (NetFeature.GUEST_CSUM | NetFeature.HASH_REPORT)) !== 0n;
    this.rxGsoTypes =
      (f & NetFeature.GUEST_TSO4 ? 1 << GSO_TYPES.tcpv4 : 0) |
      (f & NetFeature.GUEST_TSO6 ? 1 << GSO_TYPES.tcpv6 : 0) |
      (f & (NetFeature.GUEST_USO4 | NetFeature.GUEST_USO6) ? 1 << GSO_TYPES.udp : 0);
    const maxPairs =
      f & NetFeature.MQ && cfg.has(NetConfig.maxVirtqueuePairs) ? cfg.get(NetConfig.maxVirtqueuePairs) : 1;
    const pairs = options.queuePairs ?? 1;
    if (pairs > maxPairs)
      throw vdpaError(
        'EOPNOTSUPP',
        'open',
        device.path,
        `${pairs} queue pairs asked for; the device offers ${maxPairs}`,
        maxPairs === 1 ? 'the device did not offer VIRTIO_NET_F_MQ with the control queue' : undefined,
      );
    this.queuePairs = pairs;
    const dataQueues = Array.from({ length: 2 * pairs }, (_, i) => i);
    const queueSize = device.queueSizeFor(options.queueSize, dataQueues);
    this.queueSize = queueSize;
    // Without MRG_RXBUF every receive buffer must hold a whole frame (and room for a VLAN tag).
    const wire = Math.ceil((this.hdr + ETH_HEADER + VLAN_TAG + this.mtu) / 64) * 64;
    // A segmentation request, sent or received, is up to 64 KiB whatever the MTU.
    const gsoSlot = Math.ceil((this.hdr + GSO_MAX_FRAME + VLAN_TAG) / 64) * 64;
    this.txSlot = f & TX_GSO_FEATURES ? Math.max(wire, gsoSlot) : wire;
    // The queue must hold one largest frame: the default buffer grows for a large MTU on a small queue.
    const largest = this.rxGsoTypes ? Math.max(wire, gsoSlot) : this.hdr + ETH_HEADER + VLAN_TAG + this.mtu;
    this.rxBufferSize = !this.mergeable
      ? Math.ceil(largest / 64) * 64
      : (options.rxBufferSize ?? Math.max(DEFAULT_RX_BUFFER, Math.ceil(largest / queueSize / 64) * 64));
    if (this.mergeable && this.rxBufferSize * queueSize < largest)
      throw new RangeError(
        `rxBufferSize ${this.rxBufferSize} x queueSize ${queueSize} cannot hold one ${this.rxGsoTypes ? `${GSO_MAX_FRAME}-byte GSO` : `${this.mtu}-byte MTU`} frame`,
      );
    this.lastLink = this.readLink();
    this.pollMicros = checkPollMicros(options.pollMicros);
  }

  /** @internal Sets up the queues, posts the receive buffers, sets DRIVER_OK (steps on the threadpool). */
  async bringUp(): Promise<void> {
    const rings = await this.createRings(this.device, undefined);
    this.pairs.push(...rings.pairs);
    this.ctrl = rings.ctrl;
    this.ctrlBufs = rings.ctrlBufs;
    await this.device.start();
    for (const pair of this.pairs) this.postAll(pair);
    // With MQ the device uses one pair until told otherwise (virtio 1.x section 5.1.6.5.6).
    if (this.device.features & NetFeature.MQ) await this.control('MQ_VQ_PAIRS_SET', le16(this.queuePairs), undefined);
  }

  /** Posts every free receive buffer of `pair`. */
  private postAll(pair: QueuePair): void {
    for (let t = pair.rx.tryAcquire(); t >= 0; t = pair.rx.tryAcquire()) this.postRx(pair, t);
  }

  /**
   * The queue pairs and the control queue on `d` (its ioctls on the threadpool); `from`: the pairs
   * they replace in a hand-over, whose counters and transmit waiters they keep.
   */
  private async createRings(d: Device, from: readonly QueuePair[] | undefined): Promise<Rings> {
    const pairs: QueuePair[] = [];
    for (let p = 0; p < this.queuePairs; p++) {
      const txWaiters = from?.[p]?.txWaiters ?? new TokenWaiters();
      const pair: QueuePair = {
        rx: undefined as unknown as QueueDriver<number>,
        tx: undefined as unknown as QueueDriver<TxFrame>,
        txWaiters,
        rxBufs: d.allocInternal(this.queueSize * this.rxBufferSize),
        txBufs: d.allocInternal(this.queueSize * this.txSlot),
        partial: undefined,
        stats: from?.[p]?.stats ?? { rxFrames: 0, rxBytes: 0, rxDropped: 0, txFrames: 0, txBytes: 0 },
      };
      pair.rx = await d.createQueue<number>(2 * p, this.queueSize, {
        onChain: (_c, token, len, err) => this.receivedChain(pair, token, len, err),
        onOrphan: (_c, err) => this.failReaders(err),
        onBatch: (ringEmpty) => this.receivedBatch(pair, ringEmpty),
        maxSegments: 1,
        waiters: new TokenWaiters(),
        keepAlive: () => this.waitingReaders > 0,
        // Receive buffers wait for traffic: no deadline, and close() does not wait for them.
        timed: false,
      });
      pair.tx = await d.createQueue<TxFrame>(2 * p + 1, this.queueSize, {
        onChain: (t, _token, _len, err) => {
          if (!err) {
            pair.stats.txFrames++;
            pair.stats.txBytes += t.length;
          }
          t.call.pieceDone(err);
        },
        onOrphan: (t, err) => t.call.failNow(err),
        maxSegments: 1,
        waiters: txWaiters,
      });
      if (this.pollMicros > 0) for (const q of [pair.rx, pair.tx]) q.setPoll(this.pollMicros);
      pairs.push(pair);
    }
    if (!this.hasControl) return { pairs, ctrl: undefined, ctrlBufs: undefined };
    // Without MQ the control queue follows the first pair; with it, the last pair the device has.
    const maxPairs = d.features & NetFeature.MQ ? this.maxQueuePairs(d) : 1;
    const index = 2 * maxPairs;
    // Commands are few and small: 64 entries, or the largest size the device takes below that.
    let size = Math.min(CTRL_QUEUE_SIZE, d.maxQueueSize(index));
    if (!(d.features & Feature.RING_PACKED)) size = 2 ** Math.floor(Math.log2(size));
    const ctrlBufs = d.allocInternal(size * CTRL_SLOT);
    const ctrl = await d.createQueue<CtrlCommand>(index, size, {
      onChain: (c, _token, len, err) => this.controlDone(c, len, err),
      onOrphan: (c, err) => c.call.failNow(err),
      maxSegments: 2,
      waiters: this.ctrlWaiters,
    });
    return { pairs, ctrl, ctrlBufs };
  }

  /** The MAC address (config space, or the last {@link setMac}; all zeroes when the device has none), as 6 bytes (a copy). */
  get mac(): Uint8Array {
    return this.currentMac.slice();
  }

  /** The same MAC address as text: lowercase hex, colon-separated (`'52:54:00:12:34:56'`). */
  get macAddress(): string {
    return macText(this.currentMac);
  }

  /** Per queue pair: frames and bytes received and sent, and received frames dropped (a copy). */
  stats(): QueuePairStats[] {
    return this.pairs.map((p) => ({ ...p.stats }));
  }

  /** Link status from config (true when the device does not report one); see the `'link'` event. */
  get linkUp(): boolean {
    return this.readLink();
  }

  /** Sends one frame; resolves when the device has taken it. */
  send(frame: Uint8Array, options?: SendOptions): Promise<void> {
    return this.request(options, (c, queue) => {
      this.checkFrame(frame, options?.gso !== undefined);
      const checksum = this.checksumOption(options, frame.length);
      const gso = this.gsoOption(options, frame, checksum);
      this.device.check('send');
      this.transmit(c, frame, queue, checksum, gso);
    });
  }

  /** Sends many frames with one Promise (no Promise per frame). */
  sendBatch(frames: readonly Uint8Array[], options?: SendOptions): Promise<void> {
    return this.request(options, (c, queue) => {
      if (!Array.isArray(frames)) throw new TypeError('frames must be an array');
      const withGso = options?.gso !== undefined;
      for (const f of frames) this.checkFrame(f, withGso);
      let checksum: TxFrame['checksum'];
      for (const f of frames) checksum = this.checksumOption(options, f.length);
      const gso = withGso ? frames.map((f) => this.gsoOption(options, f, checksum)) : undefined;
      this.device.check('sendBatch');
      for (let i = 0; i < frames.length; i++) {
        if (c.failing) break;
        this.transmit(c, frames[i] as Uint8Array, queue, checksum, gso?.[i]);
      }
    });
  }

  /**
   * The next received frame (a copy), from any queue pair. Rejects with the device's error once
   * it failed, `'ECANCELED'` when it is closed while waiting, `'EBADF'` when called on a closed device.
   */
  receive(options?: RequestOptions): Promise<Uint8Array> {
    return this.take(options, (frame) => frame);
  }

  /**
   * Like {@link receive}, with what the device said about the frame (checksum state, with
   * {@link NetOptions.rxChecksum}; without it every frame is plain).
   */
  receivePacket(options?: RequestOptions): Promise<Packet> {
    return this.take(options, (frame, meta) => ({ frame, meta }));
  }

  /** Received frames with their {@link PacketMeta}, as {@link frames} yields frames. */
  packets(options?: RequestOptions): AsyncGenerator<Packet, void, undefined> {
    return untilClosed(() => this.receivePacket(options));
  }

  private take<T>(options: RequestOptions | undefined, wrap: (frame: Uint8Array, meta: PacketMeta) => T): Promise<T> {
    let signal: AbortSignal | undefined;
    try {
      signal = requestSignal(options);
      if (this.device.closed) this.device.check('receive');
      this.checkLoopFree(undefined, 'rx', 'receive');
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<T>((resolve, reject) => {
      const frame = this.received.shift();
      if (frame) {
        this.receivedBytes -= frame.length;
        return resolve(wrap(frame, this.rxMeta ? (this.receivedMeta.shift() as PacketMeta) : PLAIN));
      }
      if (this.failure) return reject(this.failure);
      const reader: Reader = {
        resolve: (f, m) => resolve(wrap(f, m)),
        reject,
        done: false,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        reader.onAbort = () => this.settleReader(reader, abortError(signal));
        signal.addEventListener('abort', reader.onAbort, { once: true });
      }
      this.readers.push(reader);
      this.waitingReaders++;
      this.updateRef();
    });
  }

  /**
   * Received frames as an async iterator. It ends when the device is closed, and throws if the
   * device fails or `options.signal` aborts. While the loop waits for a frame it keeps the process
   * alive (see {@link unref}).
   */
  frames(options?: RequestOptions): AsyncGenerator<Uint8Array, void, undefined> {
    return untilClosed(() => this.receive(options));
  }

  /**
   * Receive every frame, whatever its destination (VIRTIO_NET_CTRL_RX_PROMISC). Needs
   * VIRTIO_NET_F_CTRL_RX (else `'EOPNOTSUPP'`); a refusal rejects with `'EIO'` naming the command.
   */
  setPromiscuous(on: boolean, options?: RequestOptions): Promise<void> {
    return this.switchCommand('RX_PROMISC', on, 'on', options);
  }

  /** Receive every multicast frame (VIRTIO_NET_CTRL_RX_ALLMULTI); as {@link setPromiscuous}. */
  setAllMulticast(on: boolean, options?: RequestOptions): Promise<void> {
    return this.switchCommand('RX_ALLMULTI', on, 'on', options);
  }

  /**
   * Sets the MAC address the device receives for (VIRTIO_NET_CTRL_MAC_ADDR_SET; the device shows
   * it in config space too). {@link NetDevice.mac} follows once the device accepted it. Needs
   * VIRTIO_NET_F_CTRL_MAC_ADDR.
   */
  setMac(mac: Uint8Array | string, options?: RequestOptions): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = macBytes(mac, 'mac');
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control('MAC_ADDR_SET', bytes, options).then(() => {
      this.currentMac = bytes;
    });
  }

  /**
   * Replaces the MAC filter table (VIRTIO_NET_CTRL_MAC_TABLE_SET): with promiscuous mode off, the
   * device receives for its own address, broadcast, and these (at most 128 of each kind). Needs
   * VIRTIO_NET_F_CTRL_RX.
   */
  setMacTable(table: MacTable, options?: RequestOptions): Promise<void> {
    let data: Uint8Array;
    try {
      checkObject(table, 'table');
      const unicast = macList(table.unicast, 'table.unicast');
      const multicast = macList(table.multicast, 'table.multicast');
      for (const m of unicast)
        if ((m[0] as number) & 1) throw new RangeError('table.unicast holds a multicast address');
      for (const m of multicast)
        if (!((m[0] as number) & 1)) throw new RangeError('table.multicast holds a unicast address');
      data = new Uint8Array(8 + 6 * (unicast.length + multicast.length));
      const v = new DataView(data.buffer);
      let at = 0;
      for (const list of [unicast, multicast]) {
        v.setUint32(at, list.length, true);
        at += 4;
        for (const m of list) {
          data.set(m, at);
          at += 6;
        }
      }
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control('MAC_TABLE_SET', data, options);
  }

  /** Receive frames tagged with VLAN `vid` (0 to 4095; VIRTIO_NET_CTRL_VLAN_ADD). Needs VIRTIO_NET_F_CTRL_VLAN. */
  addVlan(vid: number, options?: RequestOptions): Promise<void> {
    return this.vlanCommand('VLAN_ADD', vid, options);
  }

  /** Stop receiving frames tagged with VLAN `vid` (VIRTIO_NET_CTRL_VLAN_DEL). */
  removeVlan(vid: number, options?: RequestOptions): Promise<void> {
    return this.vlanCommand('VLAN_DEL', vid, options);
  }

  /**
   * Tells the device the announce it asked for (the `'announce'` event) is done
   * (VIRTIO_NET_CTRL_ANNOUNCE_ACK). A device may refuse it (`'EIO'`) when it asked for none.
   * Needs VIRTIO_NET_F_GUEST_ANNOUNCE.
   */
  acknowledgeAnnounce(options?: RequestOptions): Promise<void> {
    return this.control('ANNOUNCE_ACK', new Uint8Array(0), options);
  }

  // ---- receive-side scaling and hash reports (virtio 1.x sections 5.1.6.4 and 5.1.6.5.7).

  /**
   * What the device's receive-side scaling and hash reports take (its config space), or undefined
   * when neither VIRTIO_NET_F_RSS nor VIRTIO_NET_F_HASH_REPORT was negotiated.
   */
  get rssLimits(): RssLimits | undefined {
    const d = this.device;
    if (!(d.features & (NetFeature.RSS | NetFeature.HASH_REPORT))) return undefined;
    const cfg = netConfig(d);
    if (!cfg.has(NetConfig.supportedHashTypes)) return undefined;
    const types = cfg.get(NetConfig.supportedHashTypes);
    return {
      maxKeySize: cfg.get(NetConfig.rssMaxKeySize),
      maxIndirectionTableLength: d.features & NetFeature.RSS ? cfg.get(NetConfig.rssMaxIndirectionTableLength) : 0,
      hashTypes: HASH_TYPES.filter((_, i) => (types >>> i) & 1),
    };
  }

  /**
   * Configures receive-side scaling (VIRTIO_NET_CTRL_MQ_RSS_CONFIG): the device hashes each received
   * frame as `hashTypes` say (Toeplitz, with `key`) and places it on the queue pair
   * `indirectionTable[hash % indirectionTable.length]`; frames no type covers go to
   * `unclassifiedQueue`. Transmit stays on all {@link queuePairs} pairs. With
   * {@link NetOptions.hashReport} received frames carry the hash too. Needs VIRTIO_NET_F_RSS (else
   * `'EOPNOTSUPP'`); arguments outside {@link rssLimits} or naming a pair past {@link queuePairs}
   * are a RangeError; a device that refuses it rejects with `'EIO'`. Replaces an earlier
   * {@link setHashConfig}; kept across {@link handOver}.
   */
  setRss(config: RssConfig, options?: RequestOptions): Promise<void> {
    let data: Uint8Array;
    try {
      checkObject(config, 'config');
      const limits = this.device.features & NetFeature.RSS ? this.rssLimits : undefined;
      const { types, key } = checkHashConfig(config, limits);
      const table: unknown = config.indirectionTable;
      if (!Array.isArray(table)) throw new TypeError('config.indirectionTable must be an array');
      const most = Math.min(MAX_RSS_TABLE, limits?.maxIndirectionTableLength ?? MAX_RSS_TABLE);
      if (table.length < 1 || table.length > most || (table.length & (table.length - 1)) !== 0)
        throw new RangeError(
          `config.indirectionTable must hold a power of two entries, 1 to ${most}, got ${table.length}`,
        );
      const last = this.queuePairs - 1;
      const queues = table.map((q, i) => checkInteger(q, `config.indirectionTable[${i}]`, 0, last));
      const unclassified =
        config.unclassifiedQueue === undefined
          ? 0
          : checkInteger(config.unclassifiedQueue, 'config.unclassifiedQueue', 0, last);
      // struct virtio_net_rss_config
      data = new Uint8Array(8 + 2 * queues.length + 3 + key.length);
      const v = new DataView(data.buffer);
      v.setUint32(0, types, true);
      v.setUint16(4, queues.length - 1, true);
      v.setUint16(6, unclassified, true);
      queues.forEach((q, i) => v.setUint16(8 + 2 * i, q, true));
      const at = 8 + 2 * queues.length;
      v.setUint16(at, this.queuePairs, true); // max_tx_vq
      data[at + 2] = key.length;
      data.set(key, at + 3);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control('MQ_RSS_CONFIG', data, options);
  }

  /**
   * Configures hash reports without steering (VIRTIO_NET_CTRL_MQ_HASH_CONFIG): received frames
   * carry their hash ({@link PacketMeta.hash}) and stay on the pair the device picks. Needs
   * VIRTIO_NET_F_HASH_REPORT ({@link NetOptions.hashReport}; else `'EOPNOTSUPP'`); arguments
   * outside {@link rssLimits} are a RangeError; a refusal rejects with `'EIO'`. Replaces an
   * earlier {@link setRss} (steering ends); kept across {@link handOver}.
   */
  setHashConfig(config: HashConfig, options?: RequestOptions): Promise<void> {
    let data: Uint8Array;
    try {
      checkObject(config, 'config');
      const limits = this.device.features & NetFeature.HASH_REPORT ? this.rssLimits : undefined;
      const { types, key } = checkHashConfig(config, limits);
      // struct virtio_net_hash_config: hash_types, reserved[4], hash_key_length, hash_key_data
      data = new Uint8Array(13 + key.length);
      new DataView(data.buffer).setUint32(0, types, true);
      data[12] = key.length;
      data.set(key, 13);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control('MQ_HASH_CONFIG', data, options);
  }

  /**
   * The device's own statistics of each data queue this driver uses (receive queue of pair 0,
   * its transmit queue, then the next pair's), read through the vdpa netlink family
   * ({@link deviceStats}: VDPA_CMD_DEV_VSTATS_GET, one queue after the other). Only a vDPA device
   * has them: on other transports (mock, VFIO) this rejects with `'EOPNOTSUPP'`, and so it does on
   * parents that keep none (VDUSE); `'ENODEV'` when sysfs shows no vdpa device behind the node.
   * {@link stats} has the driver's own counters everywhere.
   */
  async deviceStats(): Promise<QueueStats[]> {
    const d = this.device;
    const syscall = 'netlink(VDPA_CMD_DEV_VSTATS_GET)';
    if (d.transport !== 'vhost-vdpa')
      throw vdpaError(
        'EOPNOTSUPP',
        syscall,
        d.path,
        `vendor queue statistics come from a vDPA device, and this one is on ${d.transport}`,
        "open the NIC through /dev/vhost-vdpa-N for them; stats() has the driver's own counters on every transport",
      );
    const name = await vdpaNameOfVhostNode(d.path);
    if (name === undefined)
      throw vdpaError(
        'ENODEV',
        syscall,
        d.path,
        'sysfs shows no vdpa device behind this vhost-vdpa node',
        'is /sys mounted, and is the node still bound to vhost_vdpa?',
      );
    const out: QueueStats[] = [];
    for (let q = 0; q < 2 * this.queuePairs; q++) out.push(await vdpaDeviceStats(name, q));
    return out;
  }

  // ---- hand-over (lib/handover.ts): the driver moves to another device; everything it needs is here.

  /**
   * Moves this driver to another network device without losing a frame sent: the new device is
   * opened (`options` are its open options) and brought up while this one still carries traffic,
   * and the control state set through this object (MAC address, promiscuous and all-multicast
   * mode, MAC table, VLANs, queue pairs) is applied to it; a command it refuses fails the
   * hand-over with `'EIO'` naming the command. Then this device is suspended (where it offers
   * that) or drained, the frames it had not sent are sent by the new one (on the same queue pair),
   * receive buffers are posted there, and this one is reset and closed. Sends, receives and
   * control commands issued meanwhile wait, they do not fail. What this device held for receive
   * (frames it had taken from the wire and not yet returned) may be lost; after a `'reset'`
   * (see {@link HandOverResult.method}) a frame may go out twice.
   *
   * The new device must offer the features this driver negotiated that it uses (mergeable
   * buffers, the packed ring, checksum offloads, the control queue and the control features the
   * state above needs), at least {@link queuePairs} queue pairs, queues of {@link queueSize}
   * entries and an MTU no smaller than {@link mtu} (RangeError otherwise); {@link mtu},
   * {@link queueSize} and {@link rxBufferSize} stay as they are. Should it fail to open or come
   * up, the hand-over rejects and the driver stays where it was, still working. Afterwards
   * {@link device} is the new device, {@link mac} and {@link linkUp} follow its config (a MAC set
   * with {@link setMac} is kept), and the `'link'` and `'announce'` events come from it. Emits
   * `'handOver'` with the result; see the README's Hand-over section.
   */
  handOver(path: string, options?: HandOverOptions): Promise<HandOverResult> {
    if (this.loops.rx.size + this.loops.tx.size > 0)
      return Promise.reject(loopBusyError(this.device.path, 'handOver', 'a queue'));
    const from = this.pairs.slice();
    const ctrlBufs = this.ctrlBufs;
    let rings: Rings | undefined;
    const result = handOver<NetChain>(path, options, {
      owner: this,
      device: this.current,
      type: DeviceType.net,
      what: 'a network device',
      check: (device, f) => this.checkCompatible(device, f),
      skipHandles: [...from.flatMap((p) => [p.rxBufs.handle, p.txBufs.handle]), ...(ctrlBufs ? [ctrlBufs.handle] : [])],
      bringUp: async (device) => {
        rings = await this.createRings(device, from);
        await device.start();
        // Commands already on their way finish first, so the state applied below is the last one.
        await Promise.allSettled(this.ctrlCalls);
        await this.applyControlState(device, rings);
        const staged = rings;
        return () => this.install(device, staged, from);
      },
      reissue: (chains) => this.reissue(chains),
      emit: (r) => this.emit('handOver', r),
    });
    // Control commands issued from now on wait for the end of this hand-over (a second one, which
    // is refused, must not end the wait of the first).
    if (this.ctrlGate) return result;
    const open = (): void => {
      if (this.ctrlGate === gate) this.ctrlGate = undefined;
    };
    const gate = result.then(open, open);
    this.ctrlGate = gate;
    return result;
  }

  /** The control commands set through this object, applied again on a new device. */
  private readonly ctrlState: {
    promiscuous?: Uint8Array;
    allMulticast?: Uint8Array;
    macTable?: Uint8Array;
    mac?: Uint8Array;
    vlans: Set<number>;
    /** The last RSS_CONFIG or HASH_CONFIG (each replaces the other's configuration). */
    hash?: { name: 'MQ_RSS_CONFIG' | 'MQ_HASH_CONFIG'; data: Uint8Array };
  } = { vlans: new Set() };
  /** Control calls not settled yet. */
  private readonly ctrlCalls = new Set<Promise<void>>();
  /** While a hand-over runs: control commands wait for it. */
  private ctrlGate: Promise<void> | undefined;

  private trackControl(done: Promise<void>): void {
    this.ctrlCalls.add(done);
    const forget = (): boolean => this.ctrlCalls.delete(done);
    done.then(forget, forget);
  }

  private recordControl(name: CtrlName, data: Uint8Array): void {
    const s = this.ctrlState;
    if (name === 'RX_PROMISC') s.promiscuous = data;
    else if (name === 'RX_ALLMULTI') s.allMulticast = data;
    else if (name === 'MAC_TABLE_SET') s.macTable = data;
    else if (name === 'MAC_ADDR_SET') s.mac = data;
    else if (name === 'VLAN_ADD') s.vlans.add((data[0] as number) | ((data[1] as number) << 8));
    else if (name === 'VLAN_DEL') s.vlans.delete((data[0] as number) | ((data[1] as number) << 8));
    else if (name === 'MQ_RSS_CONFIG' || name === 'MQ_HASH_CONFIG') s.hash = { name, data };
  }

  /** Runs `again` once the hand-over in progress ended; `options.signal` still aborts the wait. */
  private afterHandOver(options: RequestOptions | undefined, again: () => Promise<void>): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      signal = requestSignal(options);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const gate = this.ctrlGate as Promise<void>;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(abortError(signal as AbortSignal));
      signal?.addEventListener('abort', onAbort, { once: true });
      void gate.then(() => {
        signal?.removeEventListener('abort', onAbort);
        if (!signal?.aborted) again().then(resolve, reject);
      });
    });
  }

  /** RangeError unless this driver can run on `device`, which accepted `f` of the features it has now. */
  private checkCompatible(device: Device, f: bigint): void {
    const refuse = (what: string): never => {
      throw new RangeError(`cannot hand over to '${device.path}': ${what}`);
    };
    const s = this.ctrlState;
    let needed =
      this.current.features &
      (NetFeature.MRG_RXBUF |
        Feature.RING_PACKED |
        NetFeature.CSUM |
        NetFeature.GUEST_CSUM |
        NetFeature.CTRL_VQ |
        NetFeature.HASH_REPORT);
    if (s.promiscuous || s.allMulticast || s.macTable) needed |= NetFeature.CTRL_RX;
    if (s.mac) needed |= NetFeature.CTRL_MAC_ADDR;
    if (s.vlans.size > 0) needed |= NetFeature.CTRL_VLAN;
    if (this.queuePairs > 1) needed |= NetFeature.MQ;
    if (s.hash) needed |= s.hash.name === 'MQ_RSS_CONFIG' ? NetFeature.RSS : NetFeature.HASH_REPORT;
    if ((f & needed) !== needed) {
      const missing = Object.entries(NetFeature)
        .filter(([, m]) => needed & m & ~f)
        .map(([n]) => `VIRTIO_NET_F_${n}`);
      if (needed & Feature.RING_PACKED & ~f) missing.push('VIRTIO_F_RING_PACKED');
      refuse(`it lacks features the driver uses (${missing.join(', ')})`);
    }
    const cfg = netConfig(device);
    const mtu = f & NetFeature.MTU && cfg.has(NetConfig.mtu) ? cfg.get(NetConfig.mtu) : 1500;
    if (mtu < this.mtu) refuse(`its MTU is ${mtu}, below the ${this.mtu} the driver sends`);
    const largest = this.hdr + ETH_HEADER + VLAN_TAG + mtu;
    if (this.mergeable && this.rxBufferSize * this.queueSize < largest)
      refuse(`its ${mtu}-byte MTU frames do not fit ${this.queueSize} receive buffers of ${this.rxBufferSize} bytes`);
    const pairs = f & NetFeature.MQ && cfg.has(NetConfig.maxVirtqueuePairs) ? cfg.get(NetConfig.maxVirtqueuePairs) : 1;
    if (pairs < this.queuePairs) refuse(`it offers ${pairs} queue pairs, the driver uses ${this.queuePairs}`);
    for (let q = 0; q < 2 * this.queuePairs; q++)
      if (device.maxQueueSize(q) < this.queueSize) refuse(`its queue ${q} holds fewer than ${this.queueSize} entries`);
  }

  /** Sends the recorded control state to the new device (its queues, before the switch). */
  private async applyControlState(device: Device, rings: Rings): Promise<void> {
    const { ctrl, ctrlBufs } = rings;
    if (!ctrl || !ctrlBufs) return;
    const send = (name: CtrlName, data: Uint8Array): Promise<void> =>
      runCall(undefined, (call) => {
        const c = Ctrl[name];
        call.addPiece();
        this.placeControl(ctrl, ctrlBufs, call, { cls: c.cls, cmd: c.cmd, name: c.name, data, path: device.path });
      });
    const s = this.ctrlState;
    if (device.features & NetFeature.MQ) await send('MQ_VQ_PAIRS_SET', le16(this.queuePairs));
    if (s.hash) await send(s.hash.name, s.hash.data);
    if (s.mac) await send('MAC_ADDR_SET', s.mac);
    if (s.macTable) await send('MAC_TABLE_SET', s.macTable);
    if (s.promiscuous) await send('RX_PROMISC', s.promiscuous);
    if (s.allMulticast) await send('RX_ALLMULTI', s.allMulticast);
    for (const vid of s.vlans) await send('VLAN_ADD', le16(vid));
  }

  /** The switch: requests go to `device`'s queues from now on (held there until it ends). */
  private install(device: Device, rings: Rings, from: readonly QueuePair[]): void {
    this.unfollow();
    this.current = device;
    this.unfollow = this.follow(device);
    from.forEach((p, i) => (p.movedTo = rings.pairs[i]));
    this.pairs.splice(0, this.pairs.length, ...rings.pairs);
    this.ctrl = rings.ctrl;
    this.ctrlBufs = rings.ctrlBufs;
    // The old device's failure (if it broke) is not this one's: receives work again.
    this.failure = undefined;
    const cfg = netConfig(device);
    this.currentMac =
      this.ctrlState.mac ??
      (device.features & NetFeature.MAC && cfg.has(NetConfig.mac) ? cfg.bytes(NetConfig.mac) : new Uint8Array(6));
    for (const pair of this.pairs) this.postAll(pair);
    const up = this.readLink();
    if (up !== this.lastLink) {
      this.lastLink = up;
      // Not in the middle of the switch: a listener may send.
      process.nextTick(() => this.emit('link', up));
    }
  }

  /** Places the chains taken back from the old device on the new one's queues; returns how many. */
  private reissue(chains: NetChain[]): number {
    let placed = 0;
    for (const c of chains) {
      if (typeof c === 'number') continue; // a receive buffer of the old device
      if (c.call.settled) c.call.pieceDone(undefined);
      else if ('frame' in c) {
        this.place(this.pairs[c.queue] as QueuePair, c);
        placed++;
      } else {
        // The bring-up waited for every control call to settle (an aborted one settles at once):
        // a command still unsettled was not applied to the new device's state, so it fails.
        const moved = 'the driver moved to another device with the command in flight';
        c.call.pieceDone(vdpaError('ECANCELED', c.req.name, c.req.path, moved));
      }
    }
    // Frames that waited for a slot on the old device take the free ones here.
    for (const pair of this.pairs)
      while (pair.txWaiters.length > 0 && pair.tx.pending < pair.tx.size) pair.txWaiters.wakeOne();
    return placed;
  }

  /** Follows `device`'s events and failure until the returned function is called. */
  private follow(device: Device): () => void {
    const unforward = forwardDeviceEvents(device, this as unknown as EventEmitter<DeviceEvents>);
    const changed = (): void => this.configChanged();
    device.on('configChange', changed);
    // A device's failure listeners stay: once it is no longer this driver's, it is ignored.
    device.onFailure(() => {
      const err = device.pendingFailure;
      if (err && device === this.current) this.failReaders(err);
    });
    return () => {
      device.off('configChange', changed);
      unforward();
    };
  }

  /** See {@link Device.ref}: waiting receivers and sends in flight keep the process alive. */
  ref(): this {
    this.device.ref();
    this.updateRef();
    return this;
  }

  /** See {@link Device.unref}. */
  unref(): this {
    this.device.unref();
    this.updateRef();
    return this;
  }

  /**
   * Forwards every frame received on this device's queue pair to the same pair of `other` (and,
   * with `bothWays`, the reverse), natively: no JS runs per frame. See {@link NetLoop}.
   */
  forward(other: NetDevice, options?: NetForwardOptions): NetLoop {
    return forwardLoop(this, other, options);
  }

  /** Sends `count` frames (or until stopped) of `size` bytes or `frame`, at most `rate` per second, natively. */
  generate(options: NetGenerateOptions): NetLoop {
    return generateLoop(this, options);
  }

  /** Receives and counts every frame on a queue pair, natively (nothing is kept). */
  sink(options?: NetLoopOptions): NetLoop {
    return sinkLoop(this, options);
  }

  /** @internal The receive and transmit queues (by pair) a native loop holds (lib/net-loops.ts). */
  private readonly loops = { rx: new Map<number, LoopHolder>(), tx: new Map<number, LoopHolder>() };

  /** @internal EBUSY when that queue of `pair` (or, with `pair` undefined, of every pair) is held by a native loop. */
  private checkLoopFree(pair: number | undefined, side: 'rx' | 'tx', what: string): void {
    const held = this.loops[side];
    if (held.size === 0) return;
    if (pair === undefined ? held.size === this.queuePairs : held.has(pair))
      throw loopBusyError(
        this.device.path,
        what,
        pair === undefined && this.queuePairs > 1
          ? `every ${side === 'rx' ? 'receive' : 'transmit'} queue`
          : `the ${side === 'rx' ? 'receive' : 'transmit'} queue of pair ${pair ?? 0}`,
      );
  }

  /** @internal What a native loop needs of queue pair `p`. */
  loopPair(p: number): LoopPair {
    this.device.check('netLoop');
    const pair = this.pairs[p] as QueuePair;
    return {
      path: this.device.path,
      rx: pair.rx,
      tx: pair.tx as QueueDriver<unknown>,
      txWaiters: pair.txWaiters,
      rxRegion: pair.rxBufs.handle,
      rxSlot: this.rxBufferSize,
      mergeable: this.mergeable,
      rxOffloads: this.rxMeta || this.rxGsoTypes !== 0,
      hashHeader: this.hdr > HDR,
      txRegion: pair.txBufs.handle,
      txSlot: this.txSlot,
      maxFrame: this.mtu + ETH_HEADER + VLAN_TAG,
      maxSend: this.mtu + ETH_HEADER,
      mac: this.currentMac.slice(),
    };
  }

  /** @internal A native loop takes that queue of pair `p` (EBUSY when one holds it already). */
  holdQueue(p: number, side: 'rx' | 'tx', loop: LoopHolder): void {
    this.checkLoopFree(p, side, 'netLoop');
    this.loops[side].set(p, loop);
    if (side === 'tx' || this.loops.rx.size < this.queuePairs) return;
    // Nothing can arrive for a reader any more.
    const err = loopBusyError(this.device.path, 'receive', 'every receive queue');
    for (const r of this.readers.drain()) this.settleReader(r, err);
  }

  /** @internal The loop gave that queue of pair `p` back. */
  releaseQueue(p: number, side: 'rx' | 'tx', loop: LoopHolder): void {
    if (this.loops[side].get(p) === loop) this.loops[side].delete(p);
  }

  /** @internal A queue of pair `p` broke under a native loop: it fails here too. */
  loopFailed(p: number, side: 'rx' | 'tx', err: VdpaError): void {
    const pair = this.pairs[p] as QueuePair;
    if (side === 'tx') return pair.tx.fail(err);
    pair.rx.fail(err);
    this.failReaders(err);
  }

  /**
   * An object-mode Duplex of frames: each frame written is sent, each frame received is read. See
   * {@link NetFrameStreamOptions} for backpressure and end/destroy semantics.
   */
  createFrameStream(options?: NetFrameStreamOptions): NetFrameStream {
    return new NetFrameStream(this, options);
  }

  /** Resets the device; pending sends and receives end with code `'ECANCELED'`. */
  close(): Promise<void> {
    for (const loop of new Set([...this.loops.rx.values(), ...this.loops.tx.values()])) loop.abandon();
    return this.device.close(); // waiting readers fail through the device's failure listener
  }

  /** Closes the device as {@link close} does: `await using net = await openNet(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal One line for `console.log` and `util.inspect`: identity, MAC, MTU and state. */
  [inspect.custom](_depth: number, options: InspectStyling): string {
    return inspectLine(
      'NetDevice',
      {
        path: this.device.path,
        transport: this.device.transport,
        mac: this.macAddress,
        mtu: this.mtu,
        queueSize: this.queueSize,
        droppedFrames: this.droppedFrames,
        state: this.device.state,
      },
      options,
    );
  }

  private maxQueuePairs(d: Device): number {
    return netConfig(d).get(NetConfig.maxVirtqueuePairs);
  }

  private readLink(): boolean {
    const status = this.readStatus();
    return status === undefined || (status & NET_STATUS_LINK_UP) !== 0;
  }

  /** The config status field, or undefined without VIRTIO_NET_F_STATUS. */
  private readStatus(): number | undefined {
    if (!(this.device.features & NetFeature.STATUS)) return undefined;
    const { offset, bytes } = NetConfig.status;
    return new ConfigView(this.device.readConfig(0, offset + bytes)).get(NetConfig.status);
  }

  /** A configuration interrupt: the link may have changed, or the device asks for an announce. */
  private configChanged(): void {
    if (this.device.closed) return;
    const status = this.readStatus();
    if (status === undefined) return;
    const up = (status & NET_STATUS_LINK_UP) !== 0;
    if (up !== this.lastLink) {
      this.lastLink = up;
      this.emit('link', up);
    }
    if (status & NET_STATUS_ANNOUNCE && this.device.features & NetFeature.GUEST_ANNOUNCE) this.emit('announce');
  }

  private request(
    options: SendOptions | undefined,
    start: (c: Call, queue: number | undefined) => void,
  ): Promise<void> {
    let signal: AbortSignal | undefined;
    let queue: number | undefined;
    try {
      signal = requestSignal(options);
      if (options?.queue !== undefined) queue = checkInteger(options.queue, 'options.queue', 0, this.queuePairs - 1);
      this.checkLoopFree(queue, 'tx', 'send');
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return runCall(signal, (c) => start(c, queue));
  }

  private checkFrame(frame: Uint8Array, gso = false): void {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
    const max = gso ? Math.max(GSO_MAX_FRAME, this.mtu + ETH_HEADER) : this.mtu + ETH_HEADER;
    if (frame.length < ETH_HEADER || frame.length > max)
      throw new RangeError(
        `frame must be ${ETH_HEADER} to ${max} bytes${gso ? ' with options.gso' : ''}, got ${frame.length}`,
      );
  }

  /**
   * The segmentation request of `options` for `frame`, checked (RangeError, or EOPNOTSUPP when its
   * feature was not negotiated); hdr_len read from the frame when not given.
   */
  private gsoOption(
    options: SendOptions | undefined,
    frame: Uint8Array,
    checksum: TxFrame['checksum'],
  ): TxFrame['gso'] {
    const g = options?.gso;
    if (g === undefined) return undefined;
    checkObject(g, 'options.gso');
    const type = g.type;
    if (typeof type !== 'string') throw new TypeError('options.gso.type must be a string');
    if (!Object.hasOwn(GSO_TYPES, type))
      throw new RangeError(`options.gso.type must be tcpv4, tcpv6 or udp, got '${type}'`);
    const size = checkInteger(g.size, 'options.gso.size', 1, 0xffff);
    if (checksum === undefined)
      throw new RangeError(
        'options.gso needs options.checksum (the transport checksum the device completes per segment)',
      );
    const tcp = type !== 'udp';
    const want = tcp ? 16 : 6;
    if (checksum.offset !== want)
      throw new RangeError(`options.gso ${type} needs options.checksum.offset ${want}, got ${checksum.offset}`);
    let headerLength: number;
    if (g.headerLength !== undefined) {
      headerLength = checkInteger(g.headerLength, 'options.gso.headerLength', checksum.start + 1, frame.length);
    } else {
      headerLength = checksum.start + (tcp ? ((frame[checksum.start + 12] as number) >> 4) * 4 : 8);
      if (tcp && headerLength < checksum.start + 20)
        throw new RangeError(`the TCP header at ${checksum.start} has a data offset below 5`);
      if (headerLength > frame.length)
        throw new RangeError(`the ${type} header at ${checksum.start} does not fit in a ${frame.length}-byte frame`);
    }
    const feature = GSO_HOST_FEATURE[type as GsoType];
    if (!(this.device.features & feature))
      throw vdpaError(
        'EOPNOTSUPP',
        'send',
        this.device.path,
        `segmentation offload of ${type} was not negotiated (${featureName(feature)})`,
        'open with { txChecksum: true, txGso: true } on a device that offers it',
      );
    return { type: GSO_TYPES[type as GsoType], size, headerLength };
  }

  /** The checksum request of `options`, checked against a frame of `length` bytes. */
  private checksumOption(options: SendOptions | undefined, length: number): TxFrame['checksum'] {
    const cs = options?.checksum;
    if (cs === undefined) return undefined;
    checkObject(cs, 'options.checksum');
    const start = checkInteger(cs.start, 'options.checksum.start', 0, 0xffff);
    const offset = checkInteger(cs.offset, 'options.checksum.offset', 0, 0xffff);
    if (start + offset + 2 > length)
      throw new RangeError(`options.checksum (start ${start}, offset ${offset}) is outside a ${length}-byte frame`);
    if (!(this.device.features & NetFeature.CSUM))
      throw vdpaError(
        'EOPNOTSUPP',
        'send',
        this.device.path,
        'checksum offload was not negotiated (VIRTIO_NET_F_CSUM)',
        'open with { txChecksum: true } on a device that offers it',
      );
    return { start, offset };
  }

  private transmit(
    c: Call,
    frame: Uint8Array,
    queue: number | undefined,
    checksum: TxFrame['checksum'],
    gso: TxFrame['gso'],
  ): void {
    c.addPiece();
    let p = queue;
    if (p === undefined) {
      do {
        p = this.nextPair;
        this.nextPair = (p + 1) % this.queuePairs;
      } while (this.loops.tx.has(p) && this.loops.tx.size < this.queuePairs);
    }
    this.place(this.pairs[p] as QueuePair, { call: c, frame, length: frame.length, checksum, gso, queue: p });
  }

  /**
   * Copies the frame into a free transmit slot, or waits (FIFO) for one. Returns false when it gave
   * a free slot back unused (the frame changed since it was checked), so a waiter loop moves on.
   */
  private place(pair: QueuePair, t: TxFrame): boolean {
    let token: number;
    try {
      token = pair.tx.tryAcquire();
    } catch (e) {
      t.call.pieceDone(e as Error);
      return true;
    }
    if (token < 0) {
      pair.txWaiters.push(() => {
        if (!t.call.settled) return this.place(livePair(pair), t);
        t.call.pieceDone(undefined);
        return false;
      });
      return true;
    }
    // A frame still queued may have changed since it was checked (its buffer transferred or shrunk).
    if (t.frame.length !== t.length) {
      pair.tx.release(token);
      t.call.pieceDone(new TypeError('the frame was detached or shrunk before it was sent'));
      return false;
    }
    const at = token * this.txSlot;
    const bytes = pair.txBufs.bytes;
    bytes.fill(0, at, at + this.hdr);
    if (t.checksum) {
      bytes[at] = HDR_NEEDS_CSUM;
      bytes[at + 6] = t.checksum.start & 0xff;
      bytes[at + 7] = t.checksum.start >> 8;
      bytes[at + 8] = t.checksum.offset & 0xff;
      bytes[at + 9] = t.checksum.offset >> 8;
    }
    if (t.gso) {
      bytes[at + 1] = t.gso.type;
      bytes[at + 2] = t.gso.headerLength & 0xff;
      bytes[at + 3] = t.gso.headerLength >> 8;
      bytes[at + 4] = t.gso.size & 0xff;
      bytes[at + 5] = t.gso.size >> 8;
    }
    bytes.set(t.frame, at + this.hdr);
    pair.tx.openChain(token, 1, t);
    pair.tx.segment(pair.txBufs.handle, at, this.hdr + t.length, false);
    return true;
  }

  private postRx(pair: QueuePair, token: number): void {
    const length = this.rxBufferSize;
    pair.rx.openChain(token, 1, token);
    pair.rx.segment(pair.rxBufs.handle, token * length, length, true);
  }

  private receivedChain(pair: QueuePair, token: number, len: number, err: Error | undefined): void {
    if (err) return this.failReaders(err);
    // The native ring checked len against the buffer; here only the frame's own rules are left.
    const at = token * this.rxBufferSize;
    const bytes = pair.rxBufs.bytes;
    if (!this.mergeable) {
      const hdr = this.hdr;
      if (len > hdr) {
        if (bytes[at + 1] !== 0 && !this.gsoTypeOk(pair, bytes[at + 1] as number)) return;
        const meta = this.rxMeta ? this.metaOf(pair, bytes, at, len - hdr) : PLAIN;
        if (!meta) return;
        this.deliver(pair, bytes.slice(at + hdr, at + len), meta);
      }
    } else if (!this.merge(pair, bytes, at, len)) return;
    // The slot is free again (the token was released before this callback): post it back.
    if (pair.rx.failed || this.device.closed) return;
    const t = pair.rx.tryAcquire();
    if (t >= 0) this.postRx(pair, t);
  }

  /** One mergeable buffer of `len` bytes at `at`; false once it broke the queue. */
  private merge(pair: QueuePair, bytes: Uint8Array, at: number, len: number): boolean {
    const p = pair.partial;
    if (p === undefined) {
      const hdr = this.hdr;
      if (len < hdr)
        return this.violation(pair, `a received frame's first buffer holds ${len} bytes, less than its header`);
      const want = (bytes[at + 10] as number) | ((bytes[at + 11] as number) << 8);
      if (want === 0) return this.violation(pair, 'num_buffers 0 in a received frame');
      if (want > pair.rx.size)
        return this.violation(
          pair,
          `num_buffers ${want} in a received frame, more than the ${pair.rx.size} buffers posted`,
        );
      if (bytes[at + 1] !== 0 && !this.gsoTypeOk(pair, bytes[at + 1] as number)) return false;
      const data = bytes.slice(at + hdr, at + len);
      // The header is in this buffer only: its checksum fields are read now, checked once the frame is whole.
      const meta = this.rxMeta ? headerMeta(bytes, at, hdr > HDR) : PLAIN;
      if (want === 1) {
        if (data.length > 0) return this.deliverChecked(pair, data, meta);
        return true;
      }
      pair.partial = { parts: [data], bytes: data.length, want, got: 1, meta };
      return true;
    }
    if (len === 0) return this.violation(pair, `buffer ${p.got + 1} of ${p.want} of a received frame is empty`);
    p.parts.push(bytes.slice(at, at + len));
    p.bytes += len;
    if (++p.got < p.want) return true;
    pair.partial = undefined;
    const frame = new Uint8Array(p.bytes);
    let o = 0;
    for (const part of p.parts) {
      frame.set(part, o);
      o += part.length;
    }
    return this.deliverChecked(pair, frame, p.meta);
  }

  /** After a batch of receive completions: a frame must not be left waiting on an empty ring. */
  private receivedBatch(pair: QueuePair, ringEmpty: boolean): void {
    const p = pair.partial;
    if (!ringEmpty || p === undefined || pair.rx.failed) return;
    this.violation(pair, `num_buffers ${p.want} in a received frame, but the device used ${p.got} buffers for it`);
  }

  /** The device broke the mergeable-buffer rules: the receive queue is broken (EPROTO). */
  private violation(pair: QueuePair, detail: string): false {
    pair.partial = undefined;
    const syscall = `virtqueue ${this.pairs.indexOf(pair) * 2}`;
    const err = vdpaError(
      'EPROTO',
      syscall,
      this.device.path,
      `device broke the virtio rules: ${detail}`,
      'the device or its driver is faulty; close and reopen it',
    );
    pair.rx.fail(err);
    this.failReaders(err);
    return false;
  }

  /** The header's checksum fields of a frame of `length` bytes; undefined once they broke the queue. */
  private metaOf(pair: QueuePair, bytes: Uint8Array, at: number, length: number): PacketMeta | undefined {
    const meta = headerMeta(bytes, at, this.hdr > HDR);
    return this.checkMeta(pair, meta, length) ? meta : undefined;
  }

  private checkMeta(pair: QueuePair, meta: PacketMeta, length: number): boolean {
    if (meta.checksumNeeded && meta.checksumStart + meta.checksumOffset + 2 > length)
      return this.violation(
        pair,
        `a received frame's checksum at ${meta.checksumStart} + ${meta.checksumOffset} is outside its ${length} bytes`,
      );
    if (meta.gsoType !== 'none') {
      if (meta.gsoSize === 0) return this.violation(pair, `gso_size 0 in a received ${meta.gsoType} frame`);
      if (meta.headerLength > length)
        return this.violation(pair, `hdr_len ${meta.headerLength} in a received frame of ${length} bytes`);
    }
    return true;
  }

  /** A received gso_type other than NONE must be one the driver negotiated; else the queue breaks. */
  private gsoTypeOk(pair: QueuePair, type: number): boolean {
    if (type < 8 && (this.rxGsoTypes >> type) & 1) return true;
    return this.violation(pair, `gso_type ${type} in a received frame, a type the driver did not negotiate`);
  }

  private deliverChecked(pair: QueuePair, frame: Uint8Array, meta: PacketMeta): boolean {
    if (meta !== PLAIN && !this.checkMeta(pair, meta, frame.length)) return false;
    this.deliver(pair, frame, meta);
    return true;
  }

  private deliver(pair: QueuePair, frame: Uint8Array, meta: PacketMeta): void {
    pair.stats.rxFrames++;
    pair.stats.rxBytes += frame.length;
    const reader = this.nextReader();
    if (reader) this.settleReader(reader, undefined, frame, meta);
    else if (this.receivedBytes + frame.length <= RX_BACKLOG_BYTES) {
      this.received.push(frame);
      if (this.rxMeta) this.receivedMeta.push(meta);
      this.receivedBytes += frame.length;
    } else {
      pair.stats.rxDropped++;
      this.droppedFrames++;
    }
  }

  private switchCommand(name: CtrlName, on: boolean, what: string, options: RequestOptions | undefined): Promise<void> {
    try {
      checkBoolean(on, what);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control(name, Uint8Array.of(on ? 1 : 0), options);
  }

  private vlanCommand(name: CtrlName, vid: number, options: RequestOptions | undefined): Promise<void> {
    try {
      checkInteger(vid, 'vid', 0, 4095);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.control(name, le16(vid), options);
  }

  /**
   * Sends one control command. EOPNOTSUPP before anything is sent when the device did not
   * negotiate what it needs; EIO when the device answers VIRTIO_NET_ERR.
   */
  private control(name: CtrlName, data: Uint8Array, options: RequestOptions | undefined): Promise<void> {
    if (this.ctrlGate) return this.afterHandOver(options, () => this.control(name, data, options));
    const c = Ctrl[name];
    const done = this.request(options, (call) => {
      this.device.check(c.name);
      const ctrl = this.ctrl;
      if (!ctrl || !(this.device.features & c.feature))
        throw vdpaError(
          'EOPNOTSUPP',
          c.name,
          this.device.path,
          `the device did not negotiate ${ctrl ? featureName(c.feature) : 'VIRTIO_NET_F_CTRL_VQ'}`,
        );
      call.addPiece();
      const req = { cls: c.cls, cmd: c.cmd, name: c.name, data, path: this.device.path };
      this.placeControl(ctrl, this.ctrlBufs as CtrlCommand['bufs'], call, req);
    }).then(() => this.recordControl(name, data));
    this.trackControl(done);
    return done;
  }

  private placeControl(
    ctrl: QueueDriver<CtrlCommand>,
    bufs: CtrlCommand['bufs'],
    call: Call,
    req: CtrlRequest,
  ): boolean {
    let token: number;
    try {
      token = ctrl.tryAcquire();
    } catch (e) {
      call.pieceDone(e as Error);
      return true;
    }
    if (token < 0) {
      this.ctrlWaiters.push(() => {
        if (!call.settled) return this.placeControl(ctrl, bufs, call, req);
        call.pieceDone(undefined);
        return false;
      });
      return true;
    }
    const at = token * CTRL_SLOT;
    bufs.bytes[at] = req.cls;
    bufs.bytes[at + 1] = req.cmd;
    bufs.bytes.set(req.data, at + 2);
    bufs.bytes[at + CTRL_ACK] = 0xff;
    ctrl.enqueue(
      token,
      [
        { region: bufs.handle, offset: at, length: 2 + req.data.length, writable: false },
        { region: bufs.handle, offset: at + CTRL_ACK, length: 1, writable: true },
      ],
      { call, req, bufs, at },
    );
    return true;
  }

  private controlDone(c: CtrlCommand, len: number, err: Error | undefined): void {
    if (err) return c.call.pieceDone(err);
    const ack = c.bufs.bytes[c.at + CTRL_ACK];
    if (len >= 1 && ack === 0) return c.call.pieceDone(undefined);
    const name = c.req.name;
    const detail =
      len < 1
        ? `the device returned ${name} without an acknowledgement`
        : `the device refused ${name} (${ack === 1 ? 'VIRTIO_NET_ERR' : `acknowledgement ${ack}`})`;
    c.call.pieceDone(vdpaError('EIO', name, c.req.path, detail));
  }

  private nextReader(): Reader | undefined {
    for (let r = this.readers.shift(); r; r = this.readers.shift()) if (!r.done) return r;
    return undefined;
  }

  private settleReader(r: Reader, err: Error | undefined, frame?: Uint8Array, meta: PacketMeta = PLAIN): void {
    if (r.done) return;
    r.done = true;
    this.waitingReaders--;
    if (r.onAbort) r.signal?.removeEventListener('abort', r.onAbort);
    if (err) r.reject(err);
    else r.resolve(frame as Uint8Array, meta);
    if (this.waitingReaders === 0) this.updateRef();
  }

  private failReaders(err: Error): void {
    this.failure ??= err;
    for (const r of this.readers.drain()) this.settleReader(r, this.failure);
    this.updateRef();
  }

  private updateRef(): void {
    // A reader waiting for a frame is like a socket reading: it keeps the loop alive unless unref'd.
    for (const p of this.pairs) p.rx.updateRef();
  }
}

/** Where frames waiting for a slot of `pair` go: the pair that replaced it, after hand-overs. */
function livePair(pair: QueuePair): QueuePair {
  let p = pair;
  while (p.movedTo) p = p.movedTo;
  return p;
}

/** The checksum, segmentation and (when `hashed`: virtio_net_hdr_v1_hash) hash fields of the header at `at`. */
function headerMeta(bytes: Uint8Array, at: number, hashed: boolean): PacketMeta {
  const flags = bytes[at] as number;
  const gso = bytes[at + 1] as number; // checked against the negotiated types already
  const report = hashed ? (bytes[at + 16] as number) | ((bytes[at + 17] as number) << 8) : 0;
  const hashType = (report > 0 && HASH_TYPES[report - 1]) || 'none';
  if (!(flags & (HDR_NEEDS_CSUM | HDR_DATA_VALID)) && gso === 0 && hashType === 'none') return PLAIN;
  const gsoType = GSO_NAMES[gso] ?? 'none';
  const hash =
    hashType === 'none'
      ? 0
      : ((bytes[at + 12] as number) |
          ((bytes[at + 13] as number) << 8) |
          ((bytes[at + 14] as number) << 16) |
          ((bytes[at + 15] as number) << 24)) >>>
        0;
  return {
    checksumNeeded: (flags & HDR_NEEDS_CSUM) !== 0,
    checksumValid: (flags & HDR_DATA_VALID) !== 0,
    checksumStart: (bytes[at + 6] as number) | ((bytes[at + 7] as number) << 8),
    checksumOffset: (bytes[at + 8] as number) | ((bytes[at + 9] as number) << 8),
    gsoType,
    gsoSize: gsoType === 'none' ? 0 : (bytes[at + 4] as number) | ((bytes[at + 5] as number) << 8),
    headerLength: gsoType === 'none' ? 0 : (bytes[at + 2] as number) | ((bytes[at + 3] as number) << 8),
    hash,
    hashType,
  };
}

/** Most indirection table entries {@link NetDevice.setRss} sends (its control slot holds 512 and a key). */
const MAX_RSS_TABLE = 512;

/** The hash_types bits and a copy of the key of a hash configuration, checked against `limits` when known. */
function checkHashConfig(config: HashConfig, limits: RssLimits | undefined): { types: number; key: Uint8Array } {
  const key: unknown = config.key;
  if (!(key instanceof Uint8Array)) throw new TypeError('config.key must be a Uint8Array');
  const most = Math.min(255, limits?.maxKeySize ?? 255);
  if (key.length < 1 || key.length > most)
    throw new RangeError(
      `config.key must be 1 to ${most} bytes${limits ? ' (rss_max_key_size)' : ''}, got ${key.length}`,
    );
  const list: unknown = config.hashTypes;
  if (!Array.isArray(list)) throw new TypeError('config.hashTypes must be an array');
  let types = 0;
  list.forEach((t: unknown, i) => {
    if (typeof t !== 'string') throw new TypeError(`config.hashTypes[${i}] must be a string`);
    const bit = HASH_TYPES.indexOf(t as NetHashType);
    if (bit < 0) throw new RangeError(`config.hashTypes[${i}] must be one of ${HASH_TYPES.join(', ')}, got '${t}'`);
    if (limits && !limits.hashTypes.includes(t as NetHashType))
      throw new RangeError(
        `config.hashTypes[${i}]: the device does not offer hash type '${t}' (it offers ${limits.hashTypes.join(', ') || 'none'})`,
      );
    types |= 1 << bit;
  });
  return { types, key: key.slice() };
}

function le16(n: number): Uint8Array {
  return Uint8Array.of(n & 0xff, n >> 8);
}

function macText(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A MAC address argument as 6 bytes (a copy): Uint8Array of 6, or `'aa:bb:cc:dd:ee:ff'`. */
function macBytes(mac: unknown, what: string): Uint8Array {
  if (typeof mac === 'string') {
    if (!MAC_TEXT.test(mac)) throw new RangeError(`${what} must be 6 hex bytes separated by colons, got '${mac}'`);
    return Uint8Array.from(mac.split(':'), (h) => parseInt(h, 16));
  }
  if (!(mac instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array or a string`);
  if (mac.length !== 6) throw new RangeError(`${what} must be 6 bytes, got ${mac.length}`);
  return mac.slice();
}

function macList(list: unknown, what: string): Uint8Array[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new TypeError(`${what} must be an array`);
  if (list.length > MAX_TABLE) throw new RangeError(`${what} holds ${list.length} addresses; at most ${MAX_TABLE}`);
  return list.map((m, i) => macBytes(m, `${what}[${i}]`));
}

/** VIRTIO_NET_F_SPEED_DUPLEX: the speed and duplex fields exist. */
const SPEED_DUPLEX = 1n << 63n;

/**
 * The part of struct virtio_net_config that exists on `d`: up to the last field a feature it offers
 * brings (a field exists only with its feature). Reading past them is not harmless: QEMU reads
 * all ones for an access that crosses the end (a 4-byte read of max_virtqueue_pairs with the
 * absent mtu after it gave 0xffff pairs).
 */
function netConfig(d: Device): ConfigView {
  const f = d.deviceFeatures;
  let end = 0;
  const extends_ = (mask: bigint, field: { offset: number; bytes: number }): void => {
    if (f & mask) end = Math.max(end, field.offset + field.bytes);
  };
  extends_(NetFeature.MAC, NetConfig.mac);
  extends_(NetFeature.STATUS, NetConfig.status);
  extends_(NetFeature.MQ | NetFeature.RSS, NetConfig.maxVirtqueuePairs);
  extends_(NetFeature.MTU, NetConfig.mtu);
  extends_(SPEED_DUPLEX, NetConfig.duplex);
  extends_(NetFeature.RSS | NetFeature.HASH_REPORT, NetConfig.supportedHashTypes);
  const length = Math.min(d.configSize, end, NET_CONFIG_SIZE);
  return new ConfigView(length > 0 ? d.readConfig(0, length) : new Uint8Array(0));
}

function featureName(mask: bigint): string {
  const entry = Object.entries(NetFeature).find(([, m]) => m === mask);
  return `VIRTIO_NET_F_${entry ? entry[0] : mask.toString(2).length - 1}`;
}

/**
 * Opens a virtio-net device and brings it up; receive buffers are posted at once.
 *
 * @example
 * const net = await openNet('mock:net');
 * await net.send(frame);
 * for await (const f of net.frames()) console.log(f.length);
 */
export async function openNet(path: string, options: NetOptions = {}): Promise<NetDevice> {
  return openForDriver(path, options, {
    type: DeviceType.net,
    what: 'a network device',
    check: checkNetOptions,
    bringUp: async (device) => {
      const net = new NetDevice(device, options, await device.negotiate(netFeatures(options)));
      await net.bringUp();
      return net;
    },
  });
}

function checkNetOptions(options: NetOptions): void {
  checkPollMicros(options.pollMicros);
  if (options.mergeable !== undefined) checkBoolean(options.mergeable, 'mergeable');
  if (options.txChecksum !== undefined) checkBoolean(options.txChecksum, 'txChecksum');
  if (options.rxChecksum !== undefined) checkBoolean(options.rxChecksum, 'rxChecksum');
  if (options.txGso !== undefined && checkBoolean(options.txGso, 'txGso') && options.txChecksum !== true)
    throw new TypeError('txGso needs txChecksum: true (segmentation completes the checksum of every segment)');
  if (options.rxGso !== undefined && checkBoolean(options.rxGso, 'rxGso') && options.rxChecksum !== true)
    throw new TypeError('rxGso needs rxChecksum: true (a large frame arrives with its checksum left partial)');
  if (options.control !== undefined) checkBoolean(options.control, 'control');
  if (options.rxBufferSize !== undefined) checkInteger(options.rxBufferSize, 'rxBufferSize', 64, 65536);
  if (options.hashReport !== undefined && checkBoolean(options.hashReport, 'hashReport') && options.control === false)
    throw new TypeError('hashReport needs the control queue (control: false was given)');
  if (options.queuePairs !== undefined) {
    checkInteger(options.queuePairs, 'queuePairs', 1, 32768);
    if (options.queuePairs > 1 && options.control === false)
      throw new TypeError('queuePairs above 1 needs the control queue (control: false was given)');
  }
}

/** The features the network driver asks for. */
function netFeatures(options: NetOptions): bigint {
  let f = COMMON_FEATURES | NetFeature.MAC | NetFeature.STATUS | NetFeature.MTU;
  if (options.packed) f |= Feature.RING_PACKED;
  if (options.mergeable !== false) f |= NetFeature.MRG_RXBUF;
  if (options.control !== false) f |= CONTROL_FEATURES;
  if (options.txChecksum === true) f |= NetFeature.CSUM;
  if (options.rxChecksum === true) f |= NetFeature.GUEST_CSUM;
  if (options.txGso === true) f |= TX_GSO_FEATURES;
  if (options.rxGso === true) f |= RX_GSO_FEATURES;
  if (options.hashReport === true) f |= NetFeature.HASH_REPORT;
  return f;
}
