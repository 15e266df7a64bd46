#!/usr/bin/env python3
"""A VDUSE virtio-net device that moves no packets: enough for the management tests in the VM.

  vduse-net-stub.py NAME MAC MTU

Creates /dev/vduse/NAME (2 queues, VERSION_1 | ACCESS_PLATFORM | MAC | MTU | STATUS, link up) and
answers the kernel's control messages (status changes, queue state, IOTLB updates) with OK, so that
vdpa can add it, virtio_vdpa's virtio-net can probe it into a netdev, and it can be reset and deleted.
Prints READY once the device exists; on SIGTERM destroys it and exits. Facts from linux/vduse.h.
"""
import fcntl
import os
import select
import signal
import struct
import sys
import time

VDUSE_BASE = 0x81


def _iow(nr, size):
    return (1 << 30) | (size << 16) | (VDUSE_BASE << 8) | nr


VDUSE_SET_API_VERSION = _iow(0x01, 8)
VDUSE_CREATE_DEV = _iow(0x02, 336)  # struct vduse_dev_config without its config[]
VDUSE_DESTROY_DEV = _iow(0x03, 256)
VDUSE_VQ_SETUP = _iow(0x14, 32)
REQ_SIZE = 152  # struct vduse_dev_request / vduse_dev_response
VDUSE_GET_VQ_STATE = 0

FEATURES = (1 << 32) | (1 << 33) | (1 << 5) | (1 << 3) | (1 << 16)  # VERSION_1 ACCESS_PLATFORM MAC MTU STATUS


def main():
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    name, mac, mtu = sys.argv[1], bytes(int(x, 16) for x in sys.argv[2].split(":")), int(sys.argv[3])
    # struct virtio_net_config: mac[6], status (LINK_UP), max_virtqueue_pairs, mtu
    config = mac + struct.pack("<HHH", 1, 1, mtu)
    ctl = os.open("/dev/vduse/control", os.O_RDWR)
    fcntl.ioctl(ctl, VDUSE_SET_API_VERSION, struct.pack("<Q", 0))
    head = name.encode().ljust(256, b"\0") + struct.pack("<IIQII", 0, 1, FEATURES, 2, 4096) + b"\0" * 52
    fcntl.ioctl(ctl, VDUSE_CREATE_DEV, head + struct.pack("<I", len(config)) + config)
    path = f"/dev/vduse/{name}"
    deadline = time.time() + 30
    while not os.path.exists(path):
        if stop or time.time() > deadline:
            sys.exit(f"{path} did not appear")
        time.sleep(0.05)
    dev = os.open(path, os.O_RDWR)
    for i in range(2):
        fcntl.ioctl(dev, VDUSE_VQ_SETUP, struct.pack("<IH", i, 256) + b"\0" * 26)

    print("READY", flush=True)
    while not stop:
        try:
            ready, _, _ = select.select([dev], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            continue
        req = os.read(dev, REQ_SIZE)
        if len(req) < REQ_SIZE:
            continue
        rtype, rid = struct.unpack_from("<II", req)
        body = b"\0" * 128
        if rtype == VDUSE_GET_VQ_STATE:  # echo the queue index, avail index 0
            body = req[24:28] + b"\0" * 124
        os.write(dev, struct.pack("<II", rid, 0) + b"\0" * 16 + body)
    os.close(dev)
    for _ in range(100):  # the vdpa device may still be going away
        try:
            fcntl.ioctl(ctl, VDUSE_DESTROY_DEV, name.encode().ljust(256, b"\0"))
            break
        except OSError:
            time.sleep(0.1)


if __name__ == "__main__":
    main()
