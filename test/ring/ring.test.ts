// Both ring formats through the loopback: wrap-around of the notification positions (split: 16-bit
// indexes; packed: wrap counters over many laps) with in-order, reverse and random completion,
// partial batches, and the free-descriptor accounting that must survive it all.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainSpec, Seg, drainPairs, encode, popChain, randInt, rng, writableBytes } from './loopback';
import { EVENT_ENABLE, EventView, shouldNotify } from './packed-loopback';
import { FORMATS, RingFormat, crosses } from './formats';

// More requests than one trip of a 16-bit index, so avail and used indexes both wrap.
const TOTAL = 65536 + 300;

/** Token for sequence number `seq`: an odd multiplier keeps tokens unique and unlike ring indexes. */
function tokenFor(seq: number): number {
  return Math.imul(seq, 0x9e3779b1) >>> 0;
}

// Chain `seq` with `segs` segments: the first is device-readable when segs > 1, the rest writable.
function segOffset(seq: number, i: number): number {
  return ((seq + i) % 256) * 64;
}
function segLength(seq: number, i: number): number {
  return 1 + ((seq * 7 + i * 13) % 61);
}
function segWritable(segs: number, i: number): boolean {
  return segs === 1 || i > 0;
}
function chainWritableBytes(seq: number, segs: number): number {
  let n = 0;
  for (let i = 0; i < segs; i++) if (segWritable(segs, i)) n += segLength(seq, i);
  return n;
}

/** Writes chains first..first+count-1 into `out` in submit()'s format (hot path: no allocation). */
function fillBatch(out: Uint32Array, first: number, count: number, segs: number): void {
  let p = 0;
  for (let c = 0; c < count; c++) {
    const seq = first + c;
    out[p++] = tokenFor(seq);
    out[p++] = segs;
    for (let i = 0; i < segs; i++) {
      out[p++] = 1;
      out[p++] = segOffset(seq, i);
      out[p++] = segLength(seq, i);
      out[p++] = segWritable(segs, i) ? 1 : 0;
    }
  }
}

/** assert.equal without building the message unless it fails (these run ~10^6 times). */
function eq<T>(actual: T, expected: T, what: () => string): void {
  if (actual !== expected) assert.fail(`${what()}: got ${String(actual)}, want ${String(expected)}`);
}

interface WrapConfig {
  size: number;
  eventIdx: boolean;
  indirectMax: number;
  segs: number;
  batches: number[]; // chains offered per round, cycled
}

/**
 * Pushes TOTAL requests through submit/publish/deviceCompleteAll/devicePublish/drain, checking each
 * step against a model of both sides' positions (modulo the format's position space), including
 * the kick and interrupt decisions. Packed rings also check each decision against the other side's
 * event suppression structure as read just before (the rule re-derived in packed-loopback.ts), and
 * the structure each side arms against the model.
 */
function runWrap(fmt: RingFormat, cfg: WrapConfig): void {
  const lb = fmt.make(cfg.size, cfg.eventIdx, cfg.indirectMax);
  const indirect = cfg.indirectMax !== 0 && cfg.segs > 1 && cfg.segs <= cfg.indirectMax;
  const descPerChain = indirect ? 1 : cfg.segs;
  const capacity = Math.floor(cfg.size / descPerChain);
  assert.ok(capacity >= 1);
  const baseline = lb.state();
  assert.deepEqual(baseline, { broken: false, reason: '', inFlight: 0, freeDescriptors: cfg.size });
  const batch = new Uint32Array(Math.max(...cfg.batches) * (2 + 4 * cfg.segs));
  const events = fmt.events;
  const armed = (view: EventView, pos: number, side: string): void => {
    if (!cfg.eventIdx) return eq(view.flags, EVENT_ENABLE, () => `${side} enables`);
    const want = events?.armedAt(pos, cfg.size);
    eq(view.flags, want?.flags, () => `${side} arms DESC`);
    eq(view.off, want?.off, () => `${side} event offset`);
    eq(view.wrap, want?.wrap, () => `${side} event wrap`);
  };

  // Model: positions modulo `space`, each chain moving them by `step`.
  const space = fmt.modulus(cfg.size);
  const step = fmt.positionsPerChain(descPerChain);
  const ahead = (to: number, from: number): number => (to - from + space) % space;
  let avail = 0; // driver's published position
  let deviceAvail = 0;
  let availEvent = 0;
  let used = 0; // device's published used position
  let drained = 0;
  let usedEvent = 0;

  let nextSeq = 0; // next request to submit
  let expectSeq = 0; // next request expected back
  let fixedFrom = -1; // requests in [fixedFrom, fixedTo) were answered with len 1
  let fixedTo = -1;
  let round = 0;
  let kicks = 0;
  let suppressedKicks = 0;
  let irqs = 0;
  let suppressedIrqs = 0;
  let wraps = 0;

  while (expectSeq < TOTAL) {
    const inFlight = nextSeq - expectSeq;
    const offered = Math.min(cfg.batches[round % cfg.batches.length], TOTAL - nextSeq);
    if (offered > 0) {
      fillBatch(batch, nextSeq, offered, cfg.segs);
      const accepted = lb.submit(batch, offered);
      eq(accepted, Math.min(offered, capacity - inFlight), () => `round ${round}: accepted`);
      nextSeq += accepted;
      const ev = events?.read(lb).device;
      const kick = lb.publish();
      if (accepted === 0) {
        eq(kick, false, () => 'publish with nothing new asked for a kick');
      } else {
        const old = avail;
        avail = (avail + accepted * step) % space;
        if (avail < old) wraps++;
        const want = cfg.eventIdx ? crosses(availEvent, old, avail, space) : true;
        eq(kick, want, () => `round ${round}: kick (avail ${old}->${avail}, event ${availEvent})`);
        if (ev) eq(kick, shouldNotify(ev, cfg.size, cfg.eventIdx, old, avail), () => `kick by ${JSON.stringify(ev)}`);
        if (kick) kicks++;
        else suppressedKicks++;
      }
    }

    // Every third round the device sleeps, so chains pile up and the next submit is partial.
    if (round % 3 !== 2) {
      const fixed = round % 5 === 0;
      const pending = ahead(avail, deviceAvail) / step;
      const done = fixed ? lb.deviceCompleteAll(1) : lb.deviceCompleteAll();
      eq(done, pending, () => `round ${round}: device consumed everything published`);
      if (fixed && done > 0) {
        fixedFrom = nextSeq - pending;
        fixedTo = nextSeq;
      }
      deviceAvail = avail;
      const ev = events?.read(lb).driver;
      const irq = lb.devicePublish();
      if (done === 0) {
        eq(irq, false, () => 'devicePublish with nothing new asked for an interrupt');
      } else {
        const old = used;
        used = (used + done * step) % space;
        const want = cfg.eventIdx ? crosses(usedEvent, old, used, space) : true;
        eq(irq, want, () => `round ${round}: interrupt (used ${old}->${used}, event ${usedEvent})`);
        if (ev) eq(irq, shouldNotify(ev, cfg.size, cfg.eventIdx, old, used), () => `irq by ${JSON.stringify(ev)}`);
        if (irq) irqs++;
        else suppressedIrqs++;
      }
      if (round % 4 !== 1) {
        eq(lb.deviceEnableNotify(), false, () => 'deviceEnableNotify after consuming everything');
        availEvent = deviceAvail;
        if (events) armed(events.read(lb).device, deviceAvail, 'device');
      }
    }

    const n = lb.drain();
    eq(n, ahead(used, drained) / step, () => `round ${round}: drained count`);
    const comp = lb.completions;
    for (let i = 0; i < n; i++) {
      const seq = expectSeq++;
      eq(comp[2 * i], tokenFor(seq), () => `completion ${seq}: token (in order, exactly once)`);
      const wantLen = seq >= fixedFrom && seq < fixedTo ? 1 : chainWritableBytes(seq, cfg.segs);
      eq(comp[2 * i + 1], wantLen, () => `completion ${seq}: len`);
    }
    drained = (drained + n * step) % space;
    if (round % 5 !== 3) {
      eq(lb.enableInterrupts(), false, () => 'enableInterrupts with nothing completed since drain');
      usedEvent = drained;
      if (events) armed(events.read(lb).driver, drained, 'driver');
    }

    if ((round & 63) === 0) {
      const st = lb.state();
      assert.equal(st.broken, false, st.reason);
      assert.equal(st.inFlight, nextSeq - expectSeq);
      assert.equal(st.freeDescriptors, cfg.size - st.inFlight * descPerChain);
    }
    round++;
  }

  assert.ok(wraps >= 1, 'the avail position wrapped');
  assert.equal(wraps, Math.floor((TOTAL * step) / space), 'every wrap of the position was seen');
  assert.equal(nextSeq, TOTAL);
  assert.deepEqual(lb.state(), baseline, 'back to the empty ring');
  assert.equal(lb.devicePop(), undefined);
  assert.equal(lb.drain(), 0);
  assert.equal(lb.abandon().length, 0);
  if (cfg.eventIdx) {
    assert.ok(kicks > 0 && suppressedKicks > 0, `event index both kicked and suppressed (${kicks}/${suppressedKicks})`);
    assert.ok(
      irqs > 0 && suppressedIrqs > 0,
      `event index both interrupted and suppressed (${irqs}/${suppressedIrqs})`,
    );
  } else {
    assert.equal(suppressedKicks + suppressedIrqs, 0, 'notifications enabled and no event index: never suppressed');
  }
}

const WRAP_CONFIGS: Record<RingFormat['name'], WrapConfig[]> = {
  split: [
    { size: 1, eventIdx: true, indirectMax: 0, segs: 1, batches: [1, 2, 1] },
    { size: 2, eventIdx: false, indirectMax: 2, segs: 2, batches: [2, 1, 3] },
    { size: 4, eventIdx: true, indirectMax: 0, segs: 1, batches: [3, 4, 5, 1] },
    { size: 4, eventIdx: false, indirectMax: 0, segs: 3, batches: [1, 2] },
    { size: 256, eventIdx: true, indirectMax: 8, segs: 3, batches: [255, 300, 7, 256, 1] },
    { size: 256, eventIdx: false, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
  ],
  packed: [
    { size: 1, eventIdx: true, indirectMax: 0, segs: 1, batches: [1, 2, 1] },
    { size: 2, eventIdx: false, indirectMax: 2, segs: 2, batches: [2, 1, 3] },
    { size: 3, eventIdx: true, indirectMax: 0, segs: 2, batches: [1, 2] }, // chains cross the ring end
    { size: 5, eventIdx: true, indirectMax: 0, segs: 1, batches: [3, 4, 6, 1] },
    { size: 7, eventIdx: false, indirectMax: 0, segs: 3, batches: [1, 2] },
    { size: 100, eventIdx: true, indirectMax: 8, segs: 3, batches: [99, 130, 7, 100, 1] },
    { size: 255, eventIdx: true, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
    { size: 256, eventIdx: false, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
  ],
};

/**
 * Out of order: each round the device pops what is available, then pushes the heads back in
 * reverse order. Runs past the wrap of the notification positions.
 */
function runReverse(fmt: RingFormat, size: number, segs: number, indirectMax: number, total = TOTAL): void {
  const lb = fmt.make(size, true, indirectMax);
  const indirect = indirectMax !== 0 && segs > 1 && segs <= indirectMax;
  const capacity = Math.floor(size / (indirect ? 1 : segs));
  const batch = new Uint32Array((capacity + 3) * (2 + 4 * segs));
  const heads: number[] = [];
  const lens: number[] = [];
  let nextSeq = 0;
  let completed = 0;
  let round = 0;
  while (completed < total) {
    // Partial batches: offer more than fits every other round.
    const offered = Math.min(round % 2 === 0 ? capacity + 3 : Math.max(1, capacity >> 1), total - nextSeq);
    fillBatch(batch, nextSeq, offered, segs);
    const accepted = lb.submit(batch, offered);
    eq(accepted, Math.min(offered, capacity), () => `round ${round}: accepted`);
    const first = nextSeq;
    nextSeq += accepted;
    lb.publish();

    heads.length = 0;
    lens.length = 0;
    for (let seq = first; seq < nextSeq; seq++) {
      const c = popChain(lb);
      const bufs = [...c.readable, ...c.writable];
      eq(bufs.length, segs, () => `seq ${seq}: buffer count`);
      eq(c.readable.length, segs === 1 ? 0 : 1, () => `seq ${seq}: readable count`);
      for (let i = 0; i < segs; i++) {
        eq(bufs[i].offset, segOffset(seq, i), () => `seq ${seq} buffer ${i}: offset`);
        eq(bufs[i].length, segLength(seq, i), () => `seq ${seq} buffer ${i}: length`);
      }
      heads.push(c.head);
      const wb = chainWritableBytes(seq, segs);
      lens.push(seq % 2 === 0 ? wb : wb >> 1);
    }
    assert.equal(lb.devicePop(), undefined);
    for (let i = heads.length - 1; i >= 0; i--) lb.devicePush(heads[i], lens[i]);
    lb.devicePublish();

    const n = lb.drain();
    eq(n, accepted, () => `round ${round}: drained count`);
    const comp = lb.completions;
    for (let i = 0; i < n; i++) {
      const seq = nextSeq - 1 - i; // reverse of submission order
      eq(comp[2 * i], tokenFor(seq), () => `round ${round} completion ${i}: token`);
      eq(comp[2 * i + 1], lens[accepted - 1 - i], () => `round ${round} completion ${i}: len`);
    }
    completed += n;
    lb.enableInterrupts();
    if ((round & 31) === 0) {
      const st = lb.state();
      assert.equal(st.broken, false, st.reason);
      assert.equal(st.inFlight, 0);
      assert.equal(st.freeDescriptors, size);
    }
    round++;
  }
  assert.equal(nextSeq, total);
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
}

/** [name, size, segments, indirectMax, total requests] */
const REVERSE_CONFIGS: Record<RingFormat['name'], [string, number, number, number, number?][]> = {
  split: [
    ['size 2, single-segment chains', 2, 1, 0],
    ['size 4, 2-segment direct chains', 4, 2, 0, 20000],
    ['size 256, 3-segment direct chains', 256, 3, 0],
    ['size 256, 3-segment indirect chains', 256, 3, 4, 10000],
  ],
  packed: [
    ['size 2, single-descriptor chains', 2, 1, 0],
    ['size 5, 2-descriptor chains (chains and used skips cross the ring end)', 5, 2, 0, 30000],
    ['size 256, 3-descriptor direct chains', 256, 3, 0],
    ['size 100, 3-segment indirect chains', 100, 3, 4, 20000],
  ],
};

/**
 * Randomised model check: chains of 1-4 segments (some indirect); the device holds an arbitrary
 * subset of popped chains and returns them in shuffled order with arbitrary lengths. Catches free
 * list corruption (every popped chain must show exactly the buffers its token was submitted with)
 * and, on packed rings, exercises the per-id descriptor counts as used descriptors skip by each
 * chain's own length.
 */
function runRandom(fmt: RingFormat, size: number, indirectMax: number, seed: number, completions: number): void {
  const r = rng(seed);
  const lb = fmt.make(size, seed % 2 === 0, indirectMax);
  interface Live {
    seq: number;
    spec: ChainSpec;
    descs: number;
  }
  const published: Live[] = []; // avail order, not yet popped
  const held = new Map<number, Live>(); // head -> chain the device holds
  const byToken = new Map<number, Live>();
  let free = size;
  let seq = 0;
  let done = 0;
  while (done < completions) {
    // Offer 1-5 chains; the ring takes them up to the first that does not fit.
    const offered: Live[] = [];
    const n = randInt(r, 1, 5);
    for (let i = 0; i < n; i++) {
      const segCount = randInt(r, 1, Math.min(4, size));
      const readable = randInt(r, 0, segCount);
      const segs: Seg[] = [];
      for (let k = 0; k < segCount; k++) {
        segs.push({ offset: randInt(r, 0, 1000) * 16, length: randInt(r, 1, 300), writable: k >= readable });
      }
      const indirect = indirectMax !== 0 && segCount > 1 && segCount <= indirectMax;
      offered.push({ seq: seq + i, spec: { token: tokenFor(seq + i), segs }, descs: indirect ? 1 : segCount });
    }
    let expectAccepted = 0;
    let f = free;
    while (expectAccepted < offered.length && offered[expectAccepted].descs <= f) f -= offered[expectAccepted++].descs;
    const accepted = lb.submit(encode(offered.map((o) => o.spec)), offered.length);
    assert.equal(accepted, expectAccepted, 'accepted up to the first chain that does not fit');
    for (let i = 0; i < accepted; i++) {
      published.push(offered[i]);
      byToken.set(offered[i].spec.token, offered[i]);
    }
    free = f;
    seq += accepted;
    // Sometimes keep chains unpublished for a round: the device must not see them yet.
    if (accepted > 0 && randInt(r, 0, 3) === 0) {
      if (published.length === accepted) assert.equal(lb.devicePop(), undefined, 'unpublished chains are invisible');
      continue;
    }
    lb.publish();

    // Device pops a random number of the published chains.
    const pops = randInt(r, 0, published.length);
    for (let i = 0; i < pops; i++) {
      const live = published.shift();
      assert.ok(live);
      const c = popChain(lb);
      assert.equal(held.has(c.head), false, 'a head is never handed out twice');
      assert.ok(c.head < size, 'heads stay below the queue size');
      assert.deepEqual(
        [...c.readable, ...c.writable].map((b) => [b.offset, b.length]),
        live.spec.segs.map((x) => [x.offset, x.length]),
        `seq ${live.seq}: device sees the submitted buffers`,
      );
      assert.equal(c.writable.length, live.spec.segs.filter((x) => x.writable).length);
      held.set(c.head, live);
    }
    if (published.length === 0) assert.equal(lb.devicePop(), undefined);

    // Device returns a random subset of what it holds, shuffled, with lengths <= writable bytes.
    const heads = [...held.keys()];
    for (let i = heads.length - 1; i > 0; i--) {
      const j = randInt(r, 0, i);
      [heads[i], heads[j]] = [heads[j], heads[i]];
    }
    const back = heads.slice(0, randInt(r, 0, heads.length));
    const expected: [number, number][] = [];
    for (const h of back) {
      const live = held.get(h);
      assert.ok(live);
      const len = randInt(r, 0, writableBytes(live.spec));
      lb.devicePush(h, len);
      expected.push([live.spec.token, len]);
      held.delete(h);
      free += live.descs;
    }
    lb.devicePublish();
    const got = drainPairs(lb);
    assert.deepEqual(got, expected);
    for (const [token] of got) assert.ok(byToken.delete(token), 'each token completes exactly once');
    done += got.length;
    lb.enableInterrupts();

    const st = lb.state();
    assert.equal(st.broken, false, st.reason);
    assert.equal(st.inFlight, byToken.size);
    assert.equal(st.freeDescriptors, free);
  }
  // Abandon returns exactly what is still out.
  const sorted = (a: Iterable<number>): number[] => [...a].sort((x, y) => x - y);
  assert.deepEqual(sorted(lb.abandon()), sorted(byToken.keys()));
}

/** [size, indirectMax, seed, completions] */
const RANDOM_CONFIGS: Record<RingFormat['name'], [number, number, number, number][]> = {
  split: [
    [8, 0, 1, 6000],
    [16, 3, 2, 6000],
    [4, 2, 3, 4000],
  ],
  packed: [
    [8, 0, 1, 8000],
    [13, 3, 2, 8000],
    [4, 2, 3, 5000],
    [6, 0, 4, 5000],
  ],
};

for (const fmt of FORMATS) {
  describe(`${fmt.name}: wrap-around of the notification positions, in-order completion`, () => {
    for (const cfg of WRAP_CONFIGS[fmt.name]) {
      const name =
        `size ${cfg.size}, ${cfg.eventIdx ? 'event-idx' : 'flags'}, ${cfg.segs}-segment chains` +
        (cfg.indirectMax ? `, indirectMax ${cfg.indirectMax}` : '');
      it(name, () => runWrap(fmt, cfg));
    }
  });

  describe(`${fmt.name}: wrap-around with reverse-order completion`, () => {
    for (const [name, size, segs, indirectMax, total] of REVERSE_CONFIGS[fmt.name]) {
      it(name, () => runReverse(fmt, size, segs, indirectMax, total));
    }
  });

  describe(`${fmt.name}: randomised out-of-order completion`, () => {
    for (const [size, indirectMax, seed, completions] of RANDOM_CONFIGS[fmt.name]) {
      const name = `size ${size}, ${indirectMax ? `indirectMax ${indirectMax}` : 'no indirect'}`;
      it(name, () => runRandom(fmt, size, indirectMax, seed, completions));
    }
  });
}
