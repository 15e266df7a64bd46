// Issue 13, item 2: mock:net frames per second through the JS path (sendBatch + receive() on one
// loopback NIC, paced so the receive queue never runs dry) against the native loops (generate +
// sink on one NIC; generate -> forward -> sink across two NICs), side by side, interleaved.
import { openNet } from '../lib/index';
import { rxRate } from './net';
import { type BenchOptions, type Table, Samples, fmt, fmtInt, gc, now, ratio, since } from './util';

/** A rate, and the CPU time of the whole process (every thread: JS, the mock's device threads) per frame. */
interface Rate {
  pps: number;
  cpuNs: number;
}

function cpuNs(c0: NodeJS.CpuUsage, frames: number): number {
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / frames;
}

/** The JS path: bench/net.ts's paced loopback receive, with its CPU time. */
async function jsRate(size: number, count: number): Promise<Rate & { stalled: boolean }> {
  const c0 = process.cpuUsage();
  const r = await rxRate(size, count, true);
  return { pps: r.pps, cpuNs: cpuNs(c0, count), stalled: r.stalled };
}

/** generate + sink on one loopback NIC: frames/s from the first frame to the last one counted. */
async function nativeRate(size: number, count: number): Promise<Rate> {
  const net = await openNet('mock:net');
  try {
    const sink = net.sink();
    const c0 = process.cpuUsage();
    const t0 = now();
    await net.generate({ size, count }).done;
    while (sink.stats().frames < count) await new Promise((r) => setImmediate(r));
    const dt = since(t0);
    const cpu = cpuNs(c0, count);
    const s = await sink.stop();
    if (s.frames !== count || s.bytes !== count * size) throw new Error(`sink counted ${s.frames} frames`);
    return { pps: count / dt, cpuNs: cpu };
  } finally {
    await net.close();
  }
}

/** generate on A, forward A -> B, sink on B: every frame crosses both mock NICs. */
async function forwardRate(size: number, count: number): Promise<Rate> {
  const a = await openNet('mock:net');
  const b = await openNet('mock:net');
  try {
    const fwd = a.forward(b);
    const sink = b.sink();
    const c0 = process.cpuUsage();
    const t0 = now();
    await a.generate({ size, count }).done;
    while (sink.stats().frames < count) await new Promise((r) => setImmediate(r));
    const dt = since(t0);
    const cpu = cpuNs(c0, count);
    await fwd.stop();
    const s = await sink.stop();
    if (s.frames !== count) throw new Error(`sink counted ${s.frames} of ${count} frames`);
    return { pps: count / dt, cpuNs: cpu };
  } finally {
    await a.close();
    await b.close();
  }
}

export async function benchNetLoops(opts: BenchOptions, sizes: readonly number[] = [64, 1500]): Promise<Table[]> {
  const samples = new Samples();
  const jsCount = opts.quick ? 5_000 : 50_000;
  const nativeCount = opts.quick ? 50_000 : 1_000_000;
  let stalls = 0;
  const add = (key: string, r: Rate): void => {
    samples.add(key, r.pps);
    samples.add(`cpu:${key}`, r.cpuNs);
  };
  await nativeRate(64, 10_000); // warm-up
  await rxRate(64, 2_000, true);
  for (let r = 0; r < opts.reps; r++)
    for (const size of sizes) {
      gc();
      const js = await jsRate(size, jsCount);
      if (js.stalled) stalls++;
      else add(`js:${size}`, js);
      gc();
      add(`native:${size}`, await nativeRate(size, nativeCount));
      gc();
      add(`forward:${size}`, await forwardRate(size, nativeCount));
    }
  const rows: string[][] = [];
  for (const size of sizes) {
    for (const [key, label] of [
      ['js', 'JS: sendBatch x64 + receive(), paced (one NIC)'],
      ['native', 'native: generate + sink (one NIC)'],
      ['forward', 'native: generate -> forward -> sink (two NICs)'],
    ] as const) {
      const pps = samples.median(`${key}:${size}`);
      rows.push([
        String(size),
        label,
        fmtInt(pps),
        fmt((pps * size * 8) / 1e9, 2),
        key === 'js' ? '1.00x' : ratio(samples.pairedRatio(`${key}:${size}`, `js:${size}`)),
        fmtInt(samples.median(`cpu:${key}:${size}`)),
        `±${fmt(samples.spread(`${key}:${size}`) / 2, 0)}%`,
      ]);
    }
  }
  return [
    {
      title: 'mock:net: JS send/receive vs native loops (issue 13, item 2)',
      headers: ['frame B', 'path', 'frames/s', 'Gbit/s', 'vs JS', 'CPU ns/frame', 'noise'],
      rows,
      notes: [
        `median of ${opts.reps} interleaved rounds; JS ${fmtInt(jsCount)} frames, native ${fmtInt(nativeCount)} frames per run; a fresh device per run, queue size 256`,
        'frames/s counts frames received: from the first send to the last frame received (JS) or counted by the sink (native)',
        '"vs JS": the median of the per-round ratios to the JS path of the same round',
        'CPU ns/frame: user+system time of the whole process (the JS thread and the mock device threads) per frame; ' +
          'less sensitive to a loaded machine than frames/s',
        `JS runs that stalled (watchdog, see the net bench) are left out: ${stalls}`,
      ],
    },
  ];
}
