// Segmentation offload for the device-side NIC models (mock:net, the VDUSE NIC): the virtio-net
// gso_type values and feature bits (§5.1.3, §5.1.6.2), which receiving driver takes a frame whole,
// and the software segmentation of a large TCP or UDP frame into wire-sized ones for a driver that
// does not. Pure C++: no rings, no system calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vdpa {

constexpr unsigned kNetFeatureGuestTso4 = 7, kNetFeatureGuestTso6 = 8, kNetFeatureHostTso4 = 11,
                   kNetFeatureHostTso6 = 12, kNetFeatureGuestUso4 = 54, kNetFeatureGuestUso6 = 55,
                   kNetFeatureHostUso = 56;
// virtio_net_hdr gso_type values (VIRTIO_NET_HDR_GSO_*); kGsoEcn is a flag on top of a TCP type.
constexpr uint8_t kGsoNone = 0, kGsoTcpV4 = 1, kGsoUdp = 3, kGsoTcpV6 = 4, kGsoUdpL4 = 5, kGsoEcn = 0x80;
// Longest frame a segmentation request may carry: a 64 KiB IP packet behind an Ethernet header and
// a VLAN tag (Linux's GSO_MAX_SIZE).
constexpr uint32_t kGsoMaxFrameBytes = 65536 + 14 + 4;

// The transmit feature (HOST_*) a gso_type needs; 0 for a type no device here takes (UFO, ECN).
uint64_t gsoHostFeatures(uint8_t gsoType);
// True when a driver with `features` negotiated takes frames of `gsoType` whole (GUEST_TSO4,
// GUEST_TSO6, GUEST_USO4 or GUEST_USO6 for UDP over either IP version: both, as the frame's IP
// version is only known after parsing).
bool guestTakesGso(uint64_t features, uint8_t gsoType);

// Splits an Ethernet frame (an optional 802.1Q tag, IPv4 with options or IPv6 without extension
// headers, then TCP for kGsoTcpV4/kGsoTcpV6 or UDP for kGsoUdpL4) into frames whose transport
// payload is at most `gsoSize` bytes, appended to `out`, each complete: IPv4 total length, a
// new identification (one more per segment) and header checksum, or IPv6 payload length; TCP
// sequence numbers, FIN and PSH on the last segment only, CWR on the first only, or the UDP
// length; the transport checksum over the pseudo-header. Headers are parsed from the frame itself
// (hdr_len is only a hint). False, with `out` unchanged, when the frame is not what gsoType says,
// is an IP fragment, or gsoSize is 0.
bool segmentFrame(const uint8_t* frame, size_t len, uint8_t gsoType, uint16_t gsoSize,
                  std::vector<std::vector<uint8_t>>& out);

}  // namespace vdpa
