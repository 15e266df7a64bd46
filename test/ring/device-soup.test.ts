// Device-side defence against a hostile driver, for each ring format: random descriptor soup
// (random descriptors, avail entries and indirect-table bytes) must never crash the device side,
// and every chain it hands out must lie inside mapped memory.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DATA_IOVA, RING_IOVA, isChain, randInt, rng } from './loopback';
import { F_AVAIL, F_USED, PackedLoopback } from './packed-loopback';
import { FORMATS, RingFormat } from './formats';

const DATA_BYTES = 1 << 16;

function d(offset: number): bigint {
  return DATA_IOVA + BigInt(offset);
}

interface Soup {
  seed: number;
  rings: number;
  pokesPerRing: number;
  size(r: () => number): number;
  /** One random write by the driver: a descriptor, and on split rings sometimes an avail entry. */
  poke(r: () => number, lb: PackedLoopback, size: number, addr: bigint, len: number): void;
  /** Whether an error ends the ring (packed errors are sticky) and heads must be below the size. */
  sticky: boolean;
  headsBelowSize: boolean;
}

const SOUPS: Record<RingFormat['name'], Soup> = {
  split: {
    seed: 7,
    rings: 150,
    pokesPerRing: 40,
    size: (r) => 1 << randInt(r, 0, 5),
    poke(r, lb, size, addr, len) {
      lb.pokeDescriptor(randInt(r, 0, size - 1), addr, len, randInt(r, 0, 7), randInt(r, 0, size + 1));
      if (randInt(r, 0, 2) === 0)
        lb.pokeAvail(randInt(r, 0, size + 1), randInt(r, 0, 3) === 0 ? randInt(r, 0, 0xffff) : 1);
    },
    sticky: false,
    headsBelowSize: true,
  },
  packed: {
    seed: 11,
    rings: 300,
    pokesPerRing: 60,
    size: (r) => randInt(r, 1, 40),
    poke(r, lb, size, addr, len) {
      // Random low flag bits plus random AVAIL/USED bits: often available, often not.
      const flags = randInt(r, 0, 7) | (randInt(r, 0, 1) ? F_AVAIL : 0) | (randInt(r, 0, 2) === 0 ? F_USED : 0);
      lb.pokeDescriptor(randInt(r, 0, size - 1), addr, len, flags, randInt(r, 0, 0xffff));
    },
    sticky: true,
    headsBelowSize: false,
  },
};

function soupSuite(fmt: RingFormat): void {
  it('never crashes and only hands out buffers inside mapped memory', () => {
    const soup = SOUPS[fmt.name];
    const r = rng(soup.seed);
    const pickAddr = (): bigint => {
      switch (randInt(r, 0, 5)) {
        case 0:
          return d(randInt(r, 0, DATA_BYTES + 64));
        case 1:
          return d(randInt(r, 0, DATA_BYTES / 16 - 1) * 16);
        case 2:
          return RING_IOVA + BigInt(randInt(r, 0, 4096));
        case 3:
          return BigInt(randInt(r, 0, 0xffffffff)) << BigInt(randInt(r, 0, 32));
        case 4:
          return DATA_IOVA - BigInt(randInt(r, 0, 64));
        default:
          return 0xffffffffffffffffn - BigInt(randInt(r, 0, 64));
      }
    };
    const pickLen = (): number => {
      switch (randInt(r, 0, 3)) {
        case 0:
          return randInt(r, 0, 64);
        case 1:
          return randInt(r, 1, 8) * 16;
        case 2:
          return randInt(r, 0, 0xffffffff);
        default:
          return randInt(r, 0, DATA_BYTES);
      }
    };
    let chains = 0;
    let errors = 0;
    for (let iter = 0; iter < soup.rings; iter++) {
      const size = soup.size(r);
      const lb = fmt.make(size, iter % 2 === 0, 8, DATA_BYTES);
      // Random bytes in the data area make random indirect tables.
      const bytes = new Uint8Array(lb.data);
      for (let i = 0; i < 4096; i++) bytes[randInt(r, 0, DATA_BYTES - 1)] = randInt(r, 0, 255);
      for (let k = 0; k < soup.pokesPerRing; k++) {
        soup.poke(r, lb, size, pickAddr(), pickLen());
        const res = lb.devicePop();
        if (res === undefined) continue;
        if (isChain(res)) {
          chains++;
          if (soup.headsBelowSize) assert.ok(res.head < size);
          for (const b of [...res.readable, ...res.writable]) {
            assert.ok(b.length > 0);
            // Buffers in the data area must lie entirely inside it (ring memory gives other offsets).
            if (b.offset >= 0 && b.offset < DATA_BYTES) assert.ok(b.offset + b.length <= DATA_BYTES);
          }
          lb.devicePush(res.head, 0);
          lb.devicePublish();
        } else {
          errors++;
          assert.ok(res.error.length > 0);
          if (soup.sticky) break; // the ring stays failed: next ring
        }
      }
    }
    assert.ok(chains > 0 && errors > 0, `chains ${chains}, errors ${errors}`);
  });
}

for (const fmt of FORMATS) {
  describe(`${fmt.name} hostile driver: random descriptor soup`, () => soupSuite(fmt));
}
