// Serving an image in chunks (DESIGN.md §7.5): root's firmware server and every intermediate's
// cache answer FirmwareChunkRequests the same way. Thread-safe: reads files only.
#ifndef X1368_CORE_CHUNK_SERVICE_H_
#define X1368_CORE_CHUNK_SERVICE_H_

#include <cstdint>
#include <string>

#include "x1368/core/file_system.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

// The largest chunk any node serves, whatever a request asks for; responses must fit the
// default 256 KiB message limit with room for the envelope.
inline constexpr uint32_t kMaxChunkBytes = 128 * 1024;

// Answers `request` from the complete image at `path` (`size` bytes) on `fs`. Out-of-range
// offsets and read errors come back as a response carrying an error reason, never as a crash.
v1::FirmwareChunkResponse ServeChunk(FileSystem& fs, const std::string& path, uint64_t size,
                                     const v1::FirmwareChunkRequest& request);

// A response that says "not here" (IMAGE_UNAVAILABLE or another reason).
v1::FirmwareChunkResponse ChunkError(const v1::FirmwareChunkRequest& request, v1::Reason reason);

}  // namespace x1368::core

#endif  // X1368_CORE_CHUNK_SERVICE_H_
