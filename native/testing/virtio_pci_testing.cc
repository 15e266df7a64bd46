#include "testing/virtio_pci_testing.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/sys_error.h"
#include "ring/virtio_ring.h"
#include "transport/virtio_pci/virtio_pci_modern.h"
#include "transport/virtio_pci/virtio_pci_regs.h"

namespace vdpa {
namespace {

// ---------------------------------------------------------------- the fake function

struct FakeOptions {
  uint32_t deviceType = 2;
  uint64_t deviceFeatures = bit(kFeatureVersion1) | bit(kFeatureRingEventIdx) | 0x6;
  uint16_t numQueues = 2;
  uint16_t queueMaxSize = 256;
  uint16_t msixVectors = 8;
  uint32_t resetDelayReads = 0;  // status reads that still show the old value after a write of 0
  bool neverResets = false;
  std::string badCapability;  // "", "common" or "notify": that capability points past BAR 0's end
  std::vector<uint8_t> config = std::vector<uint8_t>(16, 0);
};

constexpr uint64_t kBarSize = 0x4000;
constexpr uint32_t kNotifyOffset = 0x1000, kNotifyLength = 0x1000, kNotifyMultiplier = 4;
constexpr uint32_t kIsrOffset = 0x2000, kDeviceOffset = 0x3000;

const char* commonFieldName(uint64_t off) {
  switch (off) {
    case kCommonDeviceFeatureSelect:
      return "device_feature_select";
    case kCommonDeviceFeature:
      return "device_feature";
    case kCommonDriverFeatureSelect:
      return "driver_feature_select";
    case kCommonDriverFeature:
      return "driver_feature";
    case kCommonMsixConfig:
      return "config_msix_vector";
    case kCommonNumQueues:
      return "num_queues";
    case kCommonDeviceStatus:
      return "device_status";
    case kCommonConfigGeneration:
      return "config_generation";
    case kCommonQueueSelect:
      return "queue_select";
    case kCommonQueueSize:
      return "queue_size";
    case kCommonQueueMsixVector:
      return "queue_msix_vector";
    case kCommonQueueEnable:
      return "queue_enable";
    case kCommonQueueNotifyOff:
      return "queue_notify_off";
    case kCommonQueueDesc:
      return "queue_desc_lo";
    case kCommonQueueDesc + 4:
      return "queue_desc_hi";
    case kCommonQueueDriver:
      return "queue_driver_lo";
    case kCommonQueueDriver + 4:
      return "queue_driver_hi";
    case kCommonQueueDevice:
      return "queue_device_lo";
    case kCommonQueueDevice + 4:
      return "queue_device_hi";
    default:
      return "?";
  }
}

// A byte array as a register window (the fake config space).
class ByteWindow final : public RegisterWindow {
 public:
  explicit ByteWindow(size_t size) : bytes_(size, 0) {}
  uint64_t size() const override { return bytes_.size(); }
  uint8_t read8(uint64_t off) override { return static_cast<uint8_t>(get(off, 1)); }
  uint16_t read16(uint64_t off) override { return static_cast<uint16_t>(get(off, 2)); }
  uint32_t read32(uint64_t off) override { return static_cast<uint32_t>(get(off, 4)); }
  void write8(uint64_t off, uint8_t v) override { put(off, v, 1); }
  void write16(uint64_t off, uint16_t v) override { put(off, v, 2); }
  void write32(uint64_t off, uint32_t v) override { put(off, v, 4); }
  volatile uint8_t* mapped(uint64_t, uint64_t) const override { return nullptr; }

  uint64_t get(uint64_t off, unsigned width) const {
    check(off, width);
    uint64_t v = 0;
    std::memcpy(&v, bytes_.data() + off, width);
    return v;
  }
  void put(uint64_t off, uint64_t v, unsigned width) {
    check(off, width);
    std::memcpy(bytes_.data() + off, &v, width);
  }

 private:
  void check(uint64_t off, unsigned width) const {
    if (off > bytes_.size() || width > bytes_.size() - off)
      throwSys(EINVAL, "fake register window", "", "access at " + hex(off) + " outside the window");
  }
  std::vector<uint8_t> bytes_;
};

// BAR 0 of the fake function: the common configuration register file, the notification area (writes
// recorded), the ISR byte and the device configuration.
class FakeBar final : public RegisterWindow {
 public:
  struct Queue {
    uint16_t size = 0;
    uint16_t vector = kVirtioMsiNoVector;
    uint16_t enable = 0;
    uint64_t desc = 0, driver = 0, device = 0;
  };
  struct Notify {
    uint64_t offset;
    uint32_t value;
  };

  explicit FakeBar(const FakeOptions& o) : o_(o), config_(o.config) { resetDevice(); }

  uint64_t size() const override { return kBarSize; }
  uint8_t read8(uint64_t off) override { return static_cast<uint8_t>(read(off, 1)); }
  uint16_t read16(uint64_t off) override { return static_cast<uint16_t>(read(off, 2)); }
  uint32_t read32(uint64_t off) override { return read(off, 4); }
  void write8(uint64_t off, uint8_t v) override { write(off, v, 1); }
  void write16(uint64_t off, uint16_t v) override { write(off, v, 2); }
  void write32(uint64_t off, uint32_t v) override { write(off, v, 4); }
  volatile uint8_t* mapped(uint64_t, uint64_t) const override { return nullptr; }

  std::vector<std::string> log;
  std::vector<Notify> notifies;
  std::vector<Queue> queues;
  uint64_t driverFeatures = 0;
  uint32_t statusReadsSinceReset = 0;
  uint32_t resets = 0;

 private:
  void resetDevice() {
    queues.assign(o_.numQueues, Queue{});
    for (Queue& q : queues) q.size = o_.queueMaxSize;
    driverFeatures = 0;
    configVector_ = kVirtioMsiNoVector;
    status_ = 0;
  }

  uint32_t read(uint64_t off, unsigned width) {
    if (off >= kDeviceOffset && off - kDeviceOffset + width <= config_.size()) {
      uint32_t v = 0;
      std::memcpy(&v, config_.data() + (off - kDeviceOffset), width);
      return v;
    }
    if (off == kIsrOffset) return 0;
    if (off >= kCommonCfgSize) throwSys(EIO, "fake BAR", "", "read of " + hex(off) + ": no register there");
    const uint32_t v = common(off);
    log.push_back(std::string("r") + std::to_string(width * 8) + " " + commonFieldName(off) + " = " + hex(v));
    return v;
  }

  uint32_t common(uint64_t off) {
    Queue* q = queueSelect_ < queues.size() ? &queues[queueSelect_] : nullptr;
    switch (off) {
      case kCommonDeviceFeature:
        return featureSelect_ == 0   ? static_cast<uint32_t>(o_.deviceFeatures)
               : featureSelect_ == 1 ? static_cast<uint32_t>(o_.deviceFeatures >> 32)
                                     : 0;
      case kCommonDriverFeature:
        return driverSelect_ == 0   ? static_cast<uint32_t>(driverFeatures)
               : driverSelect_ == 1 ? static_cast<uint32_t>(driverFeatures >> 32)
                                    : 0;
      case kCommonDeviceFeatureSelect:
        return featureSelect_;
      case kCommonDriverFeatureSelect:
        return driverSelect_;
      case kCommonMsixConfig:
        return configVector_;
      case kCommonNumQueues:
        return o_.numQueues;
      case kCommonDeviceStatus:
        statusReadsSinceReset++;
        if (pendingReset_ && (o_.neverResets || statusReadsSinceReset > o_.resetDelayReads)) {
          if (!o_.neverResets) {
            pendingReset_ = false;
            resetDevice();
          }
        }
        return pendingReset_ ? staleStatus_ : status_;
      case kCommonConfigGeneration:
        return 0;
      case kCommonQueueSelect:
        return queueSelect_;
      case kCommonQueueSize:
        return q ? q->size : 0;
      case kCommonQueueMsixVector:
        return q ? q->vector : kVirtioMsiNoVector;
      case kCommonQueueEnable:
        return q ? q->enable : 0;
      case kCommonQueueNotifyOff:
        return q ? queueSelect_ : 0;  // queue i rings at notify + i * multiplier
      default:
        return 0;
    }
  }

  void write(uint64_t off, uint32_t v, unsigned width) {
    if (off >= kNotifyOffset && off < kNotifyOffset + kNotifyLength) {
      notifies.push_back(Notify{off - kNotifyOffset, v});
      return;
    }
    if (off >= kDeviceOffset && off - kDeviceOffset + width <= config_.size()) {
      std::memcpy(config_.data() + (off - kDeviceOffset), &v, width);
      return;
    }
    if (off >= kCommonCfgSize) throwSys(EIO, "fake BAR", "", "write of " + hex(off) + ": no register there");
    log.push_back(std::string("w") + std::to_string(width * 8) + " " + commonFieldName(off) + " = " + hex(v));
    Queue* q = queueSelect_ < queues.size() ? &queues[queueSelect_] : nullptr;
    auto half = [&](uint64_t& field, bool high) {
      field = high ? (field & 0xffffffffu) | uint64_t{v} << 32 : (field & ~uint64_t{0xffffffffu}) | v;
    };
    switch (off) {
      case kCommonDeviceFeatureSelect:
        featureSelect_ = v;
        break;
      case kCommonDriverFeatureSelect:
        driverSelect_ = v;
        break;
      case kCommonDriverFeature:
        if (driverSelect_ < 2) half(driverFeatures, driverSelect_ == 1);
        break;
      case kCommonMsixConfig:
        configVector_ = v < o_.msixVectors ? static_cast<uint16_t>(v) : kVirtioMsiNoVector;
        break;
      case kCommonDeviceStatus:
        if (v == 0) {
          // The reset takes a while: reads show the old status until it is done.
          resets++;
          statusReadsSinceReset = 0;
          staleStatus_ = status_ ? status_ : kStatusAcknowledge;
          pendingReset_ = true;
        } else {
          // FEATURES_OK holds only for features the device offered.
          status_ = static_cast<uint8_t>(v);
          if ((driverFeatures & ~o_.deviceFeatures) != 0) status_ &= static_cast<uint8_t>(~kStatusFeaturesOk);
        }
        break;
      case kCommonQueueSelect:
        queueSelect_ = static_cast<uint16_t>(v);
        break;
      case kCommonQueueSize:
        if (q) q->size = static_cast<uint16_t>(v);
        break;
      case kCommonQueueMsixVector:
        if (q) q->vector = v < o_.msixVectors ? static_cast<uint16_t>(v) : kVirtioMsiNoVector;
        break;
      case kCommonQueueEnable:
        if (q) q->enable = static_cast<uint16_t>(v);
        break;
      case kCommonQueueDesc:
      case kCommonQueueDesc + 4:
        if (q) half(q->desc, off != kCommonQueueDesc);
        break;
      case kCommonQueueDriver:
      case kCommonQueueDriver + 4:
        if (q) half(q->driver, off != kCommonQueueDriver);
        break;
      case kCommonQueueDevice:
      case kCommonQueueDevice + 4:
        if (q) half(q->device, off != kCommonQueueDevice);
        break;
      default:
        break;  // read-only registers ignore writes
    }
  }

  const FakeOptions o_;
  std::vector<uint8_t> config_;
  uint32_t featureSelect_ = 0, driverSelect_ = 0;
  uint16_t queueSelect_ = 0;
  uint16_t configVector_ = kVirtioMsiNoVector;
  uint8_t status_ = 0;
  uint8_t staleStatus_ = 0;
  bool pendingReset_ = false;
};

// PCI config space with a non-virtio capability first, then the four virtio structures in BAR 0.
void buildConfigSpace(ByteWindow& c, const FakeOptions& o) {
  c.write16(kPciVendorId, kVirtioPciVendor);
  c.write16(kPciDeviceId, static_cast<uint16_t>(kVirtioPciModernFirst + o.deviceType));
  c.write16(kPciStatus, kPciStatusCapList);
  c.write8(kPciCapabilityList, 0x40);
  c.write8(0x40, 0x11);  // MSI-X: not ours, skipped
  c.write8(0x41, 0x4c);
  auto cap = [&](uint8_t at, uint8_t next, uint8_t type, uint8_t len, uint32_t offset, uint32_t length) {
    c.write8(at, kPciCapIdVendor);
    c.write8(at + kCapNext, next);
    c.write8(at + kCapLen, len);
    c.write8(at + kCapType, type);
    c.write8(at + kCapBar, 0);
    c.write32(at + kCapOffset, offset);
    c.write32(at + kCapLength, length);
  };
  const bool badCommon = o.badCapability == "common", badNotify = o.badCapability == "notify";
  cap(0x4c, 0x5c, kVirtioPciCapCommon, 16, badCommon ? kBarSize - 0x10 : 0, kCommonCfgSize);
  cap(0x5c, 0x70, kVirtioPciCapNotify, 20, badNotify ? kBarSize : kNotifyOffset, kNotifyLength);
  c.write32(0x5c + kCapNotifyMultiplier, kNotifyMultiplier);
  cap(0x70, 0x80, kVirtioPciCapIsr, 16, kIsrOffset, 1);
  cap(0x80, 0x00, kVirtioPciCapDevice, 16, kDeviceOffset, static_cast<uint32_t>(o.config.size()));
}

// ---------------------------------------------------------------- JS conversion

uint64_t bigintOption(const Napi::Object& o, const char* key, uint64_t def) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return def;
  if (!o.Get(key).IsBigInt()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a bigint");
  bool lossless = false;
  const uint64_t v = o.Get(key).As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(o.Env(), std::string(key) + " must fit in 64 bits");
  return v;
}

uint32_t intOption(const Napi::Object& o, const char* key, uint32_t max, uint32_t def) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return def;
  if (!o.Get(key).IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  const double d = o.Get(key).As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be an integer from 0 to " + std::to_string(max));
  return static_cast<uint32_t>(d);
}

struct QueueRequest {
  uint16_t index, size;
  uint64_t desc, driver, device;
};

Napi::Object region(Napi::Env env, const VirtioPciRegion& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("present", r.present);
  o.Set("bar", r.bar);
  o.Set("offset", r.offset);
  o.Set("length", r.length);
  return o;
}

Napi::Value VirtioPciBringUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FakeOptions o;
  std::vector<QueueRequest> requests;
  uint64_t driverFeatures = 0;
  uint32_t resetTimeoutMs = 20;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
    Napi::Object opts = info[0].As<Napi::Object>();
    o.deviceType = intOption(opts, "deviceType", 0x3f, o.deviceType);
    o.deviceFeatures = bigintOption(opts, "deviceFeatures", o.deviceFeatures);
    driverFeatures = bigintOption(opts, "driverFeatures", o.deviceFeatures);
    o.numQueues = static_cast<uint16_t>(intOption(opts, "numQueues", 64, o.numQueues));
    o.queueMaxSize = static_cast<uint16_t>(intOption(opts, "queueMaxSize", 32768, o.queueMaxSize));
    o.msixVectors = static_cast<uint16_t>(intOption(opts, "msixVectors", 2048, o.msixVectors));
    o.resetDelayReads = intOption(opts, "resetDelayReads", 1000, o.resetDelayReads);
    o.neverResets = opts.Get("neverResets").ToBoolean();
    resetTimeoutMs = intOption(opts, "resetTimeoutMs", 1000, resetTimeoutMs);
    if (opts.Has("badCapability") && !opts.Get("badCapability").IsUndefined()) {
      if (!opts.Get("badCapability").IsString()) throw Napi::TypeError::New(env, "badCapability must be a string");
      o.badCapability = opts.Get("badCapability").As<Napi::String>().Utf8Value();
      if (o.badCapability != "common" && o.badCapability != "notify")
        throw Napi::RangeError::New(env, "badCapability must be 'common' or 'notify'");
    }
    if (opts.Has("config") && !opts.Get("config").IsUndefined()) {
      if (!opts.Get("config").IsTypedArray() ||
          opts.Get("config").As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(env, "config must be a Uint8Array");
      Napi::Uint8Array c = opts.Get("config").As<Napi::Uint8Array>();
      if (c.ElementLength() > 0x1000) throw Napi::RangeError::New(env, "config must be at most 4096 bytes");
      o.config.assign(c.Data(), c.Data() + c.ElementLength());
    }
    if (opts.Has("queues") && !opts.Get("queues").IsUndefined()) {
      if (!opts.Get("queues").IsArray()) throw Napi::TypeError::New(env, "queues must be an array");
      Napi::Array qs = opts.Get("queues").As<Napi::Array>();
      for (uint32_t i = 0; i < qs.Length(); i++) {
        if (!qs.Get(i).IsObject()) throw Napi::TypeError::New(env, "each queue must be an object");
        Napi::Object q = qs.Get(i).As<Napi::Object>();
        requests.push_back(QueueRequest{static_cast<uint16_t>(intOption(q, "index", 0xffff, 0)),
                                        static_cast<uint16_t>(intOption(q, "size", 0xffff, 0)),
                                        bigintOption(q, "desc", 0), bigintOption(q, "driver", 0),
                                        bigintOption(q, "device", 0)});
      }
    }
  }

  ByteWindow config(256);
  buildConfigSpace(config, o);
  FakeBar bar(o);
  VirtioPciModern::Bars bars{};
  bars[0] = &bar;

  Napi::Object out = Napi::Object::New(env);
  std::vector<uint8_t> deviceConfig(o.config.size());
  bool resetDone = false;
  uint32_t statusReads = 0;
  try {
    out.Set("deviceType", identifyVirtioPci(config, "fake:virtio-pci", "the fake function"));
    VirtioPciModern pci("fake:virtio-pci", config, bars, std::chrono::milliseconds(resetTimeoutMs));
    Napi::Object caps = Napi::Object::New(env);
    caps.Set("common", region(env, pci.common()));
    caps.Set("notify", region(env, pci.notifyRegion()));
    caps.Set("isr", region(env, pci.isr()));
    caps.Set("device", region(env, pci.deviceConfig()));
    caps.Set("notifyMultiplier", pci.notifyMultiplier());
    out.Set("capabilities", caps);
    out.Set("configSize", pci.configSize());

    resetDone = pci.reset();
    statusReads = bar.statusReadsSinceReset;
    if (!resetDone) throwSys(ETIMEDOUT, "virtio-pci: device_status", "fake:virtio-pci", "the reset did not finish");
    pci.readQueueLimits();
    Napi::Array limits = Napi::Array::New(env);
    for (uint16_t i = 0; i < pci.queueCount(); i++) limits.Set(i, pci.maxQueueSize(i));
    out.Set("maxQueueSizes", limits);

    out.Set("deviceFeatures", Napi::BigInt::New(env, pci.deviceFeatures()));
    pci.setStatus(kStatusAcknowledge | kStatusDriver);
    pci.setDriverFeatures(driverFeatures);
    pci.setStatus(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    out.Set("featuresOk", (pci.status() & kStatusFeaturesOk) != 0);
    if (!pci.setConfigVector(0)) throwSys(EIO, "virtio-pci: msix_config", "fake:virtio-pci", "vector 0 refused");
    for (const QueueRequest& r : requests) {
      pci.checkNotifyAddress(r.index);
      pci.setupQueue(r.index, r.size, static_cast<uint16_t>(r.index + 1), r.desc, r.driver, r.device);
      pci.enableQueue(r.index);
      pci.notify(r.index);
    }
    pci.setStatus(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    out.Set("status", pci.status());
    pci.readConfig(0, deviceConfig.data(), static_cast<uint32_t>(deviceConfig.size()));
    out.Set("config", Napi::Buffer<uint8_t>::Copy(env, deviceConfig.data(), deviceConfig.size()));
  } catch (const SysError& e) {
    Napi::Object err = Napi::Object::New(env);
    err.Set("code", errnoName(e.err()));
    err.Set("syscall", e.syscall());
    err.Set("message", e.what());
    err.Set("hint", e.hint());
    out.Set("error", err);
  }
  out.Set("resetDone", resetDone);
  out.Set("statusReadsDuringReset", statusReads);
  out.Set("resets", bar.resets);
  out.Set("driverFeaturesSeen", Napi::BigInt::New(env, bar.driverFeatures));
  Napi::Array queues = Napi::Array::New(env);
  for (size_t i = 0; i < bar.queues.size(); i++) {
    const FakeBar::Queue& q = bar.queues[i];
    Napi::Object qo = Napi::Object::New(env);
    qo.Set("size", q.size);
    qo.Set("msixVector", q.vector);
    qo.Set("enabled", q.enable != 0);
    qo.Set("desc", Napi::BigInt::New(env, q.desc));
    qo.Set("driver", Napi::BigInt::New(env, q.driver));
    qo.Set("device", Napi::BigInt::New(env, q.device));
    queues.Set(static_cast<uint32_t>(i), qo);
  }
  out.Set("queues", queues);
  Napi::Array notifies = Napi::Array::New(env);
  for (size_t i = 0; i < bar.notifies.size(); i++) {
    Napi::Object n = Napi::Object::New(env);
    n.Set("offset", static_cast<double>(bar.notifies[i].offset));
    n.Set("value", bar.notifies[i].value);
    notifies.Set(static_cast<uint32_t>(i), n);
  }
  out.Set("notifies", notifies);
  Napi::Array log = Napi::Array::New(env);
  for (size_t i = 0; i < bar.log.size(); i++) log.Set(static_cast<uint32_t>(i), bar.log[i]);
  out.Set("log", log);
  return out;
}

}  // namespace

void registerVirtioPciTesting(Napi::Env env, Napi::Object exports) {
  exports.Set("virtioPciBringUp", Napi::Function::New(env, VirtioPciBringUp, "virtioPciBringUp"));
}

}  // namespace vdpa
