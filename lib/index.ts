// The declarations use Node's types (@types/node is a dependency): load them even for "types": [] consumers.
/// <reference types="node" preserve="true" />
/**
 * vdpa: drive virtio devices (vhost-vdpa, VFIO virtio-pci, or the built-in mock devices) from Node.
 *
 * @packageDocumentation
 */
export { VdpaError, AbortError, type VdpaErrorInfo } from './errors';
export type { RequestOptions } from './call';
export { DeviceType, type DeviceTypeName, Status, Feature, BlkFeature, NetFeature, featureNames } from './constants';
export {
  Device,
  openDevice,
  type AllocOptions,
  type DeviceEvents,
  type DeviceState,
  type DeviceTypeLabel,
  type TransportName,
} from './device';
export { mockFaults, mockNetFaults, type OpenOptions, type MockOptions } from './options';
export { BlkDevice, openBlk, type BlkOptions, type BlkOp } from './blk';
export {
  NetDevice,
  openNet,
  type GsoRequest,
  type GsoType,
  type HashConfig,
  type MacTable,
  type NetEvents,
  type NetHashType,
  type NetOptions,
  type Packet,
  type PacketMeta,
  type QueuePairStats,
  type RssConfig,
  type RssLimits,
  type SendOptions,
} from './net';
export {
  NetLoop,
  type NetForwardOptions,
  type NetGenerateOptions,
  type NetLoopOptions,
  type NetLoopStats,
} from './net-loops';
export {
  BlkReadStream,
  BlkWriteStream,
  NetFrameStream,
  type BlkReadStreamOptions,
  type BlkWriteStreamOptions,
  type NetFrameStreamOptions,
} from './streams';
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
export {
  VduseBlkDevice,
  createVduseBlk,
  type VduseBlkOptions,
  type VduseBlkHandler,
  type VduseQueueStats,
  type VduseResizeOptions,
} from './vduse';
export { VduseDevice, type VduseAttachOptions } from './vduse-attach';
export {
  VduseNetDevice,
  createVduseNet,
  type VduseNetOptions,
  type VduseNetStats,
  type VduseFramesOptions,
} from './vduse-net';
export type { HandOverOptions, HandOverResult } from './handover';
export type { BlkDeviceEvents } from './blk';
