// Where trackerctl finds root's admin API and its token: flags, environment, then the current
// context of a config file (kubectl-style), then the default. Precedence per setting:
//   --admin URL          > X1368_ADMIN_URL   > context admin_url            > http://127.0.0.1:8368
//   --token / --token-file > X1368_ADMIN_TOKEN > context token / token_file > none
// The config file is TOML:
//   current_context = "lab"
//   [contexts.lab]
//   admin_url = "http://10.0.0.2:8368"
//   token_file = "/var/lib/x1368/root/admin.token"
// at --config, else X1368_CONFIG, else $XDG_CONFIG_HOME/x1368/trackerctl.toml, else
// ~/.config/x1368/trackerctl.toml. A missing file is no context.
#ifndef X1368_TRACKERCTL_CONTEXT_H_
#define X1368_TRACKERCTL_CONTEXT_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace x1368::ctl {

inline constexpr char kDefaultAdminUrl[] = "http://127.0.0.1:8368";

struct Context {
  std::string admin_url;
  std::string token_file;
  std::string token;  // kept in the file (mode 0600); never printed
};

struct ConfigFile {
  std::string current_context;
  std::map<std::string, Context> contexts;
};

// The config file's path: `flag` when set, else as above.
std::string ConfigPath(const std::string& flag);
// The file at `path`; empty when it does not exist. Errors name the file and line.
absl::StatusOr<ConfigFile> LoadConfig(const std::string& path);
// Written atomically, mode 0600 (it may hold a token); its directory is created.
absl::Status SaveConfig(const std::string& path, const ConfigFile& config);

// What the command line said.
struct AdminFlags {
  std::string url, token, token_file, context, config;
};

// Where to send admin requests, resolved.
struct AdminTarget {
  std::string url;
  std::string token;
  std::string url_from;  // "--admin", "X1368_ADMIN_URL", "context lab" or "default"
};

// Resolves `flags` with the environment and the config file, per the precedence above. A token
// is required; its absence is an error that says every place it may come from.
absl::StatusOr<AdminTarget> ResolveAdmin(const AdminFlags& flags);

}  // namespace x1368::ctl

#endif  // X1368_TRACKERCTL_CONTEXT_H_
