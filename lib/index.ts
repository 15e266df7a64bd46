/**
 * vdpa: drive virtio devices (vhost-vdpa, VFIO virtio-pci, or the built-in mock devices) from Node.
 *
 * @packageDocumentation
 */
export { VdpaError, type VdpaErrorInfo } from './errors';
export { DeviceType, type DeviceTypeName, Status, Feature, BlkFeature, NetFeature, featureNames } from './constants';
export { Device, openDevice, mockFaults, type OpenOptions, type AllocOptions } from './device';
export { BlkDevice, openBlk, type BlkOptions, type BlkOp } from './blk';
export { NetDevice, openNet, type NetOptions } from './net';
export { VhostControl, BackendFeature, type VhostInfo } from './vhost';
export { listDevices, type DeviceEntry } from './discovery';
export {
  listManagementDevices,
  createDevice,
  deleteDevice,
  getDevice,
  deviceAttributes,
  deviceConfig,
  deviceStats,
  setDeviceAttributes,
  bindDriver,
  type CreateDeviceOptions,
  type DeviceAttributes,
  type BindOptions,
  type VdpaDriver,
  type PciDriver,
  type ManagementDevice,
  type DeviceConfig,
  type NetDeviceConfig,
  type BlkDeviceConfig,
  type OtherDeviceConfig,
  type QueueStats,
  type VdpaDeviceAttributes,
} from './management';
