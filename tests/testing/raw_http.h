// A bare HTTP/1.1 client for tests that need the exact bytes on the wire: a body cut short, a
// Content-Length that lies, "Expect: 100-continue", chunked encoding. Not thread-safe.
#ifndef X1368_TESTING_RAW_HTTP_H_
#define X1368_TESTING_RAW_HTTP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace x1368::testing {

// What a raw exchange got back: the final response (after any "100 Continue").
struct RawReply {
  int status = 0;
  bool continued = false;  // the server said "100 Continue" first
  std::string headers;     // the final response's status line and headers, each line CRLF-ended
  std::string body;

  // The value of header `name` (case-insensitive), or empty.
  std::string Header(absl::string_view name) const;
};

// One client connection to 127.0.0.1.
class RawConnection {
 public:
  explicit RawConnection(int port);
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  // As much of `bytes` as the server takes; false when it did not take them all (it may answer,
  // and close, before it has read everything: what it answered can still be received).
  bool Send(absl::string_view bytes);
  void Close();
  // Reads until the server closes, within `timeout`: the final response.
  absl::StatusOr<RawReply> Receive(absl::Duration timeout = absl::Seconds(20));

 private:
  int fd_ = -1;
};

// Sends `request` on a new connection and returns the answer.
absl::StatusOr<RawReply> RawExchange(int port, absl::string_view request,
                                     absl::Duration timeout = absl::Seconds(20));

}  // namespace x1368::testing

#endif  // X1368_TESTING_RAW_HTTP_H_
