// One exception type for every failure below the N-API layer. The N-API layer turns it into a
// VdpaError (fs-style: code, errno, syscall, path, hint) in exactly one place.
#pragma once

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vdpa {

class SysError : public std::runtime_error {
 public:
  SysError(int err, std::string syscall, std::string path, std::string message, std::string hint = "")
      : std::runtime_error(std::move(message)),
        err_(err),
        syscall_(std::move(syscall)),
        path_(std::move(path)),
        hint_(std::move(hint)) {}

  int err() const { return err_; }
  const std::string& syscall() const { return syscall_; }
  const std::string& path() const { return path_; }
  const std::string& hint() const { return hint_; }

 private:
  int err_;
  std::string syscall_;
  std::string path_;
  std::string hint_;
};

// The one formatter of native error messages: "<ENAME>: <strerror>, <syscall> '<path>'", like Node's
// fs errors. For code that must hand the error on rather than throw it.
SysError makeSysError(int err, const std::string& syscall, const std::string& path = "", const std::string& hint = "");
// Builds the error as makeSysError() does and throws it.
[[noreturn]] void throwSys(int err, const std::string& syscall, const std::string& path = "",
                           const std::string& hint = "");
// Same, with errno taken from the failed call.
[[noreturn]] inline void throwErrno(const std::string& syscall, const std::string& path = "",
                                    const std::string& hint = "") {
  throwSys(errno, syscall, path, hint);
}

// "0x1f000" for messages.
std::string hex(uint64_t v);

// The symbolic name of an errno value ("EINVAL"), or "E<number>" when unknown.
const char* errnoName(int err);

}  // namespace vdpa
