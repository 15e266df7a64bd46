// Open options as the N-API layer found them, before any transport has looked at them: name -> a
// number, boolean, string or byte string. The transport that uses an option parses and range-checks
// it (throwing ArgError); the N-API layer only converts JS values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vdpa {

struct OptionValue {
  enum class Kind { kNumber, kBoolean, kString, kBytes };
  Kind kind = Kind::kNumber;
  double number = 0;
  bool boolean = false;
  std::string string;
  std::vector<uint8_t> bytes;
};

using OptionBag = std::map<std::string, OptionValue>;

}  // namespace vdpa
