// libFuzzer target: bytes as a ChunkData message on a device's <parent>/<me>/down/data topic, the
// one payload that is not a signed Envelope (issue #17): its integrity rests on the author-signed
// chunk table alone. The harness parses it as NodeLinks does, then hands it to a ChunkFetcher
// that has every chunk of a fixed 5-chunk image (or, with bit 0 of the first byte, of its chunk
// table) in flight, checking each chunk against the table exactly as the client and the gateway
// do. Checked beyond "never crashes": whatever reaches the sink is byte for byte the image (or
// the table) at its offset, and a refused chunk carries a reason.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "x1368/core/chunk_fetcher.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/executor.h"
#include "x1368/core/reason.h"

namespace x1368::fuzz {
namespace {

constexpr uint32_t kChunk = core::kMinChunkBytes;
constexpr size_t kImageSize = 4 * kChunk + 100;  // 5 chunks, the last one short

void Fail(const char* what) {
  fprintf(stderr, "chunk_data: %s\n", what);
  abort();
}

struct Fixture {
  std::string image;
  std::string sha;
  core::ImageDigests digests;
  v1::Manifest manifest;
  Fixture() {
    for (size_t i = 0; i < kImageSize; ++i) image.push_back(static_cast<char>(i * 131 + 7));
    digests = core::DigestImage(image, kChunk);
    sha = digests.sha256;
    manifest.set_size(kImageSize);
    manifest.set_sha256(sha);
    manifest.set_chunk_size(kChunk);
    manifest.set_chunk_table_sha256(core::Sha256(digests.table));
  }
};

const Fixture& F() {
  static const Fixture* f = new Fixture;
  return *f;
}

}  // namespace
}  // namespace x1368::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  const fuzz::Fixture& f = fuzz::F();
  if (size == 0) return 0;
  const bool table = (data[0] & 1) != 0;
  v1::ChunkData chunk;
  if (!chunk.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;  // MALFORMED

  auto parsed_table = core::ChunkTable::Make(f.manifest, f.digests.table);
  if (!parsed_table.ok()) fuzz::Fail("the fixture's own table does not verify");
  const core::ChunkTable& checked = *parsed_table;
  const std::string& whole = table ? f.digests.table : f.image;

  core::FakeClock clock;
  core::Executor executor(&clock, /*threads=*/0);
  core::EventLoop loop(&executor);
  core::ChunkFetcherOptions opts;
  opts.window = 8;  // every chunk in flight, in one batch: request id 1 at offsets 0, 1024, ...
  core::ChunkFetcher fetcher(
      &loop, [](const v1::FirmwareChunkRequest&) { return absl::OkStatus(); }, opts);
  core::ChunkFetcher::FetchSpec spec{f.sha, table, whole.size(), 0, fuzz::kChunk, nullptr};
  if (!table) {
    spec.verify = [&checked](uint64_t at, absl::string_view bytes) {
      return checked.Verify(at, bytes);
    };
  } else {
    // The table is checked whole once complete; its pieces must still be what was asked.
    spec.chunk = fuzz::kChunk;
  }
  std::string received;
  fetcher.Start(
      spec,
      [&](uint64_t offset, const std::string& bytes) {
        if (offset != received.size()) fuzz::Fail("sink got a chunk out of order");
        received += bytes;
        return absl::OkStatus();
      },
      [](const absl::Status&) {});
  executor.RunUntilIdle();
  absl::Status s = fetcher.OnData(chunk);
  executor.RunUntilIdle();
  if (!s.ok() && core::ReasonOf(s) == v1::REASON_UNSPECIFIED)
    fuzz::Fail("rejection without reason");
  // Only the table's pieces are taken unchecked (the whole table is checked once complete): an
  // image chunk that reached the sink must be the image's own bytes.
  if (!table && whole.compare(0, received.size(), received) != 0) {
    fuzz::Fail("a chunk that is not the image reached the sink");
  }
  return 0;
}
