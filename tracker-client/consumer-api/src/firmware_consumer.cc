#include "x1368/client/firmware_consumer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"

namespace x1368::client {

absl::Status DownloadFrom(FirmwareConsumer& consumer, const v1::Manifest& manifest,
                          ImageSource* source, uint32_t chunk,
                          const FirmwareConsumer::Progress& progress) {
  X1368_ASSIGN_OR_RETURN(uint64_t offset, consumer.BeginDownload(manifest));
  chunk = std::max<uint32_t>(chunk, 1);
  while (offset < manifest.size()) {
    uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(chunk, manifest.size() - offset));
    X1368_ASSIGN_OR_RETURN(std::string data, source->Read(offset, want));
    if (data.empty()) {
      return core::Reject(v1::DOWNLOAD_FAILED, absl::StrCat("empty chunk at ", offset));
    }
    if (data.size() > manifest.size() - offset) {
      return core::Reject(v1::SIZE_MISMATCH, "image longer than the manifest says");
    }
    X1368_RETURN_IF_ERROR(consumer.WriteChunk(manifest, offset, data));
    offset += data.size();
    if (progress) progress(offset);
  }
  return consumer.FinishDownload(manifest);
}

}  // namespace x1368::client
