#include "x1368/core/log.h"

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "x1368/core/values.h"

namespace x1368::core {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendByte(std::string* out, unsigned char c) {
  out->append("\\x");
  out->push_back(kHex[c >> 4]);
  out->push_back(kHex[c & 0xf]);
}

void AppendCodePoint(std::string* out, uint32_t cp) {
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHex[(cp >> shift) & 0xf]);
}

}  // namespace

bool IsValidLogLevel(absl::string_view level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
         level == "error" || level == "off";
}

absl::Status InitLogging(absl::string_view node_id, absl::string_view level) {
  return InitLogging(node_id, level, std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

absl::Status InitLogging(absl::string_view node_id, absl::string_view level,
                         spdlog::sink_ptr sink) {
  if (!IsValidLogLevel(level)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level ", Quote(level)));
  }
  auto logger = std::make_shared<spdlog::logger>("x1368", std::move(sink));
  logger->set_pattern(absl::StrCat("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l node=", node_id, " %v"),
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

void AppendQuoted(std::string* out, absl::string_view value) {
  const size_t total = value.size();
  if (value.size() > kMaxQuotedBytes) value = value.substr(0, kMaxQuotedBytes);
  out->push_back('"');
  while (!value.empty()) {
    unsigned char c = static_cast<unsigned char>(value[0]);
    size_t used = 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          AppendByte(out, c);
        } else if (c < 0x80) {
          out->push_back(static_cast<char>(c));
        } else {
          uint32_t cp = 0;
          used = DecodeUtf8(value, &cp);
          if (used == 0) {
            // Not UTF-8 (or a sequence the cut above split): the byte, escaped.
            used = 1;
            AppendByte(out, c);
          } else if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029) {
            AppendCodePoint(out, cp);  // C1 controls and the separators some viewers break at
          } else {
            out->append(value.data(), used);
          }
        }
    }
    value.remove_prefix(used);
  }
  if (total > kMaxQuotedBytes) absl::StrAppend(out, "...(", total, " bytes)");
  out->push_back('"');
}

std::string Quote(absl::string_view value) {
  std::string out;
  out.reserve(value.size() + 2);
  AppendQuoted(&out, value);
  return out;
}

}  // namespace x1368::core
