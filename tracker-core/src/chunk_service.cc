#include "x1368/core/chunk_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::core {

v1::FirmwareChunkResponse ChunkError(const v1::FirmwareChunkRequest& request, v1::Reason reason) {
  v1::FirmwareChunkResponse r;
  r.set_image_sha256(request.image_sha256());
  r.set_offset(request.offset());
  r.set_request_id(request.request_id());
  r.set_table(request.table());
  r.set_error(reason);
  return r;
}

absl::StatusOr<uint64_t> ChunkLength(const v1::FirmwareChunkRequest& request, uint64_t size) {
  if (request.offset() >= size || request.length() == 0) {
    return Reject(v1::MALFORMED, absl::StrCat("no bytes at ", request.offset(), " of ", size));
  }
  return std::min<uint64_t>({request.length(), kMaxChunkBytes, size - request.offset()});
}

absl::StatusOr<std::vector<v1::FirmwareChunkRequest>> SplitChunkRequest(
    const v1::FirmwareChunkRequest& request, uint64_t size) {
  if (request.count() > kMaxChunksPerRequest) {
    return Reject(v1::MALFORMED, absl::StrCat(request.count(), " chunks in one request, at most ",
                                              kMaxChunksPerRequest));
  }
  X1368_ASSIGN_OR_RETURN(uint64_t first, ChunkLength(request, size));
  const uint64_t stride = std::min<uint64_t>(request.length(), kMaxChunkBytes);
  std::vector<v1::FirmwareChunkRequest> parts;
  parts.reserve(std::max<uint32_t>(request.count(), 1));
  v1::FirmwareChunkRequest part = request;
  part.clear_count();
  part.set_length(static_cast<uint32_t>(first));
  parts.push_back(part);
  for (uint32_t i = 1; i < request.count(); ++i) {
    // Written so that an offset near the top of uint64_t cannot wrap.
    if (size - part.offset() <= stride) break;
    part.set_offset(part.offset() + stride);
    part.set_length(static_cast<uint32_t>(std::min(stride, size - part.offset())));
    parts.push_back(part);
  }
  return parts;
}

v1::ChunkData ChunkReply(const v1::FirmwareChunkRequest& request, std::string data) {
  v1::ChunkData d;
  d.set_image_sha256(request.image_sha256());
  d.set_offset(request.offset());
  d.set_request_id(request.request_id());
  d.set_table(request.table());
  d.set_data(std::move(data));
  return d;
}

absl::StatusOr<v1::ChunkData> ReadChunk(FileSystem& fs, const std::string& path, uint64_t size,
                                        const v1::FirmwareChunkRequest& request) {
  X1368_ASSIGN_OR_RETURN(uint64_t length, ChunkLength(request, size));
  auto data = fs.ReadRange(path, request.offset(), length);
  if (!data.ok() || data->size() != length) {
    return Reject(v1::IMAGE_UNAVAILABLE, absl::StrCat("cannot read ", length, " bytes at ",
                                                      request.offset(), " of ", path));
  }
  return ChunkReply(request, *std::move(data));
}

}  // namespace x1368::core
