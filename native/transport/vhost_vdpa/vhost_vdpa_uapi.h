// The vhost / vhost-vdpa userspace ABI this transport speaks, as of Linux 6.12. The system's
// <linux/vhost.h> provides most of it; Debian bookworm's headers (6.1) predate a few additions, which
// are defined here from the published ABI values. Every definition is guarded so newer headers win.
#pragma once

// <linux/vhost_types.h> pulls in <linux/virtio_ring.h>, whose inline vring_init() is not valid C++ in
// older headers (void* conversions). Nothing here needs it (the ring layout lives in ring/), so its
// include guard is set to skip it.
#ifndef _LINUX_VIRTIO_RING_H
#define _LINUX_VIRTIO_RING_H
#endif

#include <linux/vhost.h>
#include <linux/vhost_types.h>
#include <sys/ioctl.h>

// ---- backend feature bits (bit numbers, negotiated with VHOST_{GET,SET}_BACKEND_FEATURES)
#ifndef VHOST_BACKEND_F_IOTLB_MSG_V2
#define VHOST_BACKEND_F_IOTLB_MSG_V2 0x1
#endif
#ifndef VHOST_BACKEND_F_IOTLB_BATCH
#define VHOST_BACKEND_F_IOTLB_BATCH 0x2
#endif
#ifndef VHOST_BACKEND_F_IOTLB_ASID
#define VHOST_BACKEND_F_IOTLB_ASID 0x3
#endif
#ifndef VHOST_BACKEND_F_SUSPEND
#define VHOST_BACKEND_F_SUSPEND 0x4
#endif
#ifndef VHOST_BACKEND_F_RESUME
#define VHOST_BACKEND_F_RESUME 0x5
#endif
#ifndef VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK
#define VHOST_BACKEND_F_ENABLE_AFTER_DRIVER_OK 0x6
#endif
#ifndef VHOST_BACKEND_F_DESC_ASID
#define VHOST_BACKEND_F_DESC_ASID 0x7
#endif
#ifndef VHOST_BACKEND_F_IOTLB_PERSIST
#define VHOST_BACKEND_F_IOTLB_PERSIST 0x8
#endif

// ---- IOTLB message types (the `type` of struct vhost_iotlb_msg)
#ifndef VHOST_IOTLB_BATCH_BEGIN
#define VHOST_IOTLB_BATCH_BEGIN 5
#endif
#ifndef VHOST_IOTLB_BATCH_END
#define VHOST_IOTLB_BATCH_END 6
#endif

// ---- vhost-vdpa ioctls newer than some distribution headers
#ifndef VHOST_VDPA_GET_VQS_COUNT
#define VHOST_VDPA_GET_VQS_COUNT _IOR(VHOST_VIRTIO, 0x80, __u32)
#endif
#ifndef VHOST_VDPA_GET_GROUP_NUM
#define VHOST_VDPA_GET_GROUP_NUM _IOR(VHOST_VIRTIO, 0x81, __u32)
#endif
#ifndef VHOST_VDPA_GET_AS_NUM
#define VHOST_VDPA_GET_AS_NUM _IOR(VHOST_VIRTIO, 0x7A, unsigned int)
#endif
#ifndef VHOST_VDPA_GET_VRING_GROUP
#define VHOST_VDPA_GET_VRING_GROUP _IOWR(VHOST_VIRTIO, 0x7B, struct vhost_vring_state)
#endif
#ifndef VHOST_VDPA_SET_GROUP_ASID
#define VHOST_VDPA_SET_GROUP_ASID _IOW(VHOST_VIRTIO, 0x7C, struct vhost_vring_state)
#endif
#ifndef VHOST_VDPA_SUSPEND
#define VHOST_VDPA_SUSPEND _IO(VHOST_VIRTIO, 0x7D)
#endif
#ifndef VHOST_VDPA_RESUME
#define VHOST_VDPA_RESUME _IO(VHOST_VIRTIO, 0x7E)
#endif
#ifndef VHOST_VDPA_GET_VRING_DESC_GROUP
#define VHOST_VDPA_GET_VRING_DESC_GROUP _IOWR(VHOST_VIRTIO, 0x7F, struct vhost_vring_state)
#endif
#ifndef VHOST_VDPA_GET_VRING_SIZE
#define VHOST_VDPA_GET_VRING_SIZE _IOWR(VHOST_VIRTIO, 0x82, struct vhost_vring_state)
#endif
