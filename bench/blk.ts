// mock:blk benchmark: 4 KiB random reads and writes at a fixed queue depth, from Node (one Promise per
// request, and blk.batch() in rounds of `depth`) against the same device driven by a C++ loop.
import { openBlk, type BlkDevice, type BlkOp } from '../lib/index';
import { testingAddon } from '../test/helpers/testing-addon';
import { type BenchOptions, type Table, Samples, XorShift, fmt, fmtInt, gc, now, ratio, since } from './util';

const BLOCK = 4096;
const CAPACITY = 256 << 20;
const BLOCKS = CAPACITY / BLOCK;

/** Disk size for the "warm" C++ run: small enough that its first-touch page faults do not matter. */
const WARM_CAPACITY = 1 << 20;

type Mode = 'node' | 'batch' | 'node1M' | 'cxx' | 'cxxWarm';
const MODES: readonly Mode[] = ['node', 'batch', 'node1M', 'cxx', 'cxxWarm'];
const LABELS: Record<Mode, string> = {
  node: 'Node, promise per request',
  batch: 'Node, blk.batch() rounds',
  node1M: 'Node, promise per request, 1 MiB disk',
  cxx: 'C++ loop, 256 MiB fresh disk',
  cxxWarm: 'C++ loop, 1 MiB disk',
};

/** Keeps exactly `depth` requests in flight: each completion issues the next. Returns seconds. */
export function perRequest(
  blk: BlkDevice,
  bufs: Uint8Array[],
  depth: number,
  ops: number,
  write: boolean,
  rng: XorShift,
  blocks: number,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let issued = 0;
    let done = 0;
    const t0 = now();
    const issue = (slot: number): void => {
      issued++;
      const buf = bufs[slot] as Uint8Array;
      const off = rng.below(blocks) * BLOCK;
      (write ? blk.write(off, buf) : blk.read(off, buf)).then(() => {
        done++;
        if (issued < ops) issue(slot);
        else if (done === ops) resolve(since(t0));
      }, reject);
    };
    for (let s = 0; s < depth && issued < ops; s++) issue(s);
  });
}

/** Rounds of `depth` requests in `lanes` batches, one blk.batch() Promise per batch. Returns seconds. */
export async function batched(
  blk: BlkDevice,
  bufs: Uint8Array[],
  depth: number,
  ops: number,
  write: boolean,
  rng: XorShift,
  blocks = BLOCKS,
  lanes = 1,
): Promise<number> {
  // `lanes` loops each keep one batch of depth / lanes entries in flight: with 1 the queue empties
  // between batches, with 2 one batch is refilled while the other is still in the device.
  const per = depth / lanes;
  let done = 0;
  const lane = async (l: number): Promise<void> => {
    const round: BlkOp[] = bufs
      .slice(l * per, (l + 1) * per)
      .map((buffer) => ({ op: write ? 'write' : 'read', offset: 0, buffer }));
    while (done < ops) {
      done += per;
      for (const o of round) o.offset = rng.below(blocks) * BLOCK;
      await blk.batch(round);
    }
  };
  const t0 = now();
  await Promise.all(Array.from({ length: lanes }, (_, l) => lane(l)));
  return since(t0);
}

export async function benchBlk(opts: BenchOptions, depths: readonly number[] = [1, 32, 128]): Promise<Table[]> {
  const samples = new Samples();
  const maxDepth = Math.max(...depths);
  const open = async (capacity: number): Promise<{ blk: BlkDevice; bufs: Uint8Array[] }> => {
    const blk = await openBlk('mock:blk', { queueSize: 256, mock: { capacity } });
    const region = blk.allocBuffer(maxDepth * BLOCK);
    region.fill(0xa5);
    const bufs: Uint8Array[] = [];
    for (let i = 0; i < maxDepth; i++) bufs.push(region.subarray(i * BLOCK, (i + 1) * BLOCK));
    // The mock disk is fresh anonymous memory: every first touch of a page is a page fault (expensive
    // in a VM). Write it once end to end so the timed runs measure the driver, not the kernel.
    const chunk = blk.allocBuffer(Math.min(capacity, 1 << 20));
    for (let off = 0; off < capacity; off += chunk.length) await blk.write(off, chunk);
    return { blk, bufs };
  };
  const { blk, bufs } = await open(CAPACITY);
  const small = await open(WARM_CAPACITY);
  const rng = new XorShift(12345);
  // Ops per measurement: depth 1 pays one thread wake-up per request, so it gets fewer.
  const opsFor = (depth: number): number =>
    opts.quick ? (depth === 1 ? 2_000 : 8_000) : depth === 1 ? 10_000 : 40_000;

  const measure = async (mode: Mode, depth: number, write: boolean, ops: number): Promise<number> => {
    if (mode === 'cxx' || mode === 'cxxWarm') {
      // The 1 MiB run is fast: more ops, so its 256 first-touch faults stay small.
      const n = mode === 'cxx' ? ops : ops * 4;
      const r = testingAddon.benchMockBlk(depth, n, write, mode === 'cxx' ? CAPACITY : WARM_CAPACITY);
      return r.ops / (r.nanoseconds / 1e9);
    }
    const s =
      mode === 'node'
        ? await perRequest(blk, bufs, depth, ops, write, rng, BLOCKS)
        : mode === 'node1M'
          ? await perRequest(small.blk, small.bufs, depth, ops, write, rng, WARM_CAPACITY / BLOCK)
          : await batched(blk, bufs, depth, ops, write, rng);
    return ops / s;
  };

  try {
    // Warm-up (JIT).
    for (const mode of MODES) for (const write of [false, true]) await measure(mode, 32, write, 2_000);
    for (let r = 0; r < opts.reps; r++)
      for (const depth of depths)
        for (const write of [false, true])
          for (const mode of MODES) {
            gc();
            samples.add(`${mode}:${depth}:${write}`, await measure(mode, depth, write, opsFor(depth)));
          }
  } finally {
    await blk.close();
    await small.blk.close();
  }

  const rows: string[][] = [];
  const notes: string[] = [];
  for (const write of [false, true])
    for (const depth of depths) {
      const cxx = samples.median(`cxx:${depth}:${write}`);
      const warm = samples.median(`cxxWarm:${depth}:${write}`);
      for (const mode of MODES) {
        const iops = samples.median(`${mode}:${depth}:${write}`);
        rows.push([
          write ? 'randwrite' : 'randread',
          String(depth),
          LABELS[mode],
          fmtInt(iops),
          fmt((iops * BLOCK) / 1e6, 1),
          ratio(iops / cxx),
          ratio(iops / warm),
          `±${fmt(samples.spread(`${mode}:${depth}:${write}`) / 2, 0)}%`,
        ]);
      }
      if (depth === 32) {
        const v = (mode: Mode, ref: number): string => {
          const r = samples.median(`${mode}:32:${write}`) / ref;
          return `${r >= 0.5 ? 'MET' : 'NOT MET'} (${fmt(r, 2)})`;
        };
        notes.push(
          `${write ? 'randwrite' : 'randread'} depth 32, target Node >= 0.5 x C++ on the same disk — 256 MiB: per-request ${v('node', cxx)}, ` +
            `batch ${v('batch', cxx)}; 1 MiB: ${v('node1M', warm)}`,
        );
      }
    }
  notes.push(
    `median of ${opts.reps} interleaved runs; ${fmtInt(opsFor(32))} ops per run (${fmtInt(opsFor(1))} at depth 1); Node devices (256 MiB and 1 MiB) written once before timing (no first-touch page faults), queue 256, zero-copy allocBuffer buffers; MB/s = 10^6 B/s`,
    'benchMockBlk opens a fresh mock:blk per call and writes the whole disk once before its timed loop, as the Node runs do, so no row pays first-touch page faults; the 1 MiB rows show what a cache-resident disk is worth',
  );
  return [
    {
      title: 'mock:blk 4 KiB random I/O',
      headers: ['op', 'depth', 'driver', 'IOPS', 'MB/s', 'vs C++ 256M', 'vs C++ 1M', 'noise'],
      rows,
      notes,
    },
  ];
}
