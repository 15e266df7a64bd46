// Records the kernel's answers to the vdpa management requests, as fixtures for the codec tests
// (test/management/codec.test.ts). Run inside the VM as root, with a VDUSE blk export named
// `rec0` already up (qemu-storage-daemon); it makes the VDUSE net device `recn` itself (createVduseNet):
// writes $VDPA_VM_RESULTS/netlink-fixtures.json.
//   node dist/test/management/record-fixtures.js            (root: everything but EPERM)
//   node dist/test/management/record-fixtures.js eperm      (as nobody: prints the EPERM answer)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  GenlCtrl,
  NlFlag,
  attrBytes,
  attrString,
  attrU32,
  encodeGenl,
  rawTransact,
  resolveFamily,
} from '../../lib/netlink';
import { VdpaAttr, VdpaCmd } from '../../lib/vdpa-protocol';
import { createVduseNet } from '../../lib/vduse-net';

interface Recorded {
  request: string;
  replies: string[];
}
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

async function record(req: Parameters<typeof rawTransact>[0]): Promise<Recorded> {
  const replies = await rawTransact(req);
  return { request: hex(encodeGenl({ ...req, seq: 0 })), replies: replies.map(hex) };
}

async function main(): Promise<void> {
  const family = await resolveFamily('vdpa', 'modprobe vdpa');
  const req = (cmd: number, attrs: ReturnType<typeof attrString>[], flags = 0) => ({
    family,
    cmd,
    version: 1,
    flags,
    attrs,
  });
  const name = attrString(VdpaAttr.DEV_NAME, 'rec0');
  const vduse = attrString(VdpaAttr.MGMTDEV_DEV_NAME, 'vduse');
  if (process.argv[2] === 'eperm') {
    console.log(JSON.stringify(await record(req(VdpaCmd.DEV_NEW, [vduse, attrString(VdpaAttr.DEV_NAME, 'rec1')]))));
    return;
  }
  const out: Record<string, Recorded | number> = { family };
  out.getFamily = await record({
    family: GenlCtrl.ID,
    cmd: GenlCtrl.CMD_GETFAMILY,
    version: 1,
    flags: 0,
    attrs: [attrString(GenlCtrl.ATTR_FAMILY_NAME, 'vdpa')],
  });
  out.mgmtdevDump = await record(req(VdpaCmd.MGMTDEV_GET, [], NlFlag.DUMP));
  out.devNew = await record(req(VdpaCmd.DEV_NEW, [vduse, name]));
  out.devNewDuplicate = await record(req(VdpaCmd.DEV_NEW, [vduse, name]));
  out.devNewUnknownMgmt = await record(
    req(VdpaCmd.DEV_NEW, [attrString(VdpaAttr.MGMTDEV_DEV_NAME, 'nope'), attrString(VdpaAttr.DEV_NAME, 'rec2')]),
  );
  out.devGet = await record(req(VdpaCmd.DEV_GET, [name]));
  out.devDump = await record(req(VdpaCmd.DEV_GET, [], NlFlag.DUMP));
  out.devGetMissing = await record(req(VdpaCmd.DEV_GET, [attrString(VdpaAttr.DEV_NAME, 'missing')]));
  out.configBlk = await record(req(VdpaCmd.DEV_CONFIG_GET, [name]));
  out.vstats = await record(req(VdpaCmd.DEV_VSTATS_GET, [name, attrU32(VdpaAttr.DEV_QUEUE_INDEX, 0)]));
  out.attrSetMac = await record(
    req(VdpaCmd.DEV_ATTR_SET, [name, attrBytes(VdpaAttr.DEV_NET_CFG_MACADDR, Uint8Array.of(0x52, 0x54, 0, 0, 0, 9))]),
  );
  const unpriv = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, __filename, 'eperm'],
    { cwd: '/', encoding: 'utf8', timeout: 60_000 },
  );
  if (unpriv.status !== 0) throw new Error(`eperm recording failed: ${unpriv.stderr}`);
  out.devNewEperm = JSON.parse(unpriv.stdout.trim().split('\n').pop() as string) as Recorded;
  {
    // A VDUSE net device for net config.
    const nic = await createVduseNet({ name: 'recn', mac: '52:54:00:12:34:56', mtu: 1400 });
    const net = attrString(VdpaAttr.DEV_NAME, 'recn');
    out.devNewNet = await record(req(VdpaCmd.DEV_NEW, [vduse, net]));
    out.configNet = await record(req(VdpaCmd.DEV_CONFIG_GET, [net]));
    out.devNewNetMac = await record(
      req(VdpaCmd.DEV_NEW, [
        vduse,
        attrString(VdpaAttr.DEV_NAME, 'recn2'),
        attrBytes(VdpaAttr.DEV_NET_CFG_MACADDR, Uint8Array.of(0x52, 0x54, 0, 0, 0, 7)),
      ]),
    );
    out.devDelNet = await record(req(VdpaCmd.DEV_DEL, [net]));
    await nic.close();
  }
  out.devDel = await record(req(VdpaCmd.DEV_DEL, [name]));
  out.devDelMissing = await record(req(VdpaCmd.DEV_DEL, [name]));
  const file = path.join(process.env.VDPA_VM_RESULTS ?? '.', 'netlink-fixtures.json');
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`recorded ${Object.keys(out).length - 1} answers in ${file}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
