// A small HTTP server (cpp-httplib behind this header) for the metrics endpoint and root's
// admin API; the client trackerctl uses is in http_client.h. Handlers run on the server's worker
// threads: a handler that needs node state posts to the node's EventLoop and waits for the answer.
// HttpServer is thread-safe.
#ifndef X1368_CORE_HTTP_H_
#define X1368_CORE_HTTP_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace x1368::core {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> params;  // query parameters
  std::string authorization;                  // the Authorization header
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before Start().
  void Get(const std::string& path, HttpHandler handler);
  void Post(const std::string& path, HttpHandler handler);
  void set_max_body_bytes(size_t bytes);

  // Binds `listen` ("host:port"; port 0 picks a free one) and serves in the background.
  // Returns the bound port.
  absl::StatusOr<int> Start(const std::string& listen);
  void Stop();
  int port() const { return port_; }  // once started

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::thread thread_;
};

// Splits "host:port"; the port must be 0-65535.
absl::Status ParseHostPort(const std::string& listen, std::string* host, int* port);

}  // namespace x1368::core

#endif  // X1368_CORE_HTTP_H_
