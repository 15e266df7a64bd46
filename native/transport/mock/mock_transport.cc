#include "transport/mock/mock_transport.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "common/checks.h"
#include "common/sys_error.h"
#include "ring/virtio_ring.h"
#include "transport/mock/mock_blk.h"
#include "transport/mock/mock_net.h"

namespace vdpa {

MockTransport::MockTransport(std::string path, const MockOptions& opts) : path_(std::move(path)), opts_(opts) {
  // Opening runs on the threadpool: a slow device (a VDUSE daemon) for the hand-over's timeout tests.
  if (opts.openDelayMs > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opts.openDelayMs));
  if (opts.model == "blk")
    model_ = std::make_unique<MockBlk>(opts);
  else if (opts.model == "net")
    model_ = std::make_unique<MockNet>(opts, [this] { signalEventFd(configFd_.get()); });
  else
    throwSys(EINVAL, "open", path_, "unknown device spec: known mock devices are mock:blk and mock:net");
  configFd_ = makeEventFd();
  device_ = std::make_unique<MockDevice>(path_, *model_, opts, [this] { needsReset(); });
}

uint64_t MockTransport::deviceFeatures() {
  const uint64_t offered = model_->features() | bit(kFeatureVersion1) | bit(kFeatureAccessPlatform) |
                           bit(kFeatureRingEventIdx) | bit(kFeatureRingIndirectDesc) | bit(kFeatureRingPacked);
  return offered & ~opts_.withholdFeatures;
}

void MockTransport::setDriverFeatures(uint64_t features) {
  const uint8_t s = status_.load();
  if (!(s & kStatusDriver) || (s & kStatusFeaturesOk))
    throwSys(EPERM, "set_features", path_, "features can only be set between DRIVER and FEATURES_OK");
  driverFeatures_ = features;
}

void MockTransport::setStatus(uint8_t s) {
  if (s == 0) return reset();
  const uint8_t old = status_.load();
  if ((old & ~s) & ~kStatusNeedsReset)
    throwSys(EINVAL, "set_status", path_, "a driver may only add status bits; write 0 to reset");
  if ((s & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
    // The device accepts only features it offered, and (fault) maybe nothing at all.
    if (device_->refusesFeatures() || (driverFeatures_ & ~deviceFeatures()) != 0)
      s = static_cast<uint8_t>(s & ~kStatusFeaturesOk);
  }
  if ((s & kStatusDriverOk) && !(old & kStatusDriverOk)) {
    if (!(s & kStatusFeaturesOk)) throwSys(EINVAL, "set_status", path_, "DRIVER_OK before FEATURES_OK");
    status_.store(s);
    model_->start(driverFeatures_);
    device_->start(driverFeatures_);
    return;
  }
  status_.store(static_cast<uint8_t>(s | (old & kStatusNeedsReset)));
}

void MockTransport::reset() {
  device_->reset();
  model_->reset();
  driverFeatures_ = 0;
  status_.store(0);
}

void MockTransport::needsReset() {
  status_.fetch_or(kStatusNeedsReset);
  signalEventFd(configFd_.get());
}

uint32_t MockTransport::configSize() { return static_cast<uint32_t>(model_->config().size()); }

void MockTransport::readConfig(uint32_t offset, void* buf, uint32_t len) {
  const auto cfg = model_->config();
  checkConfigRange(offset, len, cfg.size(), "read_config", path_);
  std::memcpy(buf, cfg.data() + offset, len);
}

void MockTransport::writeConfig(uint32_t offset, const void* buf, uint32_t len) {
  checkConfigRange(offset, len, configSize(), "write_config", path_);
  model_->writeConfig(offset, buf, len);
}

void MockTransport::setupQueue(const QueueAddresses& a, int callFd) {
  if (a.index >= device_->queueCount()) throwSys(EINVAL, "setup_queue", path_, "no such queue");
  if (status_.load() & kStatusDriverOk) throwSys(EBUSY, "setup_queue", path_, "device is running");
  device_->setupQueue(a, callFd);
}

void MockTransport::suspend() {
  if (!canSuspend()) Transport::suspend();
  if (!(status_.load() & kStatusDriverOk)) throwSys(EINVAL, "suspend", path_, "the device is not running");
  if (opts_.failSuspend) {
    needsReset();
    throwSys(EIO, "suspend", path_, "the device broke while suspending (mock option failSuspend)");
  }
  device_->suspend();
}

}  // namespace vdpa
