#include "x1368/core/health.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/log.h"

namespace x1368::core {
namespace {

constexpr char kProbeFile[] = ".readyz-probe";

}  // namespace

std::optional<std::string> StoreNotWritable(FileSystem* fs, const std::string& dir) {
  if (fs == nullptr || dir.empty()) return std::nullopt;
  const std::string probe = absl::StrCat(dir, "/", kProbeFile);
  absl::Status s = fs->WriteRange(probe, 0, "ready\n");
  absl::Status removed = fs->Remove(probe);
  if (!s.ok()) return absl::StrCat("store not writable: ", s.message());
  if (!removed.ok()) return absl::StrCat("store not writable: ", removed.message());
  return std::nullopt;
}

std::vector<std::string> NotReadyReasons(const std::vector<ReadinessLink>& links, FileSystem* fs,
                                         const std::string& data_dir) {
  std::vector<std::string> reasons;
  for (const ReadinessLink& l : links) {
    if (l.transport != nullptr && !l.transport->connected()) {
      reasons.push_back(
          absl::StrCat(l.name, " link down (broker ", l.transport->options().broker_uri, ")"));
    }
  }
  if (auto store = StoreNotWritable(fs, data_dir)) reasons.push_back(*std::move(store));
  return reasons;
}

HttpResponse HealthzResponse() { return HttpResponse{200, "text/plain", "ok\n"}; }

HttpResponse ReadyzResponse(const std::vector<std::string>& reasons) {
  std::string body =
      absl::StrCat("{\"ready\":", reasons.empty() ? "true" : "false", ",\"reasons\":[");
  for (size_t i = 0; i < reasons.size(); ++i) {
    if (i > 0) body.push_back(',');
    body += JsonQuote(reasons[i]);
  }
  body += "]}\n";
  return HttpResponse{reasons.empty() ? 200 : 503, "application/json", std::move(body)};
}

void AddHealthRoutes(HttpServer* server, ReadinessCheck ready) {
  server->Get("/healthz", [](const HttpRequest&) { return HealthzResponse(); });
  server->Get("/readyz", [ready = std::move(ready)](const HttpRequest&) {
    return ReadyzResponse(ready ? ready() : std::vector<std::string>{});
  });
}

}  // namespace x1368::core
