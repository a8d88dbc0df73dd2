// `trackerctl completion bash`: a bash completion script generated from the CLI11 app itself, so
// it names exactly the verbs and flags trackerctl has.
#ifndef X1368_TRACKERCTL_COMPLETION_H_
#define X1368_TRACKERCTL_COMPLETION_H_

#include <string>

#include "CLI/CLI.hpp"

namespace x1368::ctl {

// Source it (`source <(trackerctl completion bash)`) or put it in
// /etc/bash_completion.d/trackerctl.
std::string BashCompletion(const CLI::App& app);

}  // namespace x1368::ctl

#endif  // X1368_TRACKERCTL_COMPLETION_H_
