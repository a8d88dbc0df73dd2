#include "trackerctl/output.h"

#include <yaml-cpp/yaml.h>

#include <iostream>

#include "x1368/core/json.h"

namespace x1368::ctl {
namespace {

void Emit(YAML::Emitter& out, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, value] : v.items()) {
        out << YAML::Key << key << YAML::Value;
        Emit(out, value);
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      out << YAML::BeginSeq;
      for (const nlohmann::json& e : v) Emit(out, e);
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string:
      // Always quoted: a version "2.0" or a value "true" must read back as a string.
      out << YAML::DoubleQuoted << v.get<std::string>();
      break;
    case nlohmann::json::value_t::boolean:
      out << v.get<bool>();
      break;
    case nlohmann::json::value_t::number_integer:
      out << v.get<int64_t>();
      break;
    case nlohmann::json::value_t::number_unsigned:
      out << v.get<uint64_t>();
      break;
    case nlohmann::json::value_t::number_float:
      out << v.get<double>();
      break;
    default:
      out << YAML::Null;
  }
}

}  // namespace

bool WantsData(const std::string& format) { return format == "json" || format == "yaml"; }

std::string ToYaml(const nlohmann::json& data) {
  YAML::Emitter out;
  out.SetBoolFormat(YAML::TrueFalseBool);
  Emit(out, data);
  return out.c_str();
}

void PrintData(const nlohmann::json& data, const std::string& format) {
  if (format == "yaml") {
    std::cout << ToYaml(data) << "\n";
  } else {
    std::cout << data.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
}

void PrintMessage(const google::protobuf::Message& m, const std::string& format) {
  PrintData(core::MessageToJson(m), format);
}

}  // namespace x1368::ctl
