// Messages as the admin API's JSON (x1368/core/json.h): snake_case, every field present, 64-bit
// integers as JSON numbers (exact, beyond 2^53 too), enums by name, bytes in base64; and
// protobuf's own JsonStringToMessage (what trackerctl and scripts using protobuf parse with)
// reads all of it back to the same message.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "x1368/core/json.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::core {
namespace {

v1::DeviceRecord Record() {
  v1::DeviceRecord d;
  d.set_device_id("dev-1");
  d.set_sequence_number(std::numeric_limits<uint64_t>::max());
  d.set_updated_at_ms(-1234567890123456789);
  d.set_state(v1::DOWNLOADING);
  d.set_report_digest(std::string("\x00\xff\x10", 3));
  v1::ReasonCount* rc = d.add_rejections();
  rc->set_reason(v1::REPLAY);
  rc->set_count(uint64_t{1} << 60);
  return d;
}

TEST(CoreJsonTest, EveryFieldSnakeCaseNumbersAsNumbersEnumsByName) {
  nlohmann::json j = MessageToJson(Record());
  EXPECT_EQ(j["device_id"], "dev-1");
  ASSERT_TRUE(j["sequence_number"].is_number_unsigned()) << j.dump();
  EXPECT_EQ(j["sequence_number"].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(j["updated_at_ms"].is_number_integer()) << j.dump();
  EXPECT_EQ(j["updated_at_ms"].get<int64_t>(), -1234567890123456789);
  EXPECT_EQ(j["state"], "DOWNLOADING");
  EXPECT_EQ(j["report_digest"], "AP8Q");  // base64, as proto3 JSON has bytes
  EXPECT_EQ(j["rejections"][0]["reason"], "REPLAY");
  EXPECT_EQ(j["rejections"][0]["count"].get<uint64_t>(), uint64_t{1} << 60);
  // Defaults are there: false, 0, "" and [].
  ASSERT_TRUE(j.contains("online")) << j.dump();
  EXPECT_EQ(j["online"], false);
  EXPECT_EQ(j["clock_offset_ms"], 0);
  EXPECT_EQ(j["via"], "");
  EXPECT_TRUE(j["parent_rejections"].is_array());
  EXPECT_FALSE(j.contains("deviceId"));
}

TEST(CoreJsonTest, ProtobufReadsItBackExactly) {
  const v1::DeviceRecord d = Record();
  for (bool pretty : {false, true}) {
    v1::DeviceRecord back;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(MessageToJsonText(d, pretty), &back).ok());
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(d, back)) << back.DebugString();
  }
}

TEST(CoreJsonTest, InvalidUtf8IsReplacedNotThrown) {
  v1::DeviceRecord d;
  d.set_detail(std::string("bad \xff byte"));
  EXPECT_NE(MessageToJsonText(d).find("bad"), std::string::npos);
}

}  // namespace
}  // namespace x1368::core
