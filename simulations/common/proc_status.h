// What the kernel says about this process, for the benchmarks and the simulator.
#ifndef X1368_SIMULATIONS_PROC_STATUS_H_
#define X1368_SIMULATIONS_PROC_STATUS_H_

#include <cstdint>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"

namespace x1368::sim {

// A field of /proc/self/status ("VmRSS", "VmHWM", "Threads") in its own unit (kB for sizes);
// -1 if absent.
inline int64_t ProcStatus(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::string v = line.substr(key.size() + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    v = v.substr(0, v.find_first_of(" \t"));
    int64_t n = 0;
    if (absl::SimpleAtoi(v, &n)) return n;
  }
  return -1;
}

}  // namespace x1368::sim

#endif  // X1368_SIMULATIONS_PROC_STATUS_H_
