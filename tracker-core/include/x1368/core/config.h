// TOML configuration with errors that name the file, the line and the key (toml++).
//
// A daemon reads its keys through the typed getters; each getter records a precise error
// ("root.toml:7: key 'admin.listen': expected a string") instead of failing at once, and
// Finish() adds one error per key that nobody read ("root.toml:12: unknown key 'uplink'"), so a
// misspelt key is caught instead of silently ignored. Keys are dotted paths into tables.
// Not thread-safe; used while a daemon starts.
#ifndef X1368_CORE_CONFIG_H_
#define X1368_CORE_CONFIG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace x1368::core {

class ConfigFile {
 public:
  static absl::StatusOr<ConfigFile> Load(const std::string& path);
  // `name` stands for the file in error messages; relative paths resolve against `base_dir`.
  static absl::StatusOr<ConfigFile> Parse(absl::string_view text, std::string name,
                                          std::string base_dir = ".");

  ConfigFile(ConfigFile&&) noexcept;
  ConfigFile& operator=(ConfigFile&&) noexcept;
  ~ConfigFile();

  bool Has(absl::string_view key) const;

  // Required when `fallback` is nullopt.
  std::string String(absl::string_view key, std::optional<std::string> fallback = std::nullopt);
  // A string naming a file or directory, made absolute against the config file's directory.
  std::string Path(absl::string_view key, std::optional<std::string> fallback = std::nullopt);
  int64_t Int(absl::string_view key, std::optional<int64_t> fallback, int64_t min, int64_t max);
  bool Bool(absl::string_view key, bool fallback);
  std::vector<std::string> StringList(absl::string_view key);

  // Records a validation error against `key`'s line.
  void Fail(absl::string_view key, absl::string_view message);

  // OK, or InvalidArgument listing every error, one per line, in file order.
  absl::Status Finish();

  // The keys the reader asked for that the file does not set (they took their defaults), in
  // order. A reference configuration (examples/) must set them all: `--check-config --complete`.
  std::vector<std::string> Defaulted() const;

  const std::string& name() const { return name_; }

 private:
  struct Impl;
  ConfigFile(std::unique_ptr<Impl> impl, std::string name, std::string base_dir);
  void Error(int line, absl::string_view key, absl::string_view message);

  std::unique_ptr<Impl> impl_;
  std::string name_;
  std::string base_dir_;
  std::set<std::string> consumed_;
  std::vector<std::pair<int, std::string>> errors_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CONFIG_H_
