// With MQTT device links the sim spreads the devices over worker processes (tracker-sim --worker
// PLAN), each hosting a bounded number of Paho clients: Paho C's cost per message grows with the
// clients one process holds, so 10,000 clients in one process would measure Paho, not the fleet.
//
// The plan file holds `key value` lines (pki_dir, root_id, storage, data_dir, loss, seed,
// threads, offline_delay_ms, report_interval_ms) and one `device <plan line>` per device. The
// parent talks to a worker over its stdin and stdout, a line each way:
//   worker -> parent  "ready <devices powered on>"        once every device is built and started
//   parent -> worker  "campaign"                           power cuts armed; offline devices come
//                                                          online offline_delay_ms later
//   parent -> worker  "stop <hex sha256 of the new image>"     stop every device, then answer:
//   worker -> parent  "result bricked=N power_cuts=N rss_kb=N messages=N image_bytes=N
//                      control_bytes=N lost=N"            and exit 0
// A worker whose stdin closes (its parent died) exits at once.
#ifndef X1368_SIM_WORKER_H_
#define X1368_SIM_WORKER_H_

#include <string>

namespace x1368::sim {

// The body of `tracker-sim --worker PLAN`; returns the exit code.
int RunWorker(const std::string& plan_path);

}  // namespace x1368::sim

#endif  // X1368_SIM_WORKER_H_
