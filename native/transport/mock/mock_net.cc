#include "transport/mock/mock_net.h"

#include <algorithm>

#include "device_model/net_segment.h"

namespace vdpa {

namespace {
constexpr uint32_t kNetHdrLen = sizeof(VirtioNetHdr);
// The mock reports no speed or duplex: without RSS its config space ends before those fields; with
// it, after supported_hash_types (speed and duplex read as unknown).
constexpr size_t kConfigSize = offsetof(VirtioNetConfig, speed);
constexpr size_t kRssConfigSize = sizeof(VirtioNetConfig);
// virtio_net_hdr_v1_hash: the header, hash_value (le32), hash_report (le16), padding (le16).
constexpr uint32_t kHashHdrLen = kNetHdrLen + 8;
// What the mock's RSS takes (§5.1.4): key bytes, indirection entries, hash types.
constexpr uint8_t kRssKeySize = 40;
constexpr uint16_t kRssTableLength = 128;
constexpr uint32_t kHashIpV4 = 1 << 0, kHashTcpV4 = 1 << 1, kHashUdpV4 = 1 << 2, kHashIpV6 = 1 << 3,
                   kHashTcpV6 = 1 << 4, kHashUdpV6 = 1 << 5;
constexpr uint32_t kHashTypes = kHashIpV4 | kHashTcpV4 | kHashUdpV4 | kHashIpV6 | kHashTcpV6 | kHashUdpV6;
// VIRTIO_NET_HASH_REPORT_* values.
constexpr uint16_t kReportIpV4 = 1, kReportTcpV4 = 2, kReportUdpV4 = 3, kReportIpV6 = 4, kReportTcpV6 = 5,
                   kReportUdpV6 = 6;
constexpr uint8_t kCtrlMqPairsSet = 0, kCtrlMqRssConfig = 1, kCtrlMqHashConfig = 2;
constexpr uint16_t kEthertypeIpV4 = 0x0800, kEthertypeIpV6 = 0x86dd;
constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17;
constexpr uint16_t kNetStatusAnnounce = 2;
constexpr uint16_t kEthertypeVlan = 0x8100;
// Control classes and commands (§5.1.6.5).
constexpr uint8_t kCtrlRx = 0, kCtrlMac = 1, kCtrlVlan = 2, kCtrlAnnounce = 3, kCtrlMq = 4;
constexpr uint8_t kCtrlOk = 0, kCtrlErr = 1;
const char* const kClassNames[] = {"rx", "mac", "vlan", "announce", "mq"};
// What a command frame's first payload byte asks for.
constexpr uint8_t kCommandLinkDown = 0, kCommandLinkUp = 1, kCommandAnnounce = 2;
constexpr uint8_t kHdrNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// The Toeplitz hash (§5.1.6.4.3.4) of `n` input bytes under `key` (zero past its end): for every
// input bit set, the 32 key bits starting at that bit's position are XORed into the result.
uint32_t toeplitz(const uint8_t* in, size_t n, const std::vector<uint8_t>& key) {
  const auto k = [&key](size_t i) -> uint32_t { return i < key.size() ? key[i] : 0; };
  uint32_t window = k(0) << 24 | k(1) << 16 | k(2) << 8 | k(3);
  uint32_t result = 0;
  for (size_t i = 0; i < n; i++)
    for (int b = 7; b >= 0; b--) {
      if (in[i] >> b & 1) result ^= window;
      window = window << 1 | (k(i + 4) >> b & 1);
    }
  return result;
}

// The Internet checksum (RFC 1071) of bytes[from..], stored at `at` (which counts as zero).
void fillChecksum(uint8_t* bytes, size_t size, size_t from, size_t at) {
  bytes[at] = bytes[at + 1] = 0;
  uint32_t sum = 0;
  for (size_t i = from; i < size; i += 2)
    sum += static_cast<uint32_t>(bytes[i] << 8 | (i + 1 < size ? bytes[i + 1] : 0));
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  const uint16_t c = static_cast<uint16_t>(~sum);
  bytes[at] = static_cast<uint8_t>(c >> 8);
  bytes[at + 1] = static_cast<uint8_t>(c);
}
}  // namespace

const std::vector<std::string>& MockNet::faultNames() {
  static const std::vector<std::string> names{
      "mrg-zero-buffers", "mrg-extra-buffers", "mrg-huge-buffers", "mrg-short-head",   "mrg-empty-buffer",
      "csum-outside",     "gso-size-zero",     "gso-hdrlen-past",  "gso-unknown-type", "gso-not-negotiated"};
  return names;
}

MockNet::MockNet(const MockOptions& opts, std::function<void()> configChanged)
    : opts_(opts),
      configChanged_(std::move(configChanged)),
      maxFrame_(opts.mtu + kEthHeader + kVlanTag),
      slotSize_(maxFrame_),
      slotCount_(std::clamp<uint32_t>((uint32_t{4} << 20) / maxFrame_, 64, 1024)) {
  // Names were checked by parseMockOptions.
  const auto& names = faultNames();
  for (size_t i = 0; i < names.size(); i++)
    if (names[i] == opts.net.fault) fault_ = static_cast<Fault>(i + 1);
  if (opts.net.refuseControl == "all") refused_ = -2;
  if (opts.net.refuseControl == "rss") refused_ = -3;
  for (int i = 0; i < 5; i++)
    if (opts.net.refuseControl == kClassNames[i]) refused_ = i;
  std::memcpy(mac_, opts.mac, sizeof mac_);
  rx_.resize(opts.net.queuePairs);
  for (RxQueue& r : rx_) {
    r.slotBytes.resize(size_t{slotCount_} * slotSize_);
    r.slots.resize(slotCount_);
  }
}

void MockNet::ChainRing::push_back(const DeviceChain& c) {
  if (count_ == store_.size()) {
    std::vector<DeviceChain> bigger(std::max<size_t>(16, store_.size() * 2));
    for (size_t i = 0; i < count_; i++) bigger[i] = std::move(store_[(head_ + i) % store_.size()]);
    store_ = std::move(bigger);
    head_ = 0;
  }
  store_[(head_ + count_) % store_.size()] = c;  // the entry's vectors keep their capacity
  count_++;
}

bool MockNet::accepts(uint16_t q) const {
  if (role(q) != Role::kTx) return true;
  // Past the byte bound, or with every slot taken, the sender waits for the receiver.
  return backlogBytes_ < kBacklogBytes && rx_[(q / 2) % activePairs_].count < slotCount_;
}

uint64_t MockNet::features() const {
  uint64_t f = bit(kNetFCsum) | bit(kNetFGuestCsum) | bit(kNetFMtu) | bit(kNetFMac) | bit(kNetFStatus) |
               bit(kNetFMrgRxbuf) | bit(kNetFCtrlVq) | bit(kNetFCtrlRx) | bit(kNetFCtrlVlan) | bit(kNetFCtrlRxExtra) |
               bit(kNetFGuestAnnounce) | bit(kNetFCtrlMacAddr);
  if (opts_.net.queuePairs > 1) f |= bit(kNetFMq);
  if (opts_.net.rss) f |= bit(kNetFRss) | bit(kNetFHashReport);
  if (opts_.net.gso)
    f |= bit(kNetFeatureHostTso4) | bit(kNetFeatureHostTso6) | bit(kNetFeatureHostUso) | bit(kNetFeatureGuestTso4) |
         bit(kNetFeatureGuestTso6) | bit(kNetFeatureGuestUso4) | bit(kNetFeatureGuestUso6);
  return f;
}

std::vector<uint8_t> MockNet::config() const {
  VirtioNetConfig c{};
  {
    std::lock_guard<std::mutex> lock(configLock_);
    std::memcpy(c.mac, mac_, sizeof c.mac);
    c.status = status_;
  }
  c.max_virtqueue_pairs = opts_.net.queuePairs;
  c.mtu = opts_.mtu;
  c.speed = 0xffffffff;  // VIRTIO_NET_SPEED_UNKNOWN
  c.duplex = 0xff;       // VIRTIO_NET_DUPLEX_UNKNOWN
  if (opts_.net.rss) {
    c.rss_max_key_size = kRssKeySize;
    c.rss_max_indirection_table_length = kRssTableLength;
    c.supported_hash_types = kHashTypes;
  }
  const size_t size = opts_.net.rss ? kRssConfigSize : kConfigSize;
  std::vector<uint8_t> bytes(size);
  std::memcpy(bytes.data(), &c, size);
  return bytes;
}

void MockNet::start(uint64_t features) {
  negotiated_ = features;
  hdrLen_ = has(kNetFHashReport) ? kHashHdrLen : kNetHdrLen;
  // Without VLAN filtering every VLAN passes; with it, none until the driver adds them (as QEMU).
  if (has(kNetFCtrlVlan))
    filter_.vlans.reset();
  else
    filter_.vlans.set();
}

void MockNet::reset() {
  for (RxQueue& r : rx_) {
    r.head = r.count = 0;
    r.overflow.clear();
    r.buffers.clear();
  }
  backlogBytes_ = 0;
  negotiated_ = 0;
  activePairs_ = 1;
  framesReceived_ = 0;
  filter_ = Filter{};
  rss_ = Rss{};
  hdrLen_ = kNetHdrLen;
  std::lock_guard<std::mutex> lock(configLock_);
  std::memcpy(mac_, opts_.mac, sizeof mac_);
  status_ = kNetStatusLinkUp;
}

MockNet::Role MockNet::role(uint16_t q) const {
  const uint16_t pairs = has(kNetFMq) ? opts_.net.queuePairs : 1;
  if (has(kNetFCtrlVq) && q == 2 * pairs) return Role::kCtrl;
  if (q >= 2 * pairs) return Role::kNone;
  return q % 2 == 0 ? Role::kRx : Role::kTx;
}

bool MockNet::handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) {
  *usedLen = 0;
  switch (role(q)) {
    case Role::kRx:
      rx_[q / 2].buffers.push_back(chain);
      return false;  // finished in drainDeferred once a frame is there
    case Role::kCtrl:
      if (chain.readableBytes < 2 || chain.writableBytes < 1) return true;  // no room for an answer
      {
        const uint8_t ack = control(chain);
        copyToBuffers(chain.writable, 0, &ack, 1);
      }
      *usedLen = 1;
      return true;
    case Role::kNone:
      return true;
    case Role::kTx:
      break;
  }
  // A frame longer than the link carries is invalid (the driver must not send it): the device
  // consumes it without passing it on, as a NIC does. A segmentation request may be longer.
  const bool gsoOn =
      (negotiated_ & (bit(kNetFeatureHostTso4) | bit(kNetFeatureHostTso6) | bit(kNetFeatureHostUso))) != 0;
  // With HASH_REPORT the transmit header is virtio_net_hdr_v1_hash too (its hash fields unused).
  if (chain.readableBytes <= hdrLen_ || chain.readableBytes - hdrLen_ > (gsoOn ? kGsoMaxFrameBytes : maxFrame_))
    return true;
  VirtioNetHdr hdr{};
  copyFromBuffers(chain.readable, 0, &hdr, kNetHdrLen);
  const size_t len = chain.readableBytes - hdrLen_;
  if (hdr.gso_type != kGsoNone) {
    Frame frame;
    frame.bytes.resize(len);
    copyFromBuffers(chain.readable, hdrLen_, frame.bytes.data(), len);
    // Segmentation needs its feature and a partial checksum (§5.1.6.2); anything else goes nowhere.
    const uint64_t needs = gsoHostFeatures(hdr.gso_type);
    if (needs == 0 || (negotiated_ & needs) != needs || !(hdr.flags & kHdrNeedsCsum) || hdr.gso_size == 0 ||
        uint64_t{hdr.csum_start} + hdr.csum_offset + 2 > frame.bytes.size())
      return true;
    frame.meta.gsoType = hdr.gso_type;
    frame.meta.gsoSize = hdr.gso_size;
    frame.meta.hdrLen = hdr.hdr_len;
    frame.meta.csumStart = hdr.csum_start;
    frame.meta.csumOffset = hdr.csum_offset;
    transmitGso(q / 2, std::move(frame));
    return true;
  }
  if (len > maxFrame_) return true;
  const bool partial = has(kNetFCsum) && (hdr.flags & kHdrNeedsCsum);
  // A checksum outside the frame is the driver's mistake: the frame goes nowhere.
  if (partial && uint64_t{hdr.csum_start} + hdr.csum_offset + 2 > len) return true;
  // Copied once, straight into its slot (or, with the slots full, a heap copy). RSS picks the slot's
  // queue from the headers, so with it on they are looked at first.
  FrameMeta meta;
  uint16_t rxPair = static_cast<uint16_t>(q / 2 % activePairs_);
  if (classifying()) {
    uint8_t head[kClassifyBytes];
    const size_t n = std::min(len, sizeof head);
    copyFromBuffers(chain.readable, hdrLen_, head, n);
    rxPair = classify(head, n, meta, rxPair);
  }
  RxQueue& rx = rx_[rxPair];
  std::vector<uint8_t> heap;
  uint8_t* slot = reserve(rx, len);
  uint8_t* bytes = slot;
  if (!slot) {
    heap.resize(len);
    bytes = heap.data();
  }
  copyFromBuffers(chain.readable, hdrLen_, bytes, len);
  if (partial) {
    if (has(kNetFGuestCsum)) {
      // The receiver takes partial checksums too: it stays partial on the way, as between VMs.
      meta.csumStart = hdr.csum_start;
      meta.csumOffset = hdr.csum_offset;
    } else {
      fillChecksum(bytes, len, hdr.csum_start, hdr.csum_start + hdr.csum_offset);
    }
  }
  if (admit(bytes, len)) enqueue(rx, slot, std::move(heap), len, meta);
  return true;
}

// A segmentation request: whole to a receiver that negotiated its GUEST_ feature (and so
// GUEST_CSUM), else cut into wire-sized frames with complete checksums. A frame that does not
// parse as its gso_type says goes nowhere.
void MockNet::transmitGso(uint16_t txPair, Frame frame) {
  if (guestTakesGso(negotiated_, frame.meta.gsoType)) return transmitted(txPair, std::move(frame));
  std::vector<std::vector<uint8_t>> segments;
  if (!segmentFrame(frame.bytes.data(), frame.bytes.size(), frame.meta.gsoType, frame.meta.gsoSize, segments)) return;
  for (std::vector<uint8_t>& s : segments) {
    Frame f;
    f.bytes = std::move(s);
    transmitted(txPair, std::move(f));
  }
}

void MockNet::transmitted(uint16_t txPair, Frame frame) {
  const size_t len = frame.bytes.size();
  if (!admit(frame.bytes.data(), len)) return;
  uint16_t rxPair = static_cast<uint16_t>(txPair % activePairs_);
  if (classifying()) rxPair = classify(frame.bytes.data(), len, frame.meta, rxPair);
  RxQueue& rx = rx_[rxPair];
  uint8_t* slot = reserve(rx, len);
  if (slot) std::memcpy(slot, frame.bytes.data(), len);
  enqueue(rx, slot, std::move(frame.bytes), len, frame.meta);
}

// The hash types of §5.1.6.4.3: TCP or UDP over IPv4 or IPv6 hashes the addresses and ports (source
// first), else plain IP hashes the addresses; a fragment or a type not enabled falls back to the
// next one, and nothing left is unclassified. IPv6 extension headers are not followed (the mock
// offers no _EX types): an IPv6 packet whose next header is not TCP/UDP hashes as plain IPv6.
uint16_t MockNet::classify(const uint8_t* b, size_t size, FrameMeta& meta, uint16_t looped) const {
  const uint32_t types = rss_.hashTypes;
  size_t l3 = kEthHeader;
  uint16_t ethertype = be16(&b[12]);
  if (ethertype == kEthertypeVlan && size >= kEthHeader + kVlanTag) {
    ethertype = be16(&b[16]);
    l3 += kVlanTag;
  }
  uint8_t input[36];
  size_t n = 0;
  uint16_t report = 0;
  if (ethertype == kEthertypeIpV4 && size >= l3 + 20 && b[l3] >> 4 == 4) {
    const size_t ihl = size_t{b[l3] & 0xfu} * 4;
    const bool fragment = (be16(&b[l3 + 6]) & 0x3fff) != 0;  // MF or an offset
    const size_t l4 = l3 + ihl;
    const bool ports = ihl >= 20 && !fragment && size >= l4 + 4;
    const uint8_t proto = b[l3 + 9];
    std::memcpy(input, &b[l3 + 12], 8);
    if (ports && ((proto == kProtoTcp && types & kHashTcpV4) || (proto == kProtoUdp && types & kHashUdpV4))) {
      std::memcpy(input + 8, &b[l4], 4);
      n = 12;
      report = proto == kProtoTcp ? kReportTcpV4 : kReportUdpV4;
    } else if (types & kHashIpV4) {
      n = 8;
      report = kReportIpV4;
    }
  } else if (ethertype == kEthertypeIpV6 && size >= l3 + 40 && b[l3] >> 4 == 6) {
    const size_t l4 = l3 + 40;
    const bool ports = size >= l4 + 4;
    const uint8_t next = b[l3 + 6];
    std::memcpy(input, &b[l3 + 8], 32);
    if (ports && ((next == kProtoTcp && types & kHashTcpV6) || (next == kProtoUdp && types & kHashUdpV6))) {
      std::memcpy(input + 32, &b[l4], 4);
      n = 36;
      report = next == kProtoTcp ? kReportTcpV6 : kReportUdpV6;
    } else if (types & kHashIpV6) {
      n = 32;
      report = kReportIpV6;
    }
  }
  if (report != 0) {
    meta.hash = toeplitz(input, n, rss_.key);
    meta.hashReport = report;
  }
  if (!rss_.steer) return looped;
  if (report == 0) return rss_.unclassified;
  return rss_.table[meta.hash & (rss_.table.size() - 1)];
}

uint8_t* MockNet::reserve(RxQueue& rx, size_t len) {
  if (!rx.overflow.empty() || rx.count == slotCount_ || len > slotSize_) return nullptr;
  return rx.slotBytes.data() + ((rx.head + rx.count) % slotCount_) * size_t{slotSize_};
}

bool MockNet::admit(const uint8_t* bytes, size_t len) {
  if (opts_.net.commandFrames && len > kEthHeader && be16(bytes + 12) == kCommandEthertype && command(bytes))
    return false;
  {
    std::lock_guard<std::mutex> lock(configLock_);
    if (!(status_ & kNetStatusLinkUp)) return false;  // no carrier: nothing goes out
  }
  return len >= kEthHeader && passesFilter(bytes, len);
}

void MockNet::enqueue(RxQueue& rx, uint8_t* slot, std::vector<uint8_t>&& heap, size_t len, const FrameMeta& meta) {
  backlogBytes_ += len;
  if (slot) {
    Slot& s = rx.slots[(rx.head + rx.count) % slotCount_];
    s.len = static_cast<uint32_t>(len);
    s.meta = meta;
    rx.count++;
  } else {
    rx.overflow.push_back(Frame{std::move(heap), meta});
  }
}

bool MockNet::command(const uint8_t* frame) {
  switch (frame[kEthHeader]) {
    case kCommandLinkDown:
      setStatus(0, kNetStatusLinkUp);
      return true;
    case kCommandLinkUp:
      setStatus(kNetStatusLinkUp, 0);
      return true;
    case kCommandAnnounce:
      if (has(kNetFGuestAnnounce)) setStatus(kNetStatusAnnounce, 0);
      return true;
    default:
      return false;  // not a command: ordinary traffic
  }
}

void MockNet::setStatus(uint16_t set, uint16_t clear) {
  {
    std::lock_guard<std::mutex> lock(configLock_);
    const uint16_t next = static_cast<uint16_t>((status_ | set) & ~clear);
    if (next == status_) return;
    status_ = next;
  }
  configChanged_();
}

bool MockNet::passesFilter(const uint8_t* frame, size_t len) const {
  if (!has(kNetFCtrlRx) || filter_.promisc) return true;
  if (be16(frame + 12) == kEthertypeVlan && len >= kEthHeader + 2 &&
      !filter_.vlans.test(be16(frame + kEthHeader) & 0xfff))
    return false;
  const uint8_t* dst = frame;
  const auto listed = [dst](const std::vector<std::array<uint8_t, 6>>& table) {
    return std::any_of(table.begin(), table.end(), [dst](const auto& m) { return std::memcmp(m.data(), dst, 6) == 0; });
  };
  if (std::all_of(dst, dst + 6, [](uint8_t b) { return b == 0xff; })) return !filter_.nobcast;
  if (dst[0] & 1) return !filter_.nomulti && (filter_.allmulti || listed(filter_.multicast));
  if (filter_.nouni) return false;
  if (filter_.alluni || listed(filter_.unicast)) return true;
  std::lock_guard<std::mutex> lock(configLock_);
  return std::memcmp(dst, mac_, 6) == 0;
}

uint8_t MockNet::control(const DeviceChain& chain) {
  uint8_t head[2];
  copyFromBuffers(chain.readable, 0, head, 2);
  std::vector<uint8_t> data(chain.readableBytes - 2);
  copyFromBuffers(chain.readable, 2, data.data(), data.size());
  const uint8_t cls = head[0], cmd = head[1];
  if (refused_ == -2 || refused_ == cls) return kCtrlErr;
  if (refused_ == -3 && cls == kCtrlMq && (cmd == kCtrlMqRssConfig || cmd == kCtrlMqHashConfig)) return kCtrlErr;
  switch (cls) {
    case kCtrlRx:
      return has(kNetFCtrlRx) ? controlRx(cmd, data) : kCtrlErr;
    case kCtrlMac:
      return controlMac(cmd, data);
    case kCtrlVlan: {
      if (!has(kNetFCtrlVlan) || data.size() != 2 || cmd > 1) return kCtrlErr;
      const uint16_t vid = le16(data.data());
      if (vid >= filter_.vlans.size()) return kCtrlErr;
      filter_.vlans.set(vid, cmd == 0);
      return kCtrlOk;
    }
    case kCtrlAnnounce: {
      // As QEMU: an acknowledgement with no announce pending is refused.
      std::lock_guard<std::mutex> lock(configLock_);
      if (!has(kNetFGuestAnnounce) || cmd != 0 || !data.empty() || !(status_ & kNetStatusAnnounce)) return kCtrlErr;
      status_ = static_cast<uint16_t>(status_ & ~kNetStatusAnnounce);
      return kCtrlOk;
    }
    case kCtrlMq:
      return controlMq(cmd, data);
    default:
      return kCtrlErr;
  }
}

uint8_t MockNet::controlRx(uint8_t cmd, const std::vector<uint8_t>& data) {
  if (data.size() != 1 || cmd > 5 || (cmd > 1 && !has(kNetFCtrlRxExtra))) return kCtrlErr;
  bool* const flags[] = {&filter_.promisc, &filter_.allmulti, &filter_.alluni,
                         &filter_.nomulti, &filter_.nouni,    &filter_.nobcast};
  *flags[cmd] = data[0] != 0;
  return kCtrlOk;
}

uint8_t MockNet::controlMac(uint8_t cmd, const std::vector<uint8_t>& data) {
  if (cmd == 1) {  // VIRTIO_NET_CTRL_MAC_ADDR_SET
    if (!has(kNetFCtrlMacAddr) || data.size() != 6) return kCtrlErr;
    std::lock_guard<std::mutex> lock(configLock_);
    std::memcpy(mac_, data.data(), 6);
    return kCtrlOk;
  }
  // VIRTIO_NET_CTRL_MAC_TABLE_SET: two tables, each a le32 count and that many addresses, and
  // nothing after them.
  if (cmd != 0 || !has(kNetFCtrlRx)) return kCtrlErr;
  std::vector<std::array<uint8_t, 6>> tables[2];
  size_t at = 0;
  for (auto& table : tables) {
    if (data.size() - at < 4) return kCtrlErr;
    const uint32_t n = le32(&data[at]);
    at += 4;
    if (n > (data.size() - at) / 6) return kCtrlErr;
    for (uint32_t i = 0; i < n; i++, at += 6) {
      std::array<uint8_t, 6> m;
      std::memcpy(m.data(), &data[at], 6);
      table.push_back(m);
    }
  }
  if (at != data.size()) return kCtrlErr;
  filter_.unicast = std::move(tables[0]);
  filter_.multicast = std::move(tables[1]);
  return kCtrlOk;
}

uint8_t MockNet::controlMq(uint8_t cmd, const std::vector<uint8_t>& data) {
  const uint16_t maxPairs = opts_.net.queuePairs;
  if (cmd == kCtrlMqPairsSet) {
    if (!has(kNetFMq) || data.size() != 2) return kCtrlErr;
    const uint16_t pairs = le16(data.data());
    if (pairs < 1 || pairs > maxPairs) return kCtrlErr;
    activePairs_ = pairs;
    rss_.steer = false;  // back to automatic steering, as QEMU
    return kCtrlOk;
  }
  Rss next;
  size_t at = 0;
  if (cmd == kCtrlMqRssConfig) {
    // struct virtio_net_rss_config: hash_types, indirection_table_mask, unclassified_queue,
    // indirection_table[mask + 1], max_tx_vq, hash_key_length, hash_key_data.
    if (!has(kNetFRss) || data.size() < 8) return kCtrlErr;
    next.steer = true;
    next.hashTypes = le32(data.data());
    const uint32_t length = uint32_t{le16(&data[4])} + 1;
    next.unclassified = le16(&data[6]);
    if ((length & (length - 1)) != 0 || length > kRssTableLength || next.unclassified >= maxPairs) return kCtrlErr;
    if (data.size() < 8 + 2 * size_t{length} + 3) return kCtrlErr;
    for (uint32_t i = 0; i < length; i++) {
      const uint16_t q = le16(&data[8 + 2 * i]);
      if (q >= maxPairs) return kCtrlErr;
      next.table.push_back(q);
    }
    at = 8 + 2 * size_t{length};
    const uint16_t txPairs = le16(&data[at]);
    if (txPairs < 1 || txPairs > maxPairs) return kCtrlErr;
    activePairs_ = txPairs;
    at += 2;
  } else if (cmd == kCtrlMqHashConfig) {
    // struct virtio_net_hash_config: hash_types, reserved[4], hash_key_length, hash_key_data.
    if (!has(kNetFHashReport) || data.size() < 13) return kCtrlErr;
    next.hashTypes = le32(data.data());
    at = 12;
  } else {
    return kCtrlErr;
  }
  const size_t keyLength = data[at++];
  if (keyLength > kRssKeySize || data.size() != at + keyLength || (next.hashTypes & ~kHashTypes) != 0) return kCtrlErr;
  next.key.assign(data.begin() + static_cast<std::ptrdiff_t>(at), data.end());
  rss_ = std::move(next);
  return kCtrlOk;
}

void MockNet::drainDeferred(uint16_t q, std::vector<UsedEntry>& done) {
  if (role(q) != Role::kRx) return;
  RxQueue& rx = rx_[q / 2];
  bool waiting = false;
  while (!rx.empty() && !rx.buffers.empty() && !waiting) deliverOne(rx, q, done, &waiting);
}

// Places the oldest frame of `rx` in its buffers, or sets `waiting` when a mergeable frame needs more
// buffers than the driver has posted yet.
void MockNet::deliverOne(RxQueue& rx, uint16_t q, std::vector<UsedEntry>& done, bool* waiting) {
  // The oldest frame: in the slot at the head, or (no slot taken) first in the overflow.
  const bool inSlot = rx.count > 0;
  const FrameMeta& wire = inSlot ? rx.slots[rx.head].meta : rx.overflow.front().meta;
  const uint8_t* const frame =
      inSlot ? rx.slotBytes.data() + rx.head * size_t{slotSize_} : rx.overflow.front().bytes.data();
  const size_t frameLen = inSlot ? rx.slots[rx.head].len : rx.overflow.front().bytes.size();
  const uint64_t need = hdrLen_ + frameLen;
  size_t used = 1;
  if (has(kNetFMrgRxbuf)) {
    uint64_t room = 0;
    used = 0;
    while (used < rx.buffers.size() && room < need) room += rx.buffers[used++].writableBytes;
    if (room < need) {
      *waiting = true;
      return;
    }
  }
  if (!has(kNetFMrgRxbuf) && rx.buffers.front().writableBytes < need) {
    // A frame too big for the buffer is dropped; the buffer comes back empty.
    done.push_back(UsedEntry{q, rx.buffers.front().head, 0});
  } else {
    const bool lie =
        fault_ != Fault::kNone && framesReceived_ >= opts_.faultAfter && (fault_ != Fault::kEmptyBuffer || used > 1);
    VirtioNetHdr hdr{};
    hdr.num_buffers = static_cast<uint16_t>(used);
    if (wire.csumStart >= 0) {
      hdr.flags = kHdrNeedsCsum;
      hdr.csum_start = static_cast<uint16_t>(wire.csumStart);
      hdr.csum_offset = wire.csumOffset;
    }
    if (lie && fault_ == Fault::kCsumOutside && has(kNetFGuestCsum)) {
      hdr.flags = kHdrNeedsCsum;
      hdr.csum_start = static_cast<uint16_t>(frameLen - 1);
      hdr.csum_offset = 0;
    }
    if (wire.gsoType != kGsoNone) {
      hdr.gso_type = wire.gsoType;
      hdr.gso_size = wire.gsoSize;
      hdr.hdr_len = wire.hdrLen;
    }
    if (lie && (fault_ == Fault::kGsoSizeZero || fault_ == Fault::kGsoHdrLenPast || fault_ == Fault::kGsoUnknownType ||
                fault_ == Fault::kGsoNotNegotiated)) {
      // A segmentation header on this frame: a type the driver took (TCPv4 over GUEST_TSO4), with a
      // size of 0 or a header length past the frame; an undefined type (2); or TCPv6 when the driver
      // did not negotiate GUEST_TSO6 (the test opens without it).
      hdr.flags = kHdrNeedsCsum;
      hdr.csum_start = 0;
      hdr.csum_offset = 0;
      hdr.gso_type = fault_ == Fault::kGsoUnknownType ? 2 : fault_ == Fault::kGsoNotNegotiated ? kGsoTcpV6 : kGsoTcpV4;
      hdr.gso_size = fault_ == Fault::kGsoSizeZero ? 0 : 1000;
      hdr.hdr_len = static_cast<uint16_t>(fault_ == Fault::kGsoHdrLenPast ? frameLen + 1 : 14);
    }
    if (lie && fault_ == Fault::kZeroBuffers) hdr.num_buffers = 0;
    if (lie && fault_ == Fault::kExtraBuffers) hdr.num_buffers = static_cast<uint16_t>(used + 1);
    if (lie && fault_ == Fault::kHugeBuffers) hdr.num_buffers = 0xffff;
    uint8_t src[kHashHdrLen] = {};
    std::memcpy(src, &hdr, kNetHdrLen);
    if (hdrLen_ == kHashHdrLen) {
      const uint32_t v = wire.hash;
      const uint8_t report[6] = {uint8_t(v),       uint8_t(v >> 8),          uint8_t(v >> 16),
                                 uint8_t(v >> 24), uint8_t(wire.hashReport), uint8_t(wire.hashReport >> 8)};
      std::memcpy(src + kNetHdrLen, report, sizeof report);
    }
    uint64_t left = need;
    for (size_t i = 0; i < used; i++) {
      const DeviceChain& b = rx.buffers[i];
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(b.writableBytes, left));
      // The header first, then the frame, across the buffers in order.
      const uint64_t at = need - left;
      const uint32_t h = at < hdrLen_ ? std::min<uint32_t>(n, static_cast<uint32_t>(hdrLen_ - at)) : 0;
      if (h > 0) copyToBuffers(b.writable, 0, src + at, h);
      if (n > h) copyToBuffers(b.writable, h, frame + (at + h - hdrLen_), n - h);
      left -= n;
      uint32_t len = n;
      if (lie && fault_ == Fault::kShortHead && i == 0) len = hdrLen_ - 2;
      if (lie && fault_ == Fault::kEmptyBuffer && i == used - 1) len = 0;
      done.push_back(UsedEntry{q, b.head, len});
    }
    framesReceived_++;
  }
  backlogBytes_ -= frameLen;
  if (inSlot) {
    rx.head = (rx.head + 1) % slotCount_;
    rx.count--;
  } else {
    rx.overflow.pop_front();
  }
  for (size_t i = 0; i < used; i++) rx.buffers.pop_front();
}

}  // namespace vdpa
