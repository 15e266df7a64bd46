// Serves a Node VDUSE blk device from its own process, for a driver in another one (guest-tests.sh
// runs the blk conformance suite over it through vhost_vdpa):
//
//   node dist/test/vm/vduse-serve.js NAME DRIVER (file=IMG | capacity=BYTES) [numQueues=N] [queueSize=Q]
//
// Creates and attaches the device, prints the entry's path (vhost_vdpa) or blockDevice (virtio_vdpa)
// on a line of its own, serves until SIGTERM or SIGINT, then closes it (detach, destroy) and prints
// the per-queue stats as JSON on stderr.
import { createVduseBlk, type VduseBlkOptions } from '../../lib';

async function main(): Promise<void> {
  const [name, driver, ...rest] = process.argv.slice(2);
  if (!name || (driver !== 'vhost_vdpa' && driver !== 'virtio_vdpa'))
    throw new Error('usage: vduse-serve.js NAME vhost_vdpa|virtio_vdpa file=IMG|capacity=BYTES [key=value...]');
  const options: VduseBlkOptions = { name };
  for (const kv of rest) {
    const [k, v] = kv.split('=', 2);
    if (k === 'file') options.file = v;
    else if (k === 'capacity' || k === 'numQueues' || k === 'queueSize') options[k] = Number(v);
    else throw new Error(`unknown option ${kv}`);
  }
  const disk = await createVduseBlk(options);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    disk.close().then(
      () => {
        console.error(`vduse-serve: closed; stats ${JSON.stringify(disk.stats)}`);
        process.exit(0);
      },
      (e: unknown) => {
        console.error(`vduse-serve: close failed: ${String(e)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const entry = await disk.attach(driver);
  console.log(driver === 'vhost_vdpa' ? entry.path : entry.blockDevice);
  // The device thread does the work; this keeps the event loop alive until a signal arrives.
  setInterval(() => {}, 1 << 30);
}

main().catch((e: unknown) => {
  console.error(`vduse-serve: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
