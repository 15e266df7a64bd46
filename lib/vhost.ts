import type { NativeVhost } from './native';
import { checkInteger } from './validate';

/** vhost-vdpa backend feature bits (VHOST_BACKEND_F_*), as bit masks. */
export const BackendFeature = {
  IOTLB_MSG_V2: 1n << 1n,
  IOTLB_BATCH: 1n << 2n,
  IOTLB_ASID: 1n << 3n,
  SUSPEND: 1n << 4n,
  RESUME: 1n << 5n,
  ENABLE_AFTER_DRIVER_OK: 1n << 6n,
  DESC_ASID: 1n << 7n,
  IOTLB_PERSIST: 1n << 8n,
} as const;

/** What a vhost-vdpa device reports about itself beyond virtio. */
export interface VhostInfo {
  /** Backend features in use (see {@link BackendFeature}). */
  backendFeatures: bigint;
  /** Backend features the kernel offered. */
  offeredBackendFeatures: bigint;
  /** IOVAs the device accepts (VHOST_VDPA_GET_IOVA_RANGE), inclusive. */
  iovaRange: { first: bigint; last: bigint };
  /** Virtqueue groups (VHOST_VDPA_GET_GROUP_NUM). */
  groupCount: number;
  /** Address spaces (VHOST_VDPA_GET_AS_NUM). */
  asidCount: number;
}

/**
 * The vhost-vdpa ioctls that have no virtio equivalent. Operations the device or kernel lacks fail
 * with a VdpaError `code: 'EOPNOTSUPP'` naming the missing feature.
 */
export class VhostControl {
  /** @internal `live` returns the native control, or throws once the device is closed. */
  constructor(private readonly live: () => NativeVhost) {}

  /** Backend features, IOVA range, group and address-space counts. */
  info(): VhostInfo {
    const i = this.live().info();
    return {
      backendFeatures: i.backendFeatures,
      offeredBackendFeatures: i.offeredBackendFeatures,
      iovaRange: { first: i.iovaFirst, last: i.iovaLast },
      groupCount: i.groupCount,
      asidCount: i.asidCount,
    };
  }

  /** VHOST_VDPA_SUSPEND: the device stops processing queues (needs BackendFeature.SUSPEND). */
  suspend(): void {
    this.live().suspend();
  }

  /** VHOST_VDPA_RESUME (needs BackendFeature.RESUME). */
  resume(): void {
    this.live().resume();
  }

  /** VHOST_GET_VRING_BASE: the device's next available index for queue `index`. */
  vringBase(index: number): number {
    return this.live().vringBase(checkInteger(index, 'index', 0, 0xffff));
  }

  /** VHOST_VDPA_GET_VRING_GROUP: the group queue `index` belongs to. */
  vqGroup(index: number): number {
    return this.live().vqGroup(checkInteger(index, 'index', 0, 0xffff));
  }

  /** VHOST_VDPA_SET_GROUP_ASID: binds a virtqueue group to an address space. */
  setGroupAsid(group: number, asid: number): void {
    this.live().setGroupAsid(checkInteger(group, 'group', 0, 0xffffffff), checkInteger(asid, 'asid', 0, 0xffffffff));
  }
}
