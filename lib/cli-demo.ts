// `demo [BLK] [NET]`: drives a virtio-blk and a virtio-net device and says what happened. With no
// arguments it uses the built-in mock devices: no hardware, no privileges.
import { randomBytes } from 'node:crypto';
import { openBlk } from './blk';
import { type Command, macString, toJson } from './cli-common';
import { featureNames } from './constants';
import { openNet } from './net';

interface BlkReport {
  device: string;
  transport: string;
  capacity: number;
  blockSize: number;
  queues: number;
  queueSize: number;
  features: string[];
  id: string;
  requests: number;
  requestBytes: number;
  matched: number;
  zeroCopyMatches: boolean;
  discardReadsZeroes: boolean;
  milliseconds: number;
}

interface NetReport {
  device: string;
  transport: string;
  mac: string;
  mtu: number;
  linkUp: boolean;
  frameSizes: number[];
  matched: number;
}

/** Writes 64 x 64 KiB, reads them back, a zero-copy round trip, a discard; `line` reports as it goes. */
async function demoBlk(spec: string, line: (text: string) => void): Promise<BlkReport> {
  const blk = await openBlk(
    spec,
    spec.startsWith('mock:') ? { numQueues: 2, mock: { capacity: 64 << 20, numQueues: 2 } } : {},
  );
  try {
    const { device } = blk;
    const features = featureNames(device.features, device.deviceId);
    line(
      `blk  ${device.path} via ${device.transport}: ${blk.capacity} bytes, block ${blk.blockSize}, ` +
        `${blk.numQueues} queue(s) x ${blk.queueSize}`,
    );
    line(`     features: ${features.join(' ')}`);
    const id = await blk.getId();
    line(`     id: ${JSON.stringify(id)}`);
    const buf = blk.allocBuffer(64 * 1024);
    const data = randomBytes(buf.length);
    buf.set(data);
    const t0 = process.hrtime.bigint();
    const offsets = Array.from({ length: 64 }, (_, i) => i * buf.length);
    await Promise.all(offsets.map((off) => blk.write(off, data)));
    await blk.flush();
    let matched = 0;
    await Promise.all(
      offsets.map(async (off) => {
        const back = new Uint8Array(buf.length);
        await blk.read(off, back);
        if (Buffer.compare(back, data) === 0) matched++;
      }),
    );
    await blk.write(0, buf);
    buf.fill(0);
    await blk.read(0, buf);
    const zeroCopyMatches = Buffer.compare(buf, data) === 0;
    const milliseconds = Number(process.hrtime.bigint() - t0) / 1e6;
    line(
      `     wrote and read back ${offsets.length} x ${buf.length} bytes: ${matched}/${offsets.length} match, ` +
        `zero-copy round trip ${zeroCopyMatches ? 'matches' : 'DIFFERS'} (${milliseconds.toFixed(1)} ms)`,
    );
    await blk.discard(0, 4096);
    await blk.read(0, buf.subarray(0, 4096));
    const discardReadsZeroes = buf.subarray(0, 4096).every((b) => b === 0);
    line(`     discard: first 4 KiB read back as ${discardReadsZeroes ? 'zeroes' : 'data'}`);
    if (matched !== offsets.length || !zeroCopyMatches)
      throw new Error(`${spec}: data read back differs from what was written`);
    return {
      device: device.path,
      transport: device.transport,
      capacity: blk.capacity,
      blockSize: blk.blockSize,
      queues: blk.numQueues,
      queueSize: blk.queueSize,
      features,
      id,
      requests: offsets.length,
      requestBytes: buf.length,
      matched,
      zeroCopyMatches,
      discardReadsZeroes,
      milliseconds: Math.round(milliseconds * 10) / 10,
    };
  } finally {
    await blk.close();
  }
}

/** Sends six frames of different sizes and counts those that come back byte for byte (mock:net loops back). */
async function demoNet(spec: string, line: (text: string) => void): Promise<NetReport> {
  const net = await openNet(spec);
  try {
    const mac = macString(net.mac);
    line(
      `net  ${net.device.path} via ${net.device.transport}: mac ${mac}, mtu ${net.mtu}, link ${net.linkUp ? 'up' : 'down'}`,
    );
    const frameSizes = [60, 64, 128, 512, 1024, 1514];
    const frames = frameSizes.map((n) => {
      const f = randomBytes(n);
      f.set(net.mac, 0);
      f.set(net.mac, 6);
      return f;
    });
    await net.sendBatch(frames);
    let matched = 0;
    for (const f of frames) {
      const back = await net.receive();
      if (Buffer.compare(back, f) === 0) matched++;
    }
    line(`     sent ${frames.length} frames (${frameSizes.join(', ')} bytes), received ${matched} byte-exact`);
    if (matched !== frames.length) throw new Error(`${spec}: frames came back different (a loopback device?)`);
    return {
      device: net.device.path,
      transport: net.device.transport,
      mac,
      mtu: net.mtu,
      linkUp: net.linkUp,
      frameSizes,
      matched,
    };
  } finally {
    await net.close();
  }
}

/** `demo`. */
export const demoCommand: Command = {
  name: 'demo',
  synopsis: ['demo [BLK-DEVICE|none] [NET-DEVICE|none] [--json]'],
  summary: 'write, read back and loop frames through a blk and a net device (default: the mocks)',
  details: [
    'Defaults: mock:blk mock:net (no hardware, no privileges). A real block device is overwritten',
    "in its first 4 MiB: e.g. 'demo /dev/vhost-vdpa-0 none' or 'demo vfio:0000:00:03.0 none'.",
    'The net part expects a loopback (what it sends comes back), as mock:net is.',
  ],
  positionals: { min: 0, max: 2 },
  run: async ({ positionals, json, out }) => {
    const [blkSpec = 'mock:blk', netSpec = 'mock:net'] = positionals;
    const line = json ? () => {} : out;
    const report: { blk?: BlkReport; net?: NetReport } = {};
    if (blkSpec !== 'none') report.blk = await demoBlk(blkSpec, line);
    if (netSpec !== 'none') report.net = await demoNet(netSpec, line);
    if (json) out(toJson(report));
  },
};
