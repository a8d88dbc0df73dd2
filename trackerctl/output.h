// trackerctl's -o/--output: a read verb prints a table for people, or the data as JSON or YAML
// for scripts: the admin API's own form (x1368/core/json.h), snake_case, every field present,
// 64-bit numbers as numbers.
#ifndef X1368_TRACKERCTL_OUTPUT_H_
#define X1368_TRACKERCTL_OUTPUT_H_

#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>
#include <string>

namespace x1368::ctl {

inline constexpr char kOutputHelp[] = "output format: table, json or yaml";

// Whether `format` ("table", "json", "yaml") asks for data rather than a table.
bool WantsData(const std::string& format);

// Prints `data` on stdout as `format` (json or yaml).
void PrintData(const nlohmann::json& data, const std::string& format);
void PrintMessage(const google::protobuf::Message& m, const std::string& format);

// `data` as a YAML document (block style; strings quoted where YAML would read them otherwise).
std::string ToYaml(const nlohmann::json& data);

}  // namespace x1368::ctl

#endif  // X1368_TRACKERCTL_OUTPUT_H_
