// The netlink codec against answers recorded from the guest kernel (Linux 6.12, VDUSE blk device
// `rec0` from qemu-storage-daemon; recorded by test/management/record-fixtures.ts), including errors
// carrying an extended-ack message. Plus the framing checks a malformed answer must trip.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VdpaError } from '../../lib';
import {
  GenlCtrl,
  NlFlag,
  NlMsgType,
  answerMessages,
  attrString,
  attrU32,
  decodeError,
  decodeFamilyId,
  decodeGenl,
  decodeMessages,
  encodeGenl,
} from '../../lib/netlink';
import {
  VdpaAttr,
  VdpaCmd,
  decodeConfig,
  decodeDevice,
  decodeManagementDevice,
  decodeStats,
} from '../../lib/vdpa-protocol';

interface Recorded {
  request: string;
  replies: string[];
}
const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'management', 'fixtures', 'guest-linux-6.12.json');
const fx = JSON.parse(fs.readFileSync(FIXTURES, 'utf8')) as Record<string, Recorded> & { family: number };
const replies = (k: string): Uint8Array[] => fx[k].replies.map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
const ctx = (cmd: string, p = 'rec0') => ({ syscall: `netlink(${cmd})`, path: p });
const answer = (k: string, cmd = k) => answerMessages(replies(k), ctx(cmd)).map(decodeGenl);

function rejectsWith(k: string, code: string, errno: number, message?: RegExp): VdpaError {
  let caught: unknown;
  try {
    answerMessages(replies(k), ctx(k));
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof VdpaError, `${k}: expected a VdpaError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.errno, errno);
  assert.equal(caught.syscall, `netlink(${k})`);
  assert.equal(caught.path, 'rec0');
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('netlink codec: recorded guest answers', () => {
  it('CTRL_CMD_GETFAMILY: the vdpa family id, then the ack', () => {
    const msgs = answer('getFamily');
    assert.equal(msgs.length, 1);
    assert.equal(decodeFamilyId(msgs), fx.family);
    assert.equal(msgs[0].attrs.string(GenlCtrl.ATTR_FAMILY_NAME), 'vdpa');
  });

  it('VDPA_CMD_MGMTDEV_GET dump: vduse, classes net and blk, ended by NLMSG_DONE', () => {
    const raw = replies('mgmtdevDump').flatMap((r) => decodeMessages(r));
    assert.ok(raw.slice(0, -1).every((m) => (m.flags & NlFlag.MULTI) !== 0));
    assert.equal(raw[raw.length - 1].type, NlMsgType.DONE);
    const devs = answer('mgmtdevDump').map(decodeManagementDevice);
    assert.equal(devs.length, 1);
    assert.equal(devs[0].name, 'vduse');
    assert.equal(devs[0].bus, undefined);
    assert.deepEqual(devs[0].classes, ['net', 'blk']);
  });

  it('VDPA_CMD_DEV_NEW / DEV_DEL: a plain ack decodes to no messages', () => {
    assert.deepEqual(answer('devNew'), []);
    assert.deepEqual(answer('devDel'), []);
  });

  it('VDPA_CMD_DEV_GET and its dump: a virtio-blk device on vduse', () => {
    for (const k of ['devGet', 'devDump']) {
      const [m, ...rest] = answer(k);
      assert.equal(rest.length, 0);
      assert.equal(m.cmd, VdpaCmd.DEV_NEW); // the kernel answers DEV_GET with DEV_NEW-shaped messages
      const d = decodeDevice(m);
      assert.equal(d.name, 'rec0');
      assert.equal(d.deviceId, 2);
      assert.equal(d.mgmtDev, 'vduse');
      assert.equal(d.maxVqs, 1);
      assert.equal(d.maxVqSize, 64);
      assert.equal(typeof d.vendorId, 'number');
    }
  });

  it('VDPA_CMD_DEV_CONFIG_GET of a blk device: capacity of the 64 MiB image, flags, features', () => {
    const c = decodeConfig(answer('configBlk')[0]);
    assert.equal(c.type, 'blk');
    if (c.type !== 'blk') return;
    assert.equal(c.name, 'rec0');
    assert.equal(c.capacity, (64n << 20n) / 512n);
    assert.equal(typeof c.readOnly, 'boolean');
    assert.equal(typeof c.flush, 'boolean');
    assert.ok(c.deviceFeatures !== undefined && (c.deviceFeatures & (1n << 32n)) !== 0n, 'VERSION_1 offered');
    assert.equal(c.negotiatedFeatures, undefined, 'no driver negotiated yet');
  });

  it('VDPA_CMD_DEV_CONFIG_GET of a net device (VDUSE stub): mac, mtu, link, features', () => {
    assert.deepEqual(answer('devNewNet'), []);
    const c = decodeConfig(answer('configNet')[0]);
    assert.equal(c.type, 'net');
    if (c.type !== 'net') return;
    assert.equal(c.name, 'recn');
    assert.equal(c.mac, '52:54:00:12:34:56');
    assert.equal(c.mtu, 1400);
    assert.equal(c.linkUp, true);
    assert.equal(c.maxVqPairs, undefined, 'no VIRTIO_NET_F_MQ offered');
    assert.equal(c.deviceFeatures, (1n << 32n) | (1n << 33n) | (1n << 5n) | (1n << 3n) | (1n << 16n));
  });

  it('errors: the extended-ack text is carried into the message', () => {
    const raw = decodeMessages(replies('devNewUnknownMgmt')[0])[0];
    assert.ok((raw.flags & NlFlag.ACK_TLVS) !== 0 && (raw.flags & NlFlag.CAPPED) !== 0);
    assert.equal(decodeError(raw).message, 'vdpa: Fail to find the specified management device');
    rejectsWith(
      'devNewUnknownMgmt',
      'ENODEV',
      -19,
      /^ENODEV: no such device: vdpa: Fail to find the specified management device, /,
    );
    rejectsWith('devGetMissing', 'ENODEV', -19, /device not found/);
    rejectsWith('devDelMissing', 'ENODEV', -19, /device not found/);
    rejectsWith('attrSetMac', 'EOPNOTSUPP', -95, /Operation not supported by the device/);
    rejectsWith('devNewNetMac', 'EOPNOTSUPP', -95, /Some provided attributes are not supported: 0x400/);
  });

  it('errors without an extended ack: EEXIST, EOPNOTSUPP, and EPERM with the CAP_NET_ADMIN hint', () => {
    assert.equal(decodeError(decodeMessages(replies('devNewDuplicate')[0])[0]).message, undefined);
    rejectsWith('devNewDuplicate', 'EEXIST', -17);
    rejectsWith('vstats', 'EOPNOTSUPP', -95);
    const e = rejectsWith('devNewEperm', 'EPERM', -1);
    assert.match(e.hint ?? '', /CAP_NET_ADMIN/);
    assert.match(e.message, /CAP_NET_ADMIN/);
  });

  it('the recorded requests decode back to their command and attributes', () => {
    const req = decodeMessages(Uint8Array.from(Buffer.from(fx.vstats.request, 'hex')))[0];
    assert.equal(req.type, fx.family);
    assert.equal(req.flags, NlFlag.REQUEST | NlFlag.ACK);
    const g = decodeGenl(req);
    assert.equal(g.cmd, VdpaCmd.DEV_VSTATS_GET);
    assert.equal(g.attrs.string(VdpaAttr.DEV_NAME), 'rec0');
    assert.equal(g.attrs.uint(VdpaAttr.DEV_QUEUE_INDEX), 0);
    const dump = decodeMessages(Uint8Array.from(Buffer.from(fx.mgmtdevDump.request, 'hex')))[0];
    assert.equal(dump.flags, NlFlag.REQUEST | NlFlag.DUMP, 'a dump asks for no ack');
  });
});

describe('netlink codec: encoding and malformed input', () => {
  it('encodeGenl lays out header, genl header and 4-aligned attributes', () => {
    const b = encodeGenl({
      family: 0x23,
      cmd: 5,
      version: 1,
      flags: 0,
      seq: 7,
      attrs: [attrString(4, 'ab'), attrU32(17, 3)],
    });
    assert.equal(
      Buffer.from(b).toString('hex'),
      '2400000023000500070000000000000005010000' + '0700040061620000' + '0800110003000000',
    );
  });

  it('truncated messages and attributes are EPROTO, not a crash', () => {
    const good = replies('devGet')[0];
    const isProto = (e: unknown) => e instanceof VdpaError && e.code === 'EPROTO';
    assert.throws(() => decodeMessages(good.subarray(0, good.length - 4)), isProto);
    const bad = Uint8Array.from(good);
    new DataView(bad.buffer).setUint16(20, 0xfff0, true); // first attribute's length past the end
    assert.throws(() => decodeGenl(decodeMessages(bad)[0]), isProto);
    assert.throws(() => answerMessages([good], ctx('x')), isProto, 'an answer without its ack never ends well');
  });

  it('vendor statistics pair names with values (message built here: vduse keeps none)', () => {
    const msg = encodeGenl({
      family: 0x23,
      cmd: VdpaCmd.DEV_VSTATS_GET,
      version: 1,
      flags: 0,
      seq: 1,
      attrs: [
        attrString(VdpaAttr.DEV_NAME, 'v0'),
        attrU32(VdpaAttr.DEV_QUEUE_INDEX, 2),
        attrString(VdpaAttr.DEV_VENDOR_ATTR_NAME, 'received_desc'),
        { type: VdpaAttr.DEV_VENDOR_ATTR_VALUE, data: Uint8Array.of(5, 0, 0, 0, 0, 0, 0, 1) },
      ],
    });
    const s = decodeStats(decodeGenl(decodeMessages(msg)[0]));
    assert.equal(s.queueIndex, 2);
    assert.deepEqual(s.values, [{ name: 'received_desc', value: (1n << 56n) + 5n }]);
  });
});
