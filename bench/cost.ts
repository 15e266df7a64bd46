// One short measurement of the per-request cost, as one JSON line, for comparing two builds run in
// turn (bench/ab.sh): IOPS, and the CPU time the JS thread spends per request (utime + stime of the
// main thread from /proc, so the device thread and other processes on the machine do not count).
// `node dist/bench/cost.js [ops] [pollMicros]`.
import fs from 'node:fs';
import { openBlk } from '../lib/index';
import { batched, perRequest } from './blk';
import { XorShift, gc } from './util';

const BLOCK = 4096;
const CAPACITY = 64 << 20;
const BLOCKS = CAPACITY / BLOCK;

/** CPU seconds of this process's main (JS) thread so far. */
function jsThreadCpu(): number {
  const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function main(): Promise<void> {
  const ops = Number(process.argv[2] ?? 200_000);
  const pollMicros = Number(process.argv[3] ?? 0);
  const blk = await openBlk('mock:blk', { queueSize: 256, pollMicros, mock: { capacity: CAPACITY } });
  const region = blk.allocBuffer(128 * BLOCK);
  const bufs = Array.from({ length: 128 }, (_, i) => region.subarray(i * BLOCK, (i + 1) * BLOCK));
  const chunk = blk.allocBuffer(1 << 20);
  for (let off = 0; off < CAPACITY; off += chunk.length) await blk.write(off, chunk);
  const rng = new XorShift(1);
  const out: Record<string, number> = {};
  const run = async (name: string, f: (n: number) => Promise<number>): Promise<void> => {
    await f(20_000); // warm-up (JIT)
    gc();
    const c0 = jsThreadCpu();
    const s = await f(ops);
    out[`${name}.kiops`] = Math.round(ops / s / 1000);
    out[`${name}.usPerReq`] = Math.round(((jsThreadCpu() - c0) / ops) * 1e7) / 10;
  };
  for (const op of ['read', 'write'] as const) {
    const write = op === 'write';
    await run(`${op}32`, (n) => perRequest(blk, bufs, 32, n, write, rng, BLOCKS));
    await run(`${op}128`, (n) => perRequest(blk, bufs, 128, n, write, rng, BLOCKS));
    await run(`batch${op}32`, (n) => batched(blk, bufs, 32, n, write, rng, BLOCKS));
  }
  await blk.close();
  console.log(JSON.stringify(out));
}

void main();
