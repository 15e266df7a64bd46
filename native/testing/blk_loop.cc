#include "testing/blk_loop.h"

#include <poll.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "device/virtio_device.h"
#include "ring/virtio_ring.h"
#include "transport/open_transport.h"

namespace vdpa {

BlkLoopResult runMockBlkLoop(uint32_t depth, uint32_t ops, bool write, uint64_t capacity) {
  constexpr uint32_t kBlock = kBlkLoopBlock, kQueueSize = kBlkLoopQueueSize;
  OptionBag options;
  options["capacity"].number = static_cast<double>(capacity);
  VirtioDevice dev(openTransport("mock:blk", options));
  dev.negotiate(bit(kFeatureRingEventIdx) | bit(kFeatureRingIndirectDesc));
  VirtQueue& q = dev.createQueue(0, kQueueSize);
  dev.start();

  // One slot per in-flight request: 16-byte header, status byte, 4 KiB of data.
  auto meta = std::make_shared<MemoryRegion>(size_t{depth} * 32, false);
  auto data = std::make_shared<MemoryRegion>(size_t{depth} * kBlock, false);
  const uint32_t metaHandle = dev.addRegion(meta), dataHandle = dev.addRegion(data);
  uint64_t metaIova = 0, dataIova = 0;
  dev.translate(metaHandle, 0, meta->size(), &metaIova);
  dev.translate(dataHandle, 0, data->size(), &dataIova);

  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  const uint64_t blocks = capacity / kBlock;
  // Block for the next request: random, or in order (the warm-up pass).
  bool sequential = false, writing = write;
  uint64_t nextBlock = 0;
  auto submit = [&](uint32_t slot) {
    uint64_t block;
    if (sequential) {
      block = nextBlock++ % blocks;
    } else {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      block = rng % blocks;
    }
    uint8_t* hdr = meta->data() + slot * 32;
    const uint32_t type = writing ? 1 : 0;
    const uint64_t sector = block * (kBlock / 512);
    std::memcpy(hdr, &type, 4);
    std::memset(hdr + 4, 0, 4);
    std::memcpy(hdr + 8, &sector, 8);
    Segment segs[3] = {{metaIova + slot * 32, 16, false},
                       {dataIova + uint64_t{slot} * kBlock, kBlock, !writing},
                       {metaIova + slot * 32 + 16, 1, true}};
    q.ring->add(segs, 3, slot);
  };

  // Keeps `depth` requests in flight until `ops` have completed; returns the completions.
  std::vector<Completion> done(kQueueSize);
  auto run = [&](uint64_t ops) {
    uint64_t submitted = 0, completed = 0;
    for (uint32_t s = 0; s < depth && submitted < ops; s++, submitted++) submit(s);
    dev.publish(q);
    while (completed < ops && !q.ring->broken()) {
      pollfd p{q.callFd.get(), POLLIN, 0};
      ::poll(&p, 1, 1000);
      drainEventFd(q.callFd.get());
      q.deliver(done.data(), done.size(), [&](size_t n, bool) {
        for (size_t i = 0; i < n; i++) {
          completed++;
          if (submitted < ops) {
            submit(done[i].token);
            submitted++;
          }
        }
        dev.publish(q);
        return true;
      });
    }
    return completed;
  };

  // Write every block once first, as the Node benchmark does, so the timed loop measures the
  // driver and device rather than the kernel faulting in the RAM disk.
  sequential = true;
  writing = true;
  run(blocks);
  sequential = false;
  writing = write;
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t completed = run(ops);
  const auto t1 = std::chrono::steady_clock::now();
  return {completed, static_cast<uint64_t>(std::chrono::nanoseconds(t1 - t0).count())};
}

}  // namespace vdpa
