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
// broker: FakeBroker::Transports()).
using TransportFactory = std::function<std::unique_ptr<Transport>(const TransportOptions&)>;

struct Env {
  Executor* executor = nullptr;  // every node's strand and timers; its clock is the node's clock
  FileSystem* fs = PosixFileSystem();
  TransportFactory transports;

  const Clock* clock() const { return &executor->clock(); }
};

}  // namespace x1368::core

#endif  // X1368_CORE_ENV_H_
