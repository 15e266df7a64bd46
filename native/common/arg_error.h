// A bad argument found below the N-API layer (e.g. a mock option out of range). The N-API layer
// turns it into a TypeError or RangeError, so the core can check what only it understands.
#pragma once

#include <stdexcept>
#include <string>

namespace vdpa {

class ArgError : public std::invalid_argument {
 public:
  enum class Kind { kType, kRange };
  ArgError(Kind kind, const std::string& message) : std::invalid_argument(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

[[noreturn]] inline void throwTypeArg(const std::string& message) { throw ArgError(ArgError::Kind::kType, message); }
[[noreturn]] inline void throwRangeArg(const std::string& message) { throw ArgError(ArgError::Kind::kRange, message); }

}  // namespace vdpa
