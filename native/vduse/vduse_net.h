// A virtio-net device served through VDUSE: frames the driver transmits go to the wired peer (another
// VduseNet or a TAP interface, see tap_port.h, never through JS) or to a sink (JS); frames for the driver wait in a
// bounded backlog until it posts receive buffers, and are dropped (and counted) when the backlog is
// full. The receive queue's chains are kept (deferred) until a frame fills them; mergeable receive
// buffers (MRG_RXBUF) spread a frame over several. Checksum offload both ways (CSUM, GUEST_CSUM): a
// partial checksum crosses the wire as it is when the receiving driver takes partial checksums, and is
// filled in otherwise. Segmentation offload (HOST_TSO4/6, GUEST_TSO4/6) when asked for: a large TCP
// frame crosses the wire whole when the receiving driver takes it (GUEST_TSO), and is segmented in
// software (device_model/net_segment) otherwise, and always before a TAP interface or the sink.
// No control queue: VDUSE refuses CTRL_VQ (6.12).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vduse/vduse_device.h"

namespace vdpa {

struct VduseNetOptions {
  std::string name;
  std::string controlPath = "/dev/vduse/control";
  std::array<uint8_t, 6> mac{};
  uint16_t mtu = 1500;
  uint16_t queueSize = 256;
  bool linkUp = true;
  // Offer HOST_TSO4, HOST_TSO6, GUEST_TSO4 and GUEST_TSO6.
  bool gso = false;
};

// tx: frames the driver transmitted; rx: frames placed in the driver's receive queue.
struct VduseNetStats {
  uint64_t txFrames = 0, txBytes = 0, txDropped = 0;
  uint64_t rxFrames = 0, rxBytes = 0, rxDropped = 0;
  // Frames the driver sent with a segmentation request; frames placed whole with one; segments the
  // device made of the former for a receiver that did not take them whole.
  uint64_t txGsoFrames = 0, rxGsoFrames = 0, segmentsMade = 0;
};

// A frame on its way, and where its checksum is still to be filled in (csumStart -1: nowhere);
// gsoType not kGsoNone: a segmentation request, delivered whole only to a peer that takes it.
struct NetFrame {
  std::vector<uint8_t> bytes;
  int32_t csumStart = -1;
  uint16_t csumOffset = 0;
  uint8_t gsoType = 0;
  uint16_t gsoSize = 0, hdrLen = 0;
};

// Sums from csumStart to the end and stores the checksum, for a receiver that takes whole ones.
void fillChecksum(NetFrame& frame);

// The far end of a NIC's wire: takes the frames its driver transmitted (device thread, never
// blocks). False: the frame was dropped and the sender counts it (txDropped); a peer that counts its
// own drops returns true.
class NetPeer {
 public:
  virtual ~NetPeer() = default;
  virtual bool deliver(NetFrame frame) = 0;
  // True when deliver() takes a segmentation request of `gsoType` whole; else the sender segments.
  virtual bool takesGso(uint8_t /*gsoType*/) const { return false; }
};

class VduseNet : public NetPeer {
 public:
  // Takes a frame the driver transmitted while no peer is connected (device thread); false when it
  // could not (counted as dropped).
  using Sink = std::function<bool(std::vector<uint8_t> frame)>;
  static constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
  // Frames waiting for receive buffers, at most a ring's worth of the longest frames, within these.
  static constexpr size_t kMinBacklogBytes = size_t{1} << 20, kMaxBacklogBytes = size_t{16} << 20;

  VduseNet(const VduseNetOptions& opts, Sink sink);
  ~VduseNet();
  VduseNet(const VduseNet&) = delete;
  VduseNet& operator=(const VduseNet&) = delete;

  VduseDevice& device() { return *device_; }
  // Longest frame carried: the MTU, the Ethernet header and a VLAN tag.
  uint32_t maxFrame() const { return maxFrame_; }
  // Any thread, never blocks: queues a frame for the driver's receive queue; false when it was
  // dropped (link down, no driver, backlog full, wrong size).
  bool receive(const uint8_t* data, size_t len);
  // Any thread: frames the driver transmits go to `peer` (nullptr: to the sink again). One way only;
  // connect both ends for a wire.
  void connect(const std::shared_ptr<NetPeer>& peer);
  bool connected() const;
  // A frame from a wired peer: queued for the driver as receive() does (drops counted in rxDropped),
  // its partial checksum kept when the driver takes partial checksums.
  bool deliver(NetFrame frame) override {
    enqueue(std::move(frame));
    return true;
  }
  // The driver negotiated the GUEST_ feature of `gsoType` (and GUEST_CSUM).
  bool takesGso(uint8_t gsoType) const override;
  // Any thread: the link status the driver sees (config space + config interrupt). While down,
  // frames go nowhere in either direction.
  void setLink(bool up);
  bool linkUp() const { return linkUp_.load(std::memory_order_relaxed); }
  VduseNetStats stats() const;
  // Disconnects and closes the device (see VduseDevice::close).
  void close();

 private:
  struct RxBuffer {
    uint64_t token;
    uint64_t room;  // writable bytes
  };
  enum class Place { kDone, kWait, kDrop };
  using Frame = NetFrame;

  uint32_t handle(uint16_t queue, const DeviceChain& chain, uint64_t token);
  uint32_t transmitted(const DeviceChain& chain);
  void forward(Frame frame);
  bool enqueue(Frame frame);
  void postDrain();
  void drain();
  Place place(const Frame& frame);

  const uint32_t maxFrame_;
  const size_t backlogLimit_;
  Sink sink_;
  std::atomic<bool> linkUp_;
  mutable std::mutex peerLock_;
  std::weak_ptr<NetPeer> peer_;  // under peerLock_
  std::mutex backlogLock_;
  std::deque<Frame> backlog_;            // under backlogLock_
  size_t backlogBytes_ = 0;              // under backlogLock_
  std::atomic<bool> backlogged_{false};  // backlog_ not empty
  std::atomic<bool> drainPosted_{false};
  std::atomic<uint64_t> txFrames_{0}, txBytes_{0}, txDropped_{0}, rxFrames_{0}, rxBytes_{0}, rxDropped_{0};
  std::atomic<uint64_t> txGsoFrames_{0}, rxGsoFrames_{0}, segmentsMade_{0};
  // Device thread only: receive chains waiting for a frame, in the order the driver posted them.
  std::deque<RxBuffer> rxBuffers_;
  std::unique_ptr<VduseDevice> device_;  // last: its thread stops before the rest goes
};

}  // namespace vdpa
