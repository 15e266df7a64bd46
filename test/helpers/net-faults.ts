// The mergeable-buffer lies of mock:net (its `fault` option) and what the driver must say about each:
// the JS receive path (test/api/net-mergeable) and the native loops (test/api/net-loops) check the
// same rules with the same messages.
export const MERGEABLE_LIES: Readonly<Record<string, RegExp>> = {
  'mrg-zero-buffers': /num_buffers 0/,
  'mrg-extra-buffers': /num_buffers 3 in a received frame, but the device used 2 buffers/,
  'mrg-huge-buffers': /num_buffers 65535 .*more than the 64 buffers posted/,
  'mrg-short-head': /first buffer holds 10 bytes, less than its header/,
  'mrg-empty-buffer': /buffer 2 of 2 of a received frame is empty/,
};
