#include "x1368/core/http.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <regex>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace x1368::core {

struct HttpServer::Impl {
  httplib::Server server;
  size_t max_body_bytes = 1 << 20;
  struct Streamed {
    std::regex pattern;  // as cpp-httplib matches the path
    std::shared_ptr<const HttpStreamedRoute> route;
  };
  std::vector<Streamed> streamed;
  struct Route {
    HttpRoute route;
    std::regex pattern;
  };
  std::vector<Route> routes;
  HttpErrorFormat error_format;

  void AddRoute(const std::string& method, const std::string& pattern) {
    routes.push_back({{method, pattern}, std::regex(pattern)});
  }
  // The methods of the routes that match `path`, each once.
  std::vector<std::string> MethodsFor(const std::string& path) const {
    std::vector<std::string> out;
    for (const Route& r : routes) {
      if (std::regex_match(path, r.pattern) &&
          std::find(out.begin(), out.end(), r.route.method) == out.end()) {
        out.push_back(r.route.method);
      }
    }
    return out;
  }

  const HttpStreamedRoute* StreamedRoute(const httplib::Request& req) const {
    if (req.method != "POST") return nullptr;
    for (const Streamed& s : streamed) {
      if (std::regex_match(req.path, s.pattern)) return s.route.get();
    }
    return nullptr;
  }
};

namespace {

// The request without its body.
HttpRequest Describe(const httplib::Request& req) {
  HttpRequest r;
  r.method = req.method;
  r.path = req.path;
  for (const auto& [k, v] : req.params) r.params[k] = v;
  r.authorization = req.get_header_value("Authorization");
  r.content_type = req.get_header_value("Content-Type");
  uint64_t length = 0;
  if (req.has_header("Content-Length") &&
      absl::SimpleAtoi(req.get_header_value("Content-Length"), &length)) {
    r.content_length = length;
  }
  return r;
}

bool HasBody(const httplib::Request& req) {
  return req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
}

// Whether the body may be read at all: its length must be known, and within the limit, before the
// first byte (cpp-httplib itself would read a chunked body, or one without a length, unbounded,
// and reads an oversized one to its end before it answers 413).
absl::Status CheckBodyLength(const HttpRequest& r, size_t max_bytes) {
  if (!r.content_length) {
    return absl::InvalidArgumentError(
        "the request body needs a Content-Length (chunked transfer encoding is not accepted)");
  }
  if (*r.content_length > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("a request body of ", *r.content_length,
                                                     " bytes is over the limit of ", max_bytes,
                                                     " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Admit(const HttpStreamedRoute& route, const HttpRequest& r, size_t max_bytes) {
  if (route.admit) {
    if (absl::Status s = route.admit(r); !s.ok()) return s;
  }
  return CheckBodyLength(r, max_bytes);
}

void Write(const HttpResponse& out, httplib::Response& res) {
  res.status = out.status;
  for (const auto& [name, value] : out.headers) res.set_header(name, value);
  res.set_content(out.body, out.content_type.c_str());
}

// The default error format: the message as text (the daemons' metrics endpoints).
HttpResponse PlainError(const HttpError& e) {
  return HttpResponse{e.status, "text/plain", absl::StrCat(e.why.message(), "\n")};
}

// A buffered route's refusal of a body it will not read.
void RefuseBody(const HttpErrorFormat& format, const absl::Status& why, httplib::Response& res) {
  Write(format({why.code() == absl::StatusCode::kResourceExhausted ? 413 : 411, why, {}}), res);
}

// The status of a streamed route's refusal when it renders none itself.
int RefusalStatus(const absl::Status& why) {
  switch (why.code()) {
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    default:
      return 400;
  }
}

httplib::Server::Handler Adapt(HttpHandler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r = Describe(req);
    r.body = req.body;
    Write(handler(r), res);
  };
}

class BodyReader final : public HttpBodyReader {
 public:
  BodyReader(const httplib::Request& req, httplib::Response& res,
             const httplib::ContentReader& reader)
      : req_(req), res_(res), reader_(reader) {}

  absl::Status Read(const DataFn& on_data) override {
    if (absl::Status s = Begin(); !s.ok()) return s;
    if (req_.is_multipart_form_data()) {
      return absl::InvalidArgumentError("the body is multipart/form-data, not a raw body");
    }
    absl::Status failed;
    bool read = reader_([&](const char* data, size_t n) {
      if (failed.ok()) failed = on_data(absl::string_view(data, n));
      return true;  // after a failure: read and drop the rest
    });
    return Finish(read, failed, "the body ended before its Content-Length");
  }

  absl::Status ReadForm(const PartFn& on_part, const DataFn& on_data) override {
    if (absl::Status s = Begin(); !s.ok()) return s;
    if (!req_.is_multipart_form_data()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the body is not multipart/form-data (Content-Type \"",
                       req_.get_header_value("Content-Type"), "\")"));
    }
    absl::Status failed;
    bool read = reader_(
        [&](const httplib::MultipartFormData& part) {
          if (failed.ok()) failed = on_part({part.name, part.filename, part.content_type});
          return true;
        },
        [&](const char* data, size_t n) {
          if (failed.ok()) failed = on_data(absl::string_view(data, n));
          return true;
        });
    return Finish(read, failed,
                  "the body ended before its Content-Length, or is not well-formed "
                  "multipart/form-data (a boundary in the Content-Type, each part opened by it, "
                  "the last closed by it)");
  }

 private:
  absl::Status Begin() {
    if (used_) return absl::FailedPreconditionError("the request body was read already");
    used_ = true;
    return absl::OkStatus();
  }

  // cpp-httplib says why a read failed only through the response status it set.
  absl::Status Finish(bool read, const absl::Status& failed, absl::string_view malformed) const {
    if (!failed.ok()) return failed;
    if (read) return absl::OkStatus();
    if (res_.status == 413) return absl::ResourceExhaustedError("the body is over the limit");
    if (res_.status == 415) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Content-Encoding \"", req_.get_header_value("Content-Encoding"), "\" is not supported"));
    }
    return absl::InvalidArgumentError(malformed);
  }

  const httplib::Request& req_;
  httplib::Response& res_;
  const httplib::ContentReader& reader_;
  bool used_ = false;
};

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

namespace {

absl::Status PortInUse(const std::string& listen, int port) {
  return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": port ", port,
                                             " is already in use (another process, or another "
                                             "instance of this daemon, listens on it)"));
}

}  // namespace

absl::Status CheckListenFree(const std::string& listen) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(listen, &host, &port); !s.ok()) return s;
  if (port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  if (::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return absl::OkStatus();  // Start() says what is wrong with the address
  }
  absl::Status result = absl::OkStatus();
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    const bool in_use = ::bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE;
    ::close(fd);
    if (in_use) {
      result = PortInUse(listen, port);
      break;
    }
  }
  ::freeaddrinfo(found);
  return result;
}

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {
  Impl* impl = impl_.get();
  impl->error_format = PlainError;
  impl->server.set_payload_max_length(impl->max_body_bytes);
  // One request per connection: the body of a request refused unread is never taken for the next
  // request. The admin API and the metrics endpoint gain nothing from keep-alive.
  impl->server.set_keep_alive_max_count(1);
  // A port is this server's alone. cpp-httplib's default sets SO_REUSEPORT, with which a second
  // process binds the same port without an error and the kernel shares the connections between
  // the two (a second root answered every other admin request). SO_REUSEADDR alone still lets a
  // restarted daemon bind its port while the old connections are in TIME_WAIT.
  impl->server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Buffered bodies: refused before cpp-httplib reads them (streamed ones are checked with their
  // route's admission, below).
  impl->server.set_pre_routing_handler([impl](const httplib::Request& req, httplib::Response& res) {
    if (!HasBody(req) || impl->StreamedRoute(req) != nullptr) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    absl::Status s = CheckBodyLength(Describe(req), impl->max_body_bytes);
    if (s.ok()) return httplib::Server::HandlerResponse::Unhandled;
    RefuseBody(impl->error_format, s, res);
    return httplib::Server::HandlerResponse::Handled;
  });
  // What no handler answered: cpp-httplib's 404 for a path without a route for the method (a 405
  // when another method has one) and its 400 for a request it cannot parse, each in the server's
  // error format. A handler's own error answers carry a body and are left as they are.
  impl->server.set_error_handler(httplib::Server::HandlerWithResponse(
      [impl](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        HttpError e{res.status, absl::OkStatus(), {}};
        if (res.status == 404) e.allow = impl->MethodsFor(req.path);
        if (res.status == 404 && !e.allow.empty()) {
          e.status = 405;
          e.why =
              absl::UnimplementedError(absl::StrCat(req.method, " is not allowed on ", req.path,
                                                    "; it takes ", absl::StrJoin(e.allow, ", ")));
        } else if (res.status == 404) {
          e.why = absl::NotFoundError(absl::StrCat("no resource at ", req.path));
        } else {
          e.why = absl::InvalidArgumentError(absl::StrCat("HTTP ", res.status,
                                                          ": the request was "
                                                          "not understood"));
        }
        HttpResponse out = impl->error_format(e);
        out.status = e.status;
        if (e.status == 405) out.headers.emplace_back("Allow", absl::StrJoin(e.allow, ", "));
        Write(out, res);
        return httplib::Server::HandlerResponse::Handled;
      }));
  // "Expect: 100-continue": the client waits for our word before it sends the body, so a refusal
  // costs it nothing. cpp-httplib writes what we return (100: go on) before routing.
  impl->server.set_expect_100_continue_handler(
      [impl](const httplib::Request& req, httplib::Response& res) {
        HttpRequest r = Describe(req);
        if (const HttpStreamedRoute* route = impl->StreamedRoute(req)) {
          absl::Status s = Admit(*route, r, impl->max_body_bytes);
          if (s.ok()) return 100;
          Write(route->refuse(s), res);
          return res.status;
        }
        if (HasBody(req)) {
          absl::Status s = CheckBodyLength(r, impl->max_body_bytes);
          if (s.ok()) return 100;
          RefuseBody(impl->error_format, s, res);
          return res.status;
        }
        return 100;
      });
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Get(const std::string& path, HttpHandler handler) {
  impl_->AddRoute("GET", path);
  impl_->server.Get(path, Adapt(std::move(handler)));
}

void HttpServer::Post(const std::string& path, HttpHandler handler) {
  impl_->AddRoute("POST", path);
  impl_->server.Post(path, Adapt(std::move(handler)));
}

void HttpServer::PostStreamed(const std::string& path, HttpStreamedRoute route) {
  Impl* impl = impl_.get();
  if (!route.refuse) {
    // Looked up when used: the error format may be set after the route.
    route.refuse = [impl](const absl::Status& why) {
      return impl->error_format({RefusalStatus(why), why, {}});
    };
  }
  auto shared = std::make_shared<const HttpStreamedRoute>(std::move(route));
  impl_->streamed.push_back({std::regex(path), shared});
  impl_->AddRoute("POST", path);
  impl_->server.Post(path, [impl, shared](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) {
    HttpRequest r = Describe(req);
    if (absl::Status s = Admit(*shared, r, impl->max_body_bytes); !s.ok()) {
      return Write(shared->refuse(s), res);
    }
    BodyReader body(req, res, reader);
    Write(shared->handle(r, body), res);
  });
}

void HttpServer::set_error_format(HttpErrorFormat format) {
  impl_->error_format = std::move(format);
}

std::vector<HttpRoute> HttpServer::routes() const {
  std::vector<HttpRoute> out;
  for (const Impl::Route& r : impl_->routes) out.push_back(r.route);
  return out;
}

void HttpServer::set_max_body_bytes(size_t bytes) {
  impl_->max_body_bytes = bytes;
  impl_->server.set_payload_max_length(bytes);
}

absl::StatusOr<int> HttpServer::Start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(listen, &host, &port); !s.ok()) return s;
  errno = 0;
  if (port == 0) {
    port = impl_->server.bind_to_any_port(host);
    if (port < 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot bind ", host, ": ", errno != 0 ? std::strerror(errno) : "failed"));
    }
  } else if (!impl_->server.bind_to_port(host, port)) {
    const int error = errno;
    if (error == EADDRINUSE) return PortInUse(listen, port);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ",
                                               error != 0 ? std::strerror(error) : "bind failed"));
  }
  port_ = port;
  thread_ = std::thread([this] { impl_->server.listen_after_bind(); });
  // cpp-httplib's stop() does nothing until its loop has marked itself running: a Stop() right
  // after Start() would leave the thread in accept() for good.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!impl_->server.is_running() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return port;
}

void HttpServer::Stop() {
  impl_->server.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace x1368::core
