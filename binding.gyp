{
  "target_defaults": {
    "include_dirs": [
      "<!(node -p \"require('node-addon-api').include_dir\")",
      "native"
    ],
    "defines": [
      "NAPI_VERSION=8",
      "NODE_ADDON_API_DISABLE_DEPRECATED",
      "NAPI_CPP_EXCEPTIONS",
      "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
    ],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
    "libraries": ["-lpthread"]
  },
  "targets": [
    {
      # Everything below the N-API layer, linked into both addons.
      "target_name": "vdpa_core",
      "type": "static_library",
      "sources": [
        "native/common/sys_error.cc",
        "native/common/syscall.cc",
        "native/common/checks.cc",
        "native/memory/memory_region.cc",
        "native/memory/dma_mappings.cc",
        "native/memory/iova_allocator.cc",
        "native/ring/driver_queue.cc",
        "native/ring/split_driver_queue.cc",
        "native/ring/split_device_queue.cc",
        "native/ring/packed_driver_queue.cc",
        "native/ring/packed_device_queue.cc",
        "native/transport/open_transport.cc",
        "native/device_model/chain_bytes.cc",
        "native/device_model/net_segment.cc",
        "native/device_model/blk_storage.cc",
        "native/device_model/blk_executor.cc",
        "native/device_model/blk_workers.cc",
        "native/transport/mock/mock_options.cc",
        "native/transport/mock/mock_transport.cc",
        "native/transport/mock/mock_device.cc",
        "native/transport/mock/mock_blk.cc",
        "native/transport/mock/mock_net.cc",
        "native/transport/vhost_vdpa/vhost_vdpa_transport.cc",
        "native/transport/vhost_vdpa/vhost_ioctls.cc",
        "native/transport/vfio/vfio_iommu.cc",
        "native/transport/vfio/vfio_pci_device.cc",
        "native/transport/vfio/vfio_transport.cc",
        "native/transport/virtio_pci/virtio_pci_modern.cc",
        "native/device/virtio_device.cc",
        "native/device/net_loop.cc",
        "native/management/netlink_socket.cc",
        "native/vduse/vduse_device.cc",
        "native/vduse/vduse_blk.cc",
        "native/vduse/vduse_net.cc",
        "native/vduse/tap_port.cc"
      ]
    },
    {
      # N-API helpers both addons use: argument checks, errors, completion arrays.
      "target_name": "vdpa_napi_common",
      "type": "static_library",
      "dependencies": ["vdpa_core"],
      "sources": [
        "native/napi/args.cc",
        "native/napi/completions.cc",
        "native/napi/errors.cc"
      ]
    },
    {
      # The shipped addon: build/Release/vdpa.node, the only .node in build/Release.
      "target_name": "vdpa",
      "dependencies": ["vdpa_core", "vdpa_napi_common"],
      "sources": [
        "native/napi/fd_poll.cc",
        "native/napi/device_task.cc",
        "native/napi/device_wrap.cc",
        "native/napi/queue_wrap.cc",
        "native/napi/net_loop_wrap.cc",
        "native/napi/region_wrap.cc",
        "native/napi/vhost_wrap.cc",
        "native/napi/management_binding.cc",
        "native/napi/vduse_wrap.cc",
        "native/napi/vduse_net_wrap.cc",
        "native/napi/addon.cc"
      ]
    },
    {
      # The testing addon. node-gyp-build and prebuildify take the first .node file in build/Release,
      # and prebuildify also ships every .so there, so it is linked under a name neither matches and
      # copied to build/Release/testing/vdpa_testing.node.
      "target_name": "vdpa_testing",
      "dependencies": ["vdpa_core", "vdpa_napi_common"],
      "target_conditions": [["_type=='loadable_module'", {"product_extension": "testing_node"}]],
      "sources": [
        "native/testing/ring_loopback.cc",
        "native/testing/blk_loop.cc",
        "native/testing/blk_loop_binding.cc",
        "native/testing/ring_rules.cc",
        "native/testing/virtio_pci_testing.cc",
        "native/testing/testing_addon.cc"
      ]
    },
    {
      "target_name": "vdpa_testing_node",
      "type": "none",
      "dependencies": ["vdpa_testing"],
      "actions": [
        {
          "action_name": "place_testing_addon",
          "inputs": ["<(PRODUCT_DIR)/vdpa_testing.testing_node"],
          "outputs": ["<(PRODUCT_DIR)/testing/vdpa_testing.node"],
          "action": ["cp", "<@(_inputs)", "<@(_outputs)"]
        }
      ]
    }
  ]
}
