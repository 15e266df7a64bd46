// Shared helper for the ring tests: the testing addon (RingLoopback and needEvent), plus small
// builders for submit() batches.
import assert from 'node:assert/strict';
export { rng } from '../helpers/util';
import { type DeviceChainView, type DevicePopResult, type RingLoopback, testingAddon } from '../helpers/testing-addon';

export type {
  DeviceBuf,
  DeviceChainView,
  DevicePopResult,
  LoopbackState,
  RingLoopback,
} from '../helpers/testing-addon';

/** Device address of the data area (offset 0 of `.data`) and of the ring memory. */
export const DATA_IOVA = 0x40000000n;
export const RING_IOVA = 0x100000n;
export const DESC_F_NEXT = 1;
export const DESC_F_WRITE = 2;
export const DESC_F_INDIRECT = 4;

export const addon = testingAddon;

export function newLoopback(size: number, eventIdx: boolean, indirectMax: number, dataBytes = 1 << 16): RingLoopback {
  return new addon.RingLoopback(size, eventIdx, indirectMax, dataBytes);
}

export interface Seg {
  offset: number;
  length: number;
  writable: boolean;
}

export interface ChainSpec {
  token: number;
  segs: Seg[];
}

/** Encodes chains in submit()'s batch format: [token, n, n x (region 1, offset, length, flags)]. */
export function encode(chains: readonly ChainSpec[]): Uint32Array {
  let words = 0;
  for (const c of chains) words += 2 + 4 * c.segs.length;
  const out = new Uint32Array(words);
  let p = 0;
  for (const c of chains) {
    out[p++] = c.token;
    out[p++] = c.segs.length;
    for (const s of c.segs) {
      out[p++] = 1;
      out[p++] = s.offset;
      out[p++] = s.length;
      out[p++] = s.writable ? 1 : 0;
    }
  }
  return out;
}

/** Submits chains and returns how many the ring accepted. */
export function submit(lb: RingLoopback, chains: readonly ChainSpec[]): number {
  return lb.submit(encode(chains), chains.length);
}

export function writableBytes(c: ChainSpec): number {
  let n = 0;
  for (const s of c.segs) if (s.writable) n += s.length;
  return n;
}

/** A chain of `readable` device-readable then `writable` device-writable 64-byte-spaced segments. */
export function simpleChain(token: number, readable: number, writable: number, len = 16, base = 0): ChainSpec {
  const segs: Seg[] = [];
  for (let i = 0; i < readable + writable; i++) {
    segs.push({ offset: base + i * 64, length: len + i, writable: i >= readable });
  }
  return { token, segs };
}

/** Runs drain() and returns the [token, len] pairs it produced. */
export function drainPairs(lb: RingLoopback): [number, number][] {
  const n = lb.drain();
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) out.push([lb.completions[2 * i], lb.completions[2 * i + 1]]);
  return out;
}

export function isChain(r: DevicePopResult): r is DeviceChainView {
  return r !== undefined && !('error' in r);
}

/** devicePop() that must yield a well-formed chain. */
export function popChain(lb: RingLoopback): DeviceChainView {
  const r = lb.devicePop();
  assert.ok(isChain(r), `expected a chain, got ${JSON.stringify(r)}`);
  return r;
}

/** devicePop() that must report a malformed chain; returns the reason. */
export function popError(lb: RingLoopback): string {
  const r = lb.devicePop();
  assert.ok(r !== undefined && 'error' in r, `expected {error}, got ${JSON.stringify(r)}`);
  assert.equal(typeof r.error, 'string');
  assert.ok(r.error.length > 0);
  return r.error;
}

interface NativeErrorShape {
  code?: unknown;
  message?: unknown;
  hint?: unknown;
}

/** Asserts `fn` throws an error with errno name `code` whose message or hint matches `text`. */
export function assertThrowsCode(fn: () => unknown, code: string, text: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, 'expected an Error');
    const err = e as NativeErrorShape;
    assert.equal(err.code, code);
    const all = `${String(err.message)} ${err.hint === undefined ? '' : String(err.hint)}`;
    assert.match(all, text);
    return true;
  });
}

/** The virtio event-index rule written independently: notify iff event lies in [old, new) mod 2^16. */
export function needEventModel(event: number, newIdx: number, oldIdx: number): boolean {
  return ((event - oldIdx) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}
