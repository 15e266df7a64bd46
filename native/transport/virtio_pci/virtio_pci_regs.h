// Register layout of a modern (virtio 1.x) PCI function: the PCI configuration header fields the
// driver touches, the virtio vendor capabilities (virtio 1.2 §4.1.4) and struct
// virtio_pci_common_cfg (§4.1.4.3).
#pragma once

#include <cstddef>
#include <cstdint>

namespace vdpa {

// PCI configuration space.
constexpr uint32_t kPciVendorId = 0x00;
constexpr uint32_t kPciDeviceId = 0x02;
constexpr uint32_t kPciCommand = 0x04;
constexpr uint32_t kPciStatus = 0x06;
constexpr uint32_t kPciCapabilityList = 0x34;
constexpr uint16_t kPciCommandMemory = 0x2;
constexpr uint16_t kPciCommandMaster = 0x4;
constexpr uint16_t kPciStatusCapList = 0x10;
constexpr uint8_t kPciCapIdVendor = 0x09;
constexpr unsigned kPciBars = 6;

// virtio-pci identification.
constexpr uint16_t kVirtioPciVendor = 0x1af4;
constexpr uint16_t kVirtioPciModernFirst = 0x1040;  // device id = 0x1040 + virtio device type
constexpr uint16_t kVirtioPciModernLast = 0x107f;

// struct virtio_pci_cap: cfg_type values and field offsets (from the capability's start).
constexpr uint8_t kVirtioPciCapCommon = 1;
constexpr uint8_t kVirtioPciCapNotify = 2;
constexpr uint8_t kVirtioPciCapIsr = 3;
constexpr uint8_t kVirtioPciCapDevice = 4;
constexpr uint32_t kCapNext = 1, kCapLen = 2, kCapType = 3, kCapBar = 4, kCapOffset = 8, kCapLength = 12;
constexpr uint32_t kCapNotifyMultiplier = 16;  // struct virtio_pci_notify_cap
constexpr uint8_t kVirtioPciCapMinLen = 16;

constexpr uint16_t kVirtioMsiNoVector = 0xffff;

// struct virtio_pci_common_cfg.
struct VirtioPciCommonCfg {
  uint32_t device_feature_select;
  uint32_t device_feature;
  uint32_t driver_feature_select;
  uint32_t driver_feature;
  uint16_t config_msix_vector;
  uint16_t num_queues;
  uint8_t device_status;
  uint8_t config_generation;
  uint16_t queue_select;
  uint16_t queue_size;
  uint16_t queue_msix_vector;
  uint16_t queue_enable;
  uint16_t queue_notify_off;
  uint32_t queue_desc_lo, queue_desc_hi;
  uint32_t queue_driver_lo, queue_driver_hi;
  uint32_t queue_device_lo, queue_device_hi;
};
static_assert(offsetof(VirtioPciCommonCfg, driver_feature) == 12, "common_cfg driver_feature");
static_assert(offsetof(VirtioPciCommonCfg, config_msix_vector) == 16, "common_cfg msix_config");
static_assert(offsetof(VirtioPciCommonCfg, device_status) == 20, "common_cfg device_status");
static_assert(offsetof(VirtioPciCommonCfg, queue_select) == 22, "common_cfg queue_select");
static_assert(offsetof(VirtioPciCommonCfg, queue_enable) == 28, "common_cfg queue_enable");
static_assert(offsetof(VirtioPciCommonCfg, queue_desc_lo) == 32, "common_cfg queue_desc");
static_assert(offsetof(VirtioPciCommonCfg, queue_driver_lo) == 40, "common_cfg queue_driver");
static_assert(offsetof(VirtioPciCommonCfg, queue_device_lo) == 48, "common_cfg queue_device");
static_assert(sizeof(VirtioPciCommonCfg) == 56, "virtio_pci_common_cfg");

// Offsets into the common configuration structure.
#define VDPA_COMMON_CFG(field) static_cast<uint32_t>(offsetof(VirtioPciCommonCfg, field))
constexpr uint32_t kCommonDeviceFeatureSelect = VDPA_COMMON_CFG(device_feature_select);
constexpr uint32_t kCommonDeviceFeature = VDPA_COMMON_CFG(device_feature);
constexpr uint32_t kCommonDriverFeatureSelect = VDPA_COMMON_CFG(driver_feature_select);
constexpr uint32_t kCommonDriverFeature = VDPA_COMMON_CFG(driver_feature);
constexpr uint32_t kCommonMsixConfig = VDPA_COMMON_CFG(config_msix_vector);
constexpr uint32_t kCommonNumQueues = VDPA_COMMON_CFG(num_queues);
constexpr uint32_t kCommonDeviceStatus = VDPA_COMMON_CFG(device_status);
constexpr uint32_t kCommonConfigGeneration = VDPA_COMMON_CFG(config_generation);
constexpr uint32_t kCommonQueueSelect = VDPA_COMMON_CFG(queue_select);
constexpr uint32_t kCommonQueueSize = VDPA_COMMON_CFG(queue_size);
constexpr uint32_t kCommonQueueMsixVector = VDPA_COMMON_CFG(queue_msix_vector);
constexpr uint32_t kCommonQueueEnable = VDPA_COMMON_CFG(queue_enable);
constexpr uint32_t kCommonQueueNotifyOff = VDPA_COMMON_CFG(queue_notify_off);
constexpr uint32_t kCommonQueueDesc = VDPA_COMMON_CFG(queue_desc_lo);
constexpr uint32_t kCommonQueueDriver = VDPA_COMMON_CFG(queue_driver_lo);
constexpr uint32_t kCommonQueueDevice = VDPA_COMMON_CFG(queue_device_lo);
constexpr uint32_t kCommonCfgSize = sizeof(VirtioPciCommonCfg);
#undef VDPA_COMMON_CFG

}  // namespace vdpa
