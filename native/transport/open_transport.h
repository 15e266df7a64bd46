// Picks the transport for a device spec: "mock:blk", "mock:net", "/dev/vhost-vdpa-N", "vfio:BDF".
#pragma once

#include <memory>
#include <string>

#include "transport/open_options.h"
#include "transport/transport.h"

namespace vdpa {

// Opens the transport `spec` names; each transport parses the options it uses.
std::unique_ptr<Transport> openTransport(const std::string& spec, const OptionBag& options);

}  // namespace vdpa
