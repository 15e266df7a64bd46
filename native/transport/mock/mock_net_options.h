// mock:net's own settings, part of MockOptions (parsed in mock_options.cc).
#pragma once

#include <cstdint>
#include <string>

namespace vdpa {

struct MockNetOptions {
  uint16_t queuePairs = 1;  // max_virtqueue_pairs; VIRTIO_NET_F_MQ is offered when above 1
  // "" or one of MockNet::faultNames(): a lie in the mergeable receive buffers, after `faultAfter`
  // frames were received right.
  std::string fault;
  // Frames of EtherType kCommandEthertype are commands to the device (link down/up, announce)
  // instead of traffic: a timer-free trigger for link-state tests.
  bool commandFrames = false;
  // A control class the device answers VIRTIO_NET_ERR to: "", "rx", "mac", "vlan", "announce", "mq", "all",
  // or "rss" (VIRTIO_NET_CTRL_MQ_RSS_CONFIG and _HASH_CONFIG only).
  std::string refuseControl;
  // Offer segmentation offload: HOST_TSO4, HOST_TSO6, HOST_USO and GUEST_TSO4, GUEST_TSO6,
  // GUEST_USO4, GUEST_USO6.
  bool gso = true;
  // Offer receive-side scaling and hash reports (VIRTIO_NET_F_RSS, VIRTIO_NET_F_HASH_REPORT): a
  // 40-byte key, an indirection table of up to 128 entries, and the IPv4/IPv6 TCP/UDP/IP hash types.
  bool rss = false;
};

}  // namespace vdpa
