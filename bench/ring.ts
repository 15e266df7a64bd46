// Ring benchmark: submit + complete of small requests (1 segment, 64 bytes, device-writable) through
//   a) the C++ loop with no N-API (RingLoopback.runNative),
//   b) the N-API batch path (one roundTrip() per batch, completions walked in JS),
//   c) the same, but one Promise per request (what a convenient promise API costs),
//   d) a split ring written in plain TypeScript (bench/ts-split-ring.ts), driver and device side.
import { type RingLoopback, testingAddon } from '../test/helpers/testing-addon';
import { TsSplitRing } from './ts-split-ring';
import { type BenchOptions, type Table, Samples, fmt, gc, now, ratio, since } from './util';

const RING_SIZE = 256;
const REQ_BYTES = 64;
const WORDS = 6; // [token, segments=1, region=1, offset, length, flags=writable]

type Variant = 'a' | 'b' | 'c' | 'd';
const LABELS: Record<Variant, string> = {
  a: 'a) C++ loop, no N-API',
  b: 'b) N-API roundTrip per batch',
  c: 'c) Promise per request',
  d: 'd) TypeScript split ring',
};

function newLoop(): RingLoopback {
  return new testingAddon.RingLoopback(RING_SIZE, true, 0, 1 << 20);
}

/** a) Returns seconds for `iterations` batches. */
function runA(loop: RingLoopback, batch: number, iterations: number): number {
  return loop.runNative(iterations, batch) / 1e9;
}

function fill(words: Uint32Array, batch: number): void {
  for (let i = 0; i < batch; i++) {
    const w = i * WORDS;
    words[w] = i;
    words[w + 1] = 1;
    words[w + 2] = 1;
    words[w + 3] = (i * REQ_BYTES) & 4095;
    words[w + 4] = REQ_BYTES;
    words[w + 5] = 1;
  }
}

let sink = 0;

/** b) One roundTrip() per batch, JS fills the batch and walks the completions. */
function runB(loop: RingLoopback, batch: number, iterations: number): number {
  const words = new Uint32Array(batch * WORDS);
  const comp = loop.completions;
  let sum = 0;
  const t0 = now();
  for (let it = 0; it < iterations; it++) {
    fill(words, batch);
    const n = loop.roundTrip(words, batch);
    if (n !== batch) throw new Error(`roundTrip completed ${n} of ${batch}`);
    for (let j = 0; j < n; j++) sum += (comp[2 * j] as number) + (comp[2 * j + 1] as number);
  }
  const s = since(t0);
  sink += sum;
  return s;
}

/** c) Like b, but every request has its own Promise, resolved from the completion walk. */
async function runC(loop: RingLoopback, batch: number, iterations: number): Promise<number> {
  const words = new Uint32Array(batch * WORDS);
  const comp = loop.completions;
  const resolvers: ((token: number) => void)[] = new Array<(token: number) => void>(batch);
  const promises: Promise<number>[] = new Array<Promise<number>>(batch);
  let sum = 0;
  const t0 = now();
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < batch; i++) promises[i] = new Promise<number>((resolve) => (resolvers[i] = resolve));
    fill(words, batch);
    const n = loop.roundTrip(words, batch);
    if (n !== batch) throw new Error(`roundTrip completed ${n} of ${batch}`);
    for (let j = 0; j < n; j++) (resolvers[comp[2 * j] as number] as (token: number) => void)(comp[2 * j] as number);
    const tokens = await Promise.all(promises);
    for (let j = 0; j < tokens.length; j++) sum += tokens[j] as number;
  }
  const s = since(t0);
  sink += sum;
  return s;
}

/** d) The same requests through a split ring in plain TypeScript. */
function runD(ring: TsSplitRing, comp: Uint32Array, batch: number, iterations: number): number {
  let sum = 0;
  const t0 = now();
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < batch; i++)
      if (!ring.add(i, (i * REQ_BYTES) & 4095, REQ_BYTES, true)) throw new Error('TS ring full');
    ring.publish();
    while (ring.devicePop()) ring.devicePush(ring.popHead, ring.popWritable);
    ring.devicePublish();
    let got = 0;
    while (got < batch) {
      const n = ring.drain(comp);
      if (n === 0) throw new Error(`TS ring: ${ring.brokenReason ?? 'completions missing'}`);
      for (let j = 0; j < n; j++) sum += (comp[2 * j] as number) + (comp[2 * j + 1] as number);
      got += n;
    }
  }
  const s = since(t0);
  sink += sum;
  return s;
}

export async function benchRing(opts: BenchOptions, batches: readonly number[] = [32, 256]): Promise<Table[]> {
  const samples = new Samples();
  // Requests per measurement; the Promise path is ~10x slower, so it gets fewer.
  const reqs = opts.quick ? 200_000 : 1_000_000;
  const reqsC = opts.quick ? 50_000 : 200_000;
  const loops: Record<'a' | 'b' | 'c', RingLoopback> = { a: newLoop(), b: newLoop(), c: newLoop() };
  const ring = new TsSplitRing(RING_SIZE, 1 << 20);
  const comp = new Uint32Array(2 * RING_SIZE);

  const measure = async (v: Variant, batch: number, total: number): Promise<number> => {
    const iterations = Math.max(1, Math.round(total / batch));
    let s: number;
    if (v === 'a') s = runA(loops.a, batch, iterations);
    else if (v === 'b') s = runB(loops.b, batch, iterations);
    else if (v === 'c') s = await runC(loops.c, batch, iterations);
    else s = runD(ring, comp, batch, iterations);
    return (iterations * batch) / s / 1e6; // Mreq/s
  };

  // Warm-up: let V8 optimise every path before anything is timed.
  for (const batch of batches)
    for (const v of ['a', 'b', 'c', 'd'] as const) await measure(v, batch, v === 'c' ? reqsC / 4 : reqs / 4);

  for (let r = 0; r < opts.reps; r++) {
    for (const batch of batches) {
      for (const v of ['a', 'b', 'c', 'd'] as const) {
        gc();
        samples.add(`${v}:${batch}`, await measure(v, batch, v === 'c' ? reqsC : reqs));
      }
    }
  }
  if (sink === -1) console.log(sink); // keep the sums observable

  const rows: string[][] = [];
  const notes: string[] = [];
  for (const batch of batches) {
    const a = samples.median(`a:${batch}`);
    for (const v of ['a', 'b', 'c', 'd'] as const) {
      const m = samples.median(`${v}:${batch}`);
      rows.push([
        String(batch),
        LABELS[v],
        fmt(m, 2),
        fmt(1e3 / m, 1),
        v === 'a' ? '1.00x' : ratio(m / a),
        `±${fmt(samples.spread(`${v}:${batch}`) / 2, 0)}%`,
      ]);
    }
    const b = samples.median(`b:${batch}`) / a;
    notes.push(`batch ${batch}: target b >= 0.5 x a: ${b >= 0.5 ? 'MET' : 'NOT MET'} (b/a = ${fmt(b, 2)})`);
  }
  notes.push(
    `median of ${opts.reps} interleaved runs; ring size ${RING_SIZE}, event idx on, 1 x ${REQ_BYTES} B device-writable segment per request; ± = half the max-min spread`,
  );
  return [
    {
      title: 'Ring: submit + complete, small requests',
      headers: ['batch', 'path', 'Mreq/s', 'ns/req', 'vs a', 'noise'],
      rows,
      notes,
    },
  ];
}
