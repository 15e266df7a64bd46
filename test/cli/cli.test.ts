// The compiled CLI as a user runs it: exit statuses (0 / 1 failure / 2 usage), what goes to stdout
// and what to stderr, --json that parses, aligned tables, help that opens nothing, EPIPE, and bench
// and info against the mock devices.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runBench } from '../../lib/cli-bench';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a command that must succeed with nothing on stderr; returns its stdout. */
function ok(...args: string[]): string {
  const r = cli(...args);
  assert.equal(r.status, 0, `${args.join(' ')}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.equal(r.stderr, '', `${args.join(' ')} wrote to stderr`);
  return r.stdout;
}

function json(...args: string[]): unknown {
  return JSON.parse(ok(...args, '--json'));
}

/** A usage error: exit 2, nothing on stdout, the message and a pointer to the help on stderr. */
function usageError(args: string[], message: RegExp, helpOf?: string): void {
  const r = cli(...args);
  assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.equal(r.stdout, '', `${args.join(' ')} wrote to stdout`);
  assert.match(r.stderr, message, args.join(' '));
  assert.ok(r.stderr.includes(`Try 'vdpa-node ${helpOf ? `${helpOf} --help` : '--help'}'.`), r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${args.join(' ')} printed a stack trace`);
}

/** A failure: exit 1, nothing on stdout, one `vdpa-node: CODE: ...` line on stderr, no stack trace. */
function failure(args: string[], message: RegExp): void {
  const r = cli(...args);
  assert.equal(r.status, 1, `${args.join(' ')}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.equal(r.stdout, '', `${args.join(' ')} wrote to stdout`);
  assert.match(r.stderr, /^vdpa-node: [A-Z]+[A-Z0-9_]*: [^\n]+\n$/, args.join(' '));
  assert.match(r.stderr, message, args.join(' '));
}

/** Each block of `text` (blocks are separated by blank lines) is a table: every column starts where its header does. */
function assertAligned(text: string): void {
  for (const block of text.trimEnd().split('\n\n')) {
    const [header, ...rows] = block.split('\n');
    assert.match(header, /^[A-Z][A-Z0-9_.]*( {2,}[A-Z][A-Z0-9_./]*)*$/, `not a header: ${header}`);
    const starts = [...header.matchAll(/(?:^|\s{2})(\S)/g)].map((m) => m.index + m[0].length - 1);
    for (const row of rows)
      for (const s of starts.slice(1))
        assert.ok(row[s - 1] === ' ' && row[s - 2] === ' ' && row[s] !== ' ', `column at ${s} misaligned:\n${block}`);
  }
}

const COMMANDS = ['list', 'info', 'bench', 'demo', 'mgmtdev', 'dev', 'bind'];

describe('CLI', () => {
  it('--help, -h and help print the usage on stdout and exit 0', () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const out = ok(...args);
      assert.match(out, /^usage: vdpa-node COMMAND/);
      for (const c of COMMANDS) assert.match(out, new RegExp(`^  ${c} `, 'm'), `${args}: no ${c}`);
      assert.match(out, /Exit status: 0 success, 1 failure .*, 2 usage error/);
    }
  });

  it('each command has its help, and asking for it opens no device', () => {
    for (const c of COMMANDS) {
      for (const args of [
        [c, '--help'],
        [c, '-h'],
        ['help', c],
        ['--help', c],
      ])
        assert.match(ok(...args), new RegExp(`^usage: vdpa-node ${c}\\b`), args.join(' '));
    }
    // words after the command do not matter: nothing is opened or created
    assert.match(ok('demo', '/dev/vhost-vdpa-999', '--help'), /^usage: vdpa-node demo/);
    assert.match(ok('dev', 'add', 'v0', 'mgmtdev', 'vduse', '--help'), /^usage: vdpa-node dev add NAME mgmtdev/);
    assert.match(ok('bench', '--help'), /--rw PATTERN +read, write, randread or randwrite/);
  });

  it('--version and -V print the package version', () => {
    assert.equal(ok('--version'), `${VERSION}\n`);
    assert.equal(ok('-V'), `${VERSION}\n`);
    assert.equal(ok('list', '--version'), `${VERSION}\n`);
  });

  it('usage errors exit 2 with the message on stderr', () => {
    usageError([], /no command given/);
    usageError(['bogus'], /unknown command 'bogus'/);
    usageError(['--frob', 'list'], /Unknown option '--frob'$/m);
    usageError(['help', 'bogus'], /unknown command 'bogus'/);
    usageError(['list', 'extra'], /list: too many arguments/, 'list');
    usageError(['list', '--frob'], /Unknown option '--frob'$/m, 'list');
    usageError(['info'], /info: missing arguments/, 'info');
    usageError(['bench'], /bench: missing arguments/, 'bench');
    usageError(
      ['bench', 'mock:blk', '--rw', 'sideways'],
      /--rw must be one of read, write, randread, randwrite/,
      'bench',
    );
    usageError(['bench', 'mock:blk', '--bs', '1000'], /--bs must be a multiple of 512/, 'bench');
    usageError(['bench', 'mock:blk', '--bs', 'huge'], /--bs must be a size/, 'bench');
    usageError(['bench', 'mock:blk', '--depth', '0'], /--depth must be a whole number from 1/, 'bench');
    usageError(['bench', 'mock:blk', '--runtime', 'forever'], /--runtime must be a duration/, 'bench');
    usageError(['bench', 'mock:blk', '--depth'], /--depth <value>' argument missing/, 'bench');
    usageError(['bench', 'mock:blk', '--bs', '1M', '--depth', '4096'], /pins 4 GiB of DMA memory/, 'bench');
    usageError(
      ['bench', '/dev/vhost-vdpa-0', '--rw', 'randwrite'],
      /overwrites the data on \/dev\/vhost-vdpa-0: add --force/,
      'bench',
    );
    usageError(['demo', 'a', 'b', 'c'], /demo: too many arguments/, 'demo');
    usageError(['dev', 'add'], /usage: vdpa-node dev add NAME mgmtdev MGMTDEV/, 'dev');
    usageError(['dev', 'add', 'v0'], /mgmtdev is required/, 'dev');
    usageError(['dev', 'add', 'v0', 'mgmtdev', 'vduse', 'mtu', '15x'], /mtu must be a whole number/, 'dev');
    // the library's own check of the value, passed on
    usageError(['dev', 'add', 'v0', 'mgmtdev', 'vduse', 'mac', 'zz'], /mac must look like '52:54:00:00:00:01'/, 'dev');
    usageError(['dev', 'del'], /usage: vdpa-node dev del NAME/, 'dev');
    usageError(['dev', 'stats', 'v0'], /usage: vdpa-node dev stats NAME QUEUE/, 'dev');
    usageError(['dev', 'frob'], /unknown command: dev frob/, 'dev');
    usageError(['mgmtdev', 'frob'], /mgmtdev takes no arguments but 'show'/, 'mgmtdev');
    usageError(['bind', '0000:00:03.0'], /bind: missing arguments/, 'bind');
    usageError(['bind', 'v0', 'sideways'], /bind: unknown driver 'sideways'/, 'bind');
    usageError(['bind', 'v0', 'vhost_vdpa', '--timeout', 'soon'], /--timeout must be a whole number/, 'bind');
  });

  it('a failing operation exits 1 with the error and its hint on stderr', () => {
    failure(['info', '/dev/vhost-vdpa-999'], /^vdpa-node: ENOENT: .*hint: .*modprobe vhost_vdpa/);
    failure(['info', '/dev/sda'], /EINVAL: unknown device spec.*hint: use mock:blk, mock:net/);
    failure(['bench', 'mock:net', '--runtime', '0.1'], /ENODEV: not a block device/);
    failure(
      ['bind', 'vdpa-node-test-absent', 'vhost_vdpa', '--json'],
      /ENODEV: no vdpa device 'vdpa-node-test-absent'/,
    );
    // Without the kernel's vdpa family (this host, unless vdpa is loaded) ENOENT names the module;
    // with it, the device does not exist (or, as a user, CAP_NET_ADMIN is missing).
    failure(['dev', 'del', 'vdpa-node-test-absent'], /ENOENT: .*hint: .*modprobe vdpa|ENODEV|EPERM/);
    failure(['dev', 'config', 'vdpa-node-test-absent'], /ENOENT: .*hint: .*modprobe vdpa|ENODEV|EPERM/);
  });

  it('mgmtdev lists management devices, or fails with the hint where there is no vdpa family', () => {
    const r = cli('mgmtdev', '--json');
    if (r.status === 0) assert.ok(Array.isArray(JSON.parse(r.stdout)));
    else failure(['mgmtdev', '--json'], /ENOENT: no generic netlink family 'vdpa'.*hint: .*modprobe vdpa/);
  });

  it('list and dev show: an aligned table, or --json', () => {
    const list = json('list') as { name: string; transport: string }[];
    assert.ok(Array.isArray(list));
    const text = ok('list');
    if (list.length) {
      assertAligned(text);
      assert.match(text, /^DEVICE +NAME +TYPE +PARENT +DRIVER +KERNEL\n/);
      assert.equal(text.trimEnd().split('\n').length, list.length + 1);
    } else assert.match(text, /^no vDPA devices/);
    assert.deepEqual(json('dev', 'show'), list);
    assertAligned(ok('dev'));
  });

  it('info decodes mock:blk: identity, features by name, config, queues', () => {
    const info = json('info', 'mock:blk') as {
      transport: string;
      deviceType: string;
      deviceId: number;
      features: { mask: string; names: string[] };
      config: Record<string, number>;
      queues: { index: number; role: string; maxSize: number }[];
      maxQueues: number;
    };
    assert.equal(info.transport, 'mock');
    assert.equal(info.deviceType, 'blk');
    assert.equal(info.deviceId, 2);
    assert.match(info.features.mask, /^0x[0-9a-f]+$/);
    for (const f of ['VERSION_1', 'ACCESS_PLATFORM', 'SEG_MAX', 'FLUSH', 'DISCARD'])
      assert.ok(info.features.names.includes(f), f);
    assert.equal(info.config.capacity, 64 << 20);
    assert.equal(info.config.segMax, 126);
    assert.equal(info.config.sizeMax, 1 << 20);
    assert.equal(info.queues.length, info.maxQueues);
    assert.deepEqual(info.queues[0], { index: 0, role: 'request', maxSize: 1024 });
    const text = ok('info', 'mock:blk');
    assertAligned(text);
    assert.match(text, /^FIELD +VALUE\ndevice +mock:blk\n/);
    assert.match(text, /^features +0x[0-9a-f]+ .*\bVERSION_1\b/m);
    assert.match(text, /^capacity +131072 sectors \(64 MiB\)$/m);
    assert.match(text, /^QUEUE +ROLE +MAX_SIZE\n0 +request +1024$/m);
  });

  it('info decodes mock:net: the MAC, link status, MTU; rx and tx queues and the control queue', () => {
    const info = json('info', 'mock:net') as {
      deviceType: string;
      config: Record<string, number | string>;
      queues: { role: string }[];
    };
    assert.equal(info.deviceType, 'net');
    assert.equal(info.config.mac, '52:54:00:12:34:56');
    assert.equal(info.config.mtu, 1500);
    assert.equal(info.config.status, 1);
    assert.deepEqual(
      info.queues.map((q) => q.role),
      ['rx0', 'tx0', 'control'], // mock:net offers CTRL_VQ
    );
    const text = ok('info', 'mock:net');
    assertAligned(text);
    assert.match(text, /^mac +52:54:00:12:34:56$/m);
    assert.match(text, /^status +0x1 \(link up\)$/m);
  });

  it('demo drives both mocks; --json reports the same', () => {
    const text = ok('demo');
    assert.match(text, /^blk {2}mock:blk via mock: 67108864 bytes/);
    assert.match(text, /64\/64 match, zero-copy round trip matches/);
    assert.match(text, /^net {2}mock:net via mock: mac 52:54:00:12:34:56/m);
    assert.match(text, /received 6 byte-exact/);
    const report = json('demo') as { blk: { matched: number; requests: number }; net: { matched: number } };
    assert.equal(report.blk.matched, report.blk.requests);
    assert.equal(report.net.matched, 6);
    assert.deepEqual(Object.keys(json('demo', 'none', 'mock:net') as object), ['net']);
  });

  it('bench on mock:blk prints a summary table, or --json', () => {
    const text = ok('bench', 'mock:blk', '--runtime', '0.3', '--bs', '8k', '--depth', '4');
    assertAligned(text);
    assert.match(text, /^DEVICE +RW +BS +DEPTH +QUEUES +SECONDS +IOS +IOPS +MIB\/S\nmock:blk +randread +8192 +4 +1 /);
    assert.match(text, /^LATENCY +MIN +AVG +P50 +P90 +P99 +P99\.9 +MAX\nusec( +\d+\.\d)+$/m);
    for (const rw of ['read', 'write', 'randread', 'randwrite']) {
      const r = json(
        'bench',
        'mock:blk',
        '--rw',
        rw,
        '--runtime',
        '200ms',
        '--bs',
        '4096',
        '--depth',
        '8',
        '--queues',
        '2',
      ) as {
        rw: string;
        bs: number;
        depth: number;
        queues: number;
        ios: number;
        bytes: number;
        seconds: number;
        latencyUs: Record<string, number>;
      };
      assert.equal(r.rw, rw);
      assert.deepEqual([r.bs, r.depth, r.queues], [4096, 8, 2]);
      assert.ok(r.ios > 0, `${rw}: no I/O done`);
      assert.equal(r.bytes, r.ios * 4096);
      assert.ok(r.seconds > 0);
      const l = r.latencyUs;
      assert.ok(
        l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        JSON.stringify(l),
      );
      assert.ok(l.min <= l.mean && l.mean <= l.max, JSON.stringify(l));
    }
  });

  it('bench writes a progress line to a terminal only', async () => {
    const writes: string[] = [];
    const opts = { device: 'mock:blk', rw: 'randread', bs: 4096, depth: 2, runtime: 1.5, queues: 1 } as const;
    const result = await runBench(opts, { isTTY: true, write: (t: string) => writes.push(t) });
    assert.ok(result.ios > 0);
    const CLEAR = '\r\x1b[K';
    const lines = writes.filter((w) => w.startsWith(CLEAR)).map((w) => w.slice(CLEAR.length));
    assert.ok(
      lines.some((l) => /^randread \d+\/1\.5 s: \d+ IOPS, .*\/s$/.test(l)),
      JSON.stringify(writes),
    );
    assert.equal(writes.at(-1), CLEAR, 'the progress line is cleared at the end');
    const none: string[] = [];
    await runBench({ ...opts, runtime: 1.2 }, { isTTY: false, write: (t: string) => none.push(t) });
    assert.deepEqual(none, []);
  });

  it('a reader that goes away ends the output quietly (EPIPE)', async () => {
    // the read end closed before the CLI writes anything: its first write fails with EPIPE
    const child = spawn(process.execPath, [CLI, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    assert.equal(stderr, '');
    assert.equal(status, 0);
    // as in a shell
    const r = spawnSync(
      'bash',
      ['-c', `"${process.execPath}" "${CLI}" demo | head -1; echo "status \${PIPESTATUS[0]}"`],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^blk {2}mock:blk via mock: .*\nstatus 0\n$/);
  });
});
