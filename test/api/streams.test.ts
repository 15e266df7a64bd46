// Node streams over the devices: blk.createReadStream/createWriteStream through stream.pipeline
// against files, their block alignment, their bound on requests in flight (counted by wrapping
// blk.read/blk.write, not by timing), errors and destroy(); net.createFrameStream as an object-mode
// Duplex of frames over the mock's loopback.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import {
  AbortError,
  VdpaError,
  openBlk,
  openNet,
  type BlkDevice,
  type NetDevice,
  type RequestOptions,
} from '../../lib';
import { Rng, TEST_TIMEOUT, assertBytes } from '../helpers/util';

const T = { timeout: TEST_TIMEOUT };
const MiB = 1 << 20;

/** Requests of one kind: how many were made, are in flight now, were at most, and were aborted. */
interface Counter {
  calls: number;
  inFlight: number;
  max: number;
  aborted: number;
}

function counted<P>(c: Counter, p: Promise<P>): Promise<P> {
  c.calls++;
  c.inFlight++;
  c.max = Math.max(c.max, c.inFlight);
  return p.then(
    (v) => (c.inFlight--, v),
    (e: unknown) => {
      c.inFlight--;
      if (e instanceof AbortError) c.aborted++;
      throw e;
    },
  );
}

/** Counts the reads and writes the streams make on `blk` (they go through these methods). */
function countRequests(blk: BlkDevice): { reads: Counter; writes: Counter; flushes: Counter } {
  const reads: Counter = { calls: 0, inFlight: 0, max: 0, aborted: 0 };
  const writes: Counter = { ...reads };
  const flushes: Counter = { ...reads };
  const read = blk.read.bind(blk);
  const write = blk.write.bind(blk);
  const flush = blk.flush.bind(blk);
  blk.read = <B extends Uint8Array>(offset: number, buffer: B, options?: RequestOptions): Promise<B> =>
    counted(reads, read(offset, buffer, options));
  blk.write = (offset: number, buffer: Uint8Array, options?: RequestOptions): Promise<void> =>
    counted(writes, write(offset, buffer, options));
  blk.flush = (options?: RequestOptions): Promise<void> => counted(flushes, flush(options));
  return { reads, writes, flushes };
}

/** Lets the event loop run (device completions included) until `done()` holds; no clock involved. */
async function settle(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (done()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`never settled: ${what}`);
}

/** A few more turns of the event loop, for anything that would still happen to happen. */
async function spin(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** A Writable that keeps what it gets and takes one chunk per event-loop turn (a slow consumer). */
function slowSink(): { sink: Writable; chunks: Buffer[] } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      setImmediate(cb);
    },
  });
  return { sink, chunks };
}

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vdpa-streams-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('blk streams: pipeline against files', () => {
  for (const shape of [
    { name: 'defaults', open: {}, stream: {} },
    {
      name: '2 queues, 4 KiB chunks, depth 8',
      open: { numQueues: 2, queueSize: 16 },
      stream: { highWaterMark: 4096, depth: 8 },
    },
    {
      name: 'packed, 1 MiB chunks, depth 1',
      open: { packed: true, queueSize: 100 },
      stream: { highWaterMark: MiB, depth: 1 },
    },
  ]) {
    test(`file -> createWriteStream -> createReadStream -> file (${shape.name})`, T, async () => {
      const rng = new Rng();
      const blk = await openBlk('mock:blk', {
        ...shape.open,
        mock: { capacity: 8 * MiB, numQueues: shape.open.numQueues ?? 1 },
      });
      try {
        const start = 3 * 4096;
        const data = rng.bytes(2 * MiB + 7 * 512); // not a whole number of chunks
        const input = path.join(dir, `in-${rng.seed}`);
        const output = path.join(dir, `out-${rng.seed}`);
        fs.writeFileSync(input, data);
        const guard = new Uint8Array(start).fill(0xee);
        await blk.write(0, guard);
        await blk.write(start + data.length, guard);

        const ws = blk.createWriteStream({ start, ...shape.stream });
        await pipeline(fs.createReadStream(input), ws);
        assert.equal(ws.bytesWritten, data.length);
        // An oracle that owes nothing to the streams: plain reads, and the bytes around the range.
        assertBytes(await blk.read(start, new Uint8Array(data.length)), data, 'device after the write stream');
        assertBytes(await blk.read(0, new Uint8Array(start)), guard, 'before start untouched');
        assertBytes(await blk.read(start + data.length, new Uint8Array(start)), guard, 'after the data untouched');

        const rs = blk.createReadStream({ start, end: start + data.length, ...shape.stream });
        await pipeline(rs, fs.createWriteStream(output));
        assert.equal(rs.bytesRead, data.length);
        assertBytes(fs.readFileSync(output), data, 'file read back through createReadStream');
      } finally {
        await blk.close();
      }
    });
  }

  test('chunks of any size are gathered into whole blocks; the default range is the whole device', T, async () => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { mock: { capacity: MiB } });
    try {
      const data = rng.bytes(MiB);
      const pieces: Buffer[] = [];
      for (let at = 0, n = 1; at < data.length; at += n, n = (n * 7 + 3) % 5000)
        pieces.push(Buffer.from(data.subarray(at, at + n)));
      await pipeline(Readable.from(pieces), blk.createWriteStream());
      const back: Buffer[] = [];
      for await (const chunk of blk.createReadStream()) back.push(chunk as Buffer);
      assertBytes(Buffer.concat(back), data, 'whole device');
    } finally {
      await blk.close();
    }
  });

  test('an empty range ends at once; flush: true flushes before finish', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: MiB } });
    try {
      const counts = countRequests(blk);
      const chunks: unknown[] = [];
      for await (const c of blk.createReadStream({ start: 4096, end: 4096 })) chunks.push(c);
      assert.deepEqual(chunks, []);
      assert.equal(counts.reads.calls, 0);
      await pipeline(Readable.from([Buffer.alloc(4096, 1)]), blk.createWriteStream({ flush: true }));
      assert.equal(counts.flushes.calls, 1);
      await pipeline(Readable.from([Buffer.alloc(4096, 1)]), blk.createWriteStream());
      assert.equal(counts.flushes.calls, 1, 'no flush unless asked');
    } finally {
      await blk.close();
    }
  });
});

describe('blk streams: alignment and arguments', () => {
  test('a misaligned start, end or highWaterMark is a RangeError; wrong types a TypeError', T, async () => {
    const blk = await openBlk('mock:blk', { queueSize: 16, mock: { capacity: MiB } });
    try {
      const bad: [object, new (...a: never[]) => Error][] = [
        [{ start: 100 }, RangeError],
        [{ start: -512 }, RangeError],
        [{ start: MiB + 512 }, RangeError],
        [{ highWaterMark: 1000 }, RangeError],
        [{ highWaterMark: 0 }, RangeError],
        [{ depth: 0 }, RangeError],
        [{ depth: 17 }, RangeError], // more than the queue holds
        [{ start: '0' }, TypeError],
        [{ signal: {} }, TypeError],
      ];
      for (const [o, cls] of bad) {
        assert.throws(() => blk.createReadStream(o), cls, `read ${JSON.stringify(o)}`);
        assert.throws(() => blk.createWriteStream(o), cls, `write ${JSON.stringify(o)}`);
      }
      for (const o of [{ end: 1000 }, { end: MiB + 512 }, { start: 4096, end: 512 }])
        assert.throws(() => blk.createReadStream(o), RangeError, JSON.stringify(o));
      assert.throws(() => blk.createWriteStream({ flush: 1 as unknown as boolean }), TypeError);
      assert.throws(() => blk.createReadStream(null as unknown as object), TypeError);
      assert.ok(blk.createReadStream({ depth: 16, end: 512 }), 'depth up to numQueues * queueSize');
    } finally {
      await blk.close();
    }
  });

  test('data ending inside a block: whole blocks are written, then a RangeError', T, async () => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { mock: { capacity: MiB } });
    try {
      const data = rng.bytes(3 * 4096 + 100);
      await blk.write(0, new Uint8Array(4 * 4096).fill(0x77));
      const ws = blk.createWriteStream({ highWaterMark: 4096 });
      await assert.rejects(pipeline(Readable.from([Buffer.from(data)]), ws), (e: unknown) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, /100 bytes into the 512-byte block at 12288/);
        return true;
      });
      assert.equal(ws.bytesWritten, 3 * 4096);
      assertBytes(await blk.read(0, new Uint8Array(3 * 4096)), data.subarray(0, 3 * 4096), 'whole blocks');
      const tail = await blk.read(3 * 4096, new Uint8Array(512));
      assert.ok(
        tail.every((b) => b === 0x77),
        'the partial block is not written',
      );
    } finally {
      await blk.close();
    }
  });

  test('data past the end of the device: what fits is written, then ENOSPC', T, async () => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { mock: { capacity: 64 * 1024 } });
    try {
      const data = rng.bytes(64 * 1024);
      const ws = blk.createWriteStream({ start: 60 * 1024, highWaterMark: 1024 });
      await assert.rejects(pipeline(Readable.from([Buffer.from(data)]), ws), (e: unknown) => {
        assert.ok(e instanceof VdpaError && e.code === 'ENOSPC', String(e));
        return true;
      });
      assert.equal(ws.bytesWritten, 4096);
      assertBytes(await blk.read(60 * 1024, new Uint8Array(4096)), data.subarray(0, 4096), 'what fits');
    } finally {
      await blk.close();
    }
  });
});

describe('blk streams: backpressure and requests in flight', () => {
  test('a read stream keeps at most depth reads in flight and stops reading ahead for a slow consumer', T, async () => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { queueSize: 64, mock: { capacity: 4 * MiB } });
    try {
      const data = rng.bytes(4 * MiB);
      await blk.write(0, data);
      const counts = countRequests(blk);
      const chunk = 16 * 1024;
      const depth = 3;
      const rs = blk.createReadStream({ highWaterMark: chunk, depth });
      rs.read(0); // starts reading; nobody consumes
      await settle(() => rs.readableLength > 0 && counts.reads.inFlight === 0, 'read-ahead');
      await spin();
      assert.equal(counts.reads.max, depth, 'the first read-ahead fills the window, and no more');
      // Paused: what it read ahead is bounded by its buffer plus one window, far short of 4 MiB.
      assert.ok(counts.reads.calls <= 2 * depth, `${counts.reads.calls} reads issued while paused`);
      assert.ok(rs.readableLength <= chunk + depth * chunk, `${rs.readableLength} bytes buffered`);
      const calls = counts.reads.calls;
      await spin();
      assert.equal(counts.reads.calls, calls, 'nothing more while nobody reads');

      const { sink, chunks } = slowSink();
      await pipeline(rs, sink);
      assertBytes(Buffer.concat(chunks), data, 'in device order');
      assert.equal(counts.reads.calls, (4 * MiB) / chunk);
      assert.equal(counts.reads.max, depth, 'never more than depth in flight');
    } finally {
      await blk.close();
    }
  });

  test('a write stream keeps at most depth writes in flight; write() reports backpressure', T, async () => {
    const rng = new Rng();
    const blk = await openBlk('mock:blk', { queueSize: 64, mock: { capacity: 4 * MiB } });
    try {
      const counts = countRequests(blk);
      const depth = 5;
      const ws = blk.createWriteStream({ highWaterMark: 8192, depth });
      const data = rng.bytes(4 * MiB);
      assert.equal(ws.write(data), false, 'a write larger than highWaterMark asks the producer to wait');
      assert.equal(counts.writes.inFlight, depth, 'depth writes issued at once, the rest wait');
      ws.end();
      await once(ws, 'finish');
      assert.equal(counts.writes.max, depth);
      assert.equal(counts.writes.calls, (4 * MiB) / 8192);
      assertBytes(await blk.read(0, new Uint8Array(4 * MiB)), data, 'device');
    } finally {
      await blk.close();
    }
  });

  test('destroy() aborts the requests in flight through their AbortSignal (a stalled device)', T, async () => {
    const blk = await openBlk('mock:blk', { queueSize: 16, mock: { capacity: MiB, fault: 'stall', faultAfter: 0 } });
    try {
      const counts = countRequests(blk);
      const rs = blk.createReadStream({ highWaterMark: 4096, depth: 4 });
      rs.read(0);
      const ws = blk.createWriteStream({ highWaterMark: 4096, depth: 2 });
      ws.write(Buffer.alloc(64 * 1024));
      assert.equal(counts.reads.inFlight, 4);
      assert.equal(counts.writes.inFlight, 2);
      await spin(); // the device holds them all
      assert.equal(counts.reads.inFlight + counts.writes.inFlight, 6);
      const closed = Promise.all([once(rs, 'close'), once(ws, 'close')]);
      rs.destroy();
      ws.destroy();
      await closed;
      await settle(() => counts.reads.inFlight + counts.writes.inFlight === 0, 'aborted requests');
      assert.equal(counts.reads.aborted, 4);
      assert.equal(counts.writes.aborted, 2);
      assert.equal(counts.reads.calls, 4, 'nothing issued after destroy');
    } finally {
      await blk.close();
    }
  });

  test('the signal option destroys the stream with an AbortError', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: MiB } });
    try {
      const ac = new AbortController();
      const rs = blk.createReadStream({ highWaterMark: 4096, signal: ac.signal });
      const { sink } = slowSink();
      const done = pipeline(rs, sink);
      await once(rs, 'data');
      ac.abort();
      await assert.rejects(done, { name: 'AbortError' });
    } finally {
      await blk.close();
    }
  });
});

describe('blk streams: errors', () => {
  test('a device closed under a read stream fails the pipeline with its VdpaError', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: 4 * MiB } });
    const sink = new Writable({
      write(_chunk, _enc, cb) {
        void blk.close();
        cb();
      },
    });
    await assert.rejects(pipeline(blk.createReadStream({ highWaterMark: 4096 }), sink), (e: unknown) => {
      assert.ok(e instanceof VdpaError && ['ECANCELED', 'EBADF'].includes(e.code), String(e));
      return true;
    });
  });

  test('a read-only device fails a write stream with EROFS', T, async () => {
    const blk = await openBlk('mock:blk', { mock: { capacity: MiB, readOnly: true } });
    try {
      await assert.rejects(pipeline(Readable.from([Buffer.alloc(4096)]), blk.createWriteStream()), (e: unknown) => {
        assert.ok(e instanceof VdpaError && e.code === 'EROFS', String(e));
        return true;
      });
    } finally {
      await blk.close();
    }
  });
});

/** A frame to the loopback's own MAC, with a sequence number and `size - 18` random bytes. */
function frame(net: NetDevice, rng: Rng, n: number, size = 64): Buffer {
  const f = Buffer.from(rng.bytes(size));
  f.set(net.mac, 0);
  f.set(net.mac, 6);
  f.writeUInt16BE(0x88b5, 12);
  f.writeUInt32BE(n, 14);
  return f;
}

function countNet(net: NetDevice): { sends: Counter; receives: Counter } {
  const sends: Counter = { calls: 0, inFlight: 0, max: 0, aborted: 0 };
  const receives: Counter = { ...sends };
  const send = net.send.bind(net);
  const receive = net.receive.bind(net);
  net.send = (f: Uint8Array, options?: RequestOptions): Promise<void> => counted(sends, send(f, options));
  net.receive = (options?: RequestOptions): Promise<Uint8Array> => counted(receives, receive(options));
  return { sends, receives };
}

describe('net.createFrameStream: an object-mode Duplex of frames', () => {
  test('pipeline: frames written come back out of the loopback, in order; closing the device ends it', T, async () => {
    const rng = new Rng();
    const net = await openNet('mock:net', { queueSize: 64 });
    const sent = Array.from({ length: 500 }, (_, i) => frame(net, rng, i, 60 + (i % 1400)));
    const got: Uint8Array[] = [];
    const duplex = net.createFrameStream();
    const sink = new Writable({
      objectMode: true,
      write(f: Uint8Array, _enc, cb) {
        got.push(f);
        if (got.length === sent.length) void net.close(); // the readable side ends with the device
        cb();
      },
    });
    await pipeline(Readable.from(sent), duplex, sink);
    assert.equal(got.length, sent.length);
    for (let i = 0; i < sent.length; i++) assertBytes(got[i] as Uint8Array, sent[i] as Buffer, `frame ${i}`);
    assert.equal(duplex.framesSent, sent.length);
    assert.equal(duplex.framesReceived, sent.length);
    assert.equal(net.droppedFrames, 0);
  });

  test('a slow reader: the stream stops receiving at highWaterMark; nothing is lost', T, async () => {
    const rng = new Rng();
    const net = await openNet('mock:net', { queueSize: 64 });
    try {
      const counts = countNet(net);
      const hwm = 4;
      const duplex = net.createFrameStream({ highWaterMark: hwm });
      assert.equal(counts.receives.calls, 0, 'nothing received before the first read');
      duplex.read(0);
      const frames = Array.from({ length: 50 }, (_, i) => frame(net, rng, i));
      await net.sendBatch(frames);
      await settle(() => duplex.readableLength === hwm, 'readable buffer full');
      await spin();
      assert.equal(duplex.readableLength, hwm);
      assert.equal(counts.receives.calls, hwm, 'no receive while the buffer is full');
      assert.equal(counts.receives.inFlight, 0);
      let n = 0;
      for await (const f of duplex) {
        const u = f as Uint8Array;
        assert.equal(new DataView(u.buffer, u.byteOffset, u.length).getUint32(14), n, 'in order');
        if (++n === frames.length) break;
      }
      assert.equal(counts.receives.max, 1, 'one receive at a time');
      assert.equal(net.droppedFrames, 0);
    } finally {
      await net.close();
    }
  });

  test('writes: at most depth sends in flight; end() finishes the writable side only', T, async () => {
    const rng = new Rng();
    const net = await openNet('mock:net', { queueSize: 64 });
    try {
      const counts = countNet(net);
      const depth = 8;
      const duplex = net.createFrameStream({ depth, highWaterMark: 16 });
      const frames = Array.from({ length: 200 }, (_, i) => frame(net, rng, i));
      for (const f of frames) duplex.write(f);
      assert.equal(counts.sends.inFlight, depth, 'depth sends at once, the rest buffered');
      duplex.end();
      await once(duplex, 'finish');
      assert.equal(counts.sends.max, depth);
      assert.equal(counts.sends.calls, frames.length);
      // Half-open: the readable side still delivers what the loopback returns.
      let n = 0;
      for await (const f of duplex) {
        assertBytes(f as Uint8Array, frames[n] as Buffer, `frame ${n}`);
        if (++n === frames.length) break;
      }
      assert.equal(net.device.closed, false, 'the stream never closes the device');
    } finally {
      await net.close();
    }
  });

  test('destroy() aborts the pending receive; the next frame goes to the next reader', T, async () => {
    const rng = new Rng();
    const net = await openNet('mock:net');
    try {
      const counts = countNet(net);
      const duplex = net.createFrameStream();
      duplex.read(0);
      assert.equal(counts.receives.inFlight, 1);
      duplex.destroy();
      await once(duplex, 'close');
      await settle(() => counts.receives.inFlight === 0, 'aborted receive');
      assert.equal(counts.receives.aborted, 1);
      const f = frame(net, rng, 7);
      await net.send(f);
      assertBytes(await net.receive(), f, 'the frame is not lost to the destroyed stream');
    } finally {
      await net.close();
    }
  });

  test('a frame of the wrong size destroys the stream with the RangeError of send()', T, async () => {
    const net = await openNet('mock:net');
    try {
      const duplex = net.createFrameStream();
      duplex.write(new Uint8Array(10));
      const [err] = (await once(duplex, 'error')) as [Error];
      assert.ok(err instanceof RangeError, String(err));
      assert.ok(duplex.destroyed);
      assert.throws(() => net.createFrameStream({ depth: 0 }), RangeError);
      assert.throws(() => net.createFrameStream({ depth: net.queueSize + 1 }), RangeError);
      assert.throws(() => net.createFrameStream({ highWaterMark: 1.5 }), RangeError);
      assert.throws(() => net.createFrameStream({ signal: 'x' as unknown as AbortSignal }), TypeError);
    } finally {
      await net.close();
    }
  });
});
