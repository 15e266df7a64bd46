// Serves a Node VDUSE blk device from its own process, for a driver in another one (guest-tests.sh
// runs the blk conformance suite over it through vhost_vdpa):
//
//   node dist/test/vm/vduse-serve.js NAME DRIVER (file=IMG | capacity=BYTES) [numQueues=N] [queueSize=Q]
//                                    [serial=S] [handler=js] [reconnect=1]
//
// handler=js serves a RAM disk of `capacity` bytes whose read and write are JavaScript functions (its
// reads answer with a Promise a setImmediate later; with handler=js-sync at once, with handler=js-hold
// never); the
// process that serves a JS-handler device must not be the one blocking on its I/O (a synchronous
// mkfs or fs.writeFileSync on the JS thread would wait for requests only that thread can answer).
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
  let jsHandler = false;
  let holdReads = false;
  let syncReads = false;
  for (const kv of rest) {
    const [k, v] = kv.split('=', 2);
    if (k === 'file' || k === 'serial') options[k] = v;
    else if (k === 'capacity' || k === 'numQueues' || k === 'queueSize') options[k] = Number(v);
    else if (k === 'handler' && (v === 'js' || v === 'js-hold' || v === 'js-sync')) {
      jsHandler = true;
      holdReads = v === 'js-hold';
      syncReads = v === 'js-sync';
    } else if (k === 'reconnect' && v === '1') options.reconnect = true;
    else throw new Error(`unknown option ${kv}`);
  }
  const calls = { read: 0, write: 0, flush: 0, writeZeroes: 0 };
  if (jsHandler) {
    const bytes = new Uint8Array(options.capacity ?? 0);
    const readNow = (offset: number, length: number): Uint8Array => {
      calls.read++;
      return bytes.slice(offset, offset + length);
    };
    options.handler = {
      // A Promise from read, plain values from the rest: both ways a handler may answer.
      read: syncReads
        ? readNow
        : async (offset, length) => {
            calls.read++;
            // js-hold: reads are never answered (a device busy with them when the driver resets it).
            await new Promise((resolve) => (holdReads ? undefined : setImmediate(resolve)));
            return bytes.slice(offset, offset + length);
          },
      write: (offset, data) => {
        calls.write++;
        bytes.set(data, offset);
      },
      flush: () => {
        calls.flush++;
      },
      writeZeroes: (offset, length) => {
        calls.writeZeroes++;
        bytes.fill(0, offset, offset + length);
      },
    };
  }
  const disk = await createVduseBlk(options);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    disk.close().then(
      () => {
        console.error(`vduse-serve: closed; stats ${JSON.stringify(disk.stats)}`);
        if (jsHandler) console.error(`vduse-serve: handler calls ${JSON.stringify(calls)}`);
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
  // reconnect=1: the vdpa device of the process this one replaces is still attached.
  const entry = disk.attached ?? (await disk.attach(driver));
  console.log(driver === 'vhost_vdpa' ? entry.path : entry.blockDevice);
  // The device thread does the work; this keeps the event loop alive until a signal arrives.
  setInterval(() => {}, 1 << 30);
}

main().catch((e: unknown) => {
  console.error(`vduse-serve: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
