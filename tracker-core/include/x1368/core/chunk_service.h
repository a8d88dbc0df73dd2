// Serving an image in chunks: root's firmware server and every intermediate's cache answer
// FirmwareChunkRequests the same way, with the bytes as unsigned ChunkData (checked by the child
// against the author-signed chunk table) or a signed refusal. Thread-safe: reads files only.
#ifndef X1368_CORE_CHUNK_SERVICE_H_
#define X1368_CORE_CHUNK_SERVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/file_system.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

// Chunks one FirmwareChunkRequest may ask for (its `count`). Bounded so that what a parent
// queues for a child in answer to one request stays small beside the broker's queue (16 chunks
// of at most kMaxChunkBytes each), and enough that the signature is a small share of a batch.
inline constexpr uint32_t kMaxChunksPerRequest = 16;

// How many bytes `request` gets of a resource (an image, or its chunk table) of `size` bytes: what
// it asks for, cut at the end and at kMaxChunkBytes. MALFORMED for an empty request or one past
// the end.
absl::StatusOr<uint64_t> ChunkLength(const v1::FirmwareChunkRequest& request, uint64_t size);

// The one-chunk requests that `request` stands for, in offset order, each with its request id:
// `count` chunks (0 or 1: one) of `length` bytes (at most kMaxChunkBytes) from `offset` on,
// cut at `size`, so a batch that runs past the end gets the chunks there are. MALFORMED: what
// ChunkLength refuses, or a count above kMaxChunksPerRequest (refused rather than cut: the child
// would only wait for the rest until its timeouts).
absl::StatusOr<std::vector<v1::FirmwareChunkRequest>> SplitChunkRequest(
    const v1::FirmwareChunkRequest& request, uint64_t size);

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
