// The batch format shared by every submit path: per chain [token, count, count x (region, offset,
// length, flags)], flags bit 0 = device-writable. A whole batch is decoded and checked before any
// chain reaches the ring, so a bad batch leaves the ring untouched.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "ring/driver_queue.h"

namespace vdpa {

struct DecodedBatch {
  std::vector<Segment> segs;
  std::vector<size_t> chainStart;  // index into segs per chain
  std::vector<uint32_t> token, count;
};

// `translate(region, offset, length, &iova)` returns false for a range outside live memory.
template <typename Translate>
void decodeBatch(Napi::Env env, const uint32_t* w, size_t words, uint32_t chains, const DriverQueue& ring,
                 Translate&& translate, DecodedBatch& out) {
  out.segs.clear();
  out.chainStart.clear();
  out.token.clear();
  out.count.clear();
  size_t pos = 0;
  for (uint32_t c = 0; c < chains; c++) {
    if (pos + 2 > words) throw Napi::RangeError::New(env, "batch is shorter than its chain count");
    const uint32_t count = w[pos + 1];
    if (count == 0 || count > 4096 || pos + 2 + size_t{count} * 4 > words)
      throw Napi::RangeError::New(env, "chain " + std::to_string(c) + " has a bad segment count");
    out.chainStart.push_back(out.segs.size());
    out.token.push_back(w[pos]);
    out.count.push_back(count);
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
    ring.validate(out.segs.data() + out.chainStart.back(), count);
    pos += 2 + size_t{count} * 4;
  }
}

// Adds decoded chains until the ring is full; returns how many it took.
inline uint32_t addBatch(DriverQueue& ring, const DecodedBatch& b) {
  uint32_t accepted = 0;
  for (; accepted < b.token.size(); accepted++)
    if (!ring.add(b.segs.data() + b.chainStart[accepted], b.count[accepted], b.token[accepted])) break;
  return accepted;
}

}  // namespace vdpa
