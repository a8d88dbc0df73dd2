// The Paho MQTT C++ implementation of Transport (the only code that includes Paho).
#ifndef X1368_CORE_MQTT_TRANSPORT_H_
#define X1368_CORE_MQTT_TRANSPORT_H_

#include <memory>

#include "x1368/core/env.h"
#include "x1368/core/transport.h"

namespace x1368::core {

std::unique_ptr<Transport> MakeMqttTransport(TransportOptions options);

// A TransportFactory of Paho MQTT transports (for Env::transports).
TransportFactory MqttTransports();

}  // namespace x1368::core

#endif  // X1368_CORE_MQTT_TRANSPORT_H_
