// Split ring through the loopback: 16-bit index wrap-around with in-order and out-of-order
// completion, partial batches, and the free-descriptor accounting that must survive it all.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ChainSpec,
  Seg,
  drainPairs,
  encode,
  needEventModel,
  newLoopback,
  popChain,
  randInt,
  rng,
  writableBytes,
} from './loopback';

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
 * step against a model of both sides' indexes, including the kick and interrupt decisions.
 */
function runWrap(cfg: WrapConfig): void {
  const lb = newLoopback(cfg.size, cfg.eventIdx, cfg.indirectMax);
  const indirect = cfg.indirectMax !== 0 && cfg.segs > 1 && cfg.segs <= cfg.indirectMax;
  const descPerChain = indirect ? 1 : cfg.segs;
  const capacity = Math.floor(cfg.size / descPerChain);
  assert.ok(capacity >= 1);
  const baseline = lb.state();
  assert.deepEqual(baseline, { broken: false, reason: '', inFlight: 0, freeDescriptors: cfg.size });
  const batch = new Uint32Array(Math.max(...cfg.batches) * (2 + 4 * cfg.segs));

  // Model (all indexes mod 2^16).
  let availIdx = 0; // driver's published avail idx
  let deviceLastAvail = 0;
  let availEvent = 0;
  let usedIdx = 0; // device's published used idx
  let driverLastUsed = 0;
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
  let wrapped = false;

  while (expectSeq < TOTAL) {
    const inFlight = nextSeq - expectSeq;
    const offered = Math.min(cfg.batches[round % cfg.batches.length], TOTAL - nextSeq);
    if (offered > 0) {
      fillBatch(batch, nextSeq, offered, cfg.segs);
      const accepted = lb.submit(batch, offered);
      eq(accepted, Math.min(offered, capacity - inFlight), () => `round ${round}: accepted`);
      nextSeq += accepted;
      const kick = lb.publish();
      if (accepted === 0) {
        eq(kick, false, () => 'publish with nothing new asked for a kick');
      } else {
        const newAvail = (availIdx + accepted) & 0xffff;
        if (newAvail < availIdx) wrapped = true;
        const want = cfg.eventIdx ? needEventModel(availEvent, newAvail, availIdx) : true;
        eq(kick, want, () => `round ${round}: kick (avail ${availIdx}->${newAvail}, avail_event ${availEvent})`);
        if (kick) kicks++;
        else suppressedKicks++;
        availIdx = newAvail;
      }
    }

    // Every third round the device sleeps, so chains pile up and the next submit is partial.
    if (round % 3 !== 2) {
      const fixed = round % 5 === 0;
      const pending = (availIdx - deviceLastAvail) & 0xffff;
      const done = fixed ? lb.deviceCompleteAll(1) : lb.deviceCompleteAll();
      eq(done, pending, () => `round ${round}: device consumed everything published`);
      if (fixed && done > 0) {
        fixedFrom = nextSeq - pending;
        fixedTo = nextSeq;
      }
      deviceLastAvail = availIdx;
      const irq = lb.devicePublish();
      if (done === 0) {
        eq(irq, false, () => 'devicePublish with nothing new asked for an interrupt');
      } else {
        const newUsed = (usedIdx + done) & 0xffff;
        const want = cfg.eventIdx ? needEventModel(usedEvent, newUsed, usedIdx) : true;
        eq(irq, want, () => `round ${round}: interrupt (used ${usedIdx}->${newUsed}, used_event ${usedEvent})`);
        if (irq) irqs++;
        else suppressedIrqs++;
        usedIdx = newUsed;
      }
      if (round % 4 !== 1) {
        eq(lb.deviceEnableNotify(), false, () => 'deviceEnableNotify after consuming everything');
        availEvent = deviceLastAvail;
      }
    }

    const n = lb.drain();
    eq(n, (usedIdx - driverLastUsed) & 0xffff, () => `round ${round}: drained count`);
    const comp = lb.completions;
    for (let i = 0; i < n; i++) {
      const seq = expectSeq++;
      eq(comp[2 * i], tokenFor(seq), () => `completion ${seq}: token (in order, exactly once)`);
      const wantLen = seq >= fixedFrom && seq < fixedTo ? 1 : chainWritableBytes(seq, cfg.segs);
      eq(comp[2 * i + 1], wantLen, () => `completion ${seq}: len`);
    }
    driverLastUsed = (driverLastUsed + n) & 0xffff;
    if (round % 5 !== 3) {
      eq(lb.enableInterrupts(), false, () => 'enableInterrupts with nothing completed since drain');
      usedEvent = driverLastUsed;
    }

    if ((round & 63) === 0) {
      const st = lb.state();
      assert.equal(st.broken, false, st.reason);
      assert.equal(st.inFlight, nextSeq - expectSeq);
      assert.equal(st.freeDescriptors, cfg.size - st.inFlight * descPerChain);
    }
    round++;
  }

  assert.ok(wrapped, 'the avail index wrapped');
  assert.equal(nextSeq, TOTAL);
  assert.equal(expectSeq, TOTAL);
  assert.deepEqual(lb.state(), baseline, 'back to the empty ring');
  assert.equal(lb.devicePop(), undefined);
  assert.equal(lb.drain(), 0);
  assert.equal(lb.abandon().length, 0);
  if (cfg.eventIdx) {
    assert.ok(kicks > 0 && suppressedKicks > 0, 'event index both kicked and suppressed');
    assert.ok(irqs > 0 && suppressedIrqs > 0, 'event index both interrupted and suppressed');
  } else {
    assert.equal(suppressedKicks + suppressedIrqs, 0, 'flags mode without NO_NOTIFY/NO_INTERRUPT never suppresses');
  }
}

describe('16-bit index wrap-around, in-order completion', () => {
  const configs: WrapConfig[] = [
    { size: 1, eventIdx: true, indirectMax: 0, segs: 1, batches: [1, 2, 1] },
    { size: 2, eventIdx: false, indirectMax: 2, segs: 2, batches: [2, 1, 3] },
    { size: 4, eventIdx: true, indirectMax: 0, segs: 1, batches: [3, 4, 5, 1] },
    { size: 4, eventIdx: false, indirectMax: 0, segs: 3, batches: [1, 2] },
    { size: 256, eventIdx: true, indirectMax: 8, segs: 3, batches: [255, 300, 7, 256, 1] },
    { size: 256, eventIdx: false, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
  ];
  for (const cfg of configs) {
    const name =
      `size ${cfg.size}, ${cfg.eventIdx ? 'event-idx' : 'flags'}, ${cfg.segs}-segment chains` +
      (cfg.indirectMax ? `, indirectMax ${cfg.indirectMax}` : '');
    it(name, () => runWrap(cfg));
  }
});

/**
 * Out of order: each round the device pops what is available, then pushes the heads back in
 * reverse order. Runs past the 16-bit wrap.
 */
function runReverse(size: number, segs: number, indirectMax: number, total = TOTAL): void {
  const lb = newLoopback(size, true, indirectMax);
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

describe('16-bit index wrap-around, reverse-order completion', () => {
  it('size 2, single-segment chains', () => runReverse(2, 1, 0));
  it('size 4, 2-segment direct chains', () => runReverse(4, 2, 0, 20000));
  it('size 256, 3-segment direct chains', () => runReverse(256, 3, 0));
  it('size 256, 3-segment indirect chains', () => runReverse(256, 3, 4, 10000));
});

/**
 * Randomised model check: chains of 1-4 segments (some indirect), the device holds an arbitrary
 * subset of popped chains and returns them in shuffled order with arbitrary lengths. Catches free
 * list corruption: every popped chain must show exactly the buffers its token was submitted with.
 */
function runRandom(size: number, indirectMax: number, seed: number, completions: number): void {
  const r = rng(seed);
  const lb = newLoopback(size, seed % 2 === 0, indirectMax);
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
      if (published.length === accepted) assert.equal(lb.devicePop(), undefined);
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
      const bufs = [...c.readable, ...c.writable];
      assert.deepEqual(
        bufs.map((b) => [b.offset, b.length]),
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
  const left = [...lb.abandon()].sort((a, b) => a - b);
  assert.deepEqual(
    left,
    [...byToken.keys()].sort((a, b) => a - b),
  );
}

describe('randomised out-of-order completion', () => {
  it('size 8, no indirect', () => runRandom(8, 0, 1, 6000));
  it('size 16, indirectMax 3', () => runRandom(16, 3, 2, 6000));
  it('size 4, indirectMax 2', () => runRandom(4, 2, 3, 4000));
});
