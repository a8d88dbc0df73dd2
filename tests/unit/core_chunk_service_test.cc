// Splitting a FirmwareChunkRequest into the chunks it asks for (x1368/core/chunk_service.h), as
// root and every gateway do before serving it: one chunk, a batch, a batch cut at the end, and
// the requests refused whole.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "testing/status_matchers.h"
#include "x1368/core/chunk_service.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;

v1::FirmwareChunkRequest Request(uint64_t offset, uint32_t length, uint32_t count) {
  v1::FirmwareChunkRequest r;
  r.set_image_sha256(std::string(32, 'i'));
  r.set_offset(offset);
  r.set_length(length);
  r.set_count(count);
  r.set_request_id(42);
  r.set_table(true);
  return r;
}

// (offset, length) of each part; every part keeps the request's image, id and kind, and is a
// request for one chunk.
std::vector<std::pair<uint64_t, uint32_t>> Parts(const v1::FirmwareChunkRequest& r, uint64_t size) {
  std::vector<std::pair<uint64_t, uint32_t>> out;
  auto parts = SplitChunkRequest(r, size);
  EXPECT_OK(parts);
  if (!parts.ok()) return out;
  for (const v1::FirmwareChunkRequest& p : *parts) {
    EXPECT_EQ(p.request_id(), r.request_id());
    EXPECT_EQ(p.image_sha256(), r.image_sha256());
    EXPECT_EQ(p.table(), r.table());
    EXPECT_EQ(p.count(), 0u);
    out.emplace_back(p.offset(), p.length());
  }
  return out;
}

using P = std::pair<uint64_t, uint32_t>;

TEST(SplitChunkRequestTest, ACountOfZeroOrOneIsOneChunk) {
  EXPECT_THAT(Parts(Request(1000, 1000, 0), 10'500), ::testing::ElementsAre(P{1000, 1000}));
  EXPECT_THAT(Parts(Request(1000, 1000, 1), 10'500), ::testing::ElementsAre(P{1000, 1000}));
  // The last chunk, cut at the end as ever.
  EXPECT_THAT(Parts(Request(10'000, 1000, 0), 10'500), ::testing::ElementsAre(P{10'000, 500}));
}

TEST(SplitChunkRequestTest, ABatchIsConsecutiveChunks) {
  EXPECT_THAT(Parts(Request(2000, 1000, 3), 10'500),
              ::testing::ElementsAre(P{2000, 1000}, P{3000, 1000}, P{4000, 1000}));
}

TEST(SplitChunkRequestTest, ABatchThatRunsPastTheEndIsCutThere) {
  EXPECT_THAT(Parts(Request(8000, 1000, 16), 10'500),
              ::testing::ElementsAre(P{8000, 1000}, P{9000, 1000}, P{10'000, 500}));
  EXPECT_THAT(Parts(Request(8000, 1000, 3), 10'000),
              ::testing::ElementsAre(P{8000, 1000}, P{9000, 1000}));
}

TEST(SplitChunkRequestTest, ChunksAreNeverLargerThanAParentServes) {
  auto parts = Parts(Request(0, UINT32_MAX, 3), 3 * kMaxChunkBytes + 1);
  EXPECT_THAT(parts, ::testing::ElementsAre(P{0, kMaxChunkBytes}, P{kMaxChunkBytes, kMaxChunkBytes},
                                            P{2 * kMaxChunkBytes, kMaxChunkBytes}));
}

TEST(SplitChunkRequestTest, AtTheTopOfTheOffsetsNothingWraps) {
  const uint64_t top = UINT64_MAX;
  EXPECT_THAT(Parts(Request(top - 1500, 1000, 16), top),
              ::testing::ElementsAre(P{top - 1500, 1000}, P{top - 500, 500}));
}

TEST(SplitChunkRequestTest, TheCapIsAllowedAndOneMoreIsMalformed) {
  EXPECT_EQ(Parts(Request(0, 10, kMaxChunksPerRequest), 1'000'000).size(), kMaxChunksPerRequest);
  EXPECT_THAT(SplitChunkRequest(Request(0, 10, kMaxChunksPerRequest + 1), 1'000'000),
              HasReason(v1::MALFORMED));
  EXPECT_THAT(SplitChunkRequest(Request(0, 10, UINT32_MAX), 1'000'000), HasReason(v1::MALFORMED));
}

TEST(SplitChunkRequestTest, WhatOneChunkCouldNotAskForIsMalformed) {
  EXPECT_THAT(SplitChunkRequest(Request(10'500, 1000, 4), 10'500), HasReason(v1::MALFORMED));
  EXPECT_THAT(SplitChunkRequest(Request(0, 0, 4), 10'500), HasReason(v1::MALFORMED));
}

}  // namespace
}  // namespace x1368::core
