#include "x1368/core/daemon.h"

#include <pthread.h>
#include <signal.h>

namespace x1368::core {
namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::thread WatchTerminationSignals(std::function<void(int)> on_signal) {
  return std::thread([on_signal = std::move(on_signal)] {
    sigset_t set = TerminationSet();
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) continue;  // reserved for reloading; ignored for now
      on_signal(sig);
      return;
    }
  });
}

}  // namespace x1368::core
