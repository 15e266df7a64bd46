// The CLI's pure parts: tables, JSON with bigints, sizes and durations, `dev add` words.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError, parseSeconds, parseSize, table, toJson } from '../../lib/cli-common';
import { parseDevAdd } from '../../lib/cli-management';

describe('CLI formatting and parsing', () => {
  it('table aligns columns to the widest cell', () => {
    assert.equal(
      table(
        ['NAME', 'X'],
        [
          ['vduse', '1'],
          ['pci/0000:03:00.2', '22'],
        ],
      ),
      'NAME              X\nvduse             1\npci/0000:03:00.2  22',
    );
  });

  it('toJson writes bigints as hex, bytes as arrays, and leaves out undefined', () => {
    assert.equal(toJson({ f: 0x1_0000_0000n, u: undefined }), '{\n  "f": "0x100000000"\n}');
    assert.equal(toJson(new Uint8Array([1, 2])), '[\n  1,\n  2\n]');
  });

  it('sizes take binary units; durations seconds, ms or minutes', () => {
    assert.equal(parseSize('4096', '--bs', 'bench'), 4096);
    assert.equal(parseSize('4k', '--bs', 'bench'), 4096);
    assert.equal(parseSize('64KiB', '--bs', 'bench'), 65536);
    assert.equal(parseSize('1M', '--bs', 'bench'), 1 << 20);
    for (const bad of ['', '0', '-4k', '4x', '1.5k'])
      assert.throws(() => parseSize(bad, '--bs', 'bench'), UsageError, JSON.stringify(bad));
    assert.equal(parseSeconds('10', '--runtime', 'bench'), 10);
    assert.equal(parseSeconds('0.5', '--runtime', 'bench'), 0.5);
    assert.equal(parseSeconds('500ms', '--runtime', 'bench'), 0.5);
    assert.equal(parseSeconds('2m', '--runtime', 'bench'), 120);
    for (const bad of ['0', 'forever', '-1', '2h', '100000'])
      assert.throws(() => parseSeconds(bad, '--runtime', 'bench'), UsageError, bad);
  });

  it('dev add words become createDevice options', () => {
    const want = { name: 'v0', mgmtdev: 'vduse', mac: '52:54:00:00:00:01', mtu: 1500, maxVqPairs: 2 };
    assert.deepEqual(
      parseDevAdd(['v0', 'mgmtdev', 'vduse', 'mac', '52:54:00:00:00:01', 'mtu', '1500', 'max_vqp', '2']),
      want,
    );
    // iproute2's own spelling, with the `name` keyword
    assert.deepEqual(
      parseDevAdd(['name', 'v0', 'mgmtdev', 'vduse', 'mac', '52:54:00:00:00:01', 'mtu', '1500', 'max_vqp', '2']),
      want,
    );
    // ... and a device that is called `name`
    assert.deepEqual(parseDevAdd(['name', 'mgmtdev', 'vduse']), { name: 'name', mgmtdev: 'vduse' });
    assert.throws(() => parseDevAdd([]), UsageError);
    assert.throws(() => parseDevAdd(['v0']), /mgmtdev is required/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev']), /needs a value/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev', 'vduse', 'mtu', '15x']), /whole number/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev', 'vduse', 'speed', '1']), /unknown attribute speed/);
  });
});
