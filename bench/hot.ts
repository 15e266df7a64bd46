// Issue 13's figures in one short run: mock:blk 4 KiB random I/O from Node (a Promise per request at
// depth 32 and 128, blk.batch() at 32: one batch of 32 at a time, or two of 16 kept in flight) against
// the C++ loop on the same kind of device, and the user's loop (32 async workers awaiting blk.read)
// against the same loop over fs.promises on tmpfs. Ratios are medians of per-round ratios (each round
// runs every key once, in turn), so load that drifts during the run moves both sides alike.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openBlk } from '../lib/index';
import { testingAddon } from '../test/helpers/testing-addon';
import { batched, perRequest } from './blk';
import { type BenchOptions, type Table, Samples, XorShift, fmt, fmtInt, gc, now, since } from './util';

const BLOCK = 4096;
const CAPACITY = 256 << 20;
const BLOCKS = CAPACITY / BLOCK;
/** The user's loop of issue 13: 32 workers, a 64 MiB device (and a 64 MiB tmpfs file). */
const USER_WORKERS = 32;
const USER_CAPACITY = 64 << 20;
const TMPFS = '/dev/shm';
/** BlkOptions.pollMicros of the polling rows. */
const POLL_MICROS = 100;

/** 32 async workers, each awaiting `read(offset, its 4 KiB buffer)` until `ops` reads are done. */
async function userLoop(
  read: (offset: number, buf: Uint8Array) => Promise<unknown>,
  bufs: Uint8Array[],
  blocks: number,
  ops: number,
): Promise<number> {
  const rng = new XorShift(777);
  let issued = 0;
  const t0 = now();
  await Promise.all(
    bufs.map(async (buf) => {
      while (issued < ops) {
        issued++;
        await read(rng.below(blocks) * BLOCK, buf);
      }
    }),
  );
  return ops / since(t0);
}

type Key =
  | 'node:read:32'
  | 'cxx:read:32'
  | 'batch:read:32'
  | 'pipe:read:32'
  | 'node:write:32'
  | 'cxx:write:32'
  | 'batch:write:32'
  | 'pipe:write:32'
  | 'node:read:128'
  | 'cxx:read:128'
  | 'node:write:128'
  | 'cxx:write:128'
  | 'poll:read:32'
  | 'poll:write:32'
  | 'user:blk'
  | 'user:fs';

export async function benchHot(opts: BenchOptions): Promise<Table[]> {
  const samples = new Samples();
  const ops = opts.quick ? 10_000 : 100_000;
  const userOps = opts.quick ? 10_000 : 60_000;
  const blk = await openBlk('mock:blk', { queueSize: 256, mock: { capacity: CAPACITY } });
  const polled = await openBlk('mock:blk', { queueSize: 256, pollMicros: POLL_MICROS, mock: { capacity: CAPACITY } });
  const user = await openBlk('mock:blk', { queueSize: 256, mock: { capacity: USER_CAPACITY } });
  const dir = fs.mkdtempSync(path.join(fs.existsSync(TMPFS) ? TMPFS : os.tmpdir(), 'vdpa-bench-'));
  const file = path.join(dir, 'disk');
  const fh = await fs.promises.open(file, 'w+');
  try {
    const region = blk.allocBuffer(128 * BLOCK);
    region.fill(0xa5);
    const bufs = Array.from({ length: 128 }, (_, i) => region.subarray(i * BLOCK, (i + 1) * BLOCK));
    // Every block written once before timing: no first-touch page faults in the timed runs.
    const chunk = blk.allocBuffer(1 << 20);
    for (let off = 0; off < CAPACITY; off += chunk.length) await blk.write(off, chunk);
    for (let off = 0; off < CAPACITY; off += chunk.length) await polled.write(off, chunk.subarray(0));
    const pollRegion = polled.allocBuffer(32 * BLOCK);
    const pollBufs = Array.from({ length: 32 }, (_, i) => pollRegion.subarray(i * BLOCK, (i + 1) * BLOCK));
    for (let off = 0; off < USER_CAPACITY; off += chunk.length) await user.write(off, chunk.subarray(0));
    const userRegion = user.allocBuffer(USER_WORKERS * BLOCK);
    const userBufs = Array.from({ length: USER_WORKERS }, (_, i) => userRegion.subarray(i * BLOCK, (i + 1) * BLOCK));
    const fill = Buffer.alloc(1 << 20, 0x5a);
    for (let off = 0; off < USER_CAPACITY; off += fill.length) await fh.write(fill, 0, fill.length, off);
    const fsBufs = Array.from({ length: USER_WORKERS }, () => Buffer.alloc(BLOCK));
    const rng = new XorShift(12345);

    const measure = async (key: Key, n: number): Promise<number> => {
      const [what, op, d] = key.split(':') as [string, string, string];
      const depth = Number(d);
      const write = op === 'write';
      if (what === 'cxx') {
        const r = testingAddon.benchMockBlk(depth, n, write, CAPACITY);
        return r.ops / (r.nanoseconds / 1e9);
      }
      if (what === 'node') return n / (await perRequest(blk, bufs, depth, n, write, rng, BLOCKS));
      if (what === 'poll') return n / (await perRequest(polled, pollBufs, depth, n, write, rng, BLOCKS));
      if (what === 'batch') return n / (await batched(blk, bufs, depth, n, write, rng));
      if (what === 'pipe') return n / (await batched(blk, bufs, depth, n, write, rng, BLOCKS, 2));
      if (op === 'blk') return userLoop((off, b) => user.read(off, b), userBufs, USER_CAPACITY / BLOCK, n);
      return userLoop((off, b) => fh.read(b, 0, BLOCK, off), fsBufs, USER_CAPACITY / BLOCK, n);
    };
    const keys: Key[] = [
      'node:read:32',
      'cxx:read:32',
      'batch:read:32',
      'pipe:read:32',
      'node:write:32',
      'cxx:write:32',
      'batch:write:32',
      'pipe:write:32',
      'node:read:128',
      'cxx:read:128',
      'node:write:128',
      'cxx:write:128',
      'poll:read:32',
      'poll:write:32',
      'user:blk',
      'user:fs',
    ];
    for (const k of keys) await measure(k, 5_000); // warm-up (JIT)
    for (let r = 0; r < opts.reps; r++)
      for (const k of keys) {
        gc();
        samples.add(k, await measure(k, k.startsWith('user') ? userOps : ops));
      }
  } finally {
    await fh.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await blk.close();
    await polled.close();
    await user.close();
  }

  const m = (k: Key): number => samples.median(k);
  const noise = (k: Key): string => `±${fmt(samples.spread(k) / 2, 0)}%`;
  const ratio = (a: Key, b: Key): number => samples.pairedRatio(a, b);
  const verdict = (x: number, target: number): string => `${fmt(x, 2)}x ${x >= target ? 'MET' : 'NOT MET'}`;
  const rows: string[][] = [];
  for (const op of ['read', 'write'] as const) {
    const cxx32: Key = `cxx:${op}:32`;
    rows.push([
      `rand${op}`,
      fmtInt(m(`node:${op}:32`)),
      fmtInt(m(`batch:${op}:32`)),
      fmtInt(m(`pipe:${op}:32`)),
      fmtInt(m(cxx32)),
      fmtInt(m(`node:${op}:128`)),
      fmtInt(m(`cxx:${op}:128`)),
      `${fmtInt(m(`poll:${op}:32`))} (${fmt(ratio(`poll:${op}:32`, `node:${op}:32`), 2)}x)`,
      verdict(ratio(`node:${op}:32`, cxx32), 0.8),
      `${fmt(ratio(`batch:${op}:32`, cxx32), 2)}x / ${verdict(ratio(`pipe:${op}:32`, cxx32), 0.9)}`,
      verdict(ratio(`node:${op}:128`, `node:${op}:32`), 1.3),
      `${noise(`node:${op}:32`)} ${noise(cxx32)}`,
    ]);
  }
  const userRatio = ratio('user:blk', 'user:fs');
  return [
    {
      title: 'issue 13: mock:blk 4 KiB random, 256 MiB disk (IOPS)',
      headers: [
        'op',
        'promise d32',
        'batch 1x32',
        'batch 2x16',
        'C++ d32',
        'promise d128',
        'C++ d128',
        `promise d32, poll ${POLL_MICROS} us (vs promise)`,
        'promise/C++ d32 (>=0.8)',
        'batch 1x32 / 2x16 vs C++ d32 (>=0.9)',
        'd128/d32 (>=1.3)',
        'noise node, C++',
      ],
      rows,
      notes: [
        `median of ${opts.reps} interleaved runs of ${fmtInt(ops)} requests; ratios are medians of the per-round ratios; queue 256, zero-copy allocBuffer buffers, the disk written once before timing; the C++ loop (benchMockBlk) opens its own mock:blk of the same size`,
        'batch 1x32: one blk.batch() of 32 at a time (the queue empties between batches); 2x16: two batches of 16 kept in flight, each refilled as it completes (32 in flight at most, like the C++ loop)',
      ],
    },
    {
      title: "issue 13: the user's loop, 32 async workers awaiting 4 KiB reads at random offsets",
      headers: ['reader', 'IOPS', 'vs fs.promises', 'noise'],
      rows: [
        ['blk.read, mock:blk 64 MiB, allocBuffer', fmtInt(m('user:blk')), `${fmt(userRatio, 2)}x`, noise('user:blk')],
        [`FileHandle.read, 64 MiB file on tmpfs (${TMPFS})`, fmtInt(m('user:fs')), '1.00x', noise('user:fs')],
      ],
      notes: [
        `median of ${opts.reps} interleaved runs of ${fmtInt(userOps)} reads; target >= 5x (aim 10x): ${userRatio >= 5 ? 'MET' : 'NOT MET'} (${fmt(userRatio, 2)}x)`,
      ],
    },
  ];
}
