// virtio-net devices served by this library through VDUSE, with the kernel's own virtio_net (through
// virtio_vdpa) and the library's openNet (through vhost_vdpa) as their drivers. Network traffic stays
// inside two network namespaces this test creates, on IPv6 link-local addresses only.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { NetFeature, VdpaError, createVduseNet, deviceConfig, getDevice, openNet } from '../../lib';
import { IN_VM, ROOT, SKIP_REASON, fillRandom, prng, within } from './vm-env';

const T = { timeout: 300_000 };
const NS = ['vnet-a', 'vnet-b'] as const;
const MACS = ['52:54:00:12:34:57', '52:54:00:12:34:58'] as const;
const PORT = 5201;
const SERVE = path.join(ROOT, 'dist', 'test', 'vm', 'vduse-net-serve.js');

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** fe80::/64 from the MAC (modified EUI-64, RFC 4291). */
function linkLocal(mac: string): string {
  const b = mac.split(':').map((x) => Number.parseInt(x, 16));
  const w = (hi: number, lo: number): string => ((hi << 8) | lo).toString(16);
  return `fe80::${w((b[0] as number) ^ 2, b[1] as number)}:${w(b[2] as number, 0xff)}:${w(0xfe, b[3] as number)}:${w(b[4] as number, b[5] as number)}`;
}

async function waitFor(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function carrier(ifname: string): string {
  return fs.readFileSync(`/sys/class/net/${ifname}/carrier`, 'utf8').trim();
}

/** Runs `node -e SCRIPT ARGS...` inside namespace NS; resolves with its stdout once it exits 0. */
function nodeIn(ns: string, script: string, args: string[], onLine?: (line: string) => void): Promise<string> {
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => {
    const before = out.length;
    out += d.toString();
    if (onLine) for (const line of out.slice(before).split('\n')) if (line) onLine(line);
  });
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`node in ${ns} exited ${code}: ${err}`))));
  });
}

const SERVER = `
const net = require('node:net'), crypto = require('node:crypto');
const [host, port] = process.argv.slice(1);
const srv = net.createServer((s) => {
  const h = crypto.createHash('sha256'); let n = 0;
  s.on('data', (d) => { h.update(d); n += d.length; });
  s.on('end', () => { console.log('RECEIVED ' + n + ' ' + h.digest('hex')); s.end(); srv.close(); });
});
srv.listen({ host, port: Number(port) }, () => console.log('LISTENING'));`;

const CLIENT = `
const net = require('node:net'), crypto = require('node:crypto'), fs = require('node:fs');
const [host, port, file] = process.argv.slice(1);
const data = fs.readFileSync(file);
const s = net.connect({ host, port: Number(port) }, () => s.end(data));
s.on('close', () => console.log('SENT ' + data.length + ' ' + crypto.createHash('sha256').update(data).digest('hex')));
s.on('data', () => {});`;

describe('VDUSE NICs served by Node', { skip: IN_VM ? false : SKIP_REASON }, () => {
  test(
    'two NICs on a native wire, the kernel virtio_net on both: ping6 and a TCP transfer between namespaces',
    T,
    async () => {
      const a = await createVduseNet({ name: 'nodenet0', mac: MACS[0], mtu: 1500 });
      const b = await createVduseNet({ name: 'nodenet1', mac: MACS[1], mtu: 1500 });
      const file = '/tmp/vduse-net-payload.bin';
      try {
        a.connect(b);
        // A second device of a taken name is EEXIST, with a hint.
        await assert.rejects(
          createVduseNet({ name: 'nodenet0' }),
          (e: unknown) => e instanceof VdpaError && e.code === 'EEXIST' && /exists/.test(e.hint ?? ''),
        );
        const entries = [
          await within(a.attach('virtio_vdpa'), 120_000, 'attach a'),
          await within(b.attach('virtio_vdpa'), 120_000, 'attach b'),
        ];
        const ifs = entries.map((e) => e.netdev ?? '');
        for (const [i, ifname] of ifs.entries()) {
          assert.match(ifname, /^\w+$/, `netdev of ${i}: ${String(ifname)}`);
          assert.equal(fs.readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim(), MACS[i]);
          assert.equal(fs.readFileSync(`/sys/class/net/${ifname}/mtu`, 'utf8').trim(), '1500');
        }
        // virtio_net takes checksum offload both ways: partial checksums cross the wire as they are.
        const negotiated = (await deviceConfig('nodenet0')).negotiatedFeatures ?? 0n;
        assert.ok(negotiated & NetFeature.CSUM && negotiated & NetFeature.GUEST_CSUM, `negotiated ${negotiated}`);
        for (const [i, ns] of NS.entries()) {
          const ifname = ifs[i] as string;
          spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
          run('ip', ['netns', 'add', ns]);
          run('ip', ['link', 'set', ifname, 'netns', ns]);
          // No address but the one given here: no autoconfigured one, no DAD delay.
          run('ip', ['-n', ns, 'link', 'set', ifname, 'addrgenmode', 'none']);
          run('ip', ['-n', ns, 'addr', 'add', `${linkLocal(MACS[i])}/64`, 'dev', ifname, 'nodad']);
          run('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
        }
        for (const [i, ns] of NS.entries())
          await waitFor(`${ifs[i]} in ${ns} has a carrier`, () =>
            /LOWER_UP/.test(run('ip', ['-n', ns, 'link', 'show', ifs[i] as string])),
          );
        const peerA = `${linkLocal(MACS[1])}%${ifs[0]}`;
        const ping = spawnSync('ip', ['netns', 'exec', NS[0], 'busybox', 'ping', '-6', '-c', '3', '-w', '30', peerA], {
          encoding: 'utf8',
          timeout: 60_000,
        });
        console.log(`# ${ping.stdout.trim().split('\n').slice(-2).join('; ')}`);
        assert.equal(ping.status, 0, `ping -6 ${peerA}: ${ping.stdout}${ping.stderr}`);
        assert.match(ping.stdout, /3 packets transmitted, [1-3] packets received/);

        const data = new Uint8Array(4 << 20);
        fillRandom(prng(0x7e7), data);
        fs.writeFileSync(file, data);
        const sha = crypto.createHash('sha256').update(data).digest('hex');
        let listening: () => void = () => undefined;
        const ready = new Promise<void>((resolve) => (listening = resolve));
        const server = nodeIn(NS[1], SERVER, [`${linkLocal(MACS[1])}%${ifs[1]}`, String(PORT)], (line) => {
          if (line === 'LISTENING') listening();
        });
        server.catch(() => undefined);
        await within(Promise.race([ready, server.then(() => undefined)]), 60_000, 'server listening');
        const sent = await within(nodeIn(NS[0], CLIENT, [peerA, String(PORT), file]), 240_000, 'TCP transfer');
        const received = await within(server, 60_000, 'server done');
        assert.match(sent, new RegExp(`SENT ${data.length} ${sha}`), 'the client sent the seeded file');
        assert.match(received, new RegExp(`RECEIVED ${data.length} ${sha}`), 'the server received the same bytes');
        const sa = a.stats;
        const sb = b.stats;
        console.log(`# stats a ${JSON.stringify(sa)} b ${JSON.stringify(sb)}`);
        assert.ok(sa.txBytes > data.length, 'a transmitted the file');
        assert.ok(sb.rxBytes > data.length, 'b received it');
        assert.ok(sb.txFrames > 0 && sa.rxFrames > 0, 'acknowledgements came back');
      } finally {
        fs.rmSync(file, { force: true });
        await within(Promise.all([a.close(), b.close()]), 120_000, 'close');
        for (const ns of NS) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      }
      assert.equal(await getDevice('nodenet0'), undefined, 'the vdpa device is gone after close()');
      assert.equal(fs.existsSync('/dev/vduse/nodenet0'), false, 'the VDUSE device is gone after close()');
    },
  );

  // Segmentation offload between two kernel virtio_net drivers: with GUEST_TSO on the receiving side
  // the sender's TSO frames (up to 64 KiB) cross the wire whole; without it the sending NIC cuts them
  // into MTU-sized segments (native/device_model/net_segment). The data must arrive intact either way.
  for (const receiverGso of [true, false])
    test(
      `segmentation offload, ${receiverGso ? 'both NICs with GSO: TSO frames cross the wire whole' : 'the receiver without GSO: the sending NIC segments'}; a TCP transfer between namespaces`,
      T,
      async () => {
        const ns = ['vgso-a', 'vgso-b'] as const;
        const macs = ['52:54:00:12:34:61', '52:54:00:12:34:62'] as const;
        const a = await createVduseNet({ name: 'nodenetg0', mac: macs[0], offloads: { gso: true } });
        const b = await createVduseNet({ name: 'nodenetg1', mac: macs[1], offloads: { gso: receiverGso } });
        const file = '/tmp/vduse-net-gso.bin';
        try {
          a.connect(b);
          const entries = [
            await within(a.attach('virtio_vdpa'), 120_000, 'attach a'),
            await within(b.attach('virtio_vdpa'), 120_000, 'attach b'),
          ];
          const ifs = entries.map((e) => e.netdev ?? '');
          const fa = (await deviceConfig('nodenetg0')).negotiatedFeatures ?? 0n;
          const fb = (await deviceConfig('nodenetg1')).negotiatedFeatures ?? 0n;
          const tso = NetFeature.HOST_TSO4 | NetFeature.HOST_TSO6 | NetFeature.GUEST_TSO4 | NetFeature.GUEST_TSO6;
          assert.equal(fa & tso, tso, `virtio_net negotiated TSO both ways on a: ${fa.toString(16)}`);
          assert.equal(fb & tso, receiverGso ? tso : 0n, `on b: ${fb.toString(16)}`);
          for (const [i, n] of ns.entries()) {
            const ifname = ifs[i] as string;
            assert.match(ifname, /^\w+$/);
            spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
            run('ip', ['netns', 'add', n]);
            run('ip', ['link', 'set', ifname, 'netns', n]);
            run('ip', ['-n', n, 'link', 'set', ifname, 'addrgenmode', 'none']);
            run('ip', ['-n', n, 'addr', 'add', `${linkLocal(macs[i])}/64`, 'dev', ifname, 'nodad']);
            run('ip', ['-n', n, 'link', 'set', ifname, 'up']);
          }
          for (const [i, n] of ns.entries())
            await waitFor(`${ifs[i]} in ${n} has a carrier`, () =>
              /LOWER_UP/.test(run('ip', ['-n', n, 'link', 'show', ifs[i] as string])),
            );
          const data = new Uint8Array(8 << 20);
          fillRandom(prng(receiverGso ? 0x650 : 0x651), data);
          fs.writeFileSync(file, data);
          const sha = crypto.createHash('sha256').update(data).digest('hex');
          const port = String(PORT + (receiverGso ? 5 : 6));
          let listening: () => void = () => undefined;
          const ready = new Promise<void>((resolve) => (listening = resolve));
          const server = nodeIn(ns[1], SERVER, [`${linkLocal(macs[1])}%${ifs[1]}`, port], (line) => {
            if (line === 'LISTENING') listening();
          });
          server.catch(() => undefined);
          await within(Promise.race([ready, server.then(() => undefined)]), 60_000, 'server listening');
          const peer = `${linkLocal(macs[1])}%${ifs[0]}`;
          const sent = await within(nodeIn(ns[0], CLIENT, [peer, port, file]), 240_000, 'TCP transfer');
          const received = await within(server, 60_000, 'server done');
          assert.match(sent, new RegExp(`SENT ${data.length} ${sha}`), 'the client sent the seeded file');
          assert.match(received, new RegExp(`RECEIVED ${data.length} ${sha}`), 'the server received the same bytes');
          const sa = a.stats;
          const sb = b.stats;
          console.log(
            `# gso (receiver ${receiverGso ? 'with' : 'without'} GSO) stats a ${JSON.stringify(sa)} b ${JSON.stringify(sb)}`,
          );
          assert.ok(sa.txGsoFrames > 0, "a's virtio_net sent TSO frames");
          assert.ok(
            sa.txBytes / sa.txFrames > 1514,
            `a's frames average more than the MTU: ${sa.txBytes / sa.txFrames}`,
          );
          if (receiverGso) {
            assert.ok(sb.rxGsoFrames > 0, 'b received them whole');
            assert.equal(sa.segmentsMade, 0, 'nothing segmented in software');
          } else {
            assert.equal(sb.rxGsoFrames, 0, 'b took no GSO frame');
            assert.ok(sa.segmentsMade > sa.txGsoFrames, 'a cut each into segments');
            assert.ok(sb.rxBytes / sb.rxFrames <= 1514, 'b received MTU-sized frames only');
          }
          assert.equal(sa.txDropped, 0, 'a dropped nothing it was given');
        } finally {
          fs.rmSync(file, { force: true });
          await within(Promise.all([a.close(), b.close()]), 120_000, 'close');
          for (const n of ns) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
        }
      },
    );

  test('link down and up from the device: the kernel netdev loses and regains its carrier', T, async () => {
    await using nic = await createVduseNet({ name: 'nodenet2', mac: '52:54:00:12:34:59', mtu: 9000 });
    const { netdev } = await within(nic.attach('virtio_vdpa'), 120_000, 'attach');
    const ifname = netdev ?? '';
    assert.equal(fs.readFileSync(`/sys/class/net/${ifname}/mtu`, 'utf8').trim(), '9000', 'VIRTIO_NET_F_MTU');
    // carrier is readable only while the interface is up; up without any address.
    run('ip', ['link', 'set', ifname, 'addrgenmode', 'none']);
    run('ip', ['link', 'set', ifname, 'up']);
    await waitFor('carrier 1', () => carrier(ifname) === '1');
    await nic.setLink(false);
    assert.equal(nic.linkUp, false);
    await waitFor('carrier 0 after setLink(false)', () => carrier(ifname) === '0');
    await nic.setLink(true);
    await waitFor('carrier 1 after setLink(true)', () => carrier(ifname) === '1');
    run('ip', ['link', 'set', ifname, 'down']);
  });

  test('a NIC on a TAP interface of the host: ping6 and a TCP transfer between namespaces', T, async () => {
    const ns = ['vtap-a', 'vtap-b'] as const;
    const macs = ['52:54:00:12:34:5c', '52:54:00:12:34:5d'] as const; // the NIC's, the TAP's
    assert.ok(fs.existsSync('/dev/net/tun'), '/dev/net/tun (the initramfs loads tun: scripts/vm/setup.sh)');
    const nic = await createVduseNet({ name: 'nodenet4', mac: macs[0] });
    const file = '/tmp/vduse-net-tap.bin';
    try {
      const tap = await within(nic.connectTap('vtap0'), 30_000, 'connectTap');
      assert.equal(tap, 'vtap0');
      assert.ok(fs.existsSync('/sys/class/net/vtap0'), 'the TAP interface exists');
      // Connected already: EBUSY, with a hint.
      await assert.rejects(
        nic.connectTap('vtap1'),
        (e: unknown) => e instanceof VdpaError && e.code === 'EBUSY' && /disconnect/.test(e.hint ?? ''),
      );
      const { netdev } = await within(nic.attach('virtio_vdpa'), 120_000, 'attach');
      const ifs = [netdev ?? '', tap] as const;
      assert.match(ifs[0], /^\w+$/);
      for (const [i, n] of ns.entries()) {
        spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
        run('ip', ['netns', 'add', n]);
        // The TAP moves too: its fd stays valid in another namespace.
        run('ip', ['link', 'set', ifs[i], 'netns', n]);
        run('ip', ['-n', n, 'link', 'set', ifs[i], 'address', macs[i]]);
        run('ip', ['-n', n, 'link', 'set', ifs[i], 'addrgenmode', 'none']);
        run('ip', ['-n', n, 'addr', 'add', `${linkLocal(macs[i])}/64`, 'dev', ifs[i], 'nodad']);
        run('ip', ['-n', n, 'link', 'set', ifs[i], 'up']);
      }
      for (const [i, n] of ns.entries())
        await waitFor(`${ifs[i]} in ${n} has a carrier`, () =>
          /LOWER_UP/.test(run('ip', ['-n', n, 'link', 'show', ifs[i]])),
        );
      const nicAddr = `${linkLocal(macs[0])}%${tap}`;
      const ping = spawnSync('ip', ['netns', 'exec', ns[1], 'busybox', 'ping', '-6', '-c', '3', '-w', '30', nicAddr], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      console.log(`# tap: ${ping.stdout.trim().split('\n').slice(-2).join('; ')}`);
      assert.equal(ping.status, 0, `ping -6 ${nicAddr}: ${ping.stdout}${ping.stderr}`);
      assert.match(ping.stdout, /3 packets transmitted, [1-3] packets received/);

      // The TAP side sends 1 MiB to a server behind the NIC; the acknowledgements (partial
      // checksums from virtio_net, filled in for the TAP) come back.
      const data = new Uint8Array(1 << 20);
      fillRandom(prng(0x7a9), data);
      fs.writeFileSync(file, data);
      const sha = crypto.createHash('sha256').update(data).digest('hex');
      let listening: () => void = () => undefined;
      const ready = new Promise<void>((resolve) => (listening = resolve));
      const server = nodeIn(ns[0], SERVER, [`${linkLocal(macs[0])}%${ifs[0]}`, String(PORT + 2)], (line) => {
        if (line === 'LISTENING') listening();
      });
      server.catch(() => undefined);
      await within(Promise.race([ready, server.then(() => undefined)]), 60_000, 'server listening');
      const sent = await within(nodeIn(ns[1], CLIENT, [nicAddr, String(PORT + 2), file]), 240_000, 'TCP transfer');
      const received = await within(server, 60_000, 'server done');
      assert.match(sent, new RegExp(`SENT ${data.length} ${sha}`), 'the client sent the seeded file');
      assert.match(received, new RegExp(`RECEIVED ${data.length} ${sha}`), 'the server received the same bytes');
      const st = nic.stats;
      console.log(`# tap stats ${JSON.stringify(st)}`);
      assert.ok(st.rxBytes > data.length, 'the NIC received the file from the TAP');
      assert.ok(st.txFrames > 0, 'acknowledgements went to the TAP');

      await within(nic.disconnect(), 30_000, 'disconnect');
      await waitFor(
        'the TAP interface gone after disconnect()',
        () => spawnSync('ip', ['-n', ns[1], 'link', 'show', tap]).status !== 0,
        10_000,
      );
      // A TAP again (in this namespace now), and close() removes it too.
      assert.equal(await within(nic.connectTap(tap), 30_000, 'connectTap again'), tap);
      assert.ok(fs.existsSync(`/sys/class/net/${tap}`), 'the second TAP interface exists');
      await within(nic.close(), 120_000, 'close');
      await waitFor('the TAP interface gone after close()', () => !fs.existsSync(`/sys/class/net/${tap}`), 10_000);
    } finally {
      fs.rmSync(file, { force: true });
      await within(nic.close(), 120_000, 'close');
      for (const n of ns) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    }
  });

  test('openNet over vhost_vdpa in the same process: frames both ways through JS, and link events', T, async () => {
    await using nic = await createVduseNet({ name: 'nodenet3', mac: '52:54:00:12:34:5a', queueSize: 64 });
    const { path: node } = await within(nic.attach('vhost_vdpa'), 120_000, 'attach');
    assert.match(node ?? '', /^\/dev\/vhost-vdpa-\d+$/);
    const net = await within(openNet(node ?? '', { queueSize: 64, txChecksum: true }), 60_000, 'openNet');
    try {
      assert.equal(net.macAddress, '52:54:00:12:34:5a');
      assert.equal(net.mtu, 1500);
      assert.equal(net.linkUp, true);
      assert.equal(net.hasControl, false, 'no control queue (VDUSE refuses CTRL_VQ)');
      const frame = (n: number, size: number): Uint8Array => {
        const f = new Uint8Array(size);
        fillRandom(prng(n), f);
        f.set(net.mac, 0);
        new DataView(f.buffer).setUint16(12, 0x88b5);
        return f;
      };
      // Device to driver: more frames than receive buffers, spread over the backlog.
      const down = Array.from({ length: 100 }, (_, i) => frame(i, 60 + 14 * i));
      for (const f of down) await nic.send(f);
      for (const f of down) assert.ok(Buffer.from(await within(net.receive(), 30_000, 'receive')).equals(f));
      // Driver to device.
      const up = Array.from({ length: 100 }, (_, i) => frame(1000 + i, 1514 - 14 * i));
      const got: Uint8Array[] = [];
      const reading = (async () => {
        for await (const f of nic.frames()) if (got.push(f) === up.length) break;
      })();
      await net.sendBatch(up);
      await within(reading, 30_000, 'frames()');
      got.forEach((f, i) => assert.ok(Buffer.from(f).equals(up[i] as Uint8Array), `frame ${i}`));
      // A partial checksum (CSUM) is filled in by the device on its way to JS: the one's complement of
      // the sum from start to the end, the field's own (pseudo-header) value included.
      const partial = frame(2000, 300);
      const start = 34;
      const at = start + 6;
      partial[at] = 0x12;
      partial[at + 1] = 0x34;
      const next = nic.frames()[Symbol.asyncIterator]().next();
      await net.send(partial, { checksum: { start, offset: 6 } });
      const filled = (await within(next, 30_000, 'the checksummed frame')).value as Uint8Array;
      // With the pseudo-header sum (the field's old value) added back, a right checksum sums to 0xffff.
      let sum = 0x1234;
      for (let i = start; i < filled.length; i += 2) sum += ((filled[i] as number) << 8) | (filled[i + 1] ?? 0);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      assert.equal(sum, 0xffff, 'the checksum is right');
      assert.ok(
        Buffer.from(filled.subarray(0, at)).equals(partial.subarray(0, at)),
        'bytes before the field unchanged',
      );
      assert.ok(Buffer.from(filled.subarray(at + 2)).equals(partial.subarray(at + 2)), 'bytes after it unchanged');
      const linkDown = once(net, 'link');
      await nic.setLink(false);
      assert.deepEqual(await within(linkDown, 30_000, "'link' false"), [false]);
      assert.equal(net.linkUp, false);
      const linkUp = once(net, 'link');
      await nic.setLink(true);
      assert.deepEqual(await within(linkUp, 30_000, "'link' true"), [true]);
      // Vendor statistics: the node resolves to its vdpa device (sysfs) and VDPA_CMD_DEV_VSTATS_GET
      // reaches the kernel, whose vduse parent keeps none.
      const vstats = await net.deviceStats().then(
        (r) => r,
        (e: unknown) => e,
      );
      assert.ok(vstats instanceof VdpaError && vstats.code === 'EOPNOTSUPP', `deviceStats: ${String(vstats)}`);
      assert.match(vstats.hint ?? '', /'nodenet3' keeps no vendor queue statistics/);
      const s = nic.stats;
      console.log(`# stats ${JSON.stringify(s)}`);
      assert.equal(s.rxFrames, down.length);
      assert.equal(s.txFrames, up.length + 1);
      assert.equal(s.rxDropped + s.txDropped, 0);
    } finally {
      await net.close();
    }
  });

  test(
    'the device process SIGKILLed under a TCP transfer: the kernel does not hang; what it reports',
    { timeout: 420_000 },
    async () => {
      // The pair is served by another process (vduse-net-serve.js) on virtio_vdpa; a transfer runs
      // between two namespaces; the server process is killed. Recorded: the transfer's end, the links,
      // and how long deleting the vdpa devices takes (each reset waits for a daemon that is gone).
      const serve = spawn(process.execPath, [SERVE, 'nodenetk0', 'nodenetk1', 'driver=virtio_vdpa'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      serve.stdout.on('data', (d: Buffer) => (out += d.toString()));
      serve.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const killed = new Promise((resolve) => serve.on('exit', resolve));
      const ns = ['vnet-ka', 'vnet-kb'];
      const macs = ['52:54:00:12:34:51', '52:54:00:12:34:52'];
      try {
        await waitFor('vduse-net-serve attached', () => out.includes('\n') || serve.exitCode !== null, 120_000);
        const ifs = (out.split('\n')[0] ?? '').split(' ');
        assert.equal(ifs.length, 2, `vduse-net-serve printed ${JSON.stringify(out)}: ${err}`);
        for (const [i, n] of ns.entries()) {
          const ifname = ifs[i] as string;
          spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
          run('ip', ['netns', 'add', n]);
          run('ip', ['link', 'set', ifname, 'netns', n]);
          run('ip', ['-n', n, 'link', 'set', ifname, 'addrgenmode', 'none']);
          run('ip', ['-n', n, 'addr', 'add', `${linkLocal(macs[i] as string)}/64`, 'dev', ifname, 'nodad']);
          run('ip', ['-n', n, 'link', 'set', ifname, 'up']);
        }
        const file = '/tmp/vduse-net-kill.bin';
        const data = new Uint8Array(64 << 20);
        fillRandom(prng(0x4b11), data);
        fs.writeFileSync(file, data);
        let listening: () => void = () => undefined;
        const ready = new Promise<void>((resolve) => (listening = resolve));
        const server = nodeIn(
          ns[1] as string,
          SERVER,
          [`${linkLocal(macs[1] as string)}%${ifs[1]}`, String(PORT + 1)],
          (l) => {
            if (l === 'LISTENING') listening();
          },
        );
        server.catch(() => undefined);
        await within(ready, 60_000, 'server listening');
        const t0 = Date.now();
        const client = nodeIn(ns[0] as string, CLIENT, [
          `${linkLocal(macs[1] as string)}%${ifs[0]}`,
          String(PORT + 1),
          file,
        ]);
        const clientEnd = client.then(
          (o) => `exited 0: ${o.trim()}`,
          (e: unknown) => `failed: ${String(e).slice(0, 200)}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 3000));
        serve.kill('SIGKILL');
        await within(killed, 30_000, 'the device process exiting');
        console.log(`# SIGKILL after ${Date.now() - t0} ms of transfer`);
        // Nobody serves the queues now: the transfer stalls (TCP retransmits into a dead ring).
        await new Promise((resolve) => setTimeout(resolve, 5000));
        for (const [i, n] of ns.entries())
          console.log(
            `# after SIGKILL, ${n}: ${run('ip', ['-n', n, 'link', 'show', ifs[i] as string]).split('\n')[0]}`,
          );
        const t1 = Date.now();
        const del = spawnSync('timeout', ['100', 'vdpa', 'dev', 'del', 'nodenetk0'], { encoding: 'utf8' });
        console.log(`# vdpa dev del nodenetk0: exit ${del.status} after ${Date.now() - t1} ms ${del.stderr.trim()}`);
        const t2 = Date.now();
        const del2 = spawnSync('timeout', ['100', 'vdpa', 'dev', 'del', 'nodenetk1'], { encoding: 'utf8' });
        console.log(`# vdpa dev del nodenetk1: exit ${del2.status} after ${Date.now() - t2} ms ${del2.stderr.trim()}`);
        const ended = await Promise.race([
          clientEnd,
          new Promise<string>((r) => setTimeout(() => r('still waiting'), 2000)),
        ]);
        console.log(`# the client after the devices are gone: ${ended}`);
        // What still runs in the namespaces (the transfer's two ends) is ended here.
        for (const n of ns) spawnSync('sh', ['-c', `ip netns pids ${n} | xargs -r kill -9`], { stdio: 'ignore' });
        await within(clientEnd, 30_000, 'the client ending');
        const dmesg = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout.trim().split('\n').slice(-8).join(' | ');
        console.log(`# kernel: ${dmesg}`);
        assert.equal(del.status, 0, 'the vdpa device of a dead daemon can be deleted');
        assert.equal(del2.status, 0, 'both');
        fs.rmSync(file, { force: true });
      } finally {
        if (serve.exitCode === null && serve.signalCode === null) serve.kill('SIGKILL');
        for (const n of ns) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      }
    },
  );
});
