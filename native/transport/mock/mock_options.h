// Parses and range-checks the mock's open options (the N-API layer only converts JS values).
#pragma once

#include <string>

#include "transport/mock/mock_model.h"
#include "transport/open_options.h"

namespace vdpa {

// `model` is the part of the spec after "mock:". Throws ArgError for a wrong type or range.
MockOptions parseMockOptions(const std::string& model, const OptionBag& bag);

}  // namespace vdpa
