// Child process for test/vm/faults.test.ts: keeps writes in flight on DEVICE, prints READY once some
// completed, stops issuing when the parent writes "KILLED" on stdin (it SIGKILLed the daemon), then
// reports how the requests in flight ended: by themselves within GRACE_MS, or only on close().
// It must then exit on its own: nothing may keep the event loop alive.
import { openBlk } from '../../lib';

const dev = process.argv[2] as string;
const GRACE_MS = Number(process.argv[3] ?? 10_000);
const IN_FLIGHT = 32;

interface Outcome {
  ok: number;
  errors: { code?: string; message: string; afterMs: number; phase: string }[];
}

async function main(): Promise<void> {
  const blk = await openBlk(dev, { queueSize: 64 });
  const out: Outcome = { ok: 0, errors: [] };
  let killedAt = 0;
  let closing = false;
  let issuing = true;
  let inFlight = 0;
  let done = 0;
  let ready = false;
  const pendingAtKill: Promise<void>[] = [];
  const all = new Set<Promise<void>>();
  const buf = blk.allocBuffer(16 * 4096).fill(0x3c);
  let off = 0;
  const issue = (): void => {
    while (issuing && inFlight < IN_FLIGHT) {
      inFlight++;
      off = (off + 64 * 1024) % (blk.capacity - 64 * 1024);
      const p = blk.write(off, buf).then(
        () => {
          out.ok++;
        },
        (e: NodeJS.ErrnoException) => {
          out.errors.push({
            code: e.code,
            message: String(e.message),
            afterMs: killedAt ? Date.now() - killedAt : -1,
            phase: closing ? 'close' : 'before-close',
          });
        },
      );
      const tracked = p.finally(() => {
        inFlight--;
        done++;
        all.delete(tracked);
        if (!ready && done >= 64) {
          ready = true;
          process.stdout.write('READY\n');
        }
        issue();
      });
      all.add(tracked);
    }
  };
  issue();
  await new Promise<void>((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (s: string) => {
      if (s.includes('KILLED')) resolve();
    });
  });
  issuing = false;
  killedAt = Date.now();
  process.stdin.destroy();
  pendingAtKill.push(...all);
  const inFlightAtKill = all.size;
  let timer: NodeJS.Timeout | undefined;
  const settledAlone = await Promise.race([
    Promise.allSettled(pendingAtKill).then(() => true),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), GRACE_MS))),
  ]);
  clearTimeout(timer);
  const pendingBeforeClose = all.size;
  closing = true;
  const c0 = Date.now();
  let closeError: string | undefined;
  try {
    await blk.close();
  } catch (e) {
    closeError = String(e);
  }
  const closeMs = Date.now() - c0;
  await Promise.allSettled(pendingAtKill);
  process.stdout.write(
    `RESULT ${JSON.stringify({ inFlightAtKill, settledAlone, pendingBeforeClose, closeMs, closeError, ok: out.ok, errors: out.errors })}\n`,
  );
  // no process.exit(): the parent checks that the process ends by itself
}

main().catch((e) => {
  process.stdout.write(`CHILD-ERROR ${String(e?.stack ?? e)}\n`);
  process.exitCode = 1;
});
