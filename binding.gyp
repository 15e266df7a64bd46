{
  "targets": [
    {
      "target_name": "vdpa",
      "sources": [
        "native/common/sys_error.cc",
        "native/memory/memory_region.cc",
        "native/memory/iova_allocator.cc",
        "native/ring/driver_queue.cc",
        "native/ring/split_driver_queue.cc",
        "native/ring/split_device_queue.cc",
        "native/ring/packed_driver_queue.cc",
        "native/ring/packed_device_queue.cc",
        "native/transport/open_transport.cc",
        "native/transport/mock/mock_model.cc",
        "native/transport/mock/mock_options.cc",
        "native/transport/mock/mock_transport.cc",
        "native/transport/mock/mock_blk.cc",
        "native/transport/mock/mock_net.cc",
        "native/transport/vhost_vdpa/vhost_vdpa_transport.cc",
        "native/transport/vhost_vdpa/vdpa_netlink.cc",
        "native/transport/vfio/vfio_iommu.cc",
        "native/transport/vfio/vfio_pci_device.cc",
        "native/transport/vfio/vfio_transport.cc",
        "native/device/virtio_device.cc",
        "native/bench/blk_loop.cc",
        "native/napi/errors.cc",
        "native/napi/fd_poll.cc",
        "native/napi/wraps.cc",
        "native/napi/ring_loopback.cc",
        "native/napi/bench_binding.cc",
        "native/napi/management_binding.cc",
        "native/management/netlink_socket.cc",
        "native/napi/addon.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "libraries": ["-lpthread"]
    }
  ]
}
