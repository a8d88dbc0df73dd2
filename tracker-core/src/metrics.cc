#include "x1368/core/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "prometheus/text_serializer.h"
#include "x1368/core/reason.h"
#include "x1368/core/version.h"

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

prometheus::MetricFamily ReasonFamily(
    const std::string& name, const std::string& help,
    const std::array<std::atomic<uint64_t>, v1::Reason_ARRAYSIZE>& counts) {
  prometheus::MetricFamily f = Family(name, help, prometheus::MetricType::Counter);
  for (size_t i = 1; i < counts.size(); ++i) {
    uint64_t n = counts[i].load();
    if (n == 0) continue;
    AddSample(&f, {{"reason", ReasonName(static_cast<v1::Reason>(i))}}, static_cast<double>(n));
  }
  return f;
}

// The whitespace-separated fields of /proc/self/stat after the command name (which may hold
// spaces, so it is cut at its closing parenthesis); field 3 of proc(5) is the first.
std::vector<std::string> ProcStatFields() {
  std::ifstream in("/proc/self/stat");
  std::stringstream s;
  s << in.rdbuf();
  const std::string stat = s.str();
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return {};
  return absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
}

double Field(const std::vector<std::string>& fields, size_t proc5_number) {
  double v = 0;
  if (proc5_number >= 3 && proc5_number - 3 < fields.size()) {
    (void)absl::SimpleAtod(fields[proc5_number - 3], &v);
  }
  return v;
}

// When the system booted (seconds since the epoch): /proc/stat's btime.
double BootTime() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    double t = 0;
    if (absl::ConsumePrefix(&v, "btime ") && absl::SimpleAtod(v, &t)) return t;
  }
  return 0;
}

double OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the directory stream's own descriptor
}

}  // namespace

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void AddSample(prometheus::MetricFamily* family, const Metrics::Labels& labels, double value) {
  prometheus::ClientMetric& m = family->metric.emplace_back();
  for (const auto& [name, v] : labels) m.label.push_back({name, v});
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
}

Metrics::Families BuildInfoFamilies() {
  prometheus::MetricFamily f =
      Family("x1368_build_info", "The version and source revision of this build (always 1)",
             prometheus::MetricType::Gauge);
  AddSample(&f, {{"version", kVersion}, {"revision", kGitRevision}}, 1);
  return {std::move(f)};
}

Metrics::Families ProcessFamilies() {
  const std::vector<std::string> stat = ProcStatFields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  using prometheus::MetricType;
  Metrics::Families out;
  auto add = [&out](const char* name, const char* help, MetricType type, double value) {
    AddSample(&out.emplace_back(Family(name, help, type)), {}, value);
  };
  add("process_cpu_seconds_total", "User and system CPU time spent, in seconds",
      MetricType::Counter, (Field(stat, 14) + Field(stat, 15)) / ticks);
  add("process_resident_memory_bytes", "Resident memory size, in bytes", MetricType::Gauge,
      Field(stat, 24) * page);
  add("process_virtual_memory_bytes", "Virtual memory size, in bytes", MetricType::Gauge,
      Field(stat, 23));
  add("process_open_fds", "Open file descriptors", MetricType::Gauge, OpenFds());
  add("process_start_time_seconds", "Start time of the process since the epoch, in seconds",
      MetricType::Gauge, BootTime() + Field(stat, 22) / ticks);
  return out;
}

Metrics::Collector CollectedOnLoop(EventLoop* loop, Metrics::Collector collect,
                                   absl::Duration wait) {
  return [loop, collect = std::move(collect), wait]() -> Metrics::Families {
    if (loop->InLoopThread()) return collect();
    if (loop->stopped()) return {};
    // Shared with the task: a scrape that gave up must not leave it writing into a dead frame.
    struct Result {
      absl::Notification done;
      Metrics::Families families;
    };
    auto result = std::make_shared<Result>();
    loop->Post([result, collect] {
      result->families = collect();
      result->done.Notify();
    });
    if (!result->done.WaitForNotificationWithTimeout(wait)) return {};
    return std::move(result->families);
  };
}

Metrics::Metrics() {
  for (auto& r : rejections_) r.store(0);
  for (auto& r : parent_rejections_) r.store(0);
}

Metric* Metrics::Get(const std::string& name, const std::string& help, const Labels& labels,
                     prometheus::MetricType type) {
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

Metric* Metrics::Counter(const std::string& name, const std::string& help, const Labels& labels) {
  return Get(name, help, labels, prometheus::MetricType::Counter);
}

Metric* Metrics::Gauge(const std::string& name, const std::string& help, const Labels& labels) {
  return Get(name, help, labels, prometheus::MetricType::Gauge);
}

prometheus::Histogram* Metrics::Histogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& buckets,
                                          const Labels& labels) {
  // prometheus-cpp returns the family and the histogram already registered under these names.
  auto& family = prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
  return &family.Add(labels, buckets);
}

Metrics::CollectorId Metrics::AddCollector(Collector collect) {
  absl::WriterMutexLock lock(&collectors_mu_);
  CollectorId id = next_collector_++;
  collectors_.emplace(id, std::move(collect));
  return id;
}

void Metrics::RemoveCollector(CollectorId id) {
  absl::WriterMutexLock lock(&collectors_mu_);
  collectors_.erase(id);
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

void Metrics::CollectEntries(Families* out) const {
  absl::MutexLock lock(&mu_);
  // One family per name, in name order; the first registration's help and type name it.
  std::map<std::string, prometheus::MetricFamily> by_name;
  for (const Entry& e : entries_) {
    auto it = by_name.find(e.name);
    if (it == by_name.end()) it = by_name.emplace(e.name, Family(e.name, e.help, e.type)).first;
    AddSample(&it->second, e.labels, static_cast<double>(e.metric.value()));
  }
  for (auto& [name, family] : by_name) out->push_back(std::move(family));
}

void Metrics::CollectRejections(Families* out) const {
  out->push_back(
      ReasonFamily("x1368_rejections_total", "Messages rejected, by reason.", rejections_));
  out->push_back(ReasonFamily("x1368_parent_rejections_total",
                              "Messages of this node's parent rejected, by reason (REPLAY: the "
                              "parent's sequence numbers went back).",
                              parent_rejections_));
}

Metrics::Families Metrics::Collect() const {
  Families out;
  CollectEntries(&out);
  CollectRejections(&out);
  for (prometheus::MetricFamily& f : registry_->Collect()) out.push_back(std::move(f));
  {
    absl::ReaderMutexLock lock(&collectors_mu_);
    for (const auto& [id, collect] : collectors_) {
      for (prometheus::MetricFamily& f : collect()) out.push_back(std::move(f));
    }
  }
  for (prometheus::MetricFamily& f : BuildInfoFamilies()) out.push_back(std::move(f));
  for (prometheus::MetricFamily& f : ProcessFamilies()) out.push_back(std::move(f));
  return out;
}

std::string Metrics::RenderPrometheus() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

}  // namespace x1368::core
