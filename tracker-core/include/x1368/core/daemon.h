// Process plumbing shared by the daemons' main.cc: clean shutdown on SIGTERM/SIGINT.
#ifndef X1368_CORE_DAEMON_H_
#define X1368_CORE_DAEMON_H_

#include <functional>
#include <thread>

namespace x1368::core {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later;
// call first thing in main(). Also ignores SIGPIPE.
void BlockTerminationSignals();

// Starts a thread that waits for SIGTERM or SIGINT and then calls `on_signal` once. The returned
// thread is detached by the caller or joined after the signal.
std::thread WatchTerminationSignals(std::function<void(int signal)> on_signal);

}  // namespace x1368::core

#endif  // X1368_CORE_DAEMON_H_
