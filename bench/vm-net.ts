// Packets per second between two real virtio-net NICs wired together (QEMU hub), for the VM benchmark
// (scripts/vm/bench-vfio-guest.sh runs it on two virtio-net-pci functions bound to vfio-pci).
//
//   node dist/bench/vm-net.js <deviceA> <deviceB> <seconds> [sizes, default 64,1500]
//
// For every frame size and both directions (A->B, then B->A): the sender sends as fast as it can with
// sendBatch(), in batches of queueSize/2 with at most two batches (= queueSize frames) in flight, while
// the receiver reads with receive() on the other NIC. A warm-up (VDPA_BENCH_WARMUP seconds, default 1)
// runs first and is not counted. After the timed window the sender stops and the receiver drains until
// nothing arrives for VDPA_BENCH_DRAIN_MS (default 300 ms).
//
// Frames (sizes are whole Ethernet frames without FCS, 14-byte header included): dst = receiver's MAC,
// src = sender's MAC, ethertype 0x88b5, then u32 BE sequence number, u16 BE run id, then a fixed
// pattern. Every frame's length, header and run id are checked, duplicates and sequence order counted
// (outOfOrder = frames with a lower sequence number than the one before: QEMU's net queue can reorder
// when the receiver runs out of buffers); one in SAMPLE_EVERY (and the first) is compared byte-exact.
//
// Prints one JSON line per size/direction:
// {"size":64,"dir":"A->B","from":..,"to":..,"seconds":..,"sent":..,"received":..,"lost":..,"txPps":..,
//  "rxPps":..,"rxMbps":..,"verified":..,"bad":..,"outOfOrder":..,"duplicates":..,"foreign":..,"dropped":..}
// txPps = frames the device took / window; rxPps = frames received / (first send .. last frame in);
// lost = sent - received (frames the wire or the receiving NIC dropped, plus the library's backlog
// drops, which `dropped` counts on its own). Exit 1 if a frame was corrupt or duplicated, or none arrived.
import { openNet, type NetDevice } from '../lib/index';

const ETH_HEADER = 14;
const ETHERTYPE = 0x88b5;
const SAMPLE_EVERY = 256;

function usage(msg: string): never {
  process.stderr.write(
    `vm-net: ${msg}\nusage: node dist/bench/vm-net.js <deviceA> <deviceB> <seconds> [sizes, default 64,1500]\n`,
  );
  process.exit(2);
}

const hex = (m: Uint8Array): string => Array.from(m, (b) => b.toString(16).padStart(2, '0')).join(':');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nowNs = (): bigint => process.hrtime.bigint();

/** The frame `seq` of run `runId`: header, seq, run id, pattern. */
function fillFrame(f: Uint8Array, dst: Uint8Array, src: Uint8Array, seq: number, runId: number): void {
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = ETHERTYPE >> 8;
  f[13] = ETHERTYPE & 0xff;
  stamp(f, seq, runId);
  for (let i = 20; i < f.length; i++) f[i] = (i * 31 + 7 + runId) & 0xff;
}

function stamp(f: Uint8Array, seq: number, runId: number): void {
  f[14] = seq >>> 24;
  f[15] = (seq >>> 16) & 0xff;
  f[16] = (seq >>> 8) & 0xff;
  f[17] = seq & 0xff;
  f[18] = runId >> 8;
  f[19] = runId & 0xff;
}

/** Routes every frame a NIC receives to the current run's handler; one receive loop per NIC. */
class Receiver {
  onFrame: ((f: Uint8Array) => void) | undefined;
  stray = 0;
  private readonly loop: Promise<void>;
  constructor(readonly net: NetDevice) {
    this.loop = (async () => {
      for (;;) {
        let f: Uint8Array;
        try {
          f = await net.receive();
        } catch (e) {
          if ((e as { code?: string }).code === 'ECANCELED') return;
          throw e;
        }
        if (this.onFrame) this.onFrame(f);
        else this.stray++;
      }
    })();
    this.loop.catch(() => undefined); // surfaced by done()
  }
  done(): Promise<void> {
    return this.loop;
  }
}

interface RunResult {
  seconds: number;
  sent: number;
  received: number;
  rxSeconds: number;
  rxBytes: number;
  verified: number;
  bad: number;
  badWhat: string[];
  outOfOrder: number;
  duplicates: number;
  foreign: number;
  dropped: number;
}

let nextRunId = 1;

async function run(tx: NetDevice, rx: Receiver, size: number, seconds: number, drainMs: number): Promise<RunResult> {
  const runId = nextRunId++ & 0xffff;
  const dst = rx.net.mac;
  const src = tx.mac;
  const batchSize = Math.max(1, Math.floor(tx.queueSize / 2));
  const template = new Uint8Array(size);
  fillFrame(template, dst, src, 0, runId);
  const expected = new Uint8Array(size);
  const dropped0 = rx.net.droppedFrames;

  const r: RunResult = {
    seconds: 0,
    sent: 0,
    received: 0,
    rxSeconds: 0,
    rxBytes: 0,
    verified: 0,
    bad: 0,
    badWhat: [],
    outOfOrder: 0,
    duplicates: 0,
    foreign: 0,
    dropped: 0,
  };
  let lastSeq = -1;
  let seen = new Uint8Array(1 << 16); // one byte per sequence number: duplicates
  let tLastRx = 0n;
  const fail = (what: string): void => {
    r.bad++;
    if (r.badWhat.length < 5) r.badWhat.push(what);
  };
  rx.onFrame = (f) => {
    // Not one of this run's frames (e.g. a straggler of the warm-up, or something else on the wire)?
    if (
      f.length < 20 ||
      f[12] !== ETHERTYPE >> 8 ||
      f[13] !== (ETHERTYPE & 0xff) ||
      (((f[18] as number) << 8) | (f[19] as number)) !== runId
    ) {
      r.foreign++;
      return;
    }
    tLastRx = nowNs();
    r.received++;
    r.rxBytes += f.length;
    const seq =
      (((f[14] as number) << 24) | ((f[15] as number) << 16) | ((f[16] as number) << 8) | (f[17] as number)) >>> 0;
    if (seq <= lastSeq) r.outOfOrder++;
    if (seq >= seen.length) {
      const bigger = new Uint8Array(Math.max(seen.length * 2, seq + 1));
      bigger.set(seen);
      seen = bigger;
    }
    if (seen[seq]) r.duplicates++;
    seen[seq] = 1;
    lastSeq = seq;
    if (f.length !== size) return fail(`frame ${seq}: ${f.length} bytes, sent ${size}`);
    for (let i = 0; i < 12; i++) if (f[i] !== template[i]) return fail(`frame ${seq}: MAC byte ${i} differs`);
    if (seq % SAMPLE_EVERY === 0) {
      fillFrame(expected, dst, src, seq, runId);
      for (let i = 0; i < size; i++) {
        if (f[i] !== expected[i]) return fail(`frame ${seq}: byte ${i} is ${f[i]}, sent ${expected[i]}`);
      }
      r.verified++;
    }
  };

  // Two pools of batchSize frames: a pool is restamped only after its sendBatch resolved (the
  // device has taken, i.e. the library has copied, every frame of it).
  let seq = 0;
  let stop = false;
  const span = BigInt(Math.round(seconds * 1e9));
  const t0 = nowNs();
  const tEnd = t0 + span;
  const sender = async (): Promise<void> => {
    const pool = Array.from({ length: batchSize }, () => template.slice());
    while (!stop) {
      for (const f of pool) stamp(f, seq++, runId);
      await tx.sendBatch(pool);
      r.sent += pool.length;
      if (nowNs() >= tEnd) stop = true;
    }
  };
  await Promise.all([sender(), sender()]);
  const tSent = nowNs();
  r.seconds = Number(tSent - t0) / 1e9;

  // Drain: until everything arrived or nothing did for drainMs.
  for (let last = -1; r.received < r.sent && r.received !== last;) {
    last = r.received;
    await sleep(drainMs);
  }
  rx.onFrame = undefined;
  r.rxSeconds = tLastRx > 0n ? Number(tLastRx - t0) / 1e9 : r.seconds;
  r.dropped = rx.net.droppedFrames - dropped0;
  return r;
}

async function waitLink(net: NetDevice, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!net.linkUp && Date.now() < until) await sleep(50);
}

async function main(): Promise<void> {
  const [devA, devB, secArg, sizesArg] = process.argv.slice(2);
  if (!devA || !devB || !secArg) usage('missing arguments');
  const seconds = Number(secArg);
  if (!(seconds > 0)) usage(`bad seconds ${secArg}`);
  const sizes = (sizesArg ?? '64,1500').split(',').map(Number);
  const warmup = Number(process.env.VDPA_BENCH_WARMUP ?? 1);
  const drainMs = Number(process.env.VDPA_BENCH_DRAIN_MS ?? 300);

  const a = await openNet(devA);
  let b: NetDevice | undefined;
  let failed = false;
  try {
    b = await openNet(devB);
    for (const s of sizes) {
      const max = Math.min(a.mtu, b.mtu) + ETH_HEADER;
      if (!Number.isInteger(s) || s < 20 || s > max) usage(`bad size ${s} (20..${max})`);
    }
    await waitLink(a, 2000);
    await waitLink(b, 2000);
    if (!a.linkUp || !b.linkUp) process.stderr.write(`vm-net: WARNING: link down (A ${a.linkUp}, B ${b.linkUp})\n`);
    const ends = { A: { net: a, rx: new Receiver(a), dev: devA }, B: { net: b, rx: new Receiver(b), dev: devB } };
    for (const size of sizes) {
      for (const [from, to] of [
        ['A', 'B'],
        ['B', 'A'],
      ] as const) {
        const s = ends[from];
        const d = ends[to];
        if (warmup > 0) await run(s.net, d.rx, size, warmup, drainMs);
        const r = await run(s.net, d.rx, size, seconds, drainMs);
        const rxPps = r.received / r.rxSeconds;
        if (r.bad > 0 || r.duplicates > 0 || r.received === 0) failed = true;
        process.stdout.write(
          JSON.stringify({
            size,
            dir: `${from}->${to}`,
            from: `${s.dev} (${hex(s.net.mac)})`,
            to: `${d.dev} (${hex(d.net.mac)})`,
            queueSize: s.net.queueSize,
            seconds: Math.round(r.seconds * 1000) / 1000,
            sent: r.sent,
            received: r.received,
            lost: r.sent - r.received,
            txPps: Math.round(r.sent / r.seconds),
            rxPps: Math.round(rxPps),
            rxMbps: Math.round(((r.rxBytes * 8) / r.rxSeconds / 1e6) * 100) / 100,
            verified: r.verified,
            bad: r.bad,
            ...(r.badWhat.length ? { badWhat: r.badWhat } : {}),
            outOfOrder: r.outOfOrder,
            duplicates: r.duplicates,
            foreign: r.foreign,
            dropped: r.dropped,
          }) + '\n',
        );
      }
    }
  } finally {
    await a.close();
    if (b) await b.close();
  }
  if (failed) process.exit(1);
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string };
  process.stderr.write(`vm-net: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
