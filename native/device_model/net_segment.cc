#include "device_model/net_segment.h"

#include <algorithm>

namespace vdpa {

namespace {

constexpr size_t kEthHeader = 14, kVlanTag = 4, kIpv6Header = 40, kUdpHeader = 8, kTcpMinHeader = 20;
constexpr uint16_t kEthertypeIpv4 = 0x0800, kEthertypeIpv6 = 0x86dd, kEthertypeVlan = 0x8100;
constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

uint64_t bit(unsigned n) { return uint64_t{1} << n; }
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}

// The ones-complement sum of bytes (RFC 1071), not yet folded or inverted.
uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += be16(p + i);
  if (n & 1) sum += uint32_t{p[n - 1]} << 8;
  return sum;
}
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Where the headers of a frame are, as far as segmentation needs them.
struct Layout {
  size_t l3 = 0, l4 = 0, payload = 0;  // offsets of the IP header, transport header, payload
  bool ipv4 = false, tcp = false;
};

bool parse(const uint8_t* f, size_t len, Layout& l) {
  if (len < kEthHeader) return false;
  size_t l3 = kEthHeader;
  uint16_t type = be16(f + 12);
  if (type == kEthertypeVlan) {
    if (len < kEthHeader + kVlanTag) return false;
    type = be16(f + 16);
    l3 += kVlanTag;
  }
  uint8_t proto;
  if (type == kEthertypeIpv4) {
    if (len < l3 + 20 || f[l3] >> 4 != 4) return false;
    const size_t ihl = size_t{f[l3] & 0x0fu} * 4;
    // A fragment (more fragments, or an offset) is not segmented.
    if (ihl < 20 || len < l3 + ihl || (be16(f + l3 + 6) & 0x3fff) != 0) return false;
    proto = f[l3 + 9];
    l.l4 = l3 + ihl;
    l.ipv4 = true;
  } else if (type == kEthertypeIpv6) {
    if (len < l3 + kIpv6Header || f[l3] >> 4 != 6) return false;
    proto = f[l3 + 6];  // an extension header is not segmented
    l.l4 = l3 + kIpv6Header;
  } else {
    return false;
  }
  l.l3 = l3;
  if (proto == kProtoTcp) {
    if (len < l.l4 + kTcpMinHeader) return false;
    const size_t doff = (size_t{f[l.l4 + 12]} >> 4) * 4;
    if (doff < kTcpMinHeader || len < l.l4 + doff) return false;
    l.payload = l.l4 + doff;
    l.tcp = true;
  } else if (proto == kProtoUdp) {
    if (len < l.l4 + kUdpHeader) return false;
    l.payload = l.l4 + kUdpHeader;
  } else {
    return false;
  }
  return true;
}

}  // namespace

uint64_t gsoHostFeatures(uint8_t gsoType) {
  switch (gsoType) {
    case kGsoTcpV4:
      return bit(kNetFeatureHostTso4);
    case kGsoTcpV6:
      return bit(kNetFeatureHostTso6);
    case kGsoUdpL4:
      return bit(kNetFeatureHostUso);
    default:
      return 0;
  }
}

bool guestTakesGso(uint64_t features, uint8_t gsoType) {
  switch (gsoType) {
    case kGsoTcpV4:
      return (features & bit(kNetFeatureGuestTso4)) != 0;
    case kGsoTcpV6:
      return (features & bit(kNetFeatureGuestTso6)) != 0;
    case kGsoUdpL4:
      return (features & bit(kNetFeatureGuestUso4)) != 0 && (features & bit(kNetFeatureGuestUso6)) != 0;
    default:
      return false;
  }
}

bool segmentFrame(const uint8_t* frame, size_t len, uint8_t gsoType, uint16_t gsoSize,
                  std::vector<std::vector<uint8_t>>& out) {
  Layout l;
  if (gsoSize == 0 || !parse(frame, len, l)) return false;
  const bool wantTcp = gsoType == kGsoTcpV4 || gsoType == kGsoTcpV6;
  if (gsoType != kGsoTcpV4 && gsoType != kGsoTcpV6 && gsoType != kGsoUdpL4) return false;
  if (wantTcp != l.tcp || (gsoType == kGsoTcpV4 && !l.ipv4) || (gsoType == kGsoTcpV6 && l.ipv4)) return false;
  const size_t headers = l.payload, data = len - headers;
  const size_t count = std::max<size_t>(1, (data + gsoSize - 1) / gsoSize);
  const uint16_t id0 = l.ipv4 ? be16(frame + l.l3 + 4) : 0;
  const uint32_t seq0 = l.tcp ? be32(frame + l.l4 + 4) : 0;
  const uint8_t flags0 = l.tcp ? frame[l.l4 + 13] : 0;
  const size_t first = out.size();
  out.reserve(first + count);
  for (size_t i = 0; i < count; i++) {
    const size_t from = i * gsoSize, n = std::min<size_t>(gsoSize, data - std::min(data, from));
    std::vector<uint8_t>& s = out.emplace_back(headers + n);
    uint8_t* p = s.data();
    std::copy(frame, frame + headers, p);
    std::copy(frame + headers + from, frame + headers + from + n, p + headers);
    const size_t l4Len = s.size() - l.l4;
    uint32_t pseudo;
    if (l.ipv4) {
      uint8_t* ip = p + l.l3;
      put16(ip + 2, static_cast<uint32_t>(s.size() - l.l3));
      put16(ip + 4, static_cast<uint32_t>(id0 + i));
      put16(ip + 10, 0);
      put16(ip + 10, fold(sum16(ip, l.l4 - l.l3)));
      pseudo = sum16(ip + 12, 8) + ip[9] + static_cast<uint32_t>(l4Len);
    } else {
      uint8_t* ip = p + l.l3;
      put16(ip + 4, static_cast<uint32_t>(l4Len));
      pseudo = sum16(ip + 8, 32) + ip[6] + static_cast<uint32_t>(l4Len >> 16) + static_cast<uint32_t>(l4Len & 0xffff);
    }
    uint8_t* t = p + l.l4;
    size_t at;  // the checksum field
    if (l.tcp) {
      put32(t + 4, static_cast<uint32_t>(seq0 + from));
      uint8_t flags = flags0;
      if (i + 1 < count) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
      if (i > 0) flags &= static_cast<uint8_t>(~kTcpCwr);
      t[13] = flags;
      at = 16;
    } else {
      put16(t + 4, static_cast<uint32_t>(l4Len));
      at = 6;
    }
    put16(t + at, 0);
    uint16_t c = fold(sum16(t, l4Len, pseudo));
    if (!l.tcp && c == 0) c = 0xffff;  // a UDP checksum of 0 means none
    put16(t + at, c);
  }
  return true;
}

}  // namespace vdpa
