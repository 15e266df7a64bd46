#!/usr/bin/env node
// `vdpa demo [blk-spec] [net-spec]`: drives a virtio-blk and a virtio-net device and prints what
// happened. With no arguments it uses the built-in mock devices: no hardware, no privileges.
import { randomBytes } from 'node:crypto';
import { MANAGEMENT_USAGE, runManagementCommand } from './cli-management';
import { featureNames, listDevices, openBlk, openNet } from './index';

async function demoBlk(spec: string): Promise<void> {
  const blk = await openBlk(
    spec,
    spec.startsWith('mock:') ? { numQueues: 2, mock: { capacity: 64 << 20, numQueues: 2 } } : {},
  );
  const { device } = blk;
  console.log(
    `blk  ${device.path} via ${device.transport}: ${blk.capacity} bytes, block ${blk.blockSize}, ` +
      `${blk.numQueues} queue(s) x ${blk.queueSize}`,
  );
  console.log(`     features: ${featureNames(device.features, device.deviceId).join(' ')}`);
  console.log(`     id: ${JSON.stringify(await blk.getId())}`);
  const buf = blk.allocBuffer(64 * 1024);
  const data = randomBytes(buf.length);
  buf.set(data);
  const t0 = process.hrtime.bigint();
  const offsets = Array.from({ length: 64 }, (_, i) => i * buf.length);
  await Promise.all(offsets.map((off) => blk.write(off, data)));
  await blk.flush();
  let good = 0;
  await Promise.all(
    offsets.map(async (off) => {
      const back = new Uint8Array(buf.length);
      await blk.read(off, back);
      if (Buffer.compare(back, data) === 0) good++;
    }),
  );
  await blk.write(0, buf);
  buf.fill(0);
  await blk.read(0, buf);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(
    `     wrote and read back ${offsets.length} x ${buf.length} bytes: ${good}/${offsets.length} match, ` +
      `zero-copy round trip ${Buffer.compare(buf, data) === 0 ? 'matches' : 'DIFFERS'} (${ms.toFixed(1)} ms)`,
  );
  await blk.discard(0, 4096);
  await blk.read(0, buf.subarray(0, 4096));
  console.log(
    `     discard: first 4 KiB read back as ${buf.subarray(0, 4096).every((b) => b === 0) ? 'zeroes' : 'data'}`,
  );
  await blk.close();
  if (good !== offsets.length) throw new Error('blk data mismatch');
}

async function demoNet(spec: string): Promise<void> {
  const net = await openNet(spec);
  const mac = Array.from(net.mac, (b) => b.toString(16).padStart(2, '0')).join(':');
  console.log(
    `net  ${net.device.path} via ${net.device.transport}: mac ${mac}, mtu ${net.mtu}, link ${net.linkUp ? 'up' : 'down'}`,
  );
  const sizes = [60, 64, 128, 512, 1024, 1514];
  const frames = sizes.map((n) => {
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
  console.log(`     sent ${frames.length} frames (${sizes.join(', ')} bytes), received ${matched} byte-exact`);
  await net.close();
  if (matched !== frames.length) throw new Error('net loopback mismatch');
}

async function list(): Promise<void> {
  const devices = await listDevices();
  if (devices.length === 0) console.log('no vDPA devices and no virtio-pci functions bound to vfio-pci');
  for (const d of devices) {
    const where = d.transport === 'vfio' ? `iommu group ${d.iommuGroup}` : `mgmtdev ${d.mgmtDev ?? '?'}`;
    console.log(
      `${d.path ?? '(not for userspace)'}  ${d.name}  ${d.deviceType}  ${where}  driver ${d.driver ?? 'none'}`,
    );
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, blkSpec = 'mock:blk', netSpec = 'mock:net'] = argv;
  if (command === 'list') {
    await list();
    return 0;
  }
  const managed = await runManagementCommand(argv);
  if (managed !== undefined) {
    console.log(managed);
    return 0;
  }
  if (command !== 'demo') {
    console.error('usage: vdpa demo [blk-device|none] [net-device|none]   (defaults: mock:blk mock:net)');
    console.error('       vdpa list');
    for (const u of MANAGEMENT_USAGE) console.error(`       ${u}`);
    return command === undefined || command === '--help' ? 0 : 2;
  }
  if (blkSpec !== 'none') await demoBlk(blkSpec);
  if (netSpec !== 'none') await demoNet(netSpec);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  },
);
