// A gateway's firmware cache: images named by their SHA-256, filled once from upstream in chunks,
// each chunk checked against the author-signed chunk table before it is written, and kept with
// their chunk table for every child that asks afterwards. While an image is filling, the chunks
// already written (a prefix: the fetcher writes in order) are served from the partial file, so
// children download while their gateway fills (cut-through). At most `max_images` complete
// images are kept; the least recently used goes first.
// Not thread-safe: owned by the intermediate's event loop.
#ifndef X1368_INTERMEDIATE_FIRMWARE_CACHE_H_
#define X1368_INTERMEDIATE_FIRMWARE_CACHE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/core/file_system.h"

namespace x1368::intermediate {

class FirmwareCache {
 public:
  // Files live on `fs` (the disk unless told otherwise).
  FirmwareCache(std::string dir, size_t max_images, core::FileSystem* fs = core::PosixFileSystem())
      : dir_(std::move(dir)), max_images_(max_images), fs_(fs) {}

  absl::Status Open();  // creates the directory, forgets partial files of a previous run

  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const;       // of a complete image
  std::string TablePathOf(const std::string& sha256) const;  // of its chunk table
  std::string PartPath(const std::string& sha256) const;     // of an image filling

  // Filling: Begin() starts a partial file (or keeps the one a failed fill of the same image
  // left), Write() puts checked chunks in it, Complete() syncs it, stores its chunk table beside
  // it and makes it a cached image (SIZE_MISMATCH if it is not `size` bytes long). `sha256` is
  // the raw 32-byte digest (MALFORMED otherwise); files are named by its hex form, so no digest
  // names a path outside the directory. Write() and Complete() need a Begin() of the same image
  // (IMAGE_UNAVAILABLE otherwise), and a chunk that does not fit in the size given to Begin() is
  // refused (SIZE_MISMATCH), never written. The caller checks every chunk before Write(): the
  // cache does not hash the image again.
  absl::Status Begin(const std::string& sha256, uint64_t size);
  absl::Status Write(const std::string& sha256, uint64_t offset, const std::string& data);
  absl::Status Complete(const std::string& sha256, uint64_t size, const std::string& table);

  void Touch(const std::string& sha256);  // marks as recently used

 private:
  void Evict();

  const std::string dir_;
  const size_t max_images_;
  core::FileSystem* const fs_;
  std::map<std::string, uint64_t> last_used_;  // complete images -> use counter
  std::map<std::string, uint64_t> filling_;    // images begun, not complete -> their size
  uint64_t clock_ = 0;
};

}  // namespace x1368::intermediate

#endif  // X1368_INTERMEDIATE_FIRMWARE_CACHE_H_
