// Serving an image in chunks: root's firmware server and every intermediate's cache answer
// FirmwareChunkRequests the same way, with the bytes as unsigned ChunkData (checked by the child
// against the author-signed chunk table) or a signed refusal. Thread-safe: reads files only.
#ifndef X1368_CORE_CHUNK_SERVICE_H_
#define X1368_CORE_CHUNK_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/file_system.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

// How many bytes `request` gets of a resource (an image, or its chunk table) of `size` bytes: what
// it asks for, cut at the end and at kMaxChunkBytes. MALFORMED for an empty request or one past
// the end.
absl::StatusOr<uint64_t> ChunkLength(const v1::FirmwareChunkRequest& request, uint64_t size);

// The answer to `request` carrying `data`.
v1::ChunkData ChunkReply(const v1::FirmwareChunkRequest& request, std::string data);

// Answers `request` from the file at `path` (`size` bytes) on `fs`: MALFORMED (see ChunkLength),
// IMAGE_UNAVAILABLE when the file cannot be read, never a crash.
absl::StatusOr<v1::ChunkData> ReadChunk(FileSystem& fs, const std::string& path, uint64_t size,
                                        const v1::FirmwareChunkRequest& request);

// A refusal of `request` ("not here", or another reason).
v1::FirmwareChunkResponse ChunkError(const v1::FirmwareChunkRequest& request, v1::Reason reason);

}  // namespace x1368::core

#endif  // X1368_CORE_CHUNK_SERVICE_H_
