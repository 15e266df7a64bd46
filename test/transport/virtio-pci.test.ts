// The virtio-pci register logic (native/transport/virtio_pci) against a fake function: no VFIO, no
// PCI device. The fake's common configuration behaves like a device (feature select windows,
// queue_select, a reset that takes a few status reads), so these tests check what the VFIO transport
// writes to real hardware.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testingAddon } from '../helpers/testing-addon';

const VERSION_1 = 1n << 32n;
const EVENT_IDX = 1n << 29n;
const PACKED = 1n << 34n;

describe('virtio-pci register logic over a fake function', () => {
  it('walks the capability list past a foreign capability and finds the four structures', () => {
    const r = testingAddon.virtioPciBringUp({ config: new Uint8Array(24) });
    assert.equal(r.error, undefined);
    assert.equal(r.deviceType, 2);
    const c = r.capabilities;
    assert.ok(c);
    assert.deepEqual(c.common, { present: true, bar: 0, offset: 0, length: 56 });
    assert.deepEqual(c.notify, { present: true, bar: 0, offset: 0x1000, length: 0x1000 });
    assert.deepEqual(c.isr, { present: true, bar: 0, offset: 0x2000, length: 1 });
    assert.deepEqual(c.device, { present: true, bar: 0, offset: 0x3000, length: 24 });
    assert.equal(c.notifyMultiplier, 4);
    assert.equal(r.configSize, 24);
  });

  it('reads and writes 64-bit features through the select windows', () => {
    const deviceFeatures = VERSION_1 | PACKED | EVENT_IDX | 0x5n;
    const driverFeatures = VERSION_1 | PACKED | 0x1n;
    const r = testingAddon.virtioPciBringUp({ deviceFeatures, driverFeatures });
    assert.equal(r.error, undefined);
    assert.equal(r.deviceFeatures, deviceFeatures);
    assert.equal(r.driverFeaturesSeen, driverFeatures);
    assert.equal(r.featuresOk, true);
    // Each half is read (or written) after its select register names it.
    const features = r.log.filter((l) => /feature/.test(l));
    assert.deepEqual(features, [
      'w32 device_feature_select = 0x0',
      `r32 device_feature = 0x${(deviceFeatures & 0xffffffffn).toString(16)}`,
      'w32 device_feature_select = 0x1',
      `r32 device_feature = 0x${(deviceFeatures >> 32n).toString(16)}`,
      'w32 driver_feature_select = 0x0',
      'w32 driver_feature = 0x1',
      'w32 driver_feature_select = 0x1',
      `w32 driver_feature = 0x${(driverFeatures >> 32n).toString(16)}`,
    ]);
  });

  it('a device that refuses the features leaves FEATURES_OK clear', () => {
    const r = testingAddon.virtioPciBringUp({ deviceFeatures: VERSION_1, driverFeatures: VERSION_1 | PACKED });
    assert.equal(r.featuresOk, false);
  });

  it('sets queues up: size, vector, addresses in both halves, enable, doorbell', () => {
    const queues = [
      { index: 0, size: 128, desc: 0x1_2345_6000n, driver: 0x1_2345_7000n, device: 0xffff_ffff_0000_8000n },
      { index: 1, size: 64, desc: 0x10000n, driver: 0x11000n, device: 0x12000n },
    ];
    const r = testingAddon.virtioPciBringUp({ numQueues: 2, queueMaxSize: 256, queues });
    assert.equal(r.error, undefined);
    assert.deepEqual(r.maxQueueSizes, [256, 256]);
    for (const q of queues) {
      const seen = r.queues[q.index];
      assert.equal(seen.size, q.size);
      assert.equal(seen.msixVector, q.index + 1);
      assert.equal(seen.enabled, true);
      assert.equal(seen.desc, q.desc);
      assert.equal(seen.driver, q.driver);
      assert.equal(seen.device, q.device);
    }
    // queue_notify_off of queue i is i; the multiplier is 4; the value written is the queue index.
    assert.deepEqual(r.notifies, [
      { offset: 0, value: 0 },
      { offset: 4, value: 1 },
    ]);
    // The address halves go low then high, after queue_select named the queue.
    const q0 = r.log.slice(r.log.indexOf('w16 queue_select = 0x0', r.log.indexOf('w16 queue_size = 0x80') - 1));
    assert.ok(q0.indexOf('w32 queue_desc_lo = 0x23456000') < q0.indexOf('w32 queue_desc_hi = 0x1'));
    assert.ok(q0.includes('w32 queue_device_hi = 0xffffffff'));
    assert.equal(r.status, 0xf);
  });

  it('a queue vector the device refuses is an EIO naming VIRTIO_MSI_NO_VECTOR', () => {
    const r = testingAddon.virtioPciBringUp({
      msixVectors: 1,
      queues: [{ index: 0, size: 16, desc: 0x1000n, driver: 0x2000n, device: 0x3000n }],
    });
    assert.equal(r.error?.code, 'EIO');
    assert.match(r.error?.hint ?? '', /refused MSI-X vector 1 for queue 0 .*VIRTIO_MSI_NO_VECTOR/);
  });

  it('reset writes status 0 and reads until the device shows 0', () => {
    const r = testingAddon.virtioPciBringUp({ resetDelayReads: 5 });
    assert.equal(r.error, undefined);
    assert.equal(r.resetDone, true);
    assert.equal(r.resets, 1);
    // Five reads still show the old status; the sixth shows 0.
    assert.equal(r.statusReadsDuringReset, 6);
    const start = r.log.indexOf('w8 device_status = 0x0');
    assert.ok(start >= 0);
    const reads = r.log.slice(start + 1, start + 7);
    assert.deepEqual(reads.slice(0, 5), Array(5).fill('r8 device_status = 0x1'));
    assert.equal(reads[5], 'r8 device_status = 0x0');
  });

  it('a device that never finishes its reset times out', () => {
    const r = testingAddon.virtioPciBringUp({ neverResets: true, resetTimeoutMs: 5 });
    assert.equal(r.resetDone, false);
    assert.equal(r.error?.code, 'ETIMEDOUT');
    assert.ok(r.statusReadsDuringReset >= 2);
  });

  it('refuses a common configuration capability that points past its BAR, and says so', () => {
    const r = testingAddon.virtioPciBringUp({ badCapability: 'common' });
    assert.equal(r.error?.code, 'ENODEV');
    assert.equal(r.error?.syscall, 'virtio-pci: capabilities');
    assert.match(r.error?.hint ?? '', /common configuration capability at 0x4c points past the end of BAR 0/);
    assert.match(r.error?.hint ?? '', /\(offset 0x3ff0, length 0x38, BAR size 0x4000\)/);
    assert.equal(r.capabilities, undefined);
    assert.equal(r.resets, 0, 'nothing was written to the device');
  });

  it('refuses a notification capability that points past its BAR', () => {
    const r = testingAddon.virtioPciBringUp({ badCapability: 'notify' });
    assert.equal(r.error?.code, 'ENODEV');
    assert.match(
      r.error?.hint ?? '',
      /no usable notification structure: the notification capability at 0x5c points past the end of BAR 0/,
    );
  });

  it('reads the device configuration', () => {
    const config = Uint8Array.from({ length: 20 }, (_, i) => i * 7 + 1);
    const r = testingAddon.virtioPciBringUp({ config });
    assert.equal(r.error, undefined);
    assert.deepEqual(Uint8Array.from(r.config ?? []), config);
  });

  it('checks its arguments', () => {
    assert.throws(() => testingAddon.virtioPciBringUp({ deviceFeatures: 1 as unknown as bigint }), TypeError);
    assert.throws(() => testingAddon.virtioPciBringUp({ numQueues: 65 }), RangeError);
    assert.throws(() => testingAddon.virtioPciBringUp({ badCapability: 'isr' as 'common' }), RangeError);
  });
});
