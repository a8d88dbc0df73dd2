#include "trackerctl/context.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "x1368/core/file_util.h"

namespace x1368::ctl {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  auto raw = core::ReadFileLimited(path, 4096);
  if (!raw.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the admin token file: ", raw.status().message()));
  }
  return std::string(absl::StripAsciiWhitespace(*raw));
}

}  // namespace

std::string ConfigPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (std::string env = Env("X1368_CONFIG"); !env.empty()) return env;
  if (std::string xdg = Env("XDG_CONFIG_HOME"); !xdg.empty()) {
    return absl::StrCat(xdg, "/x1368/trackerctl.toml");
  }
  return absl::StrCat(Env("HOME"), "/.config/x1368/trackerctl.toml");
}

absl::StatusOr<ConfigFile> LoadConfig(const std::string& path) {
  ConfigFile out;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return out;
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  out.current_context = t["current_context"].value_or(std::string());
  if (const toml::table* contexts = t["contexts"].as_table()) {
    for (const auto& [name, node] : *contexts) {
      const toml::table* c = node.as_table();
      if (c == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": contexts.", std::string(name.str()), " is not a table"));
      }
      Context& ctx = out.contexts[std::string(name.str())];
      ctx.admin_url = (*c)["admin_url"].value_or(std::string());
      ctx.token_file = (*c)["token_file"].value_or(std::string());
      ctx.token = (*c)["token"].value_or(std::string());
    }
  }
  return out;
}

absl::Status SaveConfig(const std::string& path, const ConfigFile& config) {
  toml::table t;
  if (!config.current_context.empty()) t.insert("current_context", config.current_context);
  toml::table contexts;
  for (const auto& [name, c] : config.contexts) {
    toml::table entry;
    if (!c.admin_url.empty()) entry.insert("admin_url", c.admin_url);
    if (!c.token_file.empty()) entry.insert("token_file", c.token_file);
    if (!c.token.empty()) entry.insert("token", c.token);
    contexts.insert(name, std::move(entry));
  }
  t.insert("contexts", std::move(contexts));
  std::ostringstream text;
  text << "# trackerctl contexts (trackerctl config --help)\n" << t << "\n";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  return core::WriteFileAtomic(path, text.str(), 0600);
}

absl::StatusOr<AdminTarget> ResolveAdmin(const AdminFlags& flags) {
  const std::string path = ConfigPath(flags.config);
  auto config = LoadConfig(path);
  if (!config.ok()) return config.status();
  Context ctx;
  std::string name = flags.context.empty() ? config->current_context : flags.context;
  if (!name.empty()) {
    auto it = config->contexts.find(name);
    if (it == config->contexts.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no context \"", name, "\" in ", path,
                                                     " (trackerctl config view lists them)"));
    }
    ctx = it->second;
  }
  AdminTarget out;
  if (!flags.url.empty()) {
    out = {flags.url, "", "--admin"};
  } else if (std::string env = Env("X1368_ADMIN_URL"); !env.empty()) {
    out = {env, "", "X1368_ADMIN_URL"};
  } else if (!ctx.admin_url.empty()) {
    out = {ctx.admin_url, "", absl::StrCat("context ", name)};
  } else {
    out = {kDefaultAdminUrl, "", "default"};
  }
  if (!flags.token.empty()) {
    out.token = flags.token;
  } else if (!flags.token_file.empty()) {
    auto t = ReadToken(flags.token_file);
    if (!t.ok()) return t.status();
    out.token = *t;
  } else if (std::string env = Env("X1368_ADMIN_TOKEN"); !env.empty()) {
    out.token = env;
  } else if (!ctx.token.empty()) {
    out.token = ctx.token;
  } else if (!ctx.token_file.empty()) {
    auto t = ReadToken(ctx.token_file);
    if (!t.ok()) return t.status();
    out.token = *t;
  }
  if (out.token.empty()) {
    return absl::InvalidArgumentError(
        "no admin token: give --token or --token-file (root writes it to <data_dir>/admin.token), "
        "set X1368_ADMIN_TOKEN, or a context's token_file (trackerctl config set-context)");
  }
  return out;
}

}  // namespace x1368::ctl
