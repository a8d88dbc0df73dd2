// Durable file operations. WriteFileAtomic is how every piece of device state reaches disk:
// write a temporary file, fsync it, rename it over the old one, fsync the directory. A crash or
// power cut at any point leaves either the old or the new content, never a mix
// (docs/architecture.md §8). Thread-safe: no shared state.
#ifndef X1368_CORE_FILE_UTIL_H_
#define X1368_CORE_FILE_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace x1368::core {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Reads at most `max_bytes`; a larger file is an error, so a corrupt or hostile file cannot make
// the reader allocate without bound.
absl::StatusOr<std::string> ReadFileLimited(const std::string& path, uint64_t max_bytes);

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, int mode = 0644);

// mkdir -p, with `mode` for directories it creates.
absl::Status MakeDirs(const std::string& path, int mode = 0755);

// Size of a file, or NotFound.
absl::StatusOr<uint64_t> FileSize(const std::string& path);

// Reads `length` bytes at `offset` (fewer at the end of the file).
absl::StatusOr<std::string> ReadFileRange(const std::string& path, uint64_t offset,
                                          uint64_t length);

// Writes `data` at `offset` of an existing or new file (no fsync; see SyncFile).
absl::Status WriteFileRange(const std::string& path, uint64_t offset, absl::string_view data);

absl::Status SyncFile(const std::string& path);

// Sets the size of a file, creating it with `mode` if needed (no fsync).
absl::Status TruncateFile(const std::string& path, uint64_t size, int mode = 0644);
// rename(2), then fsyncs the directory: durable when it returns OK.
absl::Status RenameFile(const std::string& from, const std::string& to);
// unlink(2), then fsyncs the directory; a missing file is OK.
absl::Status RemoveFile(const std::string& path);
// Names of the entries in `dir`, without "." and "..".
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir);

bool PathExists(const std::string& path);

// Directory part of a path ("." when it has none).
std::string DirName(const std::string& path);

// `path` unchanged when absolute, else relative to `base_dir`.
std::string ResolvePath(const std::string& base_dir, const std::string& path);

}  // namespace x1368::core

#endif  // X1368_CORE_FILE_UTIL_H_
