// Packed ring through the loopback: wrap-counter wrap-around over many laps (more than 65536
// requests) with in-order, reverse and random completion, sizes that are not powers of two, chains
// that run over the end of the ring, and the AVAIL/USED bits each side writes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChainSpec, Seg, drainPairs, encode, popChain, randInt, rng, writableBytes } from './loopback';
import { Pos, availFlags, newPacked, shouldNotify, usedFlags } from './packed-loopback';

const TOTAL = 65536 + 300;

function tokenFor(seq: number): number {
  return Math.imul(seq, 0x9e3779b1) >>> 0;
}
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
function eq<T>(actual: T, expected: T, what: () => string): void {
  if (actual !== expected) assert.fail(`${what()}: got ${String(actual)}, want ${String(expected)}`);
}

interface WrapConfig {
  size: number;
  eventIdx: boolean;
  indirectMax: number;
  segs: number;
  batches: number[];
}

/**
 * TOTAL requests through submit/publish/deviceCompleteAll/devicePublish/drain. Kick and interrupt
 * decisions are checked against the other side's event suppression structure as read just before,
 * with the rule re-derived in packed-loopback.ts, and the positions each side arms are checked
 * against a model of both sides' positions.
 */
function runWrap(cfg: WrapConfig): void {
  const lb = newPacked(cfg.size, cfg.eventIdx, cfg.indirectMax);
  const indirect = cfg.indirectMax !== 0 && cfg.segs > 1 && cfg.segs <= cfg.indirectMax;
  const descPerChain = indirect ? 1 : cfg.segs;
  const capacity = Math.floor(cfg.size / descPerChain);
  assert.ok(capacity >= 1);
  const baseline = lb.state();
  assert.deepEqual(baseline, { broken: false, reason: '', inFlight: 0, freeDescriptors: cfg.size });
  const batch = new Uint32Array(Math.max(...cfg.batches) * (2 + 4 * cfg.segs));

  const avail = new Pos(cfg.size); // driver's published position
  const deviceAvail = new Pos(cfg.size);
  const used = new Pos(cfg.size); // device's published used position
  const drained = new Pos(cfg.size);
  let nextSeq = 0;
  let expectSeq = 0;
  let fixedFrom = -1;
  let fixedTo = -1;
  let round = 0;
  let kicks = 0;
  let suppressedKicks = 0;
  let irqs = 0;
  let suppressedIrqs = 0;
  let laps = 0;

  while (expectSeq < TOTAL) {
    const inFlight = nextSeq - expectSeq;
    const offered = Math.min(cfg.batches[round % cfg.batches.length], TOTAL - nextSeq);
    if (offered > 0) {
      fillBatch(batch, nextSeq, offered, cfg.segs);
      const accepted = lb.submit(batch, offered);
      eq(accepted, Math.min(offered, capacity - inFlight), () => `round ${round}: accepted`);
      nextSeq += accepted;
      const ev = lb.eventSuppression().device;
      const kick = lb.publish();
      if (accepted === 0) {
        eq(kick, false, () => 'publish with nothing new asked for a kick');
      } else {
        const old = avail.lin;
        avail.advance(accepted * descPerChain);
        if (avail.lin < old) laps++;
        const want = shouldNotify(ev, cfg.size, cfg.eventIdx, old, avail.lin);
        eq(kick, want, () => `round ${round}: kick (${old}->${avail.lin}, event ${JSON.stringify(ev)})`);
        if (kick) kicks++;
        else suppressedKicks++;
      }
    }

    if (round % 3 !== 2) {
      const fixed = round % 5 === 0;
      const pending = ((avail.lin - deviceAvail.lin + 2 * cfg.size) % (2 * cfg.size)) / descPerChain;
      const done = fixed ? lb.deviceCompleteAll(1) : lb.deviceCompleteAll();
      eq(done, pending, () => `round ${round}: device consumed everything published`);
      if (fixed && done > 0) {
        fixedFrom = nextSeq - pending;
        fixedTo = nextSeq;
      }
      deviceAvail.lin = avail.lin;
      const ev = lb.eventSuppression().driver;
      const irq = lb.devicePublish();
      if (done === 0) {
        eq(irq, false, () => 'devicePublish with nothing new asked for an interrupt');
      } else {
        const old = used.lin;
        used.advance(done * descPerChain);
        const want = shouldNotify(ev, cfg.size, cfg.eventIdx, old, used.lin);
        eq(irq, want, () => `round ${round}: interrupt (${old}->${used.lin}, event ${JSON.stringify(ev)})`);
        if (irq) irqs++;
        else suppressedIrqs++;
      }
      if (round % 4 !== 1) {
        eq(lb.deviceEnableNotify(), false, () => 'deviceEnableNotify after consuming everything');
        const dev = lb.eventSuppression().device;
        if (cfg.eventIdx) {
          eq(dev.flags, 2, () => 'device arms DESC');
          eq(dev.off, deviceAvail.off, () => 'device event offset');
          eq(dev.wrap, deviceAvail.wrap, () => 'device event wrap');
        } else {
          eq(dev.flags, 0, () => 'device enables');
        }
      }
    }

    const n = lb.drain();
    eq(n, ((used.lin - drained.lin + 2 * cfg.size) % (2 * cfg.size)) / descPerChain, () => `round ${round}: drained`);
    const comp = lb.completions;
    for (let i = 0; i < n; i++) {
      const seq = expectSeq++;
      eq(comp[2 * i], tokenFor(seq), () => `completion ${seq}: token (in order, exactly once)`);
      const wantLen = seq >= fixedFrom && seq < fixedTo ? 1 : chainWritableBytes(seq, cfg.segs);
      eq(comp[2 * i + 1], wantLen, () => `completion ${seq}: len`);
    }
    drained.advance(n * descPerChain);
    if (round % 5 !== 3) {
      eq(lb.enableInterrupts(), false, () => 'enableInterrupts with nothing completed since drain');
      const drv = lb.eventSuppression().driver;
      if (cfg.eventIdx) {
        eq(drv.flags, 2, () => 'driver arms DESC');
        eq(drv.off, drained.off, () => 'driver event offset');
        eq(drv.wrap, drained.wrap, () => 'driver event wrap');
      } else {
        eq(drv.flags, 0, () => 'driver enables');
      }
    }
    if ((round & 63) === 0) {
      const st = lb.state();
      assert.equal(st.broken, false, st.reason);
      assert.equal(st.inFlight, nextSeq - expectSeq);
      assert.equal(st.freeDescriptors, cfg.size - st.inFlight * descPerChain);
    }
    round++;
  }
  assert.ok(laps >= 4, `the wrap counters flipped many times (${laps} double laps)`);
  assert.deepEqual(lb.state(), baseline, 'back to the empty ring');
  assert.equal(lb.devicePop(), undefined);
  assert.equal(lb.drain(), 0);
  assert.equal(lb.abandon().length, 0);
  if (cfg.eventIdx) {
    assert.ok(kicks > 0 && suppressedKicks > 0, `DESC mode both kicked and suppressed (${kicks}/${suppressedKicks})`);
    assert.ok(irqs > 0 && suppressedIrqs > 0, `DESC mode both interrupted and suppressed (${irqs}/${suppressedIrqs})`);
  } else {
    assert.equal(suppressedKicks + suppressedIrqs, 0, 'ENABLE mode never suppresses');
  }
}

describe('packed: wrap counters over many laps, in-order completion', () => {
  const configs: WrapConfig[] = [
    { size: 1, eventIdx: true, indirectMax: 0, segs: 1, batches: [1, 2, 1] },
    { size: 2, eventIdx: false, indirectMax: 2, segs: 2, batches: [2, 1, 3] },
    { size: 3, eventIdx: true, indirectMax: 0, segs: 2, batches: [1, 2] }, // chains cross the ring end
    { size: 5, eventIdx: true, indirectMax: 0, segs: 1, batches: [3, 4, 6, 1] },
    { size: 7, eventIdx: false, indirectMax: 0, segs: 3, batches: [1, 2] },
    { size: 100, eventIdx: true, indirectMax: 8, segs: 3, batches: [99, 130, 7, 100, 1] },
    { size: 255, eventIdx: true, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
    { size: 256, eventIdx: false, indirectMax: 0, segs: 2, batches: [100, 129, 3, 64] },
  ];
  for (const cfg of configs) {
    const name =
      `size ${cfg.size}, ${cfg.eventIdx ? 'event-idx' : 'flags'}, ${cfg.segs}-segment chains` +
      (cfg.indirectMax ? `, indirectMax ${cfg.indirectMax}` : '');
    it(name, () => runWrap(cfg));
  }
});

describe('packed: descriptor flags on the ring', () => {
  it('the driver writes AVAIL=wrap, USED=!wrap; the device answers AVAIL=USED=wrap; laps alternate', () => {
    const size = 3;
    const lb = newPacked(size, false, 0);
    const pos = new Pos(size);
    for (let lap = 0; lap < 6; lap++) {
      // One 2-descriptor chain and one 1-descriptor chain fill the ring exactly once per lap.
      const chains: ChainSpec[] = [
        {
          token: lap * 2,
          segs: [
            { offset: 0, length: 8, writable: false },
            { offset: 64, length: 8, writable: true },
          ],
        },
        { token: lap * 2 + 1, segs: [{ offset: 128, length: 4, writable: true }] },
      ];
      assert.equal(lb.submit(encode(chains), 2), 2);
      const wrap = pos.wrap;
      // Before publish the head flags still belong to the previous lap: the device sees nothing.
      assert.equal(lb.devicePop(), undefined, 'nothing visible before publish');
      const before = lb.peekDescriptor(0).flags;
      assert.equal(before & 0x8080, lap === 0 ? 0 : usedFlags(!wrap), 'head keeps last lap\u2019s used flags');
      lb.publish();
      const heads = [lb.peekDescriptor(0), lb.peekDescriptor(1), lb.peekDescriptor(2)];
      assert.equal(heads[0].flags, availFlags(wrap) | 1, 'head: AVAIL/USED + NEXT');
      assert.equal(heads[1].flags, availFlags(wrap) | 2, 'tail: AVAIL/USED + WRITE');
      assert.equal(heads[2].flags, availFlags(wrap) | 2);
      assert.equal(heads[0].id, heads[1].id, 'the id is in every descriptor of the chain');
      const a = popChain(lb);
      const b = popChain(lb);
      assert.equal(a.head, heads[1].id, 'the device takes the id from the last descriptor');
      assert.equal(b.head, heads[2].id);
      // Out of order: the short chain first. Its used descriptor goes to slot 0, the long one to 1.
      lb.devicePush(b.head, 3);
      lb.devicePush(a.head, 5);
      lb.devicePublish();
      assert.equal(lb.peekDescriptor(0).flags & 0x8080, usedFlags(wrap));
      assert.equal(lb.peekDescriptor(0).id, b.head);
      assert.equal(lb.peekDescriptor(1).flags & 0x8080, usedFlags(wrap));
      assert.equal(lb.peekDescriptor(1).id, a.head);
      assert.equal(lb.peekDescriptor(1).len, 5);
      assert.equal(lb.peekDescriptor(2).flags & 0x8080, availFlags(wrap), 'slot 2 was skipped');
      assert.deepEqual(drainPairs(lb), [
        [lap * 2 + 1, 3],
        [lap * 2, 5],
      ]);
      pos.advance(size);
    }
    assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
  });
});

/** Out of order: each round the device pops everything and pushes the ids back in reverse order. */
function runReverse(size: number, segs: number, indirectMax: number, total = TOTAL): void {
  const lb = newPacked(size, true, indirectMax);
  const indirect = indirectMax !== 0 && segs > 1 && segs <= indirectMax;
  const capacity = Math.floor(size / (indirect ? 1 : segs));
  const batch = new Uint32Array((capacity + 3) * (2 + 4 * segs));
  const ids: number[] = [];
  const lens: number[] = [];
  let nextSeq = 0;
  let completed = 0;
  let round = 0;
  while (completed < total) {
    const offered = Math.min(round % 2 === 0 ? capacity + 3 : Math.max(1, capacity >> 1), total - nextSeq);
    fillBatch(batch, nextSeq, offered, segs);
    const accepted = lb.submit(batch, offered);
    eq(accepted, Math.min(offered, capacity), () => `round ${round}: accepted`);
    const first = nextSeq;
    nextSeq += accepted;
    lb.publish();
    ids.length = 0;
    lens.length = 0;
    for (let seq = first; seq < nextSeq; seq++) {
      const c = popChain(lb);
      const bufs = [...c.readable, ...c.writable];
      eq(bufs.length, segs, () => `seq ${seq}: buffer count`);
      for (let i = 0; i < segs; i++) {
        eq(bufs[i].offset, segOffset(seq, i), () => `seq ${seq} buffer ${i}: offset`);
        eq(bufs[i].length, segLength(seq, i), () => `seq ${seq} buffer ${i}: length`);
      }
      ids.push(c.head);
      const wb = chainWritableBytes(seq, segs);
      lens.push(seq % 2 === 0 ? wb : wb >> 1);
    }
    assert.equal(lb.devicePop(), undefined);
    for (let i = ids.length - 1; i >= 0; i--) lb.devicePush(ids[i], lens[i]);
    lb.devicePublish();
    const n = lb.drain();
    eq(n, accepted, () => `round ${round}: drained count`);
    const comp = lb.completions;
    for (let i = 0; i < n; i++) {
      const seq = nextSeq - 1 - i;
      eq(comp[2 * i], tokenFor(seq), () => `round ${round} completion ${i}: token`);
      eq(comp[2 * i + 1], lens[accepted - 1 - i], () => `round ${round} completion ${i}: len`);
    }
    completed += n;
    lb.enableInterrupts();
    if ((round & 31) === 0) {
      const st = lb.state();
      assert.equal(st.broken, false, st.reason);
      assert.equal(st.freeDescriptors, size);
    }
    round++;
  }
  assert.deepEqual(lb.state(), { broken: false, reason: '', inFlight: 0, freeDescriptors: size });
}

describe('packed: wrap-around with reverse-order completion', () => {
  it('size 2, single-descriptor chains', () => runReverse(2, 1, 0));
  it('size 5, 2-descriptor chains (chains and used skips cross the ring end)', () => runReverse(5, 2, 0, 30000));
  it('size 256, 3-descriptor direct chains', () => runReverse(256, 3, 0));
  it('size 100, 3-segment indirect chains', () => runReverse(100, 3, 4, 20000));
});

/**
 * Randomised model check: chains of 1-4 segments (some indirect); the device holds an arbitrary
 * subset and returns it shuffled with arbitrary lengths. The used descriptors then skip by each
 * chain's own length, so the driver's per-id descriptor counts are exercised in every order.
 */
function runRandom(size: number, indirectMax: number, seed: number, completions: number): void {
  const r = rng(seed);
  const lb = newPacked(size, seed % 2 === 0, indirectMax);
  interface Live {
    seq: number;
    spec: ChainSpec;
    descs: number;
  }
  const published: Live[] = [];
  const held = new Map<number, Live>();
  const byToken = new Map<number, Live>();
  let free = size;
  let seq = 0;
  let done = 0;
  while (done < completions) {
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
    if (accepted > 0 && randInt(r, 0, 3) === 0) {
      if (published.length === accepted) assert.equal(lb.devicePop(), undefined, 'unpublished chains are invisible');
      continue;
    }
    lb.publish();
    const pops = randInt(r, 0, published.length);
    for (let i = 0; i < pops; i++) {
      const live = published.shift();
      assert.ok(live);
      const c = popChain(lb);
      assert.equal(held.has(c.head), false, 'an id is never handed out twice');
      assert.ok(c.head < size, 'ids stay below the queue size');
      assert.deepEqual(
        [...c.readable, ...c.writable].map((b) => [b.offset, b.length]),
        live.spec.segs.map((x) => [x.offset, x.length]),
        `seq ${live.seq}: device sees the submitted buffers`,
      );
      held.set(c.head, live);
    }
    if (published.length === 0) assert.equal(lb.devicePop(), undefined);
    const ids = [...held.keys()];
    for (let i = ids.length - 1; i > 0; i--) {
      const j = randInt(r, 0, i);
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
    const back = ids.slice(0, randInt(r, 0, ids.length));
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
  assert.deepEqual(
    [...lb.abandon()].sort((a, b) => a - b),
    [...byToken.keys()].sort((a, b) => a - b),
  );
}

describe('packed: randomised out-of-order completion', () => {
  it('size 8, no indirect', () => runRandom(8, 0, 1, 8000));
  it('size 13, indirectMax 3', () => runRandom(13, 3, 2, 8000));
  it('size 4, indirectMax 2', () => runRandom(4, 2, 3, 5000));
  it('size 6, no indirect', () => runRandom(6, 0, 4, 5000));
});
