// Child process for the fault tests of test/vm/vfio.test.ts:
//   node vfio-fault-child.js SPEC OPTIONS_JSON GRACE_MS
// Keeps requests in flight on a VFIO blk function (reads anywhere, zero-filled writes only into the
// last SCRATCH bytes, so the data oracle's "rest of the image is zero" still holds), prints READY
// once some completed, and when the parent writes "FAULT" on stdin (it reset or unbound the function)
// stops the stream, submits a few more requests after the fault, waits up to GRACE_MS for everything
// to settle by itself, then close()s and reports how every request ended. It must then exit by
// itself: nothing may keep the event loop alive.
import { openBlk } from '../../lib';

const SCRATCH = 4 << 20; // same as in vfio.test.ts
const spec = process.argv[2] as string;
const options = JSON.parse(process.argv[3] ?? '{}');
const GRACE_MS = Number(process.argv[4] ?? 5_000);
const IN_FLIGHT = 32;
const AFTER_FAULT = 8;
const LEN = 16 * 4096;

interface Err {
  code?: string;
  message: string;
  phase: string;
}

async function main(): Promise<void> {
  const blk = await openBlk(spec, options);
  const scratch = blk.capacity - SCRATCH;
  const zeroes = blk.allocBuffer(LEN).fill(0);
  const sink = blk.allocBuffer(LEN); // every read lands here; its bytes are not checked
  let phase = 'before-fault';
  let issuing = true;
  let done = 0;
  let ok = 0;
  let ready = false;
  let n = 0;
  const errors: Err[] = [];
  const all = new Set<Promise<void>>();
  const one = (): void => {
    const i = n++;
    const p =
      i % 2 === 0
        ? blk.write(scratch + ((i * LEN) % SCRATCH), zeroes)
        : blk.read(((i * 7919 * 4096) % (scratch - LEN)) & ~4095, sink);
    const tracked: Promise<void> = p
      .then(
        () => {
          ok++;
        },
        (e: NodeJS.ErrnoException) => {
          errors.push({ code: e.code, message: String(e.message), phase });
          // The device is gone (the library closed it on the host's release request): stop issuing.
          if (e.code === 'ENODEV' || e.code === 'EBADF') issuing = false;
        },
      )
      .finally(() => {
        all.delete(tracked);
        done++;
        if (!ready && done >= 64) {
          ready = true;
          process.stdout.write('READY\n');
        }
        if (issuing && all.size < IN_FLIGHT) one();
      });
    all.add(tracked);
  };
  for (let i = 0; i < IN_FLIGHT; i++) one();
  await new Promise<void>((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (s: string) => {
      if (s.includes('FAULT')) resolve();
    });
  });
  issuing = false;
  process.stdin.destroy();
  const inFlightAtFault = all.size;
  phase = 'after-fault';
  let statusAfterFault: number | string;
  try {
    statusAfterFault = blk.device.status();
  } catch (e) {
    statusAfterFault = String((e as Error).message);
  }
  // Unless the library already closed the device (a release request): then its DMA buffers are detached.
  if (!blk.device.closed) for (let i = 0; i < AFTER_FAULT; i++) one();
  const pending = [...all];
  let timer: NodeJS.Timeout | undefined;
  const settledAlone = await Promise.race([
    Promise.allSettled(pending).then(() => true),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), GRACE_MS))),
  ]);
  clearTimeout(timer);
  const pendingAtClose = all.size;
  phase = 'close';
  const c0 = Date.now();
  let closeError: string | undefined;
  try {
    await blk.close();
  } catch (e) {
    closeError = String(e);
  }
  const closeMs = Date.now() - c0;
  await Promise.allSettled(pending);
  process.stdout.write(
    `RESULT ${JSON.stringify({ inFlightAtFault, statusAfterFault, settledAlone, pendingAtClose, closeMs, closeError, ok, errors })}\n`,
  );
}

main().catch((e) => {
  process.stdout.write(`CHILD-ERROR ${String(e?.stack ?? e)}\n`);
  process.exitCode = 1;
});
