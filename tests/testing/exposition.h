// The Prometheus text exposition format (0.0.4) read back, as a scraper reads it: what the
// metrics tests check a node's /metrics against. Header-only; strict where Prometheus is (every
// sample belongs to a family with one HELP and one TYPE, given before its samples).
#ifndef X1368_TESTING_EXPOSITION_H_
#define X1368_TESTING_EXPOSITION_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace x1368::testing {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> help, type;  // by family name
  std::vector<Sample> samples;
  std::vector<std::string> errors;  // what a strict reader refuses, one line each

  // The sum of the samples named `name` whose labels include `labels`; -1 when there is none.
  double Sum(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    double sum = 0;
    bool any = false;
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        match = match && it != s.labels.end() && it->second == v;
      }
      if (!match) continue;
      sum += s.value;
      any = true;
    }
    return any ? sum : -1;
  }
  bool Has(const std::string& name) const {
    for (const Sample& s : samples) {
      if (s.name == name) return true;
    }
    return false;
  }
};

namespace exposition_internal {

// The family a sample belongs to: a histogram's _bucket, _sum and _count are its own.
inline std::string FamilyOf(const std::string& name,
                            const std::map<std::string, std::string>& type) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    absl::string_view base = name;
    if (absl::ConsumeSuffix(&base, suffix)) {
      auto it = type.find(std::string(base));
      if (it != type.end() && (it->second == "histogram" || it->second == "summary")) {
        return std::string(base);
      }
    }
  }
  return name;
}

// `{k="v",...}` at the front of `rest`, unescaping values; false when malformed.
inline bool ParseLabels(absl::string_view* rest, std::map<std::string, std::string>* labels) {
  if (!absl::ConsumePrefix(rest, "{")) return true;
  while (!absl::ConsumePrefix(rest, "}")) {
    size_t eq = rest->find("=\"");
    if (eq == absl::string_view::npos) return false;
    std::string key(rest->substr(0, eq));
    rest->remove_prefix(eq + 2);
    std::string value;
    while (!rest->empty() && rest->front() != '"') {
      char c = rest->front();
      rest->remove_prefix(1);
      if (c == '\\' && !rest->empty()) {
        c = rest->front() == 'n' ? '\n' : rest->front();
        rest->remove_prefix(1);
      }
      value.push_back(c);
    }
    if (!absl::ConsumePrefix(rest, "\"")) return false;
    (*labels)[key] = value;
    absl::ConsumePrefix(rest, ",");
  }
  return true;
}

}  // namespace exposition_internal

inline Exposition ParseExposition(const std::string& text) {
  Exposition out;
  std::set<std::string> seen_samples_of;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "# HELP ") || absl::ConsumePrefix(&rest, "# TYPE ")) {
      const bool help = absl::StartsWith(line, "# HELP");
      std::vector<std::string> parts = absl::StrSplit(rest, absl::MaxSplits(' ', 1));
      auto& map = help ? out.help : out.type;
      if (map.count(parts[0]) != 0) out.errors.push_back(absl::StrCat("second ", line));
      if (seen_samples_of.count(parts[0]) != 0) {
        out.errors.push_back(absl::StrCat("after its samples: ", line));
      }
      map[parts[0]] = parts.size() > 1 ? parts[1] : "";
      continue;
    }
    if (absl::StartsWith(line, "#")) continue;
    Sample s;
    size_t end = rest.find_first_of("{ ");
    s.name = std::string(rest.substr(0, end));
    rest.remove_prefix(end == absl::string_view::npos ? rest.size() : end);
    if (!exposition_internal::ParseLabels(&rest, &s.labels) ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(rest), &s.value)) {
      out.errors.push_back(absl::StrCat("malformed: ", line));
      continue;
    }
    const std::string family = exposition_internal::FamilyOf(s.name, out.type);
    if (out.help.count(family) == 0) out.errors.push_back(absl::StrCat("no HELP: ", line));
    if (out.type.count(family) == 0) out.errors.push_back(absl::StrCat("no TYPE: ", line));
    seen_samples_of.insert(family);
    out.samples.push_back(std::move(s));
  }
  return out;
}

}  // namespace x1368::testing

#endif  // X1368_TESTING_EXPOSITION_H_
