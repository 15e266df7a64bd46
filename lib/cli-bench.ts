// `bench DEVICE`: a small fio for virtio-blk devices. `depth` requests are kept in flight (one
// promise each, one DMA buffer each) for `runtime` seconds; the summary has IOPS, bandwidth and
// completion-latency percentiles.
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { openBlk, type BlkDevice } from './blk';
import {
  type Command,
  type CommandContext,
  UsageError,
  humanBytes,
  parseInteger,
  parseSeconds,
  parseSize,
  table,
  toJson,
} from './cli-common';

/** Access patterns, as fio names them. */
export const BENCH_PATTERNS = ['read', 'write', 'randread', 'randwrite'] as const;
export type BenchPattern = (typeof BENCH_PATTERNS)[number];

export interface BenchOptions {
  device: string;
  rw: BenchPattern;
  /** Bytes per request. */
  bs: number;
  /** Requests in flight. */
  depth: number;
  /** Seconds to run. */
  runtime: number;
  /** Request queues used. */
  queues: number;
  /** Bytes of the device the requests fall in (from offset 0); default all of it. */
  size?: number;
}

export interface BenchResult {
  device: string;
  rw: BenchPattern;
  bs: number;
  depth: number;
  queues: number;
  /** Bytes of the device the requests fell in. */
  span: number;
  /** Seconds it ran (the runtime, or less when interrupted). */
  seconds: number;
  ios: number;
  bytes: number;
  iops: number;
  /** Bytes per second. */
  bandwidth: number;
  /** Completion latency in microseconds (percentiles to within about 3%). */
  latencyUs: { min: number; mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

/** Where the live progress line goes: a terminal only (`isTTY`). */
export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

/** mock:blk's disk for a bench: sparse, so only what the writes touch costs memory. */
const MOCK_CAPACITY = 256 * 2 ** 20;
/** DMA memory a bench may pin (depth x bs). */
const MAX_PINNED = 1 << 30;

/**
 * Latencies in nanoseconds, log-linear: exact below 32, then 16 buckets per power of two (a bucket
 * is at most 1/16 of its value wide; its midpoint is within 1/32 of any value in it).
 */
class LatencyHistogram {
  private readonly counts = new Float64Array(32 + 16 * 48);
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  add(ns: number): void {
    const v = Math.max(0, Math.round(ns));
    let index = v;
    if (v >= 32) {
      const e = Math.floor(Math.log2(v));
      index = 32 + (e - 5) * 16 + (Math.floor(v / 2 ** (e - 4)) - 16);
    }
    this.counts[Math.min(index, this.counts.length - 1)]++;
    this.count++;
    this.sum += v;
    this.min = Math.min(this.min, v);
    this.max = Math.max(this.max, v);
  }

  /** The value below which a fraction `p` of the samples fall (a bucket midpoint, within min and max). */
  percentile(p: number): number {
    const target = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen < target) continue;
      if (i < 32) return i;
      const e = 5 + Math.floor((i - 32) / 16);
      const width = 2 ** (e - 4);
      const mid = (16 + ((i - 32) % 16)) * width + width / 2;
      return Math.min(this.max, Math.max(this.min, mid));
    }
    return this.max;
  }
}

const us = (ns: number): number => Math.round(ns / 10) / 100;

/** Runs the benchmark; `progress` gets a line a second when it is a terminal. */
export async function runBench(opts: BenchOptions, progress?: ProgressStream): Promise<BenchResult> {
  const mock = opts.device === 'mock:blk';
  const blk = await openBlk(
    opts.device,
    mock
      ? { numQueues: opts.queues, mock: { capacity: opts.size ?? MOCK_CAPACITY, numQueues: opts.queues } }
      : { numQueues: opts.queues },
  );
  try {
    return await measure(blk, opts, progress?.isTTY ? progress : undefined);
  } finally {
    await blk.close();
  }
}

async function measure(blk: BlkDevice, opts: BenchOptions, progress: ProgressStream | undefined): Promise<BenchResult> {
  const { rw, bs, depth } = opts;
  if (bs % blk.blockSize !== 0)
    throw new UsageError(`--bs ${bs} is not a multiple of the device's block size (${blk.blockSize})`, 'bench');
  const span = Math.min(opts.size ?? blk.capacity, blk.capacity);
  const blocks = Math.floor(span / bs);
  if (blocks < 1) throw new UsageError(`--bs ${bs} is larger than the ${span} bytes to work in`, 'bench');
  if (rw.endsWith('write') && blk.readOnly) throw new UsageError(`${opts.device} is read-only: --rw ${rw}`, 'bench');
  const isWrite = rw === 'write' || rw === 'randwrite';
  const random = rw.startsWith('rand');
  const buffers = Array.from({ length: depth }, () => {
    const b = blk.allocBuffer(bs);
    if (isWrite) randomFillSync(b);
    return b;
  });

  const hist = new LatencyHistogram();
  const start = performance.now();
  let deadline = start + opts.runtime * 1000;
  let nextBlock = 0;
  let failure: unknown;
  const stop = (): void => {
    deadline = 0;
  };
  process.once('SIGINT', stop);

  let lastIos = 0;
  let lastAt = start;
  const ticker = progress
    ? setInterval(() => {
        const now = performance.now();
        const rate = ((hist.count - lastIos) * 1000) / (now - lastAt);
        [lastIos, lastAt] = [hist.count, now];
        progress.write(
          `\r\x1b[K${rw} ${((now - start) / 1000).toFixed(0)}/${opts.runtime} s: ` +
            `${Math.round(rate)} IOPS, ${humanBytes(rate * bs)}/s`,
        );
      }, 1000)
    : undefined;

  const worker = async (buffer: Uint8Array): Promise<void> => {
    while (performance.now() < deadline && failure === undefined) {
      const block = random ? Math.floor(Math.random() * blocks) : nextBlock++ % blocks;
      const t0 = performance.now();
      try {
        await (isWrite ? blk.write(block * bs, buffer) : blk.read(block * bs, buffer));
      } catch (err) {
        failure ??= err;
        return;
      }
      hist.add((performance.now() - t0) * 1e6);
    }
  };
  try {
    await Promise.all(buffers.map(worker));
  } finally {
    process.removeListener('SIGINT', stop);
    if (ticker) clearInterval(ticker);
    progress?.write('\r\x1b[K');
  }
  if (failure !== undefined) throw failure;

  const seconds = (performance.now() - start) / 1000;
  const bytes = hist.count * bs;
  return {
    device: opts.device,
    rw,
    bs,
    depth,
    queues: blk.numQueues,
    span: blocks * bs,
    seconds: Math.round(seconds * 1000) / 1000,
    ios: hist.count,
    bytes,
    iops: Math.round(hist.count / seconds),
    bandwidth: Math.round(bytes / seconds),
    latencyUs: {
      min: us(hist.count ? hist.min : 0),
      mean: us(hist.count ? hist.sum / hist.count : 0),
      p50: us(hist.percentile(0.5)),
      p90: us(hist.percentile(0.9)),
      p99: us(hist.percentile(0.99)),
      p999: us(hist.percentile(0.999)),
      max: us(hist.max),
    },
  };
}

/** The summary: what ran and what it did, then the latencies. */
export function benchTable(r: BenchResult): string {
  const l = r.latencyUs;
  return [
    table(
      ['DEVICE', 'RW', 'BS', 'DEPTH', 'QUEUES', 'SECONDS', 'IOS', 'IOPS', 'MIB/S'],
      [
        [
          r.device,
          r.rw,
          String(r.bs),
          String(r.depth),
          String(r.queues),
          r.seconds.toFixed(2),
          String(r.ios),
          String(r.iops),
          (r.bandwidth / 2 ** 20).toFixed(1),
        ],
      ],
    ),
    '',
    table(
      ['LATENCY', 'MIN', 'AVG', 'P50', 'P90', 'P99', 'P99.9', 'MAX'],
      [['usec', ...[l.min, l.mean, l.p50, l.p90, l.p99, l.p999, l.max].map((v) => v.toFixed(1))]],
    ),
  ].join('\n');
}

function benchOptions({ positionals, values }: CommandContext): BenchOptions {
  const rw = (values.rw as string | undefined) ?? 'randread';
  if (!(BENCH_PATTERNS as readonly string[]).includes(rw))
    throw new UsageError(`--rw must be one of ${BENCH_PATTERNS.join(', ')}, got '${rw}'`, 'bench');
  const device = positionals[0];
  const bs = parseSize((values.bs as string | undefined) ?? '4k', '--bs', 'bench');
  if (bs % 512 !== 0 || bs > 64 * 2 ** 20)
    throw new UsageError(`--bs must be a multiple of 512 up to 64 MiB, got ${bs}`, 'bench');
  const depth = parseInteger((values.depth as string | undefined) ?? '32', '--depth', 'bench', 1, 4096);
  if (depth * bs > MAX_PINNED)
    throw new UsageError(`--depth x --bs pins ${humanBytes(depth * bs)} of DMA memory; at most 1 GiB`, 'bench');
  const opts: BenchOptions = {
    device,
    rw: rw as BenchPattern,
    bs,
    depth,
    runtime: parseSeconds((values.runtime as string | undefined) ?? '10', '--runtime', 'bench'),
    queues: parseInteger((values.queues as string | undefined) ?? '1', '--queues', 'bench', 1, 64),
  };
  if (typeof values.size === 'string') opts.size = parseSize(values.size, '--size', 'bench');
  if (opts.rw.endsWith('write') && !device.startsWith('mock:') && values.force !== true)
    throw new UsageError(
      `--rw ${opts.rw} overwrites the data on ${device}: add --force if that is what you want`,
      'bench',
    );
  return opts;
}

/** `bench`. */
export const benchCommand: Command = {
  name: 'bench',
  synopsis: [
    'bench DEVICE [--rw read|write|randread|randwrite] [--bs SIZE] [--depth N] [--runtime SECONDS]',
    '      [--queues N] [--size SIZE] [--force] [--json]',
  ],
  summary: 'measure a block device: IOPS, bandwidth, latency percentiles (like fio)',
  details: [
    'DEVICE: mock:blk, /dev/vhost-vdpa-N or vfio:ADDRESS (a virtio-blk device). Keeps --depth',
    'requests in flight for --runtime seconds, each with its own DMA buffer (zero-copy), and prints',
    'a summary; on a terminal, a progress line on stderr every second. Ctrl-C stops early and',
    'still prints the summary. Write patterns need --force except on mock devices.',
  ],
  options: {
    rw: { type: 'string', arg: 'PATTERN', help: 'read, write, randread or randwrite (default randread)' },
    bs: { type: 'string', arg: 'SIZE', help: 'bytes per request: 4096, 4k, 1M (default 4k)' },
    depth: { type: 'string', arg: 'N', help: 'requests in flight (default 32)' },
    runtime: { type: 'string', arg: 'SECONDS', help: 'how long: 10, 0.5, 500ms, 2m (default 10)' },
    queues: { type: 'string', arg: 'N', help: 'request queues to spread them over (default 1)' },
    size: { type: 'string', arg: 'SIZE', help: 'bytes of the device to use, from offset 0 (default all)' },
    force: { type: 'boolean', help: 'allow write patterns on a real device (its data is overwritten)' },
  },
  positionals: { min: 1, max: 1 },
  run: async (ctx) => {
    const result = await runBench(benchOptions(ctx), process.stderr);
    ctx.out(ctx.json ? toJson(result) : benchTable(result));
  },
};
