// Linked into every fuzz target and replay driver: the process-wide settings a fuzzer wants.
//
// - The fuzz build compiles the libraries with -fsanitize=undefined in its recoverable form,
//   which only prints a report and carries on; the runtime is told here to stop at the first
//   report, so libFuzzer (and CTest under ASan/UBSan) treat undefined behaviour as the crash it
//   is. Without a sanitizer runtime nobody calls __ubsan_default_options.
// - protobuf logs every string field with invalid UTF-8 it refuses to parse, and the nodes log
//   every rejection: both are expected millions of times here, so they are silenced.
//   X1368_FUZZ_LOG=<spdlog level> turns the nodes' logging back on when debugging a seed.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <string>

#include "spdlog/spdlog.h"

extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:print_stacktrace=1"; }

namespace {

const bool kQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  const char* level = std::getenv("X1368_FUZZ_LOG");
  spdlog::set_level(level != nullptr ? spdlog::level::from_str(level) : spdlog::level::off);
  return true;
}();

}  // namespace
