// Forwarding between two real virtio-net NICs on one wire (QEMU hub), in the mode of DPDK testpmd's
// `--forward-mode=io --port-topology=paired --tx-first`, for scripts/vm/bench-vfio-guest.sh, which
// runs testpmd on the same two functions side by side with this.
//
//   node dist/bench/vm-net-forward.js <deviceA> <deviceB> <seconds> <frame size> [js|native]
//
// Like testpmd: both NICs promiscuous (where the control queue allows it), one burst of
// VDPA_BENCH_FWD_BURST frames (default 32, testpmd's burst) sent on each port first, then every
// frame received on A is sent unchanged on B and every frame received on B on A. The frames on the
// wire stay a fixed population, so the rate measures the round trip: driver, device and wire.
// js (the default): a loop in JavaScript, every frame received in one wake-up goes out in one
// sendBatch. native: `a.forward(b)` and `b.forward(a)`, the library's native loops (no JS per frame;
// the burst is queued with sendBatch just before they take the queues). A warm-up (VDPA_BENCH_WARMUP
// seconds, default 1) is not counted. VDPA_BENCH_POLL_MICROS > 0 opens both with that
// NetOptions.pollMicros (testpmd polls all the time; this polls for that long after each wake-up).
//
// Prints one JSON line: {"mode":"node", "polled" or "native","size":..,"seconds":..,"rxPpsA":..,"rxPpsB":..,"rxPps":..,
// "forwarded":..,"bad":..} with rxPps the mean of the two ports (testpmd's Rx-pps per port). Exit 1
// when a frame arrived with another length than was sent, or none were forwarded.
import { openNet, type NetDevice } from '../lib/index';

const ETHERTYPE = 0x88b5;

function usage(msg: string): never {
  process.stderr.write(
    `vm-net-forward: ${msg}\nusage: node dist/bench/vm-net-forward.js <deviceA> <deviceB> <seconds> <frame size> [js|native]\n`,
  );
  process.exit(2);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A port of the forwarder: what it received, and the loop sending it on to the other port. */
class Port {
  received = 0;
  bad = 0;
  private pending: Uint8Array[] = [];
  private flushing = false;
  private failure: unknown;

  constructor(
    readonly net: NetDevice,
    private readonly size: number,
  ) {}

  /** Forwards every frame `net` receives to `to` until `net` is closed. */
  async forwardTo(to: NetDevice): Promise<void> {
    try {
      for await (const f of this.net.frames()) {
        this.received++;
        if (f.length !== this.size) this.bad++;
        this.pending.push(f);
        if (!this.flushing) {
          this.flushing = true;
          setImmediate(() => void this.flush(to));
        }
      }
    } catch (e) {
      if ((e as { code?: string }).code !== 'ECANCELED') throw e;
    }
    if (this.failure) throw this.failure;
  }

  /** Sends what arrived since the last flush, in one batch, then again while more arrived meanwhile. */
  private async flush(to: NetDevice): Promise<void> {
    try {
      while (this.pending.length > 0 && !to.device.closed) {
        const batch = this.pending;
        this.pending = [];
        await to.sendBatch(batch);
      }
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'ECANCELED' && code !== 'EBADF') this.failure = e;
    } finally {
      this.flushing = false;
    }
  }
}

function frameOf(size: number, dst: Uint8Array, src: Uint8Array, i: number): Uint8Array {
  const f = new Uint8Array(size);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = ETHERTYPE >> 8;
  f[13] = ETHERTYPE & 0xff;
  for (let k = 14; k < size; k++) f[k] = (k * 31 + i) & 0xff;
  return f;
}

async function promiscuous(net: NetDevice): Promise<void> {
  if (!net.hasControl) return;
  try {
    await net.setPromiscuous(true);
  } catch (e) {
    // A device without CTRL_RX filters nothing to begin with (QEMU: promiscuous until told otherwise).
    if ((e as { code?: string }).code !== 'EOPNOTSUPP') throw e;
  }
}

async function main(): Promise<void> {
  const [devA, devB, secArg, sizeArg, modeArg = 'js'] = process.argv.slice(2);
  if (!devA || !devB || !secArg || !sizeArg) usage('missing arguments');
  const seconds = Number(secArg);
  const size = Number(sizeArg);
  if (!(seconds > 0)) usage(`bad seconds ${secArg}`);
  if (modeArg !== 'js' && modeArg !== 'native') usage(`bad mode ${modeArg}`);
  const native = modeArg === 'native';
  const burst = Number(process.env.VDPA_BENCH_FWD_BURST ?? 32);
  const warmup = Number(process.env.VDPA_BENCH_WARMUP ?? 1);
  const pollMicros = Number(process.env.VDPA_BENCH_POLL_MICROS ?? 0);
  if (!Number.isInteger(burst) || burst < 1) usage(`bad VDPA_BENCH_FWD_BURST ${burst}`);

  const a = await openNet(devA, { pollMicros });
  const b = await openNet(devB, { pollMicros }).catch(async (e: unknown) => {
    await a.close();
    throw e;
  });
  let loops: Promise<void>[] = [];
  let pa: Port | undefined;
  let pb: Port | undefined;
  let window = 0;
  let atStart = [0, 0];
  let atEnd = [0, 0];
  try {
    const max = Math.min(a.mtu, b.mtu) + 14;
    if (!Number.isInteger(size) || size < 20 || size > max) usage(`bad size ${size} (20..${max})`);
    await Promise.all([promiscuous(a), promiscuous(b)]);
    pa = new Port(a, size);
    pb = new Port(b, size);
    // tx-first: one burst on each port (queued at once: the native loops take the queues right after).
    const bursts = [
      a.sendBatch(Array.from({ length: burst }, (_, i) => frameOf(size, b.mac, a.mac, i))),
      b.sendBatch(Array.from({ length: burst }, (_, i) => frameOf(size, a.mac, b.mac, i))),
    ];
    let counts: () => number[];
    if (native) {
      const fa = a.forward(b);
      const fb = b.forward(a);
      loops = [fa.done.then(() => undefined), fb.done.then(() => undefined)];
      counts = () => [fa.stats().frames, fb.stats().frames];
    } else {
      loops = [pa.forwardTo(b), pb.forwardTo(a)];
      counts = () => [pa?.received ?? 0, pb?.received ?? 0];
    }
    await Promise.all(bursts);
    await sleep(warmup * 1000);
    const t0 = process.hrtime.bigint();
    atStart = counts();
    await sleep(seconds * 1000);
    atEnd = counts();
    window = Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    await Promise.allSettled([a.close(), b.close()]);
  }
  await Promise.all(loops);
  if (!pa || !pb) return;
  const rxA = (atEnd[0] as number) - (atStart[0] as number);
  const rxB = (atEnd[1] as number) - (atStart[1] as number);
  const r = {
    mode: native ? 'native' : pollMicros > 0 ? 'polled' : 'node',
    size,
    burst,
    seconds: Math.round(window * 1000) / 1000,
    rxPpsA: Math.round(rxA / window),
    rxPpsB: Math.round(rxB / window),
    rxPps: Math.round((rxA + rxB) / 2 / window),
    forwarded: (atEnd[0] as number) + (atEnd[1] as number),
    bad: pa.bad + pb.bad,
  };
  process.stdout.write(JSON.stringify(r) + '\n');
  if (r.bad > 0 || rxA + rxB === 0) process.exit(1);
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string };
  process.stderr.write(`vm-net-forward: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
