// Which devices the conformance suites run against. By default: several shapes of the in-process
// mock devices. Point the suites at real devices with environment variables:
//   VDPA_TEST_DEVICE=/dev/vhost-vdpa-0      blk suite target (replaces the mock shapes)
//   VDPA_TEST_QUEUES=N, VDPA_TEST_QUEUE_SIZE=Q   queues / queue size to use on it
//   VDPA_TEST_PACKED=1                      request the packed ring on the real blk/net targets
//   VDPA_TEST_NET_DEVICE=/dev/vhost-vdpa-1  net suite target (replaces the mock shapes)
//   VDPA_TEST_NET_PEER=/dev/vhost-vdpa-2    where frames sent by the net target come out
//                                           (default: the same device, i.e. a loopback)
//   VDPA_TEST_NET_RX_BUFFER=N               net: bytes per mergeable receive buffer
//   VDPA_TEST_NET_MERGEABLE=0               net: do not use mergeable receive buffers
//   VDPA_TEST_NET_OFFLOADS=1                net: ask for checksum offload both ways
//   VDPA_TEST_NET_GSO=1                     net: ask for segmentation offload both ways (with checksums)
//   VDPA_TEST_NET_HASH_REPORT=1             net: ask for hash reports (VIRTIO_NET_F_HASH_REPORT)
//   VDPA_TEST_NET_LINK_REQUEST=FILE         net: where to ask the harness for link changes
//                                           (set by scripts/vm/run.sh --net-link-control)
//   VDPA_TEST_DISCARD_ZEROES=0|1            whether discarded blocks must read back as zeroes
//                                           (default: yes on mock devices, no on real ones)
import { openNet, type BlkOptions, type NetDevice, type NetOptions } from '../../lib';

export interface BlkTarget {
  name: string;
  spec: string;
  options: BlkOptions;
  /** True when discarded ranges are guaranteed to read back as zeroes on this target. */
  discardZeroes: boolean;
}

export interface NetTarget {
  name: string;
  spec: string;
  options: NetOptions;
  /**
   * Where frames sent on `spec` arrive. Undefined = the same device (the mock is a loopback).
   */
  peer?: { spec: string; options: NetOptions };
}

export const MOCK_CAPACITY = 64 * 1024 * 1024;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${name} must be a positive integer, got '${v}'`);
  return n;
}

function envBool(name: string): boolean | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  return v !== '0' && v.toLowerCase() !== 'false' && v.toLowerCase() !== 'no';
}

/** The blk devices the conformance suite runs against. */
export function blkTargets(): BlkTarget[] {
  const real = process.env.VDPA_TEST_DEVICE;
  if (real) {
    const options: BlkOptions = {};
    const queues = envInt('VDPA_TEST_QUEUES');
    const queueSize = envInt('VDPA_TEST_QUEUE_SIZE');
    if (queues !== undefined) options.numQueues = queues;
    if (queueSize !== undefined) options.queueSize = queueSize;
    if (envBool('VDPA_TEST_PACKED')) options.packed = true;
    return [{ name: real, spec: real, options, discardZeroes: envBool('VDPA_TEST_DISCARD_ZEROES') ?? false }];
  }
  const zeroes = envBool('VDPA_TEST_DISCARD_ZEROES') ?? true;
  const shapes: { numQueues: number; queueSize: number; packed?: boolean }[] = [
    { numQueues: 1, queueSize: 64 },
    { numQueues: 2, queueSize: 256 },
    { numQueues: 4, queueSize: 128 },
    // The same suite over the packed ring, including a size that is not a power of two.
    { numQueues: 2, queueSize: 256, packed: true },
    { numQueues: 1, queueSize: 100, packed: true },
  ];
  return shapes.map((shape) => ({
    name: `mock:blk ${shape.numQueues}x${shape.queueSize}${shape.packed ? ' packed' : ''}`,
    spec: 'mock:blk',
    options: { ...shape, mock: { capacity: MOCK_CAPACITY, numQueues: shape.numQueues } },
    discardZeroes: zeroes,
  }));
}

/** The net devices the conformance suite runs against. */
export function netTargets(): NetTarget[] {
  const real = process.env.VDPA_TEST_NET_DEVICE;
  if (real) {
    const options: NetOptions = {};
    const queueSize = envInt('VDPA_TEST_QUEUE_SIZE');
    if (queueSize !== undefined) options.queueSize = queueSize;
    if (envBool('VDPA_TEST_PACKED')) options.packed = true;
    const rxBufferSize = envInt('VDPA_TEST_NET_RX_BUFFER');
    if (rxBufferSize !== undefined) options.rxBufferSize = rxBufferSize;
    if (envBool('VDPA_TEST_NET_MERGEABLE') === false) options.mergeable = false;
    if (envBool('VDPA_TEST_NET_OFFLOADS')) options.txChecksum = options.rxChecksum = true;
    if (envBool('VDPA_TEST_NET_GSO')) options.txChecksum = options.rxChecksum = options.txGso = options.rxGso = true;
    if (envBool('VDPA_TEST_NET_HASH_REPORT')) options.hashReport = true;
    const target: NetTarget = { name: real, spec: real, options };
    const peer = process.env.VDPA_TEST_NET_PEER;
    if (peer) target.peer = { spec: peer, options: { ...options } };
    return [target];
  }
  const shapes: { name: string; options: NetOptions }[] = [
    { name: 'q64', options: { queueSize: 64 } },
    { name: 'q256', options: { queueSize: 256 } },
    { name: 'q64 packed', options: { queueSize: 64, packed: true } },
    { name: 'q64 checksum offload', options: { queueSize: 64, txChecksum: true } },
    { name: 'q64 checksum offload both ways', options: { queueSize: 64, txChecksum: true, rxChecksum: true } },
    { name: 'q64 segmentation offload (tx)', options: { queueSize: 64, txChecksum: true, txGso: true } },
    {
      name: 'q64 segmentation offload both ways',
      options: { queueSize: 64, txChecksum: true, rxChecksum: true, txGso: true, rxGso: true },
    },
    // The older shape: whole-frame receive buffers, no control queue.
    { name: 'q64 whole-frame buffers, no control queue', options: { queueSize: 64, mergeable: false, control: false } },
    // Jumbo frames over small mergeable buffers, on the packed ring too.
    { name: 'q128 mtu 9000 rxBufferSize 1024', options: { queueSize: 128, rxBufferSize: 1024, mock: { mtu: 9000 } } },
    {
      name: 'q64 packed mtu 9000 rxBufferSize 512',
      options: { queueSize: 64, packed: true, rxBufferSize: 512, mock: { mtu: 9000 } },
    },
    // Hash reports: the 20-byte header both ways; a device with 2 pairs and RSS, one pair used (the
    // suite relies on one sender's order, which several pairs do not keep).
    {
      name: 'q64 RSS and hash reports, 1 of 2 pairs, checksum offload both ways',
      options: {
        queueSize: 64,
        hashReport: true,
        txChecksum: true,
        rxChecksum: true,
        mock: { queuePairs: 2, rss: true },
      },
    },
  ];
  // Command frames let the suite change the mock's link state.
  return shapes.map(({ name, options }) => ({
    name: `mock:net ${name}`,
    spec: 'mock:net',
    options: { ...options, mock: { ...options.mock, commandFrames: true } },
  }));
}

/** Runs `fn` on a mock:net opened with `opts`, closing it afterwards whatever `fn` did. */
export async function withMockNet(opts: NetOptions, fn: (net: NetDevice) => Promise<void>): Promise<void> {
  const net = await openNet('mock:net', opts);
  try {
    await fn(net);
  } finally {
    await net.close();
  }
}
