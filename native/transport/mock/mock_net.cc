#include "transport/mock/mock_net.h"

namespace vdpa {

namespace {
constexpr uint32_t kNetHdrLen = sizeof(VirtioNetHdr);
// The mock reports no speed, duplex or RSS: its config space ends before those fields.
constexpr size_t kConfigSize = offsetof(VirtioNetConfig, speed);
}  // namespace

std::vector<uint8_t> MockNet::config() const {
  VirtioNetConfig c{};
  std::memcpy(c.mac, opts_.mac, sizeof c.mac);
  c.status = kNetStatusLinkUp;
  c.max_virtqueue_pairs = 1;
  c.mtu = opts_.mtu;
  std::vector<uint8_t> bytes(kConfigSize);
  std::memcpy(bytes.data(), &c, kConfigSize);
  return bytes;
}

bool MockNet::handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) {
  *usedLen = 0;
  if (q == kRxQueue) {
    rxBuffers_.push_back(chain);
    return false;  // finished in drainDeferred once a frame is there
  }
  // A frame longer than the link carries is invalid (the driver must not send it): the device
  // consumes it without passing it on, as a NIC does.
  if (chain.readableBytes <= kNetHdrLen || chain.readableBytes - kNetHdrLen > maxFrame_) return true;
  std::vector<uint8_t> frame(chain.readableBytes - kNetHdrLen);
  copyFromBuffers(chain.readable, kNetHdrLen, frame.data(), frame.size());
  backlogBytes_ += frame.size();
  backlog_.push_back(std::move(frame));
  return true;
}

void MockNet::drainDeferred(uint16_t q, std::vector<UsedEntry>& done) {
  if (q != kRxQueue) return;
  while (!backlog_.empty() && !rxBuffers_.empty()) {
    const DeviceChain& rx = rxBuffers_.front();
    const std::vector<uint8_t>& frame = backlog_.front();
    uint32_t len = 0;
    if (rx.writableBytes >= kNetHdrLen + frame.size()) {
      VirtioNetHdr hdr{};
      hdr.num_buffers = 1;
      copyToBuffers(rx.writable, 0, &hdr, kNetHdrLen);
      copyToBuffers(rx.writable, kNetHdrLen, frame.data(), frame.size());
      len = static_cast<uint32_t>(kNetHdrLen + frame.size());
    }
    // A frame too big for the buffer is dropped; the buffer comes back empty.
    done.push_back(UsedEntry{kRxQueue, rx.head, len});
    backlogBytes_ -= frame.size();
    backlog_.pop_front();
    rxBuffers_.pop_front();
  }
}

}  // namespace vdpa
