#include "vduse/vduse_net.h"

#include <algorithm>
#include <cstring>

#include "common/sys_error.h"
#include "device_model/chain_bytes.h"
#include "device_model/net_features.h"
#include "device_model/net_segment.h"
#include "ring/virtio_config.h"
#include "ring/virtio_ring.h"

namespace vdpa {

namespace {

std::vector<uint8_t> netConfig(const VduseNetOptions& opts) {
  VirtioNetConfig c{};
  std::memcpy(c.mac, opts.mac.data(), sizeof c.mac);
  c.status = opts.linkUp ? kNetStatusLinkUp : 0;
  c.max_virtqueue_pairs = 1;
  c.mtu = opts.mtu;
  // Up to the MTU: no speed, duplex or RSS fields.
  std::vector<uint8_t> bytes(offsetof(VirtioNetConfig, speed));
  std::memcpy(bytes.data(), &c, bytes.size());
  return bytes;
}

}  // namespace

VduseNet::VduseNet(const VduseNetOptions& opts, Sink sink)
    : maxFrame_(uint32_t{opts.mtu} + kEthHeaderBytes + kVlanTagBytes),
      backlogLimit_(std::clamp<size_t>(size_t{opts.queueSize} * (opts.gso ? kGsoMaxFrameBytes : maxFrame_),
                                       kMinBacklogBytes, kMaxBacklogBytes)),
      sink_(std::move(sink)),
      linkUp_(opts.linkUp) {
  VduseDeviceConfig cfg;
  cfg.name = opts.name;
  cfg.controlPath = opts.controlPath;
  cfg.deviceId = deviceTypeId(VirtioDeviceType::kNet);
  cfg.features = bit(kNetFeatureCsum) | bit(kNetFeatureGuestCsum) | bit(kNetFeatureMac) | bit(kNetFeatureMtu) |
                 bit(kNetFeatureStatus) | bit(kNetFeatureMrgRxbuf);
  if (opts.gso)
    cfg.features |=
        bit(kNetFeatureHostTso4) | bit(kNetFeatureHostTso6) | bit(kNetFeatureGuestTso4) | bit(kNetFeatureGuestTso6);
  cfg.numQueues = 2;
  cfg.maxQueueSize = opts.queueSize;
  cfg.config = netConfig(opts);
  // The handler first runs at DRIVER_OK, after attach: device_ is set by then.
  device_ = std::make_unique<VduseDevice>(
      cfg, [this](uint16_t q, const DeviceChain& chain, uint64_t token) { return handle(q, chain, token); },
      [this] { rxBuffers_.clear(); });
}

VduseNet::~VduseNet() {
  try {
    close();
  } catch (...) {
    // Still attached: see VduseDevice::~VduseDevice.
  }
}

void VduseNet::close() {
  connect(nullptr);
  device_->close();
}

void VduseNet::connect(const std::shared_ptr<NetPeer>& peer) {
  std::lock_guard<std::mutex> lock(peerLock_);
  peer_ = peer;
}

bool VduseNet::connected() const {
  std::lock_guard<std::mutex> lock(peerLock_);
  return !peer_.expired();
}

VduseNetStats VduseNet::stats() const {
  VduseNetStats s;
  s.txFrames = txFrames_.load(std::memory_order_relaxed);
  s.txBytes = txBytes_.load(std::memory_order_relaxed);
  s.txDropped = txDropped_.load(std::memory_order_relaxed);
  s.rxFrames = rxFrames_.load(std::memory_order_relaxed);
  s.rxBytes = rxBytes_.load(std::memory_order_relaxed);
  s.rxDropped = rxDropped_.load(std::memory_order_relaxed);
  s.txGsoFrames = txGsoFrames_.load(std::memory_order_relaxed);
  s.rxGsoFrames = rxGsoFrames_.load(std::memory_order_relaxed);
  s.segmentsMade = segmentsMade_.load(std::memory_order_relaxed);
  return s;
}

void VduseNet::setLink(bool up) {
  linkUp_.store(up, std::memory_order_relaxed);
  const uint16_t status = up ? kNetStatusLinkUp : 0;
  try {
    device_->updateConfig(kNetConfigStatusOffset, &status, sizeof status);
  } catch (const SysError& e) {
    // Before DRIVER_OK the kernel refuses the interrupt (EINVAL); the driver reads the new status
    // when it starts.
    if (e.err() != EINVAL || device_->negotiatedFeatures() != 0) throw;
  }
}

uint32_t VduseNet::handle(uint16_t queue, const DeviceChain& chain, uint64_t token) {
  if (queue == kTxQueue) return transmitted(chain);
  if (queue != kRxQueue) return 0;
  // A buffer without room for the header is of no use; more buffers than ring slots is a driver
  // re-posting chains it never got back: both are returned empty at once.
  if (chain.writableBytes < kNetHdrBytes || rxBuffers_.size() >= device_->ringSize(kRxQueue)) return 0;
  rxBuffers_.push_back(RxBuffer{token, chain.writableBytes});
  if (backlogged_.load(std::memory_order_acquire)) postDrain();
  return kDeferred;
}

uint32_t VduseNet::transmitted(const DeviceChain& chain) {
  const uint64_t features = device_->negotiatedFeatures();
  const bool gsoOn = (features & (bit(kNetFeatureHostTso4) | bit(kNetFeatureHostTso6))) != 0;
  // A frame longer than the link carries (or no frame at all) goes nowhere, as on a NIC; a
  // segmentation request may be up to 64 KiB.
  if (chain.readableBytes <= kNetHdrBytes ||
      chain.readableBytes - kNetHdrBytes > (gsoOn ? kGsoMaxFrameBytes : maxFrame_)) {
    txDropped_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  VirtioNetHdr hdr{};
  copyFromBuffers(chain.readable, 0, &hdr, kNetHdrBytes);
  Frame frame;
  frame.bytes.resize(chain.readableBytes - kNetHdrBytes);
  copyFromBuffers(chain.readable, kNetHdrBytes, frame.bytes.data(), frame.bytes.size());
  txFrames_.fetch_add(1, std::memory_order_relaxed);
  txBytes_.fetch_add(frame.bytes.size(), std::memory_order_relaxed);
  bool valid = frame.bytes.size() >= kEthHeaderBytes;
  if ((hdr.flags & kNetHdrNeedsCsum) && (features & bit(kNetFeatureCsum))) {
    // A checksum field outside the frame is the driver's mistake: the frame goes nowhere.
    valid &= uint64_t{hdr.csum_start} + hdr.csum_offset + 2 <= frame.bytes.size();
    frame.csumStart = hdr.csum_start;
    frame.csumOffset = hdr.csum_offset;
  }
  if (hdr.gso_type != kGsoNone) {
    // Segmentation needs its feature, a size and a partial checksum (§5.1.6.2).
    const uint64_t needs = gsoHostFeatures(hdr.gso_type);
    valid &= needs != 0 && (features & needs) == needs && hdr.gso_size != 0 && frame.csumStart >= 0;
    frame.gsoType = hdr.gso_type;
    frame.gsoSize = hdr.gso_size;
    frame.hdrLen = hdr.hdr_len;
    txGsoFrames_.fetch_add(1, std::memory_order_relaxed);
  } else {
    valid &= frame.bytes.size() <= maxFrame_;
  }
  if (!valid || !linkUp()) {
    txDropped_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  forward(std::move(frame));
  return 0;
}

// Device thread: a transmitted frame to the peer (a segmentation request whole only when the peer
// takes it, else as segments with complete checksums) or to the sink.
void VduseNet::forward(Frame frame) {
  std::shared_ptr<NetPeer> peer;
  {
    std::lock_guard<std::mutex> lock(peerLock_);
    peer = peer_.lock();
  }
  if (frame.gsoType != kGsoNone && !(peer && peer->takesGso(frame.gsoType))) {
    std::vector<std::vector<uint8_t>> segments;
    if (!segmentFrame(frame.bytes.data(), frame.bytes.size(), frame.gsoType, frame.gsoSize, segments)) {
      txDropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    segmentsMade_.fetch_add(segments.size(), std::memory_order_relaxed);
    for (std::vector<uint8_t>& s : segments) {
      Frame f;
      f.bytes = std::move(s);
      forward(std::move(f));
    }
    return;
  }
  if (peer) {
    if (!peer->deliver(std::move(frame))) txDropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  fillChecksum(frame);
  if (!sink_ || !sink_(std::move(frame.bytes))) txDropped_.fetch_add(1, std::memory_order_relaxed);
}

bool VduseNet::takesGso(uint8_t gsoType) const {
  const uint64_t f = device_->negotiatedFeatures();
  return guestTakesGso(f, gsoType) && (f & bit(kNetFeatureGuestCsum)) != 0;
}

// Sums from csumStart to the end (the field holds the pseudo-header sum the driver put there) and
// stores the one's complement at csumStart + csumOffset (§5.1.6.2, RFC 1071).
void fillChecksum(NetFrame& frame) {
  if (frame.csumStart < 0) return;
  std::vector<uint8_t>& b = frame.bytes;
  const size_t start = static_cast<size_t>(frame.csumStart), at = start + frame.csumOffset;
  uint32_t sum = 0;
  for (size_t i = start; i < b.size(); i += 2)
    sum += static_cast<uint32_t>(b[i] << 8 | (i + 1 < b.size() ? b[i + 1] : 0));
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  const uint16_t c = static_cast<uint16_t>(~sum);
  b[at] = static_cast<uint8_t>(c >> 8);
  b[at + 1] = static_cast<uint8_t>(c);
  frame.csumStart = -1;
}

bool VduseNet::receive(const uint8_t* data, size_t len) {
  Frame frame;
  frame.bytes.assign(data, data + len);
  return enqueue(std::move(frame));
}

bool VduseNet::enqueue(Frame frame) {
  const size_t len = frame.bytes.size();
  // A segmentation request comes from a peer that asked takesGso(); one the driver no longer takes
  // (it reset in between) is dropped.
  const bool whole = frame.gsoType != kGsoNone;
  if (len < kEthHeaderBytes || len > (whole ? kGsoMaxFrameBytes : maxFrame_) || !linkUp() ||
      device_->negotiatedFeatures() == 0 || (whole && !takesGso(frame.gsoType))) {
    rxDropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(backlogLock_);
    if (backlogBytes_ + len > backlogLimit_) {
      rxDropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    backlog_.push_back(std::move(frame));
    backlogBytes_ += len;
    backlogged_.store(true, std::memory_order_release);
  }
  postDrain();
  return true;
}

void VduseNet::postDrain() {
  if (!drainPosted_.exchange(true, std::memory_order_acq_rel)) device_->post([this] { drain(); });
}

// Device thread: the backlog into the receive buffers, oldest frame first, until one has to wait.
void VduseNet::drain() {
  drainPosted_.store(false, std::memory_order_release);
  device_->serviceNow(kRxQueue);  // buffers posted since the last kick was seen
  std::lock_guard<std::mutex> lock(backlogLock_);
  const bool running = device_->ringSize(kRxQueue) != 0;
  const bool partialOk = (device_->negotiatedFeatures() & bit(kNetFeatureGuestCsum)) != 0;
  while (!backlog_.empty()) {
    Frame& frame = backlog_.front();
    if (!partialOk) fillChecksum(frame);
    const Place p = running ? place(frame) : Place::kDrop;
    if (p == Place::kWait) break;
    if (p == Place::kDone) {
      if (frame.gsoType != kGsoNone) rxGsoFrames_.fetch_add(1, std::memory_order_relaxed);
      rxFrames_.fetch_add(1, std::memory_order_relaxed);
      rxBytes_.fetch_add(frame.bytes.size(), std::memory_order_relaxed);
    } else {
      rxDropped_.fetch_add(1, std::memory_order_relaxed);
    }
    backlogBytes_ -= frame.bytes.size();
    backlog_.pop_front();
  }
  backlogged_.store(!backlog_.empty(), std::memory_order_release);
}

// Device thread: the header and `frame` across the first receive buffers (one, or with MRG_RXBUF
// as many as it takes, the count in the first header).
VduseNet::Place VduseNet::place(const Frame& wire) {
  const std::vector<uint8_t>& frame = wire.bytes;
  const uint64_t need = kNetHdrBytes + frame.size();
  const bool mergeable = (device_->negotiatedFeatures() & bit(kNetFeatureMrgRxbuf)) != 0;
  size_t used = 0;
  uint64_t room = 0;
  while (used < rxBuffers_.size() && room < need && (mergeable || used == 0)) room += rxBuffers_[used++].room;
  if (room < need) {
    // Too big for one buffer, or for every buffer the ring can hold: it never fits.
    if (!mergeable && used == 1) return Place::kDrop;
    if (mergeable && rxBuffers_.size() >= device_->ringSize(kRxQueue)) return Place::kDrop;
    return Place::kWait;
  }
  VirtioNetHdr hdr{};
  hdr.num_buffers = static_cast<uint16_t>(used);
  if (wire.csumStart >= 0) {
    hdr.flags = kNetHdrNeedsCsum;
    hdr.csum_start = static_cast<uint16_t>(wire.csumStart);
    hdr.csum_offset = wire.csumOffset;
  }
  hdr.gso_type = wire.gsoType;
  hdr.gso_size = wire.gsoSize;
  hdr.hdr_len = wire.hdrLen;
  const auto* hdrBytes = reinterpret_cast<const uint8_t*>(&hdr);
  uint64_t at = 0;  // position in header + frame
  for (size_t i = 0; i < used; i++) {
    const RxBuffer b = rxBuffers_.front();
    rxBuffers_.pop_front();
    device_->completeNow(b.token, [&](const DeviceChain& chain) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chain.writableBytes, need - at));
      uint32_t done = 0;
      if (at < kNetHdrBytes) {
        done = std::min<uint32_t>(n, static_cast<uint32_t>(kNetHdrBytes - at));
        copyToBuffers(chain.writable, 0, hdrBytes + at, done);
      }
      if (n > done) copyToBuffers(chain.writable, done, frame.data() + (at + done - kNetHdrBytes), n - done);
      at += n;
      return n;
    });
  }
  return Place::kDone;
}

}  // namespace vdpa
