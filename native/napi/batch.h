// The batch format shared by every submit path: per chain [token, count, count x (region, offset,
// length, flags)], flags bit 0 = device-writable. A whole batch is decoded and checked before any
// chain reaches the ring, so a bad batch leaves the ring untouched.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "ring/driver_queue.h"

namespace vdpa {

struct DecodedChain {
  size_t start;    // index into segs
  uint32_t count;  // segments
  uint32_t token;
  uint32_t writable;  // bytes the device may write, from DriverQueue::validate
};

struct DecodedBatch {
  std::vector<Segment> segs;
  std::vector<DecodedChain> chains;
};

// `translate(region, offset, length, &iova)` returns false for a range outside live memory. Each
// chain is validated here once; addBatch() does not check it again.
template <typename Translate>
void decodeBatch(Napi::Env env, const uint32_t* w, size_t words, uint32_t chains, const DriverQueue& ring,
                 Translate&& translate, DecodedBatch& out) {
  out.segs.clear();
  out.chains.clear();
  size_t pos = 0;
  for (uint32_t c = 0; c < chains; c++) {
    if (pos + 2 > words) throw Napi::RangeError::New(env, "batch is shorter than its chain count");
    const uint32_t count = w[pos + 1];
    if (count == 0 || count > 4096 || pos + 2 + size_t{count} * 4 > words)
      throw Napi::RangeError::New(env, "chain " + std::to_string(c) + " has a bad segment count");
    const size_t start = out.segs.size();
    for (uint32_t s = 0; s < count; s++) {
      const uint32_t* e = w + pos + 2 + s * 4;
      Segment seg{0, e[2], (e[3] & 1) != 0};
      if (e[2] == 0)
        throw Napi::RangeError::New(
            env, "chain " + std::to_string(c) + " segment " + std::to_string(s) + " is a zero-length buffer");
      if (!translate(e[0], e[1], e[2], &seg.addr))
        throw Napi::RangeError::New(env, "chain " + std::to_string(c) + " segment " + std::to_string(s) +
                                             " is not inside a live region of this device");
      out.segs.push_back(seg);
    }
    const uint32_t writable = ring.validate(out.segs.data() + start, count);
    out.chains.push_back(DecodedChain{start, count, w[pos], writable});
    pos += 2 + size_t{count} * 4;
  }
}

// Adds decoded chains until the ring is full; returns how many it took.
inline uint32_t addBatch(DriverQueue& ring, const DecodedBatch& b) {
  uint32_t accepted = 0;
  for (const DecodedChain& c : b.chains) {
    if (!ring.addChecked(b.segs.data() + c.start, c.count, c.token, c.writable)) break;
    accepted++;
  }
  return accepted;
}

}  // namespace vdpa
