#include "x1368/core/log.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "spdlog/pattern_formatter.h"
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

// `s` as the inside of a JSON string: valid UTF-8 passes, `"` and `\` and control characters
// are escaped, and a byte that is not UTF-8 is written as the text \xNN (JSON strings hold text,
// not bytes).
void AppendJsonText(std::string* out, absl::string_view s) {
  while (!s.empty()) {
    unsigned char c = static_cast<unsigned char>(s[0]);
    size_t used = 1;
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      AppendCodePoint(out, c);
    } else if (c < 0x80) {
      out->push_back(static_cast<char>(c));
    } else {
      uint32_t cp = 0;
      used = DecodeUtf8(s, &cp);
      if (used == 0) {
        used = 1;
        out->push_back('\\');
        AppendByte(out, c);
      } else if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029) {
        AppendCodePoint(out, cp);
      } else {
        out->append(s.data(), used);
      }
    }
    s.remove_prefix(used);
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A value Quote() wrote, from just after its opening quote, as the inside of a JSON string; `s`
// is left after the closing quote. Its escapes map onto JSON's: \xNN of a control character
// becomes \u00NN, \xNN of a byte that was not UTF-8 stays the text \xNN.
void AppendQuotedAsJson(std::string* out, absl::string_view* s) {
  while (!s->empty()) {
    char c = (*s)[0];
    if (c == '"') {
      s->remove_prefix(1);
      return;
    }
    if (c != '\\' || s->size() < 2) {
      size_t end = s->find_first_of("\"\\", 1);
      if (end == absl::string_view::npos) end = s->size();
      AppendJsonText(out, s->substr(0, end));
      s->remove_prefix(end);
      continue;
    }
    char e = (*s)[1];
    if (e == '"' || e == '\\' || e == 'n' || e == 'r' || e == 't') {
      out->push_back('\\');
      out->push_back(e);
      s->remove_prefix(2);
    } else if (e == 'x' && s->size() >= 4 && HexValue((*s)[2]) >= 0 && HexValue((*s)[3]) >= 0) {
      int byte = HexValue((*s)[2]) * 16 + HexValue((*s)[3]);
      if (byte < 0x20 || byte == 0x7f) {
        AppendCodePoint(out, static_cast<uint32_t>(byte));
      } else {
        out->append("\\\\");
        out->append(s->data() + 1, 3);
      }
      s->remove_prefix(4);
    } else if (e == 'u' && s->size() >= 6 && HexValue((*s)[2]) >= 0 && HexValue((*s)[3]) >= 0 &&
               HexValue((*s)[4]) >= 0 && HexValue((*s)[5]) >= 0) {
      out->append(s->data(), 6);
      s->remove_prefix(6);
    } else {
      out->append("\\\\");  // not an escape Quote() writes: the backslash as text
      s->remove_prefix(1);
    }
  }
}

bool IsKeyChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-'; }

// A bare value that JSON can take as it is: an integer or decimal (of at most 18 digits, exact
// in any JSON reader's double only up to 2^53, so longer numbers stay strings), true or false.
bool IsJsonLiteral(absl::string_view v) {
  if (v == "true" || v == "false") return true;
  absl::string_view digits = v;
  if (!digits.empty() && digits[0] == '-') digits.remove_prefix(1);
  if (digits.empty() || digits.size() > 18) return false;
  if (digits[0] == '0' && digits.size() > 1 && digits[1] != '.') return false;
  bool dot = false;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (digits[i] == '.') {
      if (dot || i == 0 || i + 1 == digits.size()) return false;
      dot = true;
    } else if (!absl::ascii_isdigit(digits[i])) {
      return false;
    }
  }
  return true;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string node) : node_(std::move(node)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string ts =
        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(msg.time), absl::UTCTimeZone());
    spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    std::string line = JsonLogLine(ts, absl::string_view(level.data(), level.size()), node_,
                                   absl::string_view(msg.payload.data(), msg.payload.size()));
    line.push_back('\n');
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(node_);
  }

 private:
  const std::string node_;
};

}  // namespace

std::string JsonLogLine(absl::string_view ts, absl::string_view level, absl::string_view node,
                        absl::string_view message) {
  std::string out = "{";
  std::set<std::string, std::less<>> taken;
  auto member = [&](absl::string_view key) {
    std::string k(key);
    while (taken.count(k) > 0) k.push_back('_');
    taken.insert(k);
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    AppendJsonText(&out, k);
    out.append("\":");
  };
  auto string_member = [&](absl::string_view key, absl::string_view value) {
    member(key);
    out.push_back('"');
    AppendJsonText(&out, value);
    out.push_back('"');
  };
  string_member("ts", ts);
  string_member("level", level);
  string_member("node", node);
  std::string text;  // whatever is not key=value
  absl::string_view s = message;
  while (!s.empty()) {
    if (s[0] == ' ') {
      s.remove_prefix(1);
      continue;
    }
    size_t k = 0;
    while (k < s.size() && IsKeyChar(s[k])) ++k;
    if (k > 0 && k < s.size() && s[k] == '=') {
      member(s.substr(0, k));
      s.remove_prefix(k + 1);
      if (!s.empty() && s[0] == '"') {
        s.remove_prefix(1);
        out.push_back('"');
        AppendQuotedAsJson(&out, &s);
        out.push_back('"');
      } else {
        size_t end = std::min(s.find(' '), s.size());
        absl::string_view v = s.substr(0, end);
        if (IsJsonLiteral(v)) {
          out.append(v.data(), v.size());
        } else {
          out.push_back('"');
          AppendJsonText(&out, v);
          out.push_back('"');
        }
        s.remove_prefix(end);
      }
      continue;
    }
    size_t end = std::min(s.find(' '), s.size());
    if (!text.empty()) text.push_back(' ');
    text.append(s.data(), end);
    s.remove_prefix(end);
  }
  if (!text.empty()) string_member("msg", text);
  out.push_back('}');
  return out;
}

bool LogThrottle::Allow(uint64_t* skipped, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (now - last_ < period_) {
    ++skipped_;
    return false;
  }
  last_ = now;
  *skipped = skipped_;
  skipped_ = 0;
  return true;
}

void LogThrottle::Reset() {
  absl::MutexLock lock(&mu_);
  last_ = absl::InfinitePast();
  skipped_ = 0;
}

std::string JsonQuote(absl::string_view value) {
  std::string out = "\"";
  AppendJsonText(&out, value);
  out.push_back('"');
  return out;
}

bool IsValidLogFormat(absl::string_view format) { return format == "logfmt" || format == "json"; }

bool IsValidLogLevel(absl::string_view level) {
  return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
         level == "error" || level == "off";
}

absl::Status InitLogging(absl::string_view node_id, absl::string_view level,
                         absl::string_view format) {
  return InitLogging(node_id, level, std::make_shared<spdlog::sinks::stderr_sink_mt>(), format);
}

absl::Status InitLogging(absl::string_view node_id, absl::string_view level, spdlog::sink_ptr sink,
                         absl::string_view format) {
  if (!IsValidLogLevel(level)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level ", Quote(level)));
  }
  if (!IsValidLogFormat(format)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log format ", Quote(format), " (expected logfmt or json)"));
  }
  auto logger = std::make_shared<spdlog::logger>("x1368", std::move(sink));
  if (format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>(std::string(node_id)));
  } else {
    logger->set_pattern(absl::StrCat("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l node=", node_id, " %v"),
                        spdlog::pattern_time_type::utc);
  }
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
