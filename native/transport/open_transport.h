// Picks the transport for a device spec: "mock:blk", "mock:net" (later "/dev/vhost-vdpa-N", "vfio:BDF").
#pragma once

#include <memory>
#include <string>

#include "transport/mock/mock_model.h"
#include "transport/transport.h"

namespace vdpa {

struct TransportOptions {
  MockOptions mock;  // used by mock:* specs only
};

std::unique_ptr<Transport> openTransport(const std::string& spec, const TransportOptions& opts);

}  // namespace vdpa
