// Device types and the device-specific configuration layouts this library knows (virtio 1.2 §5.1.4,
// §5.2.4). Little-endian, as everywhere in virtio 1.x; every field sits at its natural alignment, so
// the structs need no packing, and the offsets are asserted below.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vdpa {

// Virtio device IDs (virtio 1.2 §5).
enum class VirtioDeviceType : uint32_t { kNet = 1, kBlock = 2 };
constexpr uint32_t deviceTypeId(VirtioDeviceType t) { return static_cast<uint32_t>(t); }

// struct virtio_blk_config (§5.2.4).
struct VirtioBlkConfig {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  struct {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
  } geometry;
  uint32_t blk_size;
  struct {
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
  } topology;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
  struct {
    uint32_t zone_sectors;
    uint32_t max_open_zones;
    uint32_t max_active_zones;
    uint32_t max_append_sectors;
    uint32_t write_granularity;
    uint8_t model;
    uint8_t unused2[3];
  } zoned;
};
static_assert(offsetof(VirtioBlkConfig, capacity) == 0, "virtio-blk capacity");
static_assert(offsetof(VirtioBlkConfig, size_max) == 8, "virtio-blk size_max");
static_assert(offsetof(VirtioBlkConfig, seg_max) == 12, "virtio-blk seg_max");
static_assert(offsetof(VirtioBlkConfig, geometry) == 16, "virtio-blk geometry");
static_assert(offsetof(VirtioBlkConfig, blk_size) == 20, "virtio-blk blk_size");
static_assert(offsetof(VirtioBlkConfig, topology) == 24, "virtio-blk topology");
static_assert(offsetof(VirtioBlkConfig, writeback) == 32, "virtio-blk writeback");
static_assert(offsetof(VirtioBlkConfig, num_queues) == 34, "virtio-blk num_queues");
static_assert(offsetof(VirtioBlkConfig, max_discard_sectors) == 36, "virtio-blk max_discard_sectors");
static_assert(offsetof(VirtioBlkConfig, max_discard_seg) == 40, "virtio-blk max_discard_seg");
static_assert(offsetof(VirtioBlkConfig, discard_sector_alignment) == 44, "virtio-blk discard_sector_alignment");
static_assert(offsetof(VirtioBlkConfig, max_write_zeroes_sectors) == 48, "virtio-blk max_write_zeroes_sectors");
static_assert(offsetof(VirtioBlkConfig, max_write_zeroes_seg) == 52, "virtio-blk max_write_zeroes_seg");
static_assert(offsetof(VirtioBlkConfig, write_zeroes_may_unmap) == 56, "virtio-blk write_zeroes_may_unmap");
static_assert(offsetof(VirtioBlkConfig, max_secure_erase_sectors) == 60, "virtio-blk max_secure_erase_sectors");
static_assert(offsetof(VirtioBlkConfig, zoned) == 72, "virtio-blk zoned");
static_assert(sizeof(VirtioBlkConfig) == 96, "virtio-blk config");

// struct virtio_net_config (§5.1.4).
struct VirtioNetConfig {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
  uint16_t mtu;
  uint32_t speed;
  uint8_t duplex;
  uint8_t rss_max_key_size;
  uint16_t rss_max_indirection_table_length;
  uint32_t supported_hash_types;
};
static_assert(offsetof(VirtioNetConfig, mac) == 0, "virtio-net mac");
static_assert(offsetof(VirtioNetConfig, status) == 6, "virtio-net status");
static_assert(offsetof(VirtioNetConfig, max_virtqueue_pairs) == 8, "virtio-net max_virtqueue_pairs");
static_assert(offsetof(VirtioNetConfig, mtu) == 10, "virtio-net mtu");
static_assert(offsetof(VirtioNetConfig, speed) == 12, "virtio-net speed");
static_assert(offsetof(VirtioNetConfig, duplex) == 16, "virtio-net duplex");
static_assert(offsetof(VirtioNetConfig, supported_hash_types) == 20, "virtio-net supported_hash_types");
static_assert(sizeof(VirtioNetConfig) == 24, "virtio-net config");

// virtio-net status field bits.
constexpr uint16_t kNetStatusLinkUp = 1;

// struct virtio_net_hdr_v1 (§5.1.6): VERSION_1 always carries num_buffers.
struct VirtioNetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(offsetof(VirtioNetHdr, num_buffers) == 10, "virtio_net_hdr_v1 num_buffers");
static_assert(sizeof(VirtioNetHdr) == 12, "virtio_net_hdr_v1");

// struct virtio_blk_req header (§5.2.6) and a discard / write-zeroes segment.
struct VirtioBlkReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(VirtioBlkReqHeader) == 16, "virtio_blk_req header");
struct VirtioBlkDiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(VirtioBlkDiscardSegment) == 16, "virtio_blk_discard_write_zeroes");

}  // namespace vdpa
