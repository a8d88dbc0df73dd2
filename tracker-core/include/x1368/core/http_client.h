// The HTTP client of trackerctl (libcurl behind this header), kept apart from the server so that
// the operator tool links neither the server library nor anything of the daemons.
// Not thread-safe: one client per thread.
#ifndef X1368_CORE_HTTP_CLIENT_H_
#define X1368_CORE_HTTP_CLIENT_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace x1368::core {

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

class HttpClient {
 public:
  // `base_url`: "http://host:port". `bearer_token` is sent as Authorization when non-empty.
  HttpClient(std::string base_url, std::string bearer_token);
  // Network failures (refused, unresolvable, timed out) come back as Unavailable with curl's
  // own explanation and the URL; any HTTP status is a reply.
  absl::StatusOr<HttpReply> Get(const std::string& path);
  absl::StatusOr<HttpReply> Post(const std::string& path, const std::string& body,
                                 const std::string& content_type);

 private:
  absl::StatusOr<HttpReply> Perform(const std::string& method, const std::string& path,
                                    const std::string* body, const std::string& content_type,
                                    long timeout_s);
  std::string base_url_;
  std::string token_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_HTTP_CLIENT_H_
