// The host-side oracle of the hand-over guest tests: a manifest (NAME.json) and the data (NAME-data.bin)
// in the results dir, in scripts/vm/oracle-check.py's format, from the load's model of the disk.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LOAD_BLOCK, fillBlock } from '../helpers/blk-load';
import { resultsDir } from './vm-env';

/** Every written block's final bytes as an extent; the host checks the rest of the image is zero. */
export function writeManifest(name: string, img: string, version: Uint32Array, seed: number): void {
  const res = resultsDir();
  const written = [...version.keys()].filter((b) => (version[b] as number) > 0);
  const data = Buffer.alloc(written.length * LOAD_BLOCK);
  const extents = written.map((b, i) => {
    const bytes = data.subarray(i * LOAD_BLOCK, (i + 1) * LOAD_BLOCK);
    fillBlock(bytes, b, version[b] as number);
    return {
      offset: b * LOAD_BLOCK,
      length: LOAD_BLOCK,
      dataOffset: i * LOAD_BLOCK,
      kind: 'handover',
      sha256: createHash('sha256').update(bytes).digest('hex'),
    };
  });
  fs.writeFileSync(path.join(res, `${name}-data.bin`), data);
  fs.writeFileSync(
    path.join(res, `${name}.json`),
    JSON.stringify({
      image: path.basename(img),
      imageSize: fs.statSync(img).size,
      dataFile: `${name}-data.bin`,
      dataSha256: createHash('sha256').update(data).digest('hex'),
      seed,
      extents,
    }),
  );
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
