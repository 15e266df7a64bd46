// Open options: what every opener takes, and the settings of the mock devices.
import { native, type NativeOpenOptions } from './native';
import { checkBoolean, checkInteger, checkObject } from './validate';

/**
 * Settings of an in-process mock device (`mock:blk`, `mock:net`), in {@link OpenOptions.mock}. Each is
 * checked before the device is made: TypeError for a wrong type, RangeError for a value out of range.
 */
export interface MockOptions {
  /**
   * mock:blk: disk size in bytes, a multiple of 512 up to 2^50. Default 64 MiB. The disk is sparse:
   * only written data costs memory (discard and writeZeroes give it back), so it may be larger than
   * RAM; a size this process cannot map is refused with `'ENOMEM'`.
   */
  capacity?: number;
  /**
   * mock:blk: request queues the device offers (1 to 64; VIRTIO_BLK_F_MQ when above 1). Default 1.
   * How many of them a driver uses is {@link BlkOptions.numQueues}.
   */
  numQueues?: number;
  /** Largest queue size the device accepts (1 to 32768). Default 1024. */
  maxQueueSize?: number;
  /** mock:blk: max data segments per request, seg_max (1 to 4096). Default 126. */
  segMax?: number;
  /** mock:blk: max bytes per data segment, size_max (512 to 2^31). Default 1 MiB. */
  sizeMax?: number;
  /** mock:blk: logical block size reported in config (512 to 65536). Default 512. */
  blockSize?: number;
  /** mock:blk: offer VIRTIO_BLK_F_RO. Default false. */
  readOnly?: boolean;
  /** mock:net: MAC address in config, 6 bytes. Default 52:54:00:12:34:56. */
  mac?: Uint8Array;
  /** mock:net: MTU in config (68 to 65535). Default 1500. */
  mtu?: number;
  /**
   * Make the device misbehave, for testing how the library defends itself: one of {@link mockFaults}.
   * `'stall'` completes nothing after `faultAfter` completions.
   */
  fault?: string;
  /** Completions the device gets right before the fault starts (0 to 2^32-1). Default 0. */
  faultAfter?: number;
  /**
   * Milliseconds the device holds back each batch of completions (0 to 60000), for testing what
   * arrives while the driver is busy (e.g. closing). Default 0.
   */
  completionDelayMs?: number;
  /**
   * Behave like a VDUSE device: each batch of chains takes about 2 ms, and a DMA mapping change while
   * the device works on chains breaks it (DEVICE_NEEDS_RESET). The library then quiesces the device
   * around every mapping change, as it does on vhost-vdpa. Default false.
   */
  strictDmaUpdates?: boolean;
  /**
   * mock:net: queue pairs the device offers, max_virtqueue_pairs (1 to 256; VIRTIO_NET_F_MQ when
   * above 1). Default 1.
   */
  queuePairs?: number;
  /**
   * mock:net: lie in mergeable receive buffers, one of {@link mockNetFaults}, once `faultAfter`
   * frames were received right: `'mrg-zero-buffers'` (num_buffers 0), `'mrg-extra-buffers'`
   * (num_buffers one more than the buffers used), `'mrg-huge-buffers'` (num_buffers 65535),
   * `'mrg-short-head'` (the first buffer shorter than the header), `'mrg-empty-buffer'` (the last
   * buffer of a frame spread over several is empty), `'csum-outside'` (a checksum past the frame);
   * segmentation headers on received frames: `'gso-size-zero'` (TCPv4, gso_size 0),
   * `'gso-hdrlen-past'` (hdr_len past the frame), `'gso-unknown-type'` (gso_type 2),
   * `'gso-not-negotiated'` (TCPv6 to a driver without GUEST_TSO6).
   */
  netFault?: string;
  /**
   * mock:net: frames of EtherType 0x88b6 whose first payload byte is 0, 1 or 2 are commands to the
   * device instead of traffic: link down, link up, ask the driver to announce itself (each a
   * configuration interrupt). A timer-free trigger for link-state tests. Default false.
   */
  commandFrames?: boolean;
  /**
   * mock:net: offer segmentation offload (HOST_TSO4, HOST_TSO6, HOST_USO, GUEST_TSO4, GUEST_TSO6,
   * GUEST_USO4, GUEST_USO6). Default true.
   */
  gso?: boolean;
  /**
   * mock:net: offer receive-side scaling and hash reports (VIRTIO_NET_F_RSS, VIRTIO_NET_F_HASH_REPORT):
   * a 40-byte key, an indirection table of up to 128 entries, and the IPv4, TCPv4, UDPv4, IPv6,
   * TCPv6 and UDPv6 hash types (a Toeplitz hash, virtio 1.x section 5.1.6.4.3). Default false.
   */
  rss?: boolean;
  /**
   * mock:net: a control class the device refuses (VIRTIO_NET_ERR): rx, mac, vlan, announce, mq,
   * all, or `'rss'` (VIRTIO_NET_CTRL_MQ_RSS_CONFIG and _HASH_CONFIG only).
   */
  refuseControl?: 'rx' | 'mac' | 'vlan' | 'announce' | 'mq' | 'rss' | 'all';
  /**
   * Offer suspend (as vhost-vdpa's VHOST_BACKEND_F_SUSPEND) to a hand-over: the device finishes the
   * chains it took and stops; what is still in the rings stays there. Default false.
   */
  suspend?: boolean;
  /** Milliseconds opening the device takes (0 to 60000, on the threadpool), like a slow daemon. Default 0. */
  openDelayMs?: number;
  /** Offer suspend and break when it is asked for (DEVICE_NEEDS_RESET; the suspend fails with EIO). */
  failSuspend?: boolean;
  /**
   * Feature bits the device does not offer (a mask below 2^53, e.g. `Number(NetFeature.MRG_RXBUF)`),
   * for testing a driver against a device without them. Default 0.
   */
  withholdFeatures?: number;
  /**
   * mock:blk: keep the blocks in this file (its size, whole sectors, is the capacity) instead of RAM,
   * so two mock devices serve one disk (hand-over tests).
   */
  file?: string;
}

/** Options for {@link openDevice}; device-specific openers add their own. */
export interface OpenOptions {
  /**
   * Settings of a `mock:` device. Only mock devices take them: on any other path this is a TypeError
   * (a setting that cannot apply is a mistake, not something to ignore). Keys not listed in
   * {@link MockOptions} are a TypeError too.
   */
  mock?: MockOptions;
  /**
   * Milliseconds a request may stay with the device before it rejects with code `'ETIMEDOUT'`
   * (0 to 2^31-1; 0 disables). Default 30000. Virtio cannot take a request back, so a timeout fails
   * the device: it emits `'timeout'` with the error, and every pending and later request rejects
   * with `'ETIMEDOUT'` until `close()`. Checked by one coarse timer per device: a request times out
   * no earlier than `requestTimeout` and at most three ticks later (a tick is an eighth of it, 5 ms to 1 s).
   * Receive buffers of a net device wait for traffic and have no deadline.
   */
  requestTimeout?: number;
}

/** Fault names a mock device accepts in {@link MockOptions.fault}. */
export const mockFaults: readonly string[] = Object.freeze([...native.mockFaults]);

/** Fault names mock:net accepts in {@link MockOptions.netFault}. */
export const mockNetFaults: readonly string[] = Object.freeze([...native.mockNetFaults]);

const REFUSABLE_CONTROL = ['rx', 'mac', 'vlan', 'announce', 'mq', 'rss', 'all'];

const MOCK_KEYS: readonly (keyof MockOptions)[] = [
  'capacity',
  'numQueues',
  'maxQueueSize',
  'segMax',
  'sizeMax',
  'blockSize',
  'readOnly',
  'mac',
  'mtu',
  'fault',
  'faultAfter',
  'completionDelayMs',
  'strictDmaUpdates',
  'queuePairs',
  'netFault',
  'commandFrames',
  'refuseControl',
  'gso',
  'rss',
  'suspend',
  'openDelayMs',
  'failSuspend',
  'withholdFeatures',
  'file',
];

/**
 * The native layer's flat options object; ranges are the native parser's too (it checks them again).
 * Options for non-mock devices are empty: those transports take none.
 */
export function toNativeOptions(path: string, options: OpenOptions): NativeOpenOptions {
  for (const key of [...MOCK_KEYS, 'deviceQueues']) {
    // numQueues (blk) and queuePairs (net) are driver options too: how many of the device's to use.
    if (key !== 'numQueues' && key !== 'queuePairs' && key in options)
      throw new TypeError(`options.${key} is a mock device setting: pass it inside options.mock`);
  }
  const o = options.mock;
  if (o === undefined) return {};
  checkObject(o, 'options.mock');
  if (!path.startsWith('mock:')) throw new TypeError(`options.mock applies to mock: devices only, not '${path}'`);
  for (const key of Object.keys(o))
    if (!(MOCK_KEYS as readonly string[]).includes(key))
      throw new TypeError(`options.mock.${key} is not a mock setting (known: ${MOCK_KEYS.join(', ')})`);
  const n: NativeOpenOptions = {};
  if (o.capacity !== undefined) {
    checkInteger(o.capacity, 'mock.capacity', 512, 2 ** 50);
    if (o.capacity % 512 !== 0) throw new RangeError('mock.capacity must be a multiple of 512');
    n.capacity = o.capacity;
  }
  if (o.numQueues !== undefined) n.numQueues = checkInteger(o.numQueues, 'mock.numQueues', 1, 64);
  if (o.maxQueueSize !== undefined) n.maxQueueSize = checkInteger(o.maxQueueSize, 'mock.maxQueueSize', 1, 32768);
  if (o.segMax !== undefined) n.segMax = checkInteger(o.segMax, 'mock.segMax', 1, 4096);
  if (o.sizeMax !== undefined) n.sizeMax = checkInteger(o.sizeMax, 'mock.sizeMax', 512, 2 ** 31);
  if (o.blockSize !== undefined) n.blockSize = checkInteger(o.blockSize, 'mock.blockSize', 512, 65536);
  if (o.readOnly !== undefined) n.readOnly = checkBoolean(o.readOnly, 'mock.readOnly');
  if (o.strictDmaUpdates !== undefined) n.strictDmaUpdates = checkBoolean(o.strictDmaUpdates, 'mock.strictDmaUpdates');
  if (o.mtu !== undefined) n.mtu = checkInteger(o.mtu, 'mock.mtu', 68, 65535);
  if (o.faultAfter !== undefined) n.faultAfter = checkInteger(o.faultAfter, 'mock.faultAfter', 0, 2 ** 32 - 1);
  if (o.completionDelayMs !== undefined)
    n.completionDelayMs = checkInteger(o.completionDelayMs, 'mock.completionDelayMs', 0, 60_000);
  if (o.mac !== undefined) {
    if (!(o.mac instanceof Uint8Array)) throw new TypeError('mock.mac must be a Uint8Array');
    if (o.mac.length !== 6) throw new RangeError(`mock.mac must be 6 bytes, got ${o.mac.length}`);
    n.mac = o.mac;
  }
  if (o.fault !== undefined) {
    if (typeof o.fault !== 'string') throw new TypeError('mock.fault must be a string');
    if (!mockFaults.includes(o.fault)) throw new RangeError(`mock.fault must be one of ${mockFaults.join(', ')}`);
    n.fault = o.fault;
  }
  if (o.queuePairs !== undefined) n.queuePairs = checkInteger(o.queuePairs, 'mock.queuePairs', 1, 256);
  if (o.commandFrames !== undefined) n.commandFrames = checkBoolean(o.commandFrames, 'mock.commandFrames');
  if (o.gso !== undefined) n.gso = checkBoolean(o.gso, 'mock.gso');
  if (o.rss !== undefined) n.rss = checkBoolean(o.rss, 'mock.rss');
  if (o.netFault !== undefined) {
    if (typeof o.netFault !== 'string') throw new TypeError('mock.netFault must be a string');
    if (!mockNetFaults.includes(o.netFault))
      throw new RangeError(`mock.netFault must be one of ${mockNetFaults.join(', ')}`);
    n.netFault = o.netFault;
  }
  if (o.refuseControl !== undefined) {
    if (typeof o.refuseControl !== 'string') throw new TypeError('mock.refuseControl must be a string');
    if (!REFUSABLE_CONTROL.includes(o.refuseControl))
      throw new RangeError(`mock.refuseControl must be one of ${REFUSABLE_CONTROL.join(', ')}`);
    n.refuseControl = o.refuseControl;
  }
  if (o.openDelayMs !== undefined) n.openDelayMs = checkInteger(o.openDelayMs, 'mock.openDelayMs', 0, 60_000);
  if (o.suspend !== undefined) n.suspend = checkBoolean(o.suspend, 'mock.suspend');
  if (o.failSuspend !== undefined) n.failSuspend = checkBoolean(o.failSuspend, 'mock.failSuspend');
  if (o.withholdFeatures !== undefined)
    n.withholdFeatures = checkInteger(o.withholdFeatures, 'mock.withholdFeatures', 0, Number.MAX_SAFE_INTEGER);
  if (o.file !== undefined) {
    if (typeof o.file !== 'string') throw new TypeError('mock.file must be a string');
    if (o.file === '') throw new RangeError('mock.file must be a path');
    n.file = o.file;
  }
  return n;
}

/** The request deadline in ms from the open options (0 = none). */
export function requestTimeoutOf(options: OpenOptions): number {
  if (options.requestTimeout === undefined) return DEFAULT_REQUEST_TIMEOUT;
  return checkInteger(options.requestTimeout, 'requestTimeout', 0, 2 ** 31 - 1);
}

const DEFAULT_REQUEST_TIMEOUT = 30_000;
