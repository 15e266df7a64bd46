// mock:net — a loopback NIC: every frame sent on a transmit queue comes back on a receive queue. It
// plays the device side of mergeable receive buffers, the control queue (receive filters, MAC,
// VLAN filter, announce, queue pairs), receive-side scaling and hash reports (a Toeplitz hash over
// the IP addresses and ports, §5.1.6.4.3), and link-state changes, and can lie on purpose (faults).
#pragma once

#include <array>
#include <bitset>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "ring/virtio_config.h"
#include "transport/mock/mock_model.h"

namespace vdpa {

constexpr unsigned kNetFCsum = 0, kNetFGuestCsum = 1, kNetFMtu = 3, kNetFMac = 5, kNetFMrgRxbuf = 15, kNetFStatus = 16,
                   kNetFCtrlVq = 17, kNetFCtrlRx = 18, kNetFCtrlVlan = 19, kNetFCtrlRxExtra = 20,
                   kNetFGuestAnnounce = 21, kNetFMq = 22, kNetFCtrlMacAddr = 23, kNetFHashReport = 57, kNetFRss = 60;

class MockNet final : public MockModel {
 public:
  enum class Fault {
    kNone,
    kZeroBuffers,
    kExtraBuffers,
    kHugeBuffers,
    kShortHead,
    kEmptyBuffer,
    kCsumOutside,
    kGsoSizeZero,
    kGsoHdrLenPast,
    kGsoUnknownType,
    kGsoNotNegotiated,
  };
  // Names accepted in MockNetOptions::fault, in Fault order (after kNone).
  static const std::vector<std::string>& faultNames();
  // EtherType of command frames (MockNetOptions::commandFrames): IEEE 802 local experimental 2.
  static constexpr uint16_t kCommandEthertype = 0x88b6;

  // `configChanged` raises the configuration interrupt (called on the device thread). Throws
  // EINVAL for an unknown fault or refuseControl name.
  MockNet(const MockOptions& opts, std::function<void()> configChanged);

  uint32_t deviceId() const override { return deviceTypeId(VirtioDeviceType::kNet); }
  uint64_t features() const override;
  uint16_t numQueues() const override { return static_cast<uint16_t>(2 * opts_.net.queuePairs + 1); }
  std::vector<uint8_t> config() const override;
  void start(uint64_t features) override;
  bool handle(uint16_t q, const DeviceChain& chain, uint32_t* usedLen) override;
  bool accepts(uint16_t q) const override;
  void drainDeferred(uint16_t q, std::vector<UsedEntry>& done) override;
  void reset() override;

 private:
  enum class Role { kRx, kTx, kCtrl, kNone };
  static constexpr uint32_t kEthHeader = 14, kVlanTag = 4;
  // Frames sent but not yet received, bounded in bytes. Nothing is dropped: past the bound the
  // device takes no more transmit chains until receive buffers drain the backlog, so a full
  // receive side holds the sender back, as a flow-controlled link does.
  static constexpr size_t kBacklogBytes = size_t{1} << 20;

  // What travels with a frame: where its checksum is still to be filled in (csumStart = -1:
  // nowhere); a segmentation request (gsoType not kGsoNone) travels whole only to a driver that takes it.
  struct FrameMeta {
    int32_t csumStart = -1;
    uint16_t csumOffset = 0;
    uint8_t gsoType = 0;
    uint16_t gsoSize = 0, hdrLen = 0;
    // The hash report (VIRTIO_NET_HASH_REPORT_*, 0 = none) and its value, filled in on the way.
    uint16_t hashReport = 0;
    uint32_t hash = 0;
  };
  // A frame on the wire that does not fit a slot (a whole segmentation request, or the slots are full).
  struct Frame {
    std::vector<uint8_t> bytes;
    FrameMeta meta;
  };
  // Frames sent but not yet received: a preallocated ring of slots of the longest wire frame, so the
  // common frame costs no allocation (copied once in from the transmit chain, once out to the
  // receive buffers); what does not fit waits in `overflow`, after every slot (order is kept).
  struct Slot {
    uint32_t len = 0;
    FrameMeta meta;
  };
  // Receive chains waiting for a frame: a ring whose entries keep their segment vectors' capacity.
  class ChainRing {
   public:
    size_t size() const { return count_; }
    bool empty() const { return count_ == 0; }
    const DeviceChain& operator[](size_t i) const { return store_[(head_ + i) % store_.size()]; }
    const DeviceChain& front() const { return (*this)[0]; }
    void push_back(const DeviceChain& c);
    void pop_front() {
      head_ = (head_ + 1) % store_.size();
      count_--;
    }
    void clear() { head_ = count_ = 0; }

   private:
    std::vector<DeviceChain> store_;
    size_t head_ = 0, count_ = 0;
  };
  struct RxQueue {
    std::vector<uint8_t> slotBytes;  // slots.size() x slotSize_
    std::vector<Slot> slots;
    size_t head = 0, count = 0;
    std::deque<Frame> overflow;
    ChainRing buffers;
    bool empty() const { return count == 0 && overflow.empty(); }
  };
  // The receive filter (VIRTIO_NET_CTRL_RX, _MAC, _VLAN). After reset the device is promiscuous,
  // as QEMU's is, until the driver says otherwise.
  struct Filter {
    bool promisc = true, allmulti = false, alluni = false, nomulti = false, nouni = false, nobcast = false;
    std::vector<std::array<uint8_t, 6>> unicast, multicast;
    std::bitset<4096> vlans;
  };
  // Receive-side scaling and hash reporting (VIRTIO_NET_CTRL_MQ_RSS_CONFIG / _HASH_CONFIG).
  struct Rss {
    bool steer = false;  // RSS_CONFIG: frames go where the indirection table says
    uint32_t hashTypes = 0;
    std::vector<uint16_t> table;
    uint16_t unclassified = 0;
    std::vector<uint8_t> key;
  };

  Role role(uint16_t q) const;
  void deliverOne(RxQueue& rx, uint16_t q, std::vector<UsedEntry>& done, bool* waiting);
  // A free slot of `rx` for a frame of `len` bytes, or nullptr (it goes to the overflow).
  uint8_t* reserve(RxQueue& rx, size_t len);
  // Whether a frame goes on the wire (a command frame, no carrier or the filter stop it).
  bool admit(const uint8_t* bytes, size_t len);
  // Queues a frame admitted: in the slot reserve() gave (`heap` unused), or in the overflow.
  void enqueue(RxQueue& rx, uint8_t* slot, std::vector<uint8_t>&& heap, size_t len, const FrameMeta& meta);
  void transmitted(uint16_t txPair, Frame frame);
  void transmitGso(uint16_t txPair, Frame frame);
  bool command(const uint8_t* frame);
  bool passesFilter(const uint8_t* frame, size_t len) const;
  uint8_t control(const DeviceChain& chain);
  uint8_t controlRx(uint8_t cmd, const std::vector<uint8_t>& data);
  uint8_t controlMac(uint8_t cmd, const std::vector<uint8_t>& data);
  uint8_t controlMq(uint8_t cmd, const std::vector<uint8_t>& data);
  // With RSS steering or hash reports on, classify() decides each frame's receive pair.
  bool classifying() const { return rss_.steer || has(kNetFHashReport); }
  // The headers classify() reads at most: Ethernet, a VLAN tag, IPv4 with options, the ports.
  static constexpr size_t kClassifyBytes = kEthHeader + kVlanTag + 60 + 4;
  // Fills meta.hash / hashReport from the frame's first `size` bytes as the hash types configured
  // say; returns the receive pair (`looped`, the transmit pair's, when RSS does not steer).
  uint16_t classify(const uint8_t* bytes, size_t size, FrameMeta& meta, uint16_t looped) const;
  void setStatus(uint16_t set, uint16_t clear);
  bool has(unsigned feature) const { return (negotiated_ & bit(feature)) != 0; }

  const MockOptions opts_;
  const std::function<void()> configChanged_;
  Fault fault_ = Fault::kNone;
  int refused_ = -1;  // control class refused (VIRTIO_NET_CTRL_*), -2 = every class
  // Longest frame the link carries: the MTU plus the Ethernet header (the virtio-net packet size
  // rule), plus a VLAN tag, which receive buffers have room for.
  const uint32_t maxFrame_;
  // Slot bytes and slots per receive queue: up to 1024 wire frames, at most 4 MiB.
  const uint32_t slotSize_, slotCount_;
  uint64_t negotiated_ = 0;
  uint16_t activePairs_ = 1;
  std::vector<RxQueue> rx_;  // per queue pair
  size_t backlogBytes_ = 0;
  uint32_t framesReceived_ = 0;  // for faultAfter
  Filter filter_;
  Rss rss_;
  uint32_t hdrLen_ = sizeof(VirtioNetHdr);  // 20 with HASH_REPORT (virtio_net_hdr_v1_hash)
  // Config space the driver reads from its own thread while the device thread changes it.
  mutable std::mutex configLock_;
  uint8_t mac_[6];
  uint16_t status_ = kNetStatusLinkUp;
};

}  // namespace vdpa
