// mock:net benchmark: frames per second sent (sendBatch, awaited) and received back through the mock's
// loopback (receive()), for small and full-size frames.
import { openNet, type NetDevice } from '../lib/index';
import { type BenchOptions, type Table, Samples, fmt, fmtInt, gc, now, since } from './util';

const SEND_BATCH = 128;

function makeFrames(size: number, n: number): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const f = new Uint8Array(size);
    f.fill(0xff, 0, 6); // broadcast destination
    f.set([0x02, 0, 0, 0, 0, 1], 6);
    f[12] = 0x88; // local experimental ethertype 0x88b5
    f[13] = 0xb5;
    f[14] = i & 0xff;
    frames.push(f);
  }
  return frames;
}

async function sendAll(net: NetDevice, frames: Uint8Array[], count: number): Promise<void> {
  for (let sent = 0; sent < count; sent += frames.length) {
    await net.sendBatch(sent + frames.length <= count ? frames : frames.slice(0, count - sent));
  }
}

/** Send rate: sendBatch of SEND_BATCH frames, awaited, `count` frames. Returns frames/s. */
async function txRate(size: number, count: number): Promise<number> {
  const net = await openNet('mock:net');
  try {
    const frames = makeFrames(size, SEND_BATCH);
    const t0 = now();
    await sendAll(net, frames, count);
    return count / since(t0);
  } finally {
    await net.close();
  }
}

/**
 * The paced sender keeps at most this many frames outstanding (sent, not yet received), in batches of
 * PACED_BATCH. It must stay below the receive queue size (256): see the stall note in benchNet.
 */
const WINDOW = 192;
const PACED_BATCH = 64;
const STALL_MS = 500;

/**
 * Loopback receive rate: a receive() loop runs while the sender sends `count` frames; frames/s counted
 * from the first send to the last frame received. Unpaced, the sender sends SEND_BATCH-frame batches
 * back to back; paced, it keeps at most WINDOW frames outstanding. A run that makes no progress for
 * STALL_MS with frames outstanding is ended and reported as stalled.
 */
export async function rxRate(size: number, count: number, paced: boolean): Promise<{ pps: number; stalled: boolean }> {
  const net = await openNet('mock:net');
  const batch = paced ? PACED_BATCH : SEND_BATCH;
  const frames = makeFrames(size, batch);
  let got = 0;
  let sent = 0;
  let bytes = 0;
  let stalled = false;
  let wake: (() => void) | undefined;
  let tLast = now();
  const t0 = now();
  const receiver = (async (): Promise<void> => {
    try {
      while (got < count) {
        const f = await net.receive();
        bytes += f.length;
        if ((++got & 255) === 0) tLast = now();
        if (wake && sent - got <= WINDOW - 2 * batch) {
          wake();
          wake = undefined;
        }
      }
      tLast = now();
    } catch (e) {
      if ((e as { code?: string }).code !== 'ECANCELED') throw e;
    }
  })();
  let last = -1;
  const watchdog = setInterval(() => {
    if (got === last && got < sent) {
      stalled = true;
      void net.close(); // ends the pending receive() with ECANCELED
      wake?.();
    }
    last = got;
  }, STALL_MS);
  try {
    while (sent < count && !stalled) {
      if (paced && sent - got > WINDOW - batch) await new Promise<void>((r) => (wake = r));
      if (stalled) break;
      const n = Math.min(batch, count - sent);
      sent += n;
      await net.sendBatch(n === batch ? frames : frames.slice(0, n));
    }
    await receiver;
  } catch (e) {
    if (!stalled) throw e;
  } finally {
    clearInterval(watchdog);
    await net.close();
  }
  if (bytes !== got * size) throw new Error(`received ${bytes} bytes for ${got} frames of ${size}`);
  return { pps: got / (Number(tLast - t0) / 1e9), stalled };
}

export async function benchNet(opts: BenchOptions, sizes: readonly number[] = [64, 1500]): Promise<Table[]> {
  const samples = new Samples();
  const count = opts.quick ? 5_000 : 20_000;
  const stalls = new Map<string, number>();
  await txRate(64, 2_000); // warm-up
  await rxRate(64, 2_000, true);
  type Dir = 'tx' | 'rx' | 'rxPaced';
  const dirs: readonly Dir[] = ['tx', 'rx', 'rxPaced'];
  const labels: Record<Dir, string> = {
    tx: `send (sendBatch x${SEND_BATCH}, awaited)`,
    rx: 'loopback receive (receive()), unpaced',
    rxPaced: `loopback receive (receive()), paced: <= ${WINDOW} outstanding`,
  };
  for (let r = 0; r < opts.reps; r++)
    for (const size of sizes)
      for (const dir of dirs) {
        gc();
        if (dir === 'tx') {
          samples.add(`tx:${size}`, await txRate(size, count));
        } else {
          const rx = await rxRate(size, count, dir === 'rxPaced');
          // A stalled run's rate is meaningless: only completed runs are sampled.
          if (rx.stalled) stalls.set(`${dir}:${size}`, (stalls.get(`${dir}:${size}`) ?? 0) + 1);
          else samples.add(`${dir}:${size}`, rx.pps);
        }
      }
  const rows: string[][] = [];
  for (const size of sizes)
    for (const dir of dirs) {
      const key = `${dir}:${size}`;
      const pps = samples.median(key);
      rows.push([
        String(size),
        labels[dir],
        fmtInt(pps),
        fmt((pps * size * 8) / 1e9, 2),
        dir === 'tx' ? '-' : `${stalls.get(key) ?? 0}/${opts.reps}`,
        `±${fmt(samples.spread(key) / 2, 0)}%`,
      ]);
    }
  return [
    {
      title: 'mock:net frames per second',
      headers: ['frame B', 'direction', 'frames/s', 'Gbit/s', 'stalled runs', 'noise'],
      rows,
      notes: [
        `median of ${opts.reps} interleaved runs, ${fmtInt(count)} frames each; a fresh device per run, queue size 256`,
        'send runs also pay for the looped-back frames the library receives (copies into its backlog) meanwhile: the mock always echoes',
        'stalled runs: receive stopped with frames outstanding and a watchdog ended the run (frames/s is the median of the ' +
          'other runs); the paced run keeps fewer frames outstanding than the receive queue holds',
      ],
    },
  ];
}
