// Per-chunk integrity of an image (issue #17): the author-signed manifest names a chunk size and
// the SHA-256 of the image's chunk table, the SHA-256 of each chunk concatenated in order. A node
// that holds the table (checked once against the manifest) checks each chunk the moment it
// arrives, so chunks need no signature of their own, a bad one is refetched alone, a gateway can
// serve each verified chunk while it is still filling, and a download resumes after a power cut
// from the chunks that still verify.
//
// Thread-safe: ChunkTable is immutable once made; the functions are pure.
#ifndef X1368_CORE_CHUNK_TABLE_H_
#define X1368_CORE_CHUNK_TABLE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/file_system.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::core {

// Chunk sizes a manifest may name. The largest keeps a chunk message within the default 256 KiB
// message limit with room to spare; the default is what measured fastest end to end (root ->
// gateway -> device over Mosquitto, simulations/RESULTS.md).
inline constexpr uint32_t kMinChunkBytes = 1024;
inline constexpr uint32_t kMaxChunkBytes = 128 * 1024;
inline constexpr uint32_t kDefaultChunkBytes = 64 * 1024;
inline constexpr uint32_t kDigestBytes = 32;
// A table larger than this is refused (MANIFEST_MALFORMED): 4 GiB in 16 KiB chunks.
inline constexpr uint64_t kMaxChunkTableBytes = 8 << 20;

// Number of chunks of an image of `size` bytes cut in `chunk`-byte chunks.
uint64_t ChunkCount(uint64_t size, uint32_t chunk);
// Bytes of the table of such an image.
uint64_t ChunkTableBytes(uint64_t size, uint32_t chunk);

// What an author (or root, checking a submission) computes from an image in one pass.
struct ImageDigests {
  std::string sha256;  // of the whole image
  uint64_t size = 0;
  uint32_t chunk_size = kDefaultChunkBytes;
  std::string table;  // SHA-256 of each chunk, in order
};
ImageDigests DigestImage(absl::string_view image, uint32_t chunk_size = kDefaultChunkBytes);
// The same, reading the file at `path` piece by piece (bounded memory).
absl::StatusOr<ImageDigests> DigestImageFile(FileSystem& fs, const std::string& path,
                                             uint32_t chunk_size = kDefaultChunkBytes);

// Where the chunk table of the image file at `image_path` is kept beside it (root's releases,
// a gateway's cache).
inline std::string ChunkTablePath(absl::string_view image_path) {
  return std::string(image_path) + ".chunks";
}

// Checks a manifest's chunking: a chunk size within the bounds, a 32-byte table digest, and a
// table no larger than kMaxChunkTableBytes. MANIFEST_MALFORMED.
absl::Status ValidateChunking(const v1::Manifest& manifest);

class ChunkTable {
 public:
  // The table `bytes` of `manifest`'s image: its length and its SHA-256 must be what the manifest
  // says (SIZE_MISMATCH, DIGEST_MISMATCH).
  static absl::StatusOr<ChunkTable> Make(const v1::Manifest& manifest, std::string bytes);

  // Checks that `data` is exactly the chunk at `offset`: a chunk boundary, the chunk's length,
  // and its digest (MALFORMED, SIZE_MISMATCH, DIGEST_MISMATCH).
  absl::Status Verify(uint64_t offset, absl::string_view data) const;

  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t image_size() const { return image_size_; }
  uint64_t count() const { return bytes_.size() / kDigestBytes; }
  const std::string& bytes() const { return bytes_; }
  // Length of the chunk at `offset` (a chunk boundary below the image size).
  uint32_t LengthAt(uint64_t offset) const;

 private:
  ChunkTable(std::string bytes, uint32_t chunk_size, uint64_t image_size)
      : bytes_(std::move(bytes)), chunk_size_(chunk_size), image_size_(image_size) {}
  std::string bytes_;
  uint32_t chunk_size_;
  uint64_t image_size_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CHUNK_TABLE_H_
