// What a node is built from (as LevelDB's Env): the clock that also drives its timers, the
// threads it runs on, where its files live, and how it reaches a broker. The daemons build one
// Env per process (real clock, a small pool, the disk, MQTT); tests and the simulator build one
// for many nodes (the same pool, MemFileSystems with power cuts, the in-memory broker).
#ifndef X1368_CORE_ENV_H_
#define X1368_CORE_ENV_H_

#include <functional>
#include <memory>

#include "x1368/core/clock.h"
#include "x1368/core/executor.h"
#include "x1368/core/file_system.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// Makes the transport for one link (MQTT: MqttTransports() in mqtt_transport.h; the in-memory
// broker: FakeBroker::Transports()). A factory decides by the link's options alone, so one
// factory can serve a node whose links go to different brokers (a gateway with its subtree on
// another broker than its parent).
using TransportFactory = std::function<std::unique_ptr<Transport>(const TransportOptions&)>;

// The broker URI scheme of the in-process broker: a link whose broker_uri starts with it is
// served by a FakeBroker (FakeBroker::TransportsOr routes by it). The simulator gives gateways a
// downstream "memory://" link and an upstream tcp:// one, for fleets beyond the machine's sockets.
inline constexpr char kMemoryScheme[] = "memory://";

struct Env {
  Executor* executor = nullptr;  // every node's strand and timers; its clock is the node's clock
  FileSystem* fs = PosixFileSystem();
  TransportFactory transports;
  // The node's system wall clock when it is not the executor's: a test's device whose clock is
  // wrong (its timers still run on the executor's monotonic time). Not owned.
  const Clock* wall_clock = nullptr;

  const Clock* clock() const { return wall_clock != nullptr ? wall_clock : &executor->clock(); }
};

}  // namespace x1368::core

#endif  // X1368_CORE_ENV_H_
