// The HTTP client of trackerctl (libcurl behind this header), kept apart from the server so that
// the operator tool links neither the server library nor anything of the daemons.
// Not thread-safe: one client per thread.
#ifndef X1368_CORE_HTTP_CLIENT_H_
#define X1368_CORE_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace x1368::core {

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// One part of a multipart/form-data body: `data` from memory, or, when `file_path` is set, the
// file's bytes, read from disk as they are sent.
struct HttpFormField {
  std::string name;
  std::string data;
  std::string file_path;
  std::string content_type = "application/octet-stream";
};

class HttpClient {
 public:
  // `base_url`: "http://host:port". `bearer_token` is sent as Authorization when non-empty.
  HttpClient(std::string base_url, std::string bearer_token);
  // Network failures (refused, unresolvable, timed out, TLS) come back as Unavailable: "cannot
  // reach BASE_URL: connection refused (curl's own words)"; any HTTP status is a reply.
  absl::StatusOr<HttpReply> Get(const std::string& path);
  absl::StatusOr<HttpReply> Post(const std::string& path, const std::string& body,
                                 const std::string& content_type);
  // A multipart/form-data POST, as `curl -F` sends it: the Content-Length is known up front (the
  // files' sizes), and a file part is streamed from disk in pieces, so memory stays small
  // whatever the file's size. No overall time limit: the transfer fails once nothing has moved
  // for `stall_s` seconds.
  absl::StatusOr<HttpReply> PostForm(const std::string& path,
                                     const std::vector<HttpFormField>& fields, long stall_s = 120);

 private:
  struct Body;  // what a POST sends
  absl::StatusOr<HttpReply> Perform(const std::string& method, const std::string& path,
                                    const Body* body, long timeout_s, long stall_s = 0);
  std::string base_url_;
  std::string token_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_HTTP_CLIENT_H_
