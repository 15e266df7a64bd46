// errno numbers come from Node's own table (os.constants.errno), negative like fs errors.
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { VdpaError, vdpaError } from '../../lib/errors';

test('vdpaError takes errno from os.constants.errno, negated', () => {
  for (const code of ['EBADF', 'ETIMEDOUT', 'EBUSY', 'ECANCELED', 'EPROTO', 'E2BIG'] as const) {
    const e = vdpaError(code, 'read', 'mock:blk', 'detail');
    assert.ok(e instanceof VdpaError);
    assert.equal(e.code, code);
    assert.equal(e.errno, -os.constants.errno[code]);
    assert.ok(e.errno < 0);
    assert.equal(e.syscall, 'read');
    assert.equal(e.path, 'mock:blk');
    assert.match(e.message, new RegExp(`^${code}: detail, read 'mock:blk'`));
  }
});
