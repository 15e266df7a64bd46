// The named config layouts (lib/config.ts) against hand-built bytes and against what the mock
// devices (C++) put in their config spaces.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeviceType, openBlk, openDevice, openNet } from '../../lib';
import { BLK_CONFIG_SIZE, BlkConfig, ConfigView, NET_CONFIG_SIZE, NetConfig } from '../../lib/config';

describe('config layouts', () => {
  test('fields do not overlap and stay inside the struct size', () => {
    for (const [layout, size] of [
      [BlkConfig, BLK_CONFIG_SIZE],
      [NetConfig, NET_CONFIG_SIZE],
    ] as const) {
      const fields = Object.values(layout).sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < fields.length; i++)
        assert.ok(fields[i - 1]!.offset + fields[i - 1]!.bytes <= fields[i]!.offset, 'fields overlap');
      const last = fields[fields.length - 1]!;
      assert.ok(last.offset + last.bytes <= size);
    }
  });

  test('ConfigView reads little-endian fields and refuses fields past the space', () => {
    const bytes = new Uint8Array(BLK_CONFIG_SIZE);
    const v = new DataView(bytes.buffer);
    v.setBigUint64(0, 0x123456789n, true);
    v.setUint32(12, 126, true);
    v.setUint16(34, 7, true);
    v.setUint32(48, 0xfffffffe, true);
    bytes[56] = 1;
    const cfg = new ConfigView(bytes);
    assert.equal(cfg.get(BlkConfig.capacity), 0x123456789);
    assert.equal(cfg.get(BlkConfig.segMax), 126);
    assert.equal(cfg.get(BlkConfig.numQueues), 7);
    assert.equal(cfg.get(BlkConfig.maxWriteZeroesSectors), 0xfffffffe);
    assert.equal(cfg.get(BlkConfig.writeZeroesMayUnmap), 1);
    const short = new ConfigView(bytes.subarray(0, 36));
    assert.equal(short.has(BlkConfig.numQueues), true);
    assert.equal(short.has(BlkConfig.maxDiscardSectors), false);
    assert.throws(() => short.get(BlkConfig.maxDiscardSectors), RangeError);
  });

  test('mock:blk config matches the layout', async () => {
    const mock = { capacity: 3 << 20, numQueues: 3, segMax: 17, sizeMax: 8192, blockSize: 4096 };
    const dev = await openDevice('mock:blk', { mock });
    try {
      assert.equal(dev.deviceId, DeviceType.blk);
      const cfg = new ConfigView(dev.readConfig(0, Math.min(dev.configSize, BLK_CONFIG_SIZE)));
      assert.equal(cfg.get(BlkConfig.capacity), mock.capacity / 512);
      assert.equal(cfg.get(BlkConfig.numQueues), mock.numQueues);
      assert.equal(cfg.get(BlkConfig.segMax), mock.segMax);
      assert.equal(cfg.get(BlkConfig.sizeMax), mock.sizeMax);
      assert.equal(cfg.get(BlkConfig.blkSize), mock.blockSize);
    } finally {
      await dev.close();
    }
    const blk = await openBlk('mock:blk', { numQueues: 3, mock });
    assert.equal(blk.capacity, mock.capacity);
    assert.equal(blk.blockSize, mock.blockSize);
    assert.equal(blk.numQueues, 3);
    await blk.close();
  });

  test('mock:net config matches the layout', async () => {
    const mac = Uint8Array.of(2, 0, 0, 0xab, 0xcd, 0xef);
    const net = await openNet('mock:net', { mock: { mac, mtu: 9000 } });
    try {
      assert.equal(net.device.deviceId, DeviceType.net);
      const cfg = new ConfigView(net.device.readConfig(0, Math.min(net.device.configSize, NET_CONFIG_SIZE)));
      assert.deepEqual(cfg.bytes(NetConfig.mac), mac);
      assert.equal(cfg.get(NetConfig.mtu), 9000);
      assert.deepEqual(net.mac, mac);
      assert.equal(net.mtu, 9000);
      assert.equal(net.linkUp, true);
    } finally {
      await net.close();
    }
  });
});
