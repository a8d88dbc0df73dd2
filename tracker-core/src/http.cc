#include "x1368/core/http.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace x1368::core {

struct HttpServer::Impl {
  httplib::Server server;
};

namespace {

httplib::Server::Handler Adapt(HttpHandler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.method = req.method;
    r.path = req.path;
    for (const auto& [k, v] : req.params) r.params[k] = v;
    r.authorization = req.get_header_value("Authorization");
    r.body = req.body;
    HttpResponse out = handler(r);
    res.status = out.status;
    res.set_content(out.body, out.content_type.c_str());
  };
}

}  // namespace

absl::Status ParseHostPort(const std::string& listen, std::string* host, int* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("\"", listen, "\" is not host:port"));
  }
  *host = listen.substr(0, colon);
  if (!absl::SimpleAtoi(listen.substr(colon + 1), port) || *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", listen, "\" has no valid port"));
  }
  return absl::OkStatus();
}

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {
  impl_->server.set_payload_max_length(1 << 20);
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Get(const std::string& path, HttpHandler handler) {
  impl_->server.Get(path, Adapt(std::move(handler)));
}

void HttpServer::Post(const std::string& path, HttpHandler handler) {
  impl_->server.Post(path, Adapt(std::move(handler)));
}

void HttpServer::set_max_body_bytes(size_t bytes) { impl_->server.set_payload_max_length(bytes); }

absl::StatusOr<int> HttpServer::Start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(listen, &host, &port); !s.ok()) return s;
  if (port == 0) {
    port = impl_->server.bind_to_any_port(host);
    if (port < 0) return absl::UnavailableError(absl::StrCat("cannot bind ", host));
  } else if (!impl_->server.bind_to_port(host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot bind ", listen));
  }
  port_ = port;
  thread_ = std::thread([this] { impl_->server.listen_after_bind(); });
  return port;
}

void HttpServer::Stop() {
  impl_->server.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace x1368::core
