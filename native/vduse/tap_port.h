// A TAP interface (IFF_TAP | IFF_NO_PI) wired to a VduseNet: a thread of its own reads the frames
// the host's stack sends to the interface and hands them to the NIC's receive path; frames the NIC's
// driver transmits are written to the interface without blocking (a full queue drops them, counted in
// the NIC's txDropped). No virtio header on the fd, so partial checksums are filled in first.
// Destroying the port stops the thread and closes the fd: the interface disappears.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "vduse/vduse_net.h"

namespace vdpa {

class TapPort : public NetPeer {
 public:
  // IFNAMSIZ less the NUL.
  static constexpr size_t kMaxNameBytes = 15;

  // Creates (or attaches to a persistent) TAP interface `name` (a "%d" lets the kernel number it).
  TapPort(const std::string& name, std::weak_ptr<VduseNet> net, const std::string& tunPath = "/dev/net/tun");
  ~TapPort() override;
  TapPort(const TapPort&) = delete;
  TapPort& operator=(const TapPort&) = delete;

  // The interface's name as the kernel gave it.
  const std::string& name() const { return name_; }
  // False (counted by the NIC) when the interface's queue is full or the interface is down.
  bool deliver(NetFrame frame) override;
  // Stops the reading thread (idempotent); the fd stays open until the port goes. Call it before
  // the NIC's last reference goes, so that the NIC is never destroyed on the reading thread.
  void stop();

 private:
  void run();

  std::weak_ptr<VduseNet> net_;
  UniqueFd fd_;
  UniqueFd stop_;
  std::string name_;
  std::thread thread_;  // last: started once the rest is ready
};

}  // namespace vdpa
