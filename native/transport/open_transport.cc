#include "transport/open_transport.h"

#include "common/sys_error.h"
#include "transport/mock/mock_options.h"
#include "transport/mock/mock_transport.h"
#include "transport/vfio/vfio_transport.h"
#include "transport/vhost_vdpa/vhost_vdpa_transport.h"

namespace vdpa {

std::unique_ptr<Transport> openTransport(const std::string& spec, const OptionBag& options) {
  if (spec.rfind("mock:", 0) == 0)
    return std::make_unique<MockTransport>(spec, parseMockOptions(spec.substr(5), options));
  if (spec.rfind("/dev/vhost-vdpa-", 0) == 0) return std::make_unique<VhostVdpaTransport>(spec);
  if (spec.rfind("vfio:", 0) == 0) return std::make_unique<VfioTransport>(spec);
  // The same code TypeScript gives for a spec it does not recognise.
  throwSys(EINVAL, "open", spec,
           "unknown device spec: use mock:blk, mock:net, /dev/vhost-vdpa-N or vfio:<pci address>");
}

}  // namespace vdpa
