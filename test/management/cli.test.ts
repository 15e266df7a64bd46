// The management CLI's pure parts: tables, JSON with bigints, `dev add` words; and usage errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDevAdd, runManagementCommand, table, toJson } from '../../lib/cli-management';

describe('management CLI', () => {
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

  it('toJson writes bigints as hex and leaves out undefined', () => {
    assert.equal(toJson({ f: 0x1_0000_0000n, u: undefined }), '{\n  "f": "0x100000000"\n}');
  });

  it('dev add words become createDevice options', () => {
    assert.deepEqual(
      parseDevAdd(['v0', 'mgmtdev', 'vduse', 'mac', '52:54:00:00:00:01', 'mtu', '1500', 'max_vqp', '2']),
      {
        name: 'v0',
        mgmtdev: 'vduse',
        mac: '52:54:00:00:00:01',
        mtu: 1500,
        maxVqPairs: 2,
      },
    );
    assert.throws(() => parseDevAdd([]), RangeError);
    assert.throws(() => parseDevAdd(['v0']), /mgmtdev is required/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev']), /needs a value/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev', 'vduse', 'mtu', '15x']), /whole number/);
    assert.throws(() => parseDevAdd(['v0', 'mgmtdev', 'vduse', 'speed', '1']), /unknown attribute speed/);
  });

  it('usage errors and commands that are not management ones', async () => {
    assert.equal(await runManagementCommand(['demo']), undefined);
    await assert.rejects(runManagementCommand(['dev', 'frob']), /unknown command: dev frob/);
    await assert.rejects(runManagementCommand(['dev', 'stats', 'v0']), /usage: vdpa dev stats/);
    await assert.rejects(runManagementCommand(['bind', '0000:00:03.0']), /usage: vdpa bind/);
  });
});
