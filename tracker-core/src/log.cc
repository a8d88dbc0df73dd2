#include "x1368/core/log.h"

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace x1368::core {

bool IsValidLogLevel(absl::string_view level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
         level == "error" || level == "off";
}

absl::Status InitLogging(absl::string_view node_id, absl::string_view level) {
  if (!IsValidLogLevel(level)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level \"", level, "\""));
  }
  auto logger =
      std::make_shared<spdlog::logger>("x1368", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern(absl::StrCat("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l node=", node_id, " %v"),
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

}  // namespace x1368::core
