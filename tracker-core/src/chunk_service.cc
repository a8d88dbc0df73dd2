#include "x1368/core/chunk_service.h"

#include <algorithm>

#include "x1368/core/file_system.h"

namespace x1368::core {

v1::FirmwareChunkResponse ChunkError(const v1::FirmwareChunkRequest& request, v1::Reason reason) {
  v1::FirmwareChunkResponse r;
  r.set_image_sha256(request.image_sha256());
  r.set_offset(request.offset());
  r.set_request_id(request.request_id());
  r.set_error(reason);
  return r;
}

v1::FirmwareChunkResponse ServeChunk(FileSystem& fs, const std::string& path, uint64_t size,
                                     const v1::FirmwareChunkRequest& request) {
  if (request.offset() >= size || request.length() == 0) {
    return ChunkError(request, v1::MALFORMED);
  }
  uint64_t length = std::min<uint64_t>({request.length(), kMaxChunkBytes, size - request.offset()});
  auto data = fs.ReadRange(path, request.offset(), length);
  if (!data.ok() || data->size() != length) return ChunkError(request, v1::IMAGE_UNAVAILABLE);
  v1::FirmwareChunkResponse r;
  r.set_image_sha256(request.image_sha256());
  r.set_offset(request.offset());
  r.set_request_id(request.request_id());
  r.set_total_size(size);
  r.set_data(*std::move(data));
  return r;
}

}  // namespace x1368::core
