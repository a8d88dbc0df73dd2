#include "x1368/core/metrics.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::core {

namespace {

std::vector<v1::ReasonCount> NonZero(
    const std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE>& counts) {
  std::vector<v1::ReasonCount> out;
  for (size_t i = 1; i < counts.size(); ++i) {
    uint64_t n = counts[i].load();
    if (n == 0 || i == v1::DUPLICATE) continue;
    v1::ReasonCount rc;
    rc.set_reason(static_cast<v1::Reason>(i));
    rc.set_count(n);
    out.push_back(rc);
  }
  return out;
}

}  // namespace

Metrics::Metrics() {
  for (auto& r : rejections_) r.store(0);
  for (auto& r : parent_rejections_) r.store(0);
}

Metric* Metrics::Get(const std::string& name, const std::string& help, const std::string& labels,
                     const char* type) {
  absl::MutexLock lock(&mu_);
  for (Entry& e : entries_) {
    if (e.name == name && e.labels == labels) return &e.metric;
  }
  Entry& e = entries_.emplace_back();
  e.name = name;
  e.help = help;
  e.labels = labels;
  e.type = type;
  return &e.metric;
}

Metric* Metrics::Counter(const std::string& name, const std::string& help,
                         const std::string& labels) {
  return Get(name, help, labels, "counter");
}

Metric* Metrics::Gauge(const std::string& name, const std::string& help,
                       const std::string& labels) {
  return Get(name, help, labels, "gauge");
}

void Metrics::CountRejection(v1::Reason reason, bool from_parent) {
  size_t i = static_cast<size_t>(reason);
  if (i >= rejections_.size()) return;
  rejections_[i].fetch_add(1, std::memory_order_relaxed);
  if (from_parent) parent_rejections_[i].fetch_add(1, std::memory_order_relaxed);
}

uint64_t Metrics::Rejections(v1::Reason reason) const {
  size_t i = static_cast<size_t>(reason);
  return i < rejections_.size() ? rejections_[i].load() : 0;
}

uint64_t Metrics::ParentRejections(v1::Reason reason) const {
  size_t i = static_cast<size_t>(reason);
  return i < parent_rejections_.size() ? parent_rejections_[i].load() : 0;
}

std::vector<v1::ReasonCount> Metrics::RejectionCounts() const { return NonZero(rejections_); }

std::vector<v1::ReasonCount> Metrics::ParentRejectionCounts() const {
  return NonZero(parent_rejections_);
}

uint64_t Metrics::TotalRejections() const {
  uint64_t total = 0;
  for (const v1::ReasonCount& rc : RejectionCounts()) total += rc.count();
  return total;
}

std::string Metrics::RenderPrometheus() const {
  std::string out;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, std::vector<const Entry*>> by_name;
    for (const Entry& e : entries_) by_name[e.name].push_back(&e);
    for (const auto& [name, entries] : by_name) {
      absl::StrAppend(&out, "# HELP ", name, " ", entries[0]->help, "\n# TYPE ", name, " ",
                      entries[0]->type, "\n");
      for (const Entry* e : entries) {
        absl::StrAppend(&out, name, e->labels.empty() ? "" : absl::StrCat("{", e->labels, "}"), " ",
                        e->metric.value(), "\n");
      }
    }
  }
  absl::StrAppend(&out,
                  "# HELP x1368_rejections_total Messages rejected, by reason.\n"
                  "# TYPE x1368_rejections_total counter\n");
  for (size_t i = 1; i < rejections_.size(); ++i) {
    uint64_t n = rejections_[i].load();
    if (n == 0) continue;
    absl::StrAppend(&out, "x1368_rejections_total{reason=\"",
                    ReasonName(static_cast<v1::Reason>(i)), "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP x1368_parent_rejections_total Messages of this node's parent rejected, "
                  "by reason (REPLAY: the parent's sequence numbers went back).\n"
                  "# TYPE x1368_parent_rejections_total counter\n");
  for (size_t i = 1; i < parent_rejections_.size(); ++i) {
    uint64_t n = parent_rejections_[i].load();
    if (n == 0) continue;
    absl::StrAppend(&out, "x1368_parent_rejections_total{reason=\"",
                    ReasonName(static_cast<v1::Reason>(i)), "\"} ", n, "\n");
  }
  return out;
}

}  // namespace x1368::core
