// Child process for test/vm/faults.test.ts: keeps writes in flight on DEVICE (opened with
// requestTimeout REQUEST_TIMEOUT_MS), prints READY once some completed, stops issuing when the parent
// writes "KILLED" on stdin (it SIGKILLed the daemon), waits for the requests in flight to settle by
// themselves (they must time out), then close()s. A 10 ms interval measures the event-loop lag the
// whole time. Reports the outcome as one RESULT line; it must then exit on its own.
import { openBlk } from '../../lib';

const dev = process.argv[2] as string;
const REQUEST_TIMEOUT_MS = Number(process.argv[3] ?? 3000);
const IN_FLIGHT = 32;
const TICK_MS = 10;

// 'warmup' (open to READY: first runs of every code path, slow under TCG) is reported, not judged.
type Phase = 'warmup' | 'io' | 'after-kill' | 'close';

interface Outcome {
  ok: number;
  errors: { code?: string; message: string; afterMs: number; phase: string }[];
}

async function main(): Promise<void> {
  const blk = await openBlk(dev, { queueSize: 64, requestTimeout: REQUEST_TIMEOUT_MS });
  const out: Outcome = { ok: 0, errors: [] };
  let killedAt = 0;
  let phase: Phase = 'warmup';
  const maxLag: Record<Phase, number> = { warmup: 0, io: 0, 'after-kill': 0, close: 0 };
  const worst: Record<Phase, number> = { warmup: 0, io: 0, 'after-kill': 0, close: 0 }; // ms after the kill
  let last = performance.now();
  // Also called once at the end: a close() that blocked the thread shows in the gap since the last tick.
  const sample = (): void => {
    const now = performance.now();
    const lag = now - last - TICK_MS;
    if (lag > maxLag[phase]) {
      maxLag[phase] = lag;
      worst[phase] = killedAt ? Date.now() - killedAt : -1;
    }
    last = now;
  };
  const lagTimer = setInterval(sample, TICK_MS);
  let timeoutEvents = 0;
  blk.device.on('timeout', () => timeoutEvents++);
  let issuing = true;
  let inFlight = 0;
  let done = 0;
  let ready = false;
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
            phase,
          });
        },
      );
      const tracked = p.finally(() => {
        inFlight--;
        done++;
        all.delete(tracked);
        if (!ready && done >= 64) {
          ready = true;
          phase = 'io';
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
  phase = 'after-kill';
  process.stdin.destroy();
  const pendingAtKill = [...all];
  const inFlightAtKill = pendingAtKill.length;
  // Generous: the contract is requestTimeout + 1 s, checked by the parent from afterMs.
  let timer: NodeJS.Timeout | undefined;
  const settledAlone = await Promise.race([
    Promise.allSettled(pendingAtKill).then(() => true),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), REQUEST_TIMEOUT_MS + 10_000))),
  ]);
  clearTimeout(timer);
  const pendingBeforeClose = all.size;
  phase = 'close';
  const c0 = Date.now();
  let closeError: string | undefined;
  try {
    await blk.close();
  } catch (e) {
    closeError = String(e);
  }
  const closeMs = Date.now() - c0;
  sample();
  await Promise.allSettled(pendingAtKill);
  clearInterval(lagTimer);
  const lag = Object.fromEntries(Object.entries(maxLag).map(([k, v]) => [k, Math.round(v)]));
  const lagAt = Object.fromEntries(Object.entries(worst));
  process.stdout.write(
    `RESULT ${JSON.stringify({ inFlightAtKill, settledAlone, pendingBeforeClose, closeMs, closeError, timeoutEvents, maxLag: lag, lagAt, ok: out.ok, errors: out.errors })}\n`,
  );
  // no process.exit(): the parent checks that the process ends by itself
}

main().catch((e) => {
  process.stdout.write(`CHILD-ERROR ${String(e?.stack ?? e)}\n`);
  process.exitCode = 1;
});
