// Serves two Node VDUSE NICs joined by a native wire from their own process, both on vhost_vdpa, for
// a driver in another one (guest-tests.sh runs the net conformance suite over them):
//
//   node dist/test/vm/vduse-net-serve.js NAME_A NAME_B [linkRequests=FILE] [mtu=N] [queueSize=Q]
//                                        [driver=virtio_vdpa] [gso=1]
//
// NIC A has MAC 52:54:00:12:34:51, NIC B 52:54:00:12:34:52. Prints "PATH_A PATH_B" (/dev/vhost-vdpa-N;
// with driver=virtio_vdpa the two netdevs) on a line of its own once both are attached. With linkRequests, it plays the harness side of the
// conformance suite's link test (scripts/vm/run.sh --net-link-control): "hpI off|on" written to FILE
// sets the link of the NIC whose MAC ends in 0x5I, and the file is removed. Serves until SIGTERM or
// SIGINT, then closes both (gso=1: both offer segmentation offload, offloads.gso) (detach, destroy) and prints their stats as JSON on stderr.
import fs from 'node:fs';
import { createVduseNet, type VduseNetDevice } from '../../lib';

async function main(): Promise<void> {
  const [nameA, nameB, ...rest] = process.argv.slice(2);
  if (!nameA || !nameB) throw new Error('usage: vduse-net-serve.js NAME_A NAME_B [linkRequests=FILE] [mtu=N]');
  let linkRequests: string | undefined;
  let mtu = 1500;
  let queueSize = 256;
  let driver: 'vhost_vdpa' | 'virtio_vdpa' = 'vhost_vdpa';
  let gso = false;
  for (const kv of rest) {
    const [k, v] = kv.split('=', 2);
    if (k === 'linkRequests' && v) linkRequests = v;
    else if (k === 'mtu') mtu = Number(v);
    else if (k === 'queueSize') queueSize = Number(v);
    else if (k === 'gso') gso = v === '1';
    else if (k === 'driver' && (v === 'vhost_vdpa' || v === 'virtio_vdpa')) driver = v;
    else throw new Error(`unknown option ${kv}`);
  }
  const offloads = { gso };
  const a = await createVduseNet({ name: nameA, mac: '52:54:00:12:34:51', mtu, queueSize, offloads });
  const b = await createVduseNet({ name: nameB, mac: '52:54:00:12:34:52', mtu, queueSize, offloads });
  a.connect(b);
  const byPort = new Map<string, VduseNetDevice>([
    ['hp1', a],
    ['hp2', b],
  ]);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    Promise.all([a.close(), b.close()]).then(
      () => {
        console.error(`vduse-net-serve: closed; stats ${JSON.stringify({ a: a.stats, b: b.stats })}`);
        process.exit(0);
      },
      (e: unknown) => {
        console.error(`vduse-net-serve: close failed: ${String(e)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const ea = await a.attach(driver);
  const eb = await b.attach(driver);
  const shown = driver === 'vhost_vdpa' ? [ea.path, eb.path] : [ea.netdev, eb.netdev];
  console.log(shown.map((x) => x ?? '').join(' '));
  // Link requests, polled (the results dir is 9p: no inotify), or just kept alive until a signal.
  setInterval(() => {
    if (!linkRequests || stopping || !fs.existsSync(linkRequests)) return;
    const req = fs.readFileSync(linkRequests, 'utf8').trim();
    fs.rmSync(linkRequests, { force: true });
    const [port, state] = req.split(/\s+/);
    const nic = byPort.get(port ?? '');
    if (!nic || (state !== 'on' && state !== 'off')) {
      console.error(`vduse-net-serve: ignoring link request '${req}'`);
      return;
    }
    nic.setLink(state === 'on').catch((e: unknown) => console.error(`vduse-net-serve: setLink: ${String(e)}`));
  }, 100);
}

main().catch((e: unknown) => {
  console.error(`vduse-net-serve: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
