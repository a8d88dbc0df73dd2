#include "simulations/sim/worker.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "simulations/common/proc_status.h"
#include "simulations/sim/devices.h"
#include "simulations/sim/sim_link.h"
#include "x1368/core/file_util.h"
#include "x1368/core/mqtt_transport.h"

namespace x1368::sim {
namespace {

int Fail(const std::string& what) {
  fprintf(stderr, "tracker-sim worker %d: %s\n", getpid(), what.c_str());
  return 1;
}

bool WriteLine(int fd, const std::string& line) {
  std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = write(fd, out.data() + done, out.size() - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int RunWorker(const std::string& plan_path) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the sim
  // Replies go to the parent on the original stdout; anything else printing to stdout (a log
  // sink) goes to stderr instead, so it cannot corrupt them.
  const int reply_fd = dup(STDOUT_FILENO);
  dup2(STDERR_FILENO, STDOUT_FILENO);

  auto text = core::ReadFile(plan_path);
  if (!text.ok()) return Fail(text.status().ToString());
  absl::flat_hash_map<std::string, std::string> keys;
  std::vector<DevicePlan> plans;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first == "device") {
      DevicePlan p;
      if (absl::Status s = ParsePlanLine(kv.second, &p); !s.ok()) return Fail(s.ToString());
      plans.push_back(std::move(p));
    } else {
      keys[kv.first] = kv.second;
    }
  }
  double loss = 0;
  uint64_t seed = 1;
  int threads = 1;
  int64_t offline_delay_ms = 0, report_interval_ms = 0;
  if (!absl::SimpleAtod(keys["loss"], &loss) || !absl::SimpleAtoi(keys["seed"], &seed) ||
      !absl::SimpleAtoi(keys["threads"], &threads) || threads < 1 ||
      !absl::SimpleAtoi(keys["offline_delay_ms"], &offline_delay_ms) ||
      !absl::SimpleAtoi(keys["report_interval_ms"], &report_interval_ms)) {
    return Fail(absl::StrCat("bad plan file ", plan_path));
  }
  auto pki = testing::TestPki::Open(keys["pki_dir"], keys["root_id"]);
  if (!pki.ok()) return Fail(pki.status().ToString());

  core::Executor executor(core::RealClock::Get(), threads, /*blocking_threads=*/1);
  FleetCounters counters;
  DeviceGroupOptions go;
  go.storage_memory = keys["storage"] != "disk";
  go.data_dir = keys["data_dir"];
  go.report_interval = absl::Milliseconds(report_interval_ms);
  {
    DeviceGroup group(
        &executor,
        CountedLinks(core::MqttTransports(&executor), &counters, pki->root_id(), loss, seed), &*pki,
        go);
    for (const DevicePlan& p : plans) {
      if (absl::Status s = group.Add(p); !s.ok()) return Fail(s.ToString());
    }
    if (!WriteLine(reply_fd, absl::StrCat("ready ", group.online()))) return 1;

    std::string input;
    bool campaign = false, offline_started = false;
    absl::Time campaign_start;
    int power_cuts = 0;
    while (true) {
      pollfd p{STDIN_FILENO, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[512];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0) return Fail("the sim went away");
        input.append(buf, static_cast<size_t>(n));
      }
      size_t eol;
      while ((eol = input.find('\n')) != std::string::npos) {
        std::string line = input.substr(0, eol);
        input.erase(0, eol + 1);
        if (line == "campaign") {
          campaign = true;
          campaign_start = absl::Now();
          group.ArmPowerCuts();
        } else if (absl::StartsWith(line, "stop")) {
          group.Stop();
          int bricked = group.Bricked(absl::HexStringToBytes(absl::StripPrefix(line, "stop ")));
          const LinkCounters& c = counters.devices;
          WriteLine(reply_fd,
                    absl::StrCat("result bricked=", bricked, " power_cuts=", power_cuts,
                                 " rss_kb=", ProcStatus("VmHWM"), " messages=", c.messages.load(),
                                 " image_bytes=", c.image_bytes.load(), " control_bytes=",
                                 c.control_bytes.load(), " lost=", c.lost.load()));
          return 0;
        } else {
          return Fail(absl::StrCat("unknown command '", line, "'"));
        }
      }
      power_cuts += group.RebootCutDevices(absl::Milliseconds(200));
      if (campaign && !offline_started &&
          absl::Now() - campaign_start >= absl::Milliseconds(offline_delay_ms)) {
        offline_started = true;
        if (absl::Status s = group.StartOffline(); !s.ok()) return Fail(s.ToString());
      }
    }
  }
}

}  // namespace x1368::sim
