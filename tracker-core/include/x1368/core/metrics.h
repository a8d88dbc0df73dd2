// Counters, gauges and histograms for the metrics endpoint, and the counted rejections every node
// keeps and reports upward (X.1368 §11.2 (modules) b: signals that fail verification are refused;
// counting them and reporting upward serves §11.2 b).
//
// The exposition is prometheus-cpp's: every series is a prometheus::MetricFamily (so each has its
// HELP and TYPE) and RenderPrometheus() is its TextSerializer. Counter and gauge handles are our
// own lock-free atomics (the hot paths add to them on every message); histograms are
// prometheus-cpp's. What a node only knows on its loop (devices by state, campaign progress) is
// a collector, run when scraped (CollectedOnLoop). Thread-safe.
#ifndef X1368_CORE_METRICS_H_
#define X1368_CORE_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "x1368/core/event_loop.h"
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
  using Labels = std::map<std::string, std::string>;
  using Families = std::vector<prometheus::MetricFamily>;
  // Families computed at each scrape, on the scraping thread (see CollectedOnLoop).
  using Collector = std::function<Families()>;
  using CollectorId = uint64_t;

  Metrics();

  // `name` is a Prometheus metric name. The same name and labels give the same handle.
  Metric* Counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Metric* Gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  // Observe() from any thread. `buckets`: upper bounds, ascending.
  prometheus::Histogram* Histogram(const std::string& name, const std::string& help,
                                   const std::vector<double>& buckets, const Labels& labels = {});

  // RemoveCollector waits for a scrape that is running it, so what it captured may go after.
  CollectorId AddCollector(Collector collect);
  void RemoveCollector(CollectorId id);

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

  // Everything: this node's series, its collectors', x1368_build_info and the process's.
  Families Collect() const;
  // Collect() in Prometheus text exposition format 0.0.4.
  std::string RenderPrometheus() const;

 private:
  struct Entry {
    std::string name, help;
    Labels labels;
    prometheus::MetricType type;
    Metric metric;
  };
  Metric* Get(const std::string& name, const std::string& help, const Labels& labels,
              prometheus::MetricType type);
  void CollectEntries(Families* out) const;
  void CollectRejections(Families* out) const;

  mutable absl::Mutex mu_;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);  // deque: stable addresses
  // Histograms live in prometheus-cpp's registry (thread-safe on its own).
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  // Held shared while collectors run, so that RemoveCollector waits for them.
  mutable absl::Mutex collectors_mu_;
  std::map<CollectorId, Collector> collectors_ ABSL_GUARDED_BY(collectors_mu_);
  CollectorId next_collector_ ABSL_GUARDED_BY(collectors_mu_) = 1;
  // One counter per reason (every value of the enum, sparse as it is).
  std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE> rejections_{};
  std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE> parent_rejections_{};
};

// `collect` run on `loop` (which owns what it reads) for a scrape on another thread. A scrape
// waits at most `wait` for the loop; a stopped or stuck loop costs the scrape these families,
// never the scrape itself. Run from a task of the loop, `collect` runs at once.
Metrics::Collector CollectedOnLoop(EventLoop* loop, Metrics::Collector collect,
                                   absl::Duration wait = absl::Seconds(2));

// Building blocks for collectors: a family, and one sample of a gauge or counter in it.
prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type);
void AddSample(prometheus::MetricFamily* family, const Metrics::Labels& labels, double value);

// x1368_build_info and process_* (from /proc/self), as Collect() adds them.
Metrics::Families BuildInfoFamilies();
Metrics::Families ProcessFamilies();

}  // namespace x1368::core

#endif  // X1368_CORE_METRICS_H_
