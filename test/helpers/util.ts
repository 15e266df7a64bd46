// Small helpers shared by the conformance and API tests.
import assert from 'node:assert/strict';
import path from 'node:path';
import { VdpaError } from '../../lib';

/** Absolute path of the compiled library (dist/lib), for child processes and workers. */
export const LIB_PATH = path.resolve(__dirname, '..', '..', 'lib');

/** mulberry32: a small seeded generator in [0, 1), so a failure can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A small seeded PRNG (xorshift32), so a failing layout can be reproduced with VDPA_TEST_SEED. */
export class Rng {
  private s: number;
  readonly seed: number;
  constructor(seed?: number) {
    const env = process.env.VDPA_TEST_SEED;
    this.seed = seed ?? (env ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0);
    this.s = this.seed || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x;
  }
  /** Integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.next() / 2 ** 32) * n);
  }
  fill(buf: Uint8Array): Uint8Array {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const v = this.next();
      buf[i] = v & 0xff;
      buf[i + 1] = (v >>> 8) & 0xff;
      buf[i + 2] = (v >>> 16) & 0xff;
      buf[i + 3] = v >>> 24;
    }
    for (; i < buf.length; i++) buf[i] = this.next() & 0xff;
    return buf;
  }
  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }
}

/** Byte-exact comparison that reports the first difference instead of dumping megabytes. */
export function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (Buffer.compare(actual, expected) === 0) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  let diff = 0;
  for (let j = i; j < actual.length; j++) if (actual[j] !== expected[j]) diff++;
  assert.fail(
    `${what}: ${diff} of ${actual.length} bytes differ, first at ${i} (got ${actual[i]}, want ${expected[i]})`,
  );
}

/** Asserts every byte of `buf` equals `value`. */
export function assertFilled(buf: Uint8Array, value: number, what: string): void {
  const i = buf.findIndex((b) => b !== value);
  if (i >= 0) assert.fail(`${what}: byte ${i} of ${buf.length} is ${buf[i]}, want ${value}`);
}

/** Awaits `p`, which must reject with a VdpaError carrying `code`; returns the error. */
export async function rejectsWithCode(p: Promise<unknown>, code: string, what = 'operation'): Promise<VdpaError> {
  let settled: unknown;
  try {
    await p;
  } catch (e) {
    settled = e;
    assert.ok(e instanceof VdpaError, `${what}: expected a VdpaError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    assert.equal(typeof e.errno, 'number', `${what}: errno`);
    assert.ok(e.errno < 0, `${what}: errno ${e.errno} should be negative`);
    assert.equal(typeof e.syscall, 'string', `${what}: syscall`);
    return e;
  }
  assert.fail(`${what}: expected rejection with ${code}, but it resolved (${String(settled)})`);
}

/** Awaits `p`, which must reject with an instance of `cls`. */
export async function rejectsWith(p: unknown, cls: new (...args: never[]) => Error, what: string): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(
      e instanceof cls,
      `${what}: expected ${cls.name}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
    );
    return e;
  }
  assert.fail(`${what}: expected ${cls.name}, but it succeeded`);
}

/**
 * Runs `fn`, which must either throw `cls` synchronously or return a Promise that rejects with it.
 * Also checks that a returned Promise is rejected already, before any I/O could have happened.
 */
export async function failsWith(fn: () => unknown, cls: new (...args: never[]) => Error, what: string): Promise<Error> {
  let result: unknown;
  try {
    result = fn();
  } catch (e) {
    assert.ok(
      e instanceof cls,
      `${what}: expected ${cls.name}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
    );
    return e;
  }
  assert.ok(result instanceof Promise, `${what}: expected ${cls.name}, but it returned ${String(result)}`);
  // An already-rejected promise settles within a couple of microtasks; one waiting for the device
  // needs a trip through the event loop.
  let state = 'pending';
  result.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  for (let i = 0; i < 4; i++) await Promise.resolve();
  if (state === 'resolved') {
    // Whatever it opened by mistake must not outlive the test (an open device at exit is noise).
    const value: unknown = await result;
    if (value && typeof (value as { close?: unknown }).close === 'function')
      await (value as { close: () => Promise<void> }).close();
  }
  assert.equal(state, 'rejected', `${what}: the promise should be rejected before any I/O (it ${state})`);
  return rejectsWith(result, cls, what);
}

/** One trip through the event loop (lets completions arrive). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Records how each promise settled without awaiting it. */
export function track<T>(p: Promise<T>): { state: () => 'pending' | 'resolved' | 'rejected'; error: () => unknown } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  let error: unknown;
  p.then(
    () => (state = 'resolved'),
    (e: unknown) => {
      state = 'rejected';
      error = e;
    },
  );
  return { state: () => state, error: () => error };
}

/**
 * Per-test limit, so a hung request fails its test instead of the whole run. Not a performance
 * bound: generous, and VDPA_TEST_TIMEOUT_MS raises it for slow machines (TCG guests).
 */
export const TEST_TIMEOUT = Number(process.env.VDPA_TEST_TIMEOUT_MS) || 10_000;

/** Runs a full garbage collection (the test runner passes --expose-gc). */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.equal(typeof gc, 'function', 'run the tests with node --expose-gc');
  (gc as () => void)();
}
