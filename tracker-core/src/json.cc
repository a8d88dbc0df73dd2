#include "x1368/core/json.h"

#include <google/protobuf/descriptor.h>

#include "absl/strings/escaping.h"

namespace x1368::core {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// One value of `f`: the field itself, or element `index` of a repeated field.
nlohmann::json Value(const Message& m, const FieldDescriptor* f, int index) {
  const Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int number = rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f);
      // A number this build does not know stays a number, as protobuf's printer has it.
      if (const auto* v = f->enum_type()->FindValueByNumber(number)) return v->name();
      return number;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      if (f->type() == FieldDescriptor::TYPE_BYTES) return absl::Base64Escape(s);
      return s;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageToJson(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return nullptr;
}

nlohmann::json MapField(const Message& m, const FieldDescriptor* f) {
  nlohmann::json out = nlohmann::json::object();
  const FieldDescriptor* key = f->message_type()->map_key();
  const FieldDescriptor* value = f->message_type()->map_value();
  for (int i = 0; i < m.GetReflection()->FieldSize(m, f); ++i) {
    const Message& entry = m.GetReflection()->GetRepeatedMessage(m, f, i);
    nlohmann::json k = Value(entry, key, 0);
    out[k.is_string() ? k.get<std::string>() : k.dump()] = Value(entry, value, 0);
  }
  return out;
}

}  // namespace

nlohmann::json MessageToJson(const Message& m) {
  nlohmann::json out = nlohmann::json::object();
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) {
      out[f->name()] = MapField(m, f);
    } else if (f->is_repeated()) {
      nlohmann::json list = nlohmann::json::array();
      for (int j = 0; j < m.GetReflection()->FieldSize(m, f); ++j) list.push_back(Value(m, f, j));
      out[f->name()] = std::move(list);
    } else {
      // An unset message is printed with its defaults too: jq finds `.detail.online` either way.
      out[f->name()] = Value(m, f, 0);
    }
  }
  return out;
}

std::string MessageToJsonText(const Message& m, bool pretty) {
  // Invalid UTF-8 (a string relayed from a device is not trusted to be valid) is replaced rather
  // than thrown on.
  return MessageToJson(m).dump(pretty ? 2 : -1, ' ', false,
                               nlohmann::json::error_handler_t::replace);
}

}  // namespace x1368::core
