// The vdpa-node CLI against the guest kernel: a VDUSE block device from qemu-storage-daemon is added,
// shown, bound to vhost_vdpa, inspected, benchmarked, bound to virtio_vdpa and deleted with the CLI
// alone, checking exit statuses, JSON and tables as a script would.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { IN_VM, ROOT, SKIP_REASON, VDUSE_BLK, image, startVduseExport } from './vm-env';

const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const NAME = 'cli0';
const SIZE = 16 << 20;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 180_000 });
  if (r.error) throw r.error;
  console.log(`# vdpa-node ${args.join(' ')}: exit ${r.status}${r.stderr ? `, stderr: ${r.stderr.trim()}` : ''}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function json<T>(...args: string[]): T {
  const r = cli(...args, '--json');
  assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr, '');
  return JSON.parse(r.stdout) as T;
}

/** Exit 1 with one `vdpa-node: CODE: ...` line on stderr. */
function fails(args: string[], code: RegExp): void {
  const r = cli(...args);
  assert.equal(r.status, 1, `${args.join(' ')}: exit ${r.status}`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^vdpa-node: [A-Z0-9_]+: [^\n]+\n$/);
  assert.match(r.stderr, code);
}

interface Entry {
  name: string;
  deviceType: string;
  mgmtDev?: string;
  driver?: string;
  path?: string;
  blockDevice?: string;
}

if (!IN_VM) {
  it('vm cli', { skip: SKIP_REASON }, () => {});
} else {
  describe('vm cli: a VDUSE block device managed and driven with vdpa-node', () => {
    after(() => execFileSync('timeout', ['-k', '5', '90', VDUSE_BLK, 'stop', NAME], { stdio: 'inherit' }));

    it('mgmtdev, dev add/show/config/stats, bind, info, bench, list, dev del', () => {
      startVduseExport(NAME, image('cli-blk.img', SIZE));

      const mgmt = json<{ name: string; classes: string[] }[]>('mgmtdev');
      assert.ok(
        mgmt.some((m) => m.name === 'vduse' && m.classes.includes('blk')),
        JSON.stringify(mgmt),
      );
      assert.match(cli('mgmtdev').stdout, /^NAME +CLASSES +MAX_VQS +SUPPORTED_FEATURES\nvduse +/m);

      const added = json<Entry>('dev', 'add', NAME, 'mgmtdev', 'vduse');
      assert.equal(added.name, NAME);
      assert.equal(added.deviceType, 'blk');
      assert.equal(added.mgmtDev, 'vduse');
      fails(['dev', 'add', NAME, 'mgmtdev', 'vduse'], /^vdpa-node: EEXIST: .*hint: .*pick another name/);

      assert.deepEqual(
        json<Entry[]>('dev', 'show', NAME).map((e) => e.name),
        [NAME],
      );
      const config = json<{ type: string; capacity: string }>('dev', 'config', NAME);
      assert.equal(config.type, 'blk');
      assert.equal(BigInt(config.capacity), BigInt(SIZE / 512));
      assert.match(cli('dev', 'config', 'show', NAME).stdout, /^FIELD +VALUE\n(.*\n)*capacity +32768$/m);
      // VDUSE keeps no vendor statistics: a failure with its code, not a trace
      fails(['dev', 'stats', NAME, '0'], /VDPA_CMD_DEV_VSTATS_GET/);

      // What scripts/vm/vduse-blk.sh parses: the DeviceEntry bindDriver() resolves with.
      const bound = json<Entry>('bind', NAME, 'vhost_vdpa');
      assert.equal(bound.driver, 'vhost_vdpa');
      assert.match(bound.path ?? '', /^\/dev\/vhost-vdpa-\d+$/);
      const node = bound.path as string;
      assert.ok(fs.existsSync(node));

      const info = json<{
        transport: string;
        deviceType: string;
        config: { capacity: number };
        features: { names: string[] };
        queues: { role: string; maxSize: number }[];
        vhost?: { iovaRange: { first: string; last: string } };
      }>('info', node);
      assert.equal(info.transport, 'vhost-vdpa');
      assert.equal(info.deviceType, 'blk');
      assert.equal(info.config.capacity, SIZE);
      assert.ok(info.features.names.includes('VERSION_1'), info.features.names.join(' '));
      assert.ok(info.queues.length >= 1 && info.queues.every((q) => q.role === 'request' && q.maxSize > 0));
      assert.ok(info.vhost, 'no vhost section for a vhost-vdpa device');
      assert.match(cli('info', node).stdout, /^iova range +0x[0-9a-f]+-0x[0-9a-f]+$/m);

      const read = json<{ ios: number; bytes: number; bs: number }>('bench', node, '--runtime', '1', '--depth', '4');
      assert.ok(read.ios > 0);
      assert.equal(read.bytes, read.ios * read.bs);
      const refused = cli('bench', node, '--rw', 'write', '--runtime', '0.5');
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /overwrites the data on \/dev\/vhost-vdpa-\d+: add --force/);
      const written = json<{ ios: number; span: number }>(
        'bench',
        node,
        ...['--rw', 'randwrite', '--runtime', '1', '--size', '1M', '--force'],
      );
      assert.ok(written.ios > 0);
      assert.equal(written.span, 1 << 20);

      const listed = json<Entry[]>('list').find((e) => e.name === NAME);
      assert.equal(listed?.path, node);

      // To the kernel's own virtio_blk: a /dev/vdX. The vhost-vdpa node is closed by now (bench ended).
      const kernel = json<Entry>('bind', NAME, 'virtio_vdpa');
      assert.equal(kernel.driver, 'virtio_vdpa');
      assert.match(kernel.blockDevice ?? '', /^\/dev\/vd[a-z]+$/);

      const del = cli('dev', 'del', NAME);
      assert.equal(del.status, 0, del.stderr);
      assert.equal(del.stdout, `deleted ${NAME}\n`);
      fails(['dev', 'del', NAME], /^vdpa-node: ENODEV: /);
      fails(['bind', NAME, 'vhost_vdpa'], /^vdpa-node: ENODEV: no vdpa device 'cli0'/);
    });
  });
}
