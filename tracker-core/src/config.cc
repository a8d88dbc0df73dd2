#include "x1368/core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "x1368/core/file_util.h"

namespace x1368::core {
namespace {
constexpr uint64_t kMaxConfigBytes = 1 << 20;
}  // namespace

struct ConfigFile::Impl {
  toml::table table;
};

ConfigFile::ConfigFile(std::unique_ptr<Impl> impl, std::string name, std::string base_dir)
    : impl_(std::move(impl)), name_(std::move(name)), base_dir_(std::move(base_dir)) {}
ConfigFile::ConfigFile(ConfigFile&&) noexcept = default;
ConfigFile& ConfigFile::operator=(ConfigFile&&) noexcept = default;
ConfigFile::~ConfigFile() = default;

absl::StatusOr<ConfigFile> ConfigFile::Load(const std::string& path) {
  auto text = ReadFileLimited(path, kMaxConfigBytes);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", text.status().message()));
  }
  std::string dir = DirName(path);
  return Parse(*text, path, dir);
}

absl::StatusOr<ConfigFile> ConfigFile::Parse(absl::string_view text, std::string name,
                                             std::string base_dir) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->table = toml::parse(std::string_view(text.data(), text.size()), std::string_view(name));
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  return ConfigFile(std::move(impl), std::move(name), std::move(base_dir));
}

bool ConfigFile::Has(absl::string_view key) const {
  return static_cast<bool>(impl_->table.at_path(std::string_view(key.data(), key.size())));
}

void ConfigFile::Error(int line, absl::string_view key, absl::string_view message) {
  std::string where = line > 0 ? absl::StrCat(name_, ":", line) : name_;
  errors_.emplace_back(line, absl::StrCat(where, ": key '", key, "': ", message));
}

void ConfigFile::Fail(absl::string_view key, absl::string_view message) {
  toml::node_view<toml::node> node = impl_->table.at_path(std::string_view(key.data(), key.size()));
  Error(node ? static_cast<int>(node.node()->source().begin.line) : 0, key, message);
}

std::string ConfigFile::String(absl::string_view key, std::optional<std::string> fallback) {
  consumed_.insert(std::string(key));
  toml::node_view<toml::node> node = impl_->table.at_path(std::string_view(key.data(), key.size()));
  if (!node) {
    if (!fallback) Error(0, key, "missing (required)");
    return fallback.value_or("");
  }
  if (!node.is_string()) {
    Error(static_cast<int>(node.node()->source().begin.line), key, "expected a string");
    return fallback.value_or("");
  }
  return std::string(*node.value<std::string_view>());
}

std::string ConfigFile::Path(absl::string_view key, std::optional<std::string> fallback) {
  std::string value = String(key, std::move(fallback));
  if (value.empty()) return value;
  return ResolvePath(base_dir_, value);
}

int64_t ConfigFile::Int(absl::string_view key, std::optional<int64_t> fallback, int64_t min,
                        int64_t max) {
  consumed_.insert(std::string(key));
  toml::node_view<toml::node> node = impl_->table.at_path(std::string_view(key.data(), key.size()));
  if (!node) {
    if (!fallback) Error(0, key, "missing (required)");
    return fallback.value_or(min);
  }
  int line = static_cast<int>(node.node()->source().begin.line);
  if (!node.is_integer()) {
    Error(line, key, "expected an integer");
    return fallback.value_or(min);
  }
  int64_t v = *node.value<int64_t>();
  if (v < min || v > max) {
    Error(line, key, absl::StrCat(v, " is outside [", min, ", ", max, "]"));
    return fallback.value_or(min);
  }
  return v;
}

bool ConfigFile::Bool(absl::string_view key, bool fallback) {
  consumed_.insert(std::string(key));
  toml::node_view<toml::node> node = impl_->table.at_path(std::string_view(key.data(), key.size()));
  if (!node) return fallback;
  if (!node.is_boolean()) {
    Error(static_cast<int>(node.node()->source().begin.line), key, "expected true or false");
    return fallback;
  }
  return *node.value<bool>();
}

std::vector<std::string> ConfigFile::StringList(absl::string_view key) {
  consumed_.insert(std::string(key));
  std::vector<std::string> out;
  toml::node_view<toml::node> node = impl_->table.at_path(std::string_view(key.data(), key.size()));
  if (!node) return out;
  int line = static_cast<int>(node.node()->source().begin.line);
  const toml::array* arr = node.as_array();
  if (arr == nullptr) {
    Error(line, key, "expected an array of strings");
    return out;
  }
  for (const toml::node& item : *arr) {
    if (!item.is_string()) {
      Error(static_cast<int>(item.source().begin.line), key, "expected an array of strings");
      return {};
    }
    out.emplace_back(*item.value<std::string_view>());
  }
  return out;
}

std::vector<std::string> ConfigFile::Defaulted() const {
  std::vector<std::string> out;
  for (const std::string& key : consumed_) {
    if (!Has(key)) out.push_back(key);
  }
  return out;
}

absl::Status ConfigFile::Finish() {
  // Every leaf nobody asked for is an unknown key: a typo must not be silently ignored.
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& table, const std::string& prefix) {
        for (const auto& [k, v] : table) {
          std::string path = prefix.empty() ? std::string(k.str())
                                            : absl::StrCat(prefix, ".", std::string(k.str()));
          if (consumed_.count(path)) continue;
          if (const toml::table* sub = v.as_table()) {
            walk(*sub, path);
            continue;
          }
          errors_.emplace_back(
              static_cast<int>(k.source().begin.line),
              absl::StrCat(name_, ":", k.source().begin.line, ": unknown key '", path, "'"));
        }
      };
  walk(impl_->table, "");
  if (errors_.empty()) return absl::OkStatus();
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> lines;
  for (const auto& [line, msg] : errors_) lines.push_back(msg);
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

}  // namespace x1368::core
