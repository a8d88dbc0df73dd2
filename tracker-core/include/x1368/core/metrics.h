// Counters and gauges for the metrics endpoint (Prometheus text format), and the counted
// rejections every node keeps and reports upward (X.1368 §11.2 (modules) b: signals
// that fail verification are refused; counting them and reporting upward serves §11.2 b).
// Counter and gauge handles are stable pointers; updating them is lock-free. Thread-safe.
#ifndef X1368_CORE_METRICS_H_
#define X1368_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "x1368/v1/common.pb.h"

namespace x1368::core {

class Metric {
 public:
  void Add(int64_t delta = 1) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void Set(int64_t value) { value_.store(value, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Metrics {
 public:
  Metrics();

  // `name` is a Prometheus metric name; `labels` is empty or `key="value",...`.
  Metric* Counter(const std::string& name, const std::string& help, const std::string& labels = "");
  Metric* Gauge(const std::string& name, const std::string& help, const std::string& labels = "");

  // Counted rejections (DUPLICATE is counted apart: it is not an attack, only QoS 1).
  // `from_parent`: the message came down from this node's parent; it is also counted apart
  // (StatusReport.parent_rejections), where a REPLAY means the parent's numbers went back.
  void CountRejection(v1::Reason reason, bool from_parent = false);
  uint64_t Rejections(v1::Reason reason) const;
  uint64_t ParentRejections(v1::Reason reason) const;
  // Non-zero counts, for StatusReport.rejections and StatusReport.parent_rejections.
  std::vector<v1::ReasonCount> RejectionCounts() const;
  std::vector<v1::ReasonCount> ParentRejectionCounts() const;
  uint64_t TotalRejections() const;

  std::string RenderPrometheus() const;

 private:
  struct Entry {
    std::string name, help, labels, type;
    Metric metric;
  };
  Metric* Get(const std::string& name, const std::string& help, const std::string& labels,
              const char* type);

  mutable absl::Mutex mu_;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);  // deque: stable addresses
  // One counter per reason (every value of the enum, sparse as it is).
  std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE> rejections_{};
  std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE> parent_rejections_{};
};

}  // namespace x1368::core

#endif  // X1368_CORE_METRICS_H_
