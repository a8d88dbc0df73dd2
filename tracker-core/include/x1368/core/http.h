// A small HTTP server (cpp-httplib behind this header) for the metrics endpoint and root's
// admin API; the client trackerctl uses is in http_client.h. Handlers run on the server's worker
// threads: a handler that needs node state posts to the node's EventLoop and waits for the answer.
// HttpServer is thread-safe.
//
// A request is either buffered (Get, Post: the handler gets the whole body in HttpRequest::body)
// or streamed (PostStreamed: the handler reads the body itself, piecewise, through an
// HttpBodyReader, so a body of any size costs the server no more than the handler keeps).
// Every connection carries one request: a streamed request refused before its body was read
// leaves that body unread, and it must never be parsed as a next request.
#ifndef X1368_CORE_HTTP_H_
#define X1368_CORE_HTTP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace x1368::core {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> params;  // query parameters
  std::string authorization;                  // the Authorization header
  std::string content_type;                   // the Content-Type header
  std::optional<uint64_t> content_length;     // the Content-Length header, when there is one
  std::string body;                           // buffered requests only
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers{};  // extra ones (WWW-Authenticate)
};

// A registered route: its method and its path pattern (a regular expression over the path).
struct HttpRoute {
  std::string method;
  std::string pattern;
};

// An answer the server gives itself, before or instead of a route's handler: no route for the
// path (404), a route for the path under other methods only (405, `allow` lists them; the server
// sends them as the Allow header), a body refused for its length (411, 413), or another status
// cpp-httplib sets with an empty body (400 for a request that does not parse).
struct HttpError {
  int status = 0;
  absl::Status why;
  std::vector<std::string> allow;
};
using HttpErrorFormat = std::function<HttpResponse(const HttpError&)>;

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// The headers of one part of a multipart/form-data body.
struct HttpFormPart {
  std::string name;  // from Content-Disposition
  std::string filename;
  std::string content_type;
};

// The body of a streamed request, read on the handler's thread with one of the two calls, once.
// The pieces are as the server receives them (a few KiB each). A callback's error stops the
// delivery and is what the call returns; the rest of the body is still read and dropped (it is
// within the body limit, checked before the first byte), so the client, which may still be
// sending, gets the handler's answer rather than a reset connection.
class HttpBodyReader {
 public:
  using DataFn = std::function<absl::Status(absl::string_view piece)>;
  using PartFn = std::function<absl::Status(const HttpFormPart& part)>;

  // The raw body; InvalidArgument for a multipart/form-data body (ReadForm reads those).
  virtual absl::Status Read(const DataFn& on_data) = 0;
  // A multipart/form-data body, one part at a time: `on_part` at the start of each part, then
  // `on_data` with that part's bytes. A part ends where the next one starts, or where the call
  // returns OK. InvalidArgument when the body is of another type, ends before its
  // Content-Length, or is not well-formed multipart/form-data.
  virtual absl::Status ReadForm(const PartFn& on_part, const DataFn& on_data) = 0;

 protected:
  ~HttpBodyReader() = default;
};

// A POST whose handler reads the body itself.
struct HttpStreamedRoute {
  // Judges the request on its headers alone, before any of its body is read; an error refuses
  // it. Also run when the client sent "Expect: 100-continue" (curl does for a body over 1 MiB),
  // so that such a client hears the refusal before it sends the body. Optional.
  std::function<absl::Status(const HttpRequest&)> admit;
  std::function<HttpResponse(const HttpRequest&, HttpBodyReader& body)> handle;
  // The answer to a refusal by `admit`, or by the server itself: a body without a Content-Length
  // (InvalidArgument; a limit must be known before the body is read) or over the server's limit
  // (ResourceExhausted). Unset: the server's error format (HttpServer::set_error_format).
  std::function<HttpResponse(const absl::Status&)> refuse;
};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Register before Start().
  void Get(const std::string& path, HttpHandler handler);
  void Post(const std::string& path, HttpHandler handler);
  void PostStreamed(const std::string& path, HttpStreamedRoute route);
  // The largest body accepted, buffered or streamed (1 MiB unless set). A larger one, and a POST
  // without a Content-Length (chunked, or read until the connection closes), is refused before
  // any of its body is read: 413 or 411, or through the streamed route's `refuse`.
  void set_max_body_bytes(size_t bytes);
  // How the server renders the errors it answers itself (HttpError); a streamed route without
  // its own `refuse` uses it too. Unset: the message as text/plain. Set before Start().
  void set_error_format(HttpErrorFormat format);
  // Every route registered, in registration order (an API description is checked against it).
  std::vector<HttpRoute> routes() const;

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

// Whether an HttpServer could listen on `listen` now: Unavailable, naming the port, when another
// process listens on it (as HttpServer::Start would say). A daemon checks before it connects to
// its broker, so that a second instance started by mistake fails before it takes the first one's
// MQTT session. Port 0 is always free.
absl::Status CheckListenFree(const std::string& listen);

}  // namespace x1368::core

#endif  // X1368_CORE_HTTP_H_
