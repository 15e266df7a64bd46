// 4 KiB random I/O through the library on a real virtio-blk device (vhost-vdpa), for the VM benchmark
// (scripts/vm/bench-guest.sh runs it side by side with fio on the kernel's virtio-blk driver).
//
//   node dist/bench/vm-blk.js <device> <seconds> <depth> <read|write>
//
// Keeps exactly `depth` requests in flight (each completion issues the next one, one Promise per
// request) on zero-copy allocBuffer() buffers, at random 4 KiB-aligned offsets over the whole device.
// A warm-up (VDPA_BENCH_WARMUP seconds, default 1) runs first and is not counted. VDPA_BENCH_POLL_MICROS
// (default 0) is BlkOptions.pollMicros: the used ring is polled that long after each wake-up. Prints one
// JSON line:
// {"iops":..,"mbps":..,"depth":..,"rw":"randread"|"randwrite","ops":..,"seconds":..,"pollMicros":..,"device":..}
// (mbps = 10^6 bytes per second).
import { openBlk } from '../lib/index';

const BLOCK = 4096;

function usage(msg: string): never {
  process.stderr.write(`vm-blk: ${msg}\nusage: node dist/bench/vm-blk.js <device> <seconds> <depth> <read|write>\n`);
  process.exit(2);
}

/** 32-bit xorshift: cheap and deterministic, good enough to spread offsets. */
class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  }
  /** Uniform-ish integer in [0, n), n <= 2^32. */
  below(n: number): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return Math.floor((this.x / 0x100000000) * n);
  }
}

async function main(): Promise<void> {
  const [device, secArg, depthArg, rwArg] = process.argv.slice(2);
  if (!device || !secArg || !depthArg || !rwArg) usage('missing arguments');
  const seconds = Number(secArg);
  const depth = Number(depthArg);
  if (!(seconds > 0)) usage(`bad seconds ${secArg}`);
  if (!Number.isInteger(depth) || depth < 1 || depth > 1024) usage(`bad depth ${depthArg}`);
  if (rwArg !== 'read' && rwArg !== 'write') usage(`bad mode ${rwArg} (read or write)`);
  const write = rwArg === 'write';
  const warmup = Number(process.env.VDPA_BENCH_WARMUP ?? 1);
  const pollMicros = Number(process.env.VDPA_BENCH_POLL_MICROS ?? 0);
  if (!Number.isInteger(pollMicros) || pollMicros < 0) usage(`bad VDPA_BENCH_POLL_MICROS ${pollMicros}`);

  // Queue size: the smallest power of two >= depth, at least 256 (the device's default maximum).
  let queueSize = 256;
  while (queueSize < depth) queueSize *= 2;
  const blk = await openBlk(device, { queueSize, pollMicros });
  try {
    const blocks = Math.floor(blk.capacity / BLOCK);
    if (blocks < depth) throw new Error(`device too small: ${blk.capacity} bytes`);
    const region = blk.allocBuffer(depth * BLOCK);
    for (let i = 0; i < region.length; i++) region[i] = (i * 31 + 7) & 0xff;
    const bufs: Uint8Array[] = [];
    for (let i = 0; i < depth; i++) bufs.push(region.subarray(i * BLOCK, (i + 1) * BLOCK));
    const rng = new Rng(process.pid);

    const result = await new Promise<{ ops: number; seconds: number }>((resolve, reject) => {
      const tStart = process.hrtime.bigint();
      const warmEnd = tStart + BigInt(Math.round(warmup * 1e9));
      const span = BigInt(Math.round(seconds * 1e9));
      let t0 = -1n; // start of the timed window (first completion after the warm-up)
      let tEnd = -1n;
      let done = 0;
      let done0 = 0;
      let inFlight = 0;
      let stopping = false;
      let failed = false;
      let out: { ops: number; seconds: number } | undefined;
      const issue = (slot: number): void => {
        inFlight++;
        const off = rng.below(blocks) * BLOCK;
        const buf = bufs[slot] as Uint8Array;
        (write ? blk.write(off, buf) : blk.read(off, buf)).then(
          () => {
            inFlight--;
            done++;
            if (!stopping) {
              const t = process.hrtime.bigint();
              if (t0 < 0n) {
                if (t >= warmEnd) {
                  t0 = t;
                  done0 = done;
                  tEnd = t + span;
                }
              } else if (t >= tEnd) {
                stopping = true;
                out = { ops: done - done0, seconds: Number(t - t0) / 1e9 };
              }
            }
            if (!stopping) issue(slot);
            else if (inFlight === 0 && out) resolve(out);
          },
          (err: unknown) => {
            inFlight--;
            if (!failed) {
              failed = true;
              stopping = true;
              reject(err as Error);
            }
          },
        );
      };
      for (let s = 0; s < depth; s++) issue(s);
    });

    const iops = result.ops / result.seconds;
    process.stdout.write(
      JSON.stringify({
        iops: Math.round(iops),
        mbps: Math.round(((iops * BLOCK) / 1e6) * 100) / 100,
        depth,
        rw: write ? 'randwrite' : 'randread',
        ops: result.ops,
        seconds: Math.round(result.seconds * 1000) / 1000,
        pollMicros,
        device,
      }) + '\n',
    );
  } finally {
    await blk.close();
  }
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string };
  process.stderr.write(`vm-blk: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
