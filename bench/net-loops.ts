// Issue 13, item 2: mock:net frames per second through the JS path (sendBatch + receive() on one
// loopback NIC, paced so the receive queue never runs dry) against the native loops (generate +
// sink on one NIC; generate -> forward -> sink across two NICs), side by side, interleaved.
import { openNet } from '../lib/index';
import { rxRate } from './net';
import { type BenchOptions, type Table, Samples, fmt, fmtInt, gc, now, ratio, since } from './util';

/** generate + sink on one loopback NIC: frames/s from the first frame to the last one counted. */
async function nativeRate(size: number, count: number): Promise<number> {
  const net = await openNet('mock:net');
  try {
    const sink = net.sink();
    const t0 = now();
    await net.generate({ size, count }).done;
    while (sink.stats().frames < count) await new Promise((r) => setImmediate(r));
    const dt = since(t0);
    const s = await sink.stop();
    if (s.frames !== count || s.bytes !== count * size) throw new Error(`sink counted ${s.frames} frames`);
    return count / dt;
  } finally {
    await net.close();
  }
}

/** generate on A, forward A -> B, sink on B: every frame crosses both mock NICs. */
async function forwardRate(size: number, count: number): Promise<number> {
  const a = await openNet('mock:net');
  const b = await openNet('mock:net');
  try {
    const fwd = a.forward(b);
    const sink = b.sink();
    const t0 = now();
    await a.generate({ size, count }).done;
    while (sink.stats().frames < count) await new Promise((r) => setImmediate(r));
    const dt = since(t0);
    await fwd.stop();
    const s = await sink.stop();
    if (s.frames !== count) throw new Error(`sink counted ${s.frames} of ${count} frames`);
    return count / dt;
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
  await nativeRate(64, 10_000); // warm-up
  await rxRate(64, 2_000, true);
  for (let r = 0; r < opts.reps; r++)
    for (const size of sizes) {
      gc();
      const js = await rxRate(size, jsCount, true);
      if (js.stalled) stalls++;
      else samples.add(`js:${size}`, js.pps);
      gc();
      samples.add(`native:${size}`, await nativeRate(size, nativeCount));
      gc();
      samples.add(`forward:${size}`, await forwardRate(size, nativeCount));
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
        `±${fmt(samples.spread(`${key}:${size}`) / 2, 0)}%`,
      ]);
    }
  }
  return [
    {
      title: 'mock:net: JS send/receive vs native loops (issue 13, item 2)',
      headers: ['frame B', 'path', 'frames/s', 'Gbit/s', 'vs JS', 'noise'],
      rows,
      notes: [
        `median of ${opts.reps} interleaved rounds; JS ${fmtInt(jsCount)} frames, native ${fmtInt(nativeCount)} frames per run; a fresh device per run, queue size 256`,
        'frames/s counts frames received: from the first send to the last frame received (JS) or counted by the sink (native)',
        '"vs JS": the median of the per-round ratios to the JS path of the same round',
        `JS runs that stalled (watchdog, see the net bench) are left out: ${stalls}`,
      ],
    },
  ];
}
