// A seeded random read/write load on a BlkDevice with a model of the disk, for the hand-over tests
// (mock and guest): every block's contents are a function of (block, version), one request per
// block at a time, so every read has exactly one right answer.
import type { BlkDevice } from '../../lib';
import { rng } from './util';

export const LOAD_BLOCK = 4096;

/** The contents of `block` at `version` (0: never written, zeroes). */
export function fillBlock(buf: Uint8Array, block: number, version: number): void {
  if (version === 0) {
    buf.fill(0);
    return;
  }
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < buf.length; i += 4) v.setUint32(i, (block * 0x9e3779b1 + version * 0x85ebca6b + i) >>> 0, true);
}

export interface Load {
  /** Requests completed so far. */
  readonly done: number;
  /** The model: the version each block holds. */
  readonly version: Uint32Array;
  readonly failures: Error[];
  readonly mismatches: string[];
  /** Ends the load once the requests in flight are done. */
  stop(): Promise<void>;
}

/**
 * `depth` workers issue random 4 KiB reads and writes over the first `blocks` blocks, half through
 * allocBuffer buffers (zero-copy) and half through ordinary memory (bounced), until stop().
 */
export function startLoad(blk: BlkDevice, seed: number, blocks: number, depth = 32): Load {
  const random = rng(seed);
  const version = new Uint32Array(blocks);
  const busy = new Uint8Array(blocks);
  const failures: Error[] = [];
  const mismatches: string[] = [];
  let done = 0;
  let running = true;
  const worker = async (w: number): Promise<void> => {
    const dma = blk.allocBuffer(LOAD_BLOCK);
    const plain = new Uint8Array(LOAD_BLOCK);
    const expect = new Uint8Array(LOAD_BLOCK);
    while (running) {
      let block = Math.floor(random() * blocks);
      while (busy[block]) block = (block + 1) % blocks;
      busy[block] = 1;
      const buf = random() < 0.5 ? dma : plain;
      try {
        if (random() < 0.5) {
          const next = (version[block] as number) + 1;
          fillBlock(buf, block, next);
          await blk.write(block * LOAD_BLOCK, buf);
          version[block] = next;
        } else {
          await blk.read(block * LOAD_BLOCK, buf);
          const ver = version[block] as number;
          fillBlock(expect, block, ver);
          if (!Buffer.from(buf).equals(Buffer.from(expect)))
            mismatches.push(`worker ${w}: block ${block} read back wrong (version ${ver})`);
        }
        done++;
      } catch (e) {
        failures.push(e as Error);
        running = false;
      } finally {
        busy[block] = 0;
      }
    }
  };
  const workers = Array.from({ length: depth }, (_, w) => worker(w));
  return {
    get done() {
      return done;
    },
    version,
    failures,
    mismatches,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** Resolves once the load has completed `n` more requests (or stopped on a failure). */
export async function progress(load: Load, n: number): Promise<void> {
  const target = load.done + n;
  while (load.done < target && load.failures.length === 0) await new Promise((r) => setTimeout(r, 1));
}
