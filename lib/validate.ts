// Argument checks shared by the public API: they throw before anything reaches native code.

/** Throws a TypeError unless `v` is a number, a RangeError unless it is an integer in [min, max]. */
export function checkInteger(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max)
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  return v;
}

export function checkBoolean(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean`);
  return v;
}

export function checkObject(v: unknown, name: string): void {
  if (v === null || typeof v !== 'object') throw new TypeError(`${name} must be an object`);
}

/** A byte offset/length pair for block I/O: non-negative, 512-aligned, inside `limit` bytes. */
export function checkBlockRange(offset: unknown, length: unknown, limit: number, allowEmpty = false): void {
  if (typeof offset !== 'number') throw new TypeError(`offset must be a number, got ${typeof offset}`);
  if (typeof length !== 'number') throw new TypeError(`length must be a number, got ${typeof length}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative integer`);
  if (!Number.isSafeInteger(length) || length < (allowEmpty ? 0 : 1))
    throw new RangeError(`length must be a positive integer`);
  if (offset % 512 !== 0) throw new RangeError(`offset ${offset} is not a multiple of 512`);
  if (length % 512 !== 0) throw new RangeError(`length ${length} is not a multiple of 512`);
  if (offset + length > limit)
    throw new RangeError(`range ${offset}+${length} is past the end of the device (${limit} bytes)`);
}

/** `pollMicros` of {@link BlkOptions} and {@link NetOptions}, checked; 0 when absent. */
export function checkPollMicros(value: unknown): number {
  return value === undefined ? 0 : checkInteger(value, 'pollMicros', 0, 1_000_000);
}
