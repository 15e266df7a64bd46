// Helpers for the packed-ring tests: a RingLoopback built with the packed format (fifth constructor
// argument), the packed flag bits, and an independent model of packed positions and the event rule.
import assert from 'node:assert/strict';
import { addon } from './loopback';
import type { EventView, PackedRingLoopback } from '../helpers/testing-addon';

export const F_AVAIL = 1 << 7;
export const F_USED = 1 << 15;
export const EVENT_ENABLE = 0;
export const EVENT_DISABLE = 1;
export const EVENT_DESC = 2;

export type { EventView, PackedDescView } from '../helpers/testing-addon';
export type PackedLoopback = PackedRingLoopback;

export function newPacked(size: number, eventIdx: boolean, indirectMax: number, dataBytes = 1 << 16): PackedLoopback {
  const lb = new addon.RingLoopback(size, eventIdx, indirectMax, dataBytes, true);
  assert.equal(lb.packed, true);
  return lb;
}

/** Flags a driver writes to make a descriptor available on the lap with wrap counter `wrap`. */
export function availFlags(wrap: boolean): number {
  return wrap ? F_AVAIL : F_USED;
}

/** Flags a device writes to mark a descriptor used on the lap with wrap counter `wrap`. */
export function usedFlags(wrap: boolean): number {
  return wrap ? F_AVAIL | F_USED : 0;
}

/**
 * A ring position counted across laps, modulo 2 * size: what the wrap counter and offset together
 * name. Lap 0 has wrap counter 1.
 */
export class Pos {
  lin = 0; // 0 .. 2*size-1
  constructor(readonly size: number) {}
  get off(): number {
    return this.lin % this.size;
  }
  get wrap(): boolean {
    return this.lin < this.size;
  }
  advance(n: number): void {
    this.lin = (this.lin + n) % (2 * this.size);
  }
  clone(): Pos {
    const p = new Pos(this.size);
    p.lin = this.lin;
    return p;
  }
}

/** offWrap as the event suppression structure encodes it. */
export function offWrap(off: number, wrap: boolean): number {
  return off | (wrap ? 0x8000 : 0);
}

/**
 * Written independently of the C++: whether a side that moved from `oldLin` to `newLin` (linear
 * positions modulo 2*size) must notify, given the other side's event suppression structure.
 */
export function shouldNotify(ev: EventView, size: number, eventIdx: boolean, oldLin: number, newLin: number): boolean {
  if (ev.flags === EVENT_DISABLE) return false;
  if (ev.flags !== EVENT_DESC || !eventIdx) return true;
  const laps = 2 * size;
  const event = (ev.off % size) + (ev.wrap ? 0 : size);
  return (event - oldLin + laps) % laps < (newLin - oldLin + laps) % laps;
}
