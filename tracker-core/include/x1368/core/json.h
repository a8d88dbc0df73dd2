// Protobuf messages as JSON (nlohmann::json behind this header), in the one form root's admin API
// answers and trackerctl prints: field names in snake_case as in the .proto files, every field
// present (false, 0, "" and [] too, so that `jq 'select(.online==false)'` sees offline devices),
// 64-bit integers as JSON numbers (protobuf's own printer quotes them), enums by name, bytes in
// base64 (as proto3 JSON has them, so protobuf's JsonStringToMessage reads every answer back).
#ifndef X1368_CORE_JSON_H_
#define X1368_CORE_JSON_H_

#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>
#include <string>

namespace x1368::core {

nlohmann::json MessageToJson(const google::protobuf::Message& m);

// MessageToJson(m), serialized: one line, or indented by two spaces when `pretty`.
std::string MessageToJsonText(const google::protobuf::Message& m, bool pretty = false);

}  // namespace x1368::core

#endif  // X1368_CORE_JSON_H_
