#include "x1368/core/chunk_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/crypto.h"
#include "x1368/core/reason.h"

namespace x1368::core {

uint64_t ChunkCount(uint64_t size, uint32_t chunk) {
  return chunk == 0 ? 0 : size / chunk + (size % chunk != 0 ? 1 : 0);
}

uint64_t ChunkTableBytes(uint64_t size, uint32_t chunk) {
  return ChunkCount(size, chunk) * kDigestBytes;
}

ImageDigests DigestImage(absl::string_view image, uint32_t chunk_size) {
  ImageDigests d;
  d.sha256 = Sha256(image);
  d.size = image.size();
  d.chunk_size = chunk_size;
  for (uint64_t offset = 0; offset < image.size(); offset += chunk_size) {
    d.table += Sha256(image.substr(offset, chunk_size));
  }
  return d;
}

absl::StatusOr<ImageDigests> DigestImageFile(FileSystem& fs, const std::string& path,
                                             uint32_t chunk_size) {
  ImageDigests d;
  d.chunk_size = chunk_size;
  Sha256Stream whole;
  for (uint64_t offset = 0;; offset += chunk_size) {
    X1368_ASSIGN_OR_RETURN(std::string piece, fs.ReadRange(path, offset, chunk_size));
    if (piece.empty()) break;
    whole.Update(piece);
    d.table += Sha256(piece);
    d.size += piece.size();
    if (piece.size() < chunk_size) break;
  }
  d.sha256 = whole.Final();
  return d;
}

absl::Status ValidateChunking(const v1::Manifest& m) {
  if (m.chunk_size() < kMinChunkBytes || m.chunk_size() > kMaxChunkBytes) {
    return Reject(v1::MANIFEST_MALFORMED,
                  absl::StrCat("chunk size ", m.chunk_size(), " is outside ", kMinChunkBytes, "..",
                               kMaxChunkBytes));
  }
  if (m.chunk_table_sha256().size() != kDigestBytes) {
    return Reject(v1::MANIFEST_MALFORMED, "chunk table digest is not 32 bytes");
  }
  if (ChunkTableBytes(m.size(), m.chunk_size()) > kMaxChunkTableBytes) {
    return Reject(v1::MANIFEST_MALFORMED,
                  absl::StrCat("a chunk table of ", ChunkCount(m.size(), m.chunk_size()),
                               " chunks is too large; use larger chunks"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ChunkTable> ChunkTable::Make(const v1::Manifest& m, std::string bytes) {
  X1368_RETURN_IF_ERROR(ValidateChunking(m));
  if (bytes.size() != ChunkTableBytes(m.size(), m.chunk_size())) {
    return Reject(v1::SIZE_MISMATCH, absl::StrCat("chunk table has ", bytes.size(), " bytes, not ",
                                                  ChunkTableBytes(m.size(), m.chunk_size())));
  }
  if (Sha256(bytes) != m.chunk_table_sha256()) {
    return Reject(v1::DIGEST_MISMATCH, "chunk table does not match its manifest digest");
  }
  return ChunkTable(std::move(bytes), m.chunk_size(), m.size());
}

uint32_t ChunkTable::LengthAt(uint64_t offset) const {
  return static_cast<uint32_t>(std::min<uint64_t>(chunk_size_, image_size_ - offset));
}

absl::Status ChunkTable::Verify(uint64_t offset, absl::string_view data) const {
  if (offset >= image_size_ || offset % chunk_size_ != 0) {
    return Reject(v1::MALFORMED, absl::StrCat("offset ", offset, " is not a chunk of the image"));
  }
  if (data.size() != LengthAt(offset)) {
    return Reject(v1::SIZE_MISMATCH, absl::StrCat("chunk at ", offset, " has ", data.size(),
                                                  " bytes, not ", LengthAt(offset)));
  }
  uint64_t index = offset / chunk_size_;
  if (Sha256(data) != absl::string_view(bytes_).substr(index * kDigestBytes, kDigestBytes)) {
    return Reject(v1::DIGEST_MISMATCH,
                  absl::StrCat("chunk at ", offset, " does not match the chunk table"));
  }
  return absl::OkStatus();
}

}  // namespace x1368::core
