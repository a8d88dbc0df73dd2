// The Paho MQTT C++ implementation of Transport (the only code that includes Paho).
#ifndef X1368_CORE_MQTT_TRANSPORT_H_
#define X1368_CORE_MQTT_TRANSPORT_H_

#include <memory>

#include "x1368/core/env.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// Its reconnects, backoff timers (on the executor's Clock) and sending run on `executor`, which
// must outlive the transport: a transport owns no thread.
std::unique_ptr<Transport> MakeMqttTransport(TransportOptions options, Executor* executor);

// A TransportFactory of Paho MQTT transports on `executor` (for Env::transports).
TransportFactory MqttTransports(Executor* executor);

}  // namespace x1368::core

#endif  // X1368_CORE_MQTT_TRANSPORT_H_
