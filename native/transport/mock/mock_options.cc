#include "transport/mock/mock_options.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>

#include "common/arg_error.h"
#include "transport/mock/mock_net.h"

namespace vdpa {
namespace {

const OptionValue* find(const OptionBag& bag, const char* key, OptionValue::Kind kind, const char* what) {
  auto it = bag.find(key);
  if (it == bag.end()) return nullptr;
  if (it->second.kind != kind) throwTypeArg(std::string("option ") + key + " must be " + what);
  return &it->second;
}

// An integer option in [lo, hi], or `def` when absent.
template <typename T>
T integer(const OptionBag& bag, const char* key, double lo, double hi, T def) {
  const OptionValue* v = find(bag, key, OptionValue::Kind::kNumber, "a number");
  if (!v) return def;
  const double d = v->number;
  if (!(d >= lo && d <= hi) || std::floor(d) != d)
    throwRangeArg(std::string("option ") + key + " must be an integer from " + std::to_string(uint64_t(lo)) + " to " +
                  std::to_string(uint64_t(hi)));
  return static_cast<T>(d);
}

}  // namespace

MockOptions parseMockOptions(const std::string& model, const OptionBag& bag) {
  MockOptions m;
  m.model = model;
  m.capacity = integer<uint64_t>(bag, "capacity", 512, double(uint64_t{1} << 50), m.capacity);
  if (m.capacity % 512 != 0) throwRangeArg("option capacity must be a multiple of 512");
  m.numQueues = integer<uint16_t>(bag, "numQueues", 1, 64, m.numQueues);
  m.maxQueueSize = integer<uint16_t>(bag, "maxQueueSize", 1, 32768, m.maxQueueSize);
  m.segMax = integer<uint32_t>(bag, "segMax", 1, 4096, m.segMax);
  m.sizeMax = integer<uint32_t>(bag, "sizeMax", 512, double(uint64_t{1} << 31), m.sizeMax);
  m.blockSize = integer<uint32_t>(bag, "blockSize", 512, 65536, m.blockSize);
  m.mtu = integer<uint16_t>(bag, "mtu", 68, 65535, m.mtu);
  m.faultAfter = integer<uint32_t>(bag, "faultAfter", 0, 4294967295.0, m.faultAfter);
  m.completionDelayMs = integer<uint32_t>(bag, "completionDelayMs", 0, 60000, m.completionDelayMs);
  m.openDelayMs = integer<uint32_t>(bag, "openDelayMs", 0, 60000, m.openDelayMs);
  m.withholdFeatures = integer<uint64_t>(bag, "withholdFeatures", 0, 9007199254740991.0, m.withholdFeatures);
  if (const OptionValue* v = find(bag, "readOnly", OptionValue::Kind::kBoolean, "a boolean")) m.readOnly = v->boolean;
  if (const OptionValue* v = find(bag, "fault", OptionValue::Kind::kString, "a string")) m.fault = v->string;
  if (const OptionValue* v = find(bag, "strictDmaUpdates", OptionValue::Kind::kBoolean, "a boolean"))
    m.strictDmaUpdates = v->boolean;
  if (const OptionValue* v = find(bag, "suspend", OptionValue::Kind::kBoolean, "a boolean")) m.suspend = v->boolean;
  if (const OptionValue* v = find(bag, "failSuspend", OptionValue::Kind::kBoolean, "a boolean"))
    m.failSuspend = v->boolean;
  if (const OptionValue* v = find(bag, "file", OptionValue::Kind::kString, "a string")) {
    if (v->string.empty()) throwRangeArg("option file must be a path");
    m.file = v->string;
  }
  if (const OptionValue* v = find(bag, "mac", OptionValue::Kind::kBytes, "6 bytes")) {
    if (v->bytes.size() != 6) throwRangeArg("option mac must be 6 bytes");
    std::memcpy(m.mac, v->bytes.data(), 6);
  }
  m.net.queuePairs = integer<uint16_t>(bag, "queuePairs", 1, 256, m.net.queuePairs);
  if (const OptionValue* v = find(bag, "commandFrames", OptionValue::Kind::kBoolean, "a boolean"))
    m.net.commandFrames = v->boolean;
  if (const OptionValue* v = find(bag, "gso", OptionValue::Kind::kBoolean, "a boolean")) m.net.gso = v->boolean;
  if (const OptionValue* v = find(bag, "rss", OptionValue::Kind::kBoolean, "a boolean")) m.net.rss = v->boolean;
  if (const OptionValue* v = find(bag, "netFault", OptionValue::Kind::kString, "a string")) {
    const auto& names = MockNet::faultNames();
    if (std::find(names.begin(), names.end(), v->string) == names.end())
      throwRangeArg("option netFault must be a mock:net fault name");
    m.net.fault = v->string;
  }
  if (const OptionValue* v = find(bag, "refuseControl", OptionValue::Kind::kString, "a string")) {
    static const char* const classes[] = {"rx", "mac", "vlan", "announce", "mq", "rss", "all"};
    if (std::find(std::begin(classes), std::end(classes), v->string) == std::end(classes))
      throwRangeArg("option refuseControl must be rx, mac, vlan, announce, mq, rss or all");
    m.net.refuseControl = v->string;
  }
  return m;
}

}  // namespace vdpa
