#include "testing/raw_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace x1368::testing {

RawConnection::RawConnection(int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Close();
}

bool RawConnection::Send(absl::string_view bytes) {
  size_t sent = 0;
  while (fd_ >= 0 && sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  return sent == bytes.size();
}

void RawConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::StatusOr<RawReply> RawConnection::Receive(absl::Duration timeout) {
  if (fd_ < 0) return absl::UnavailableError("not connected");
  std::string in;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int left_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left_ms <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("no complete answer within ",
                                                      absl::FormatDuration(timeout),
                                                      "; got: ", in.substr(0, 200)));
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, left_ms) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) break;  // closed (or reset after the answer)
    in.append(buf, static_cast<size_t>(n));
  }
  RawReply reply;
  absl::string_view rest = in;
  while (true) {
    size_t end = rest.find("\r\n\r\n");
    if (!absl::StartsWith(rest, "HTTP/1.1 ") || end == absl::string_view::npos ||
        !absl::SimpleAtoi(rest.substr(9, 3), &reply.status)) {
      return absl::DataLossError(absl::StrCat("not an HTTP response: ", in.substr(0, 200)));
    }
    if (reply.status != 100) {
      reply.headers = std::string(rest.substr(0, end + 2));
      reply.body = std::string(rest.substr(end + 4));
      return reply;
    }
    reply.continued = true;
    rest.remove_prefix(end + 4);
  }
}

std::string RawReply::Header(absl::string_view name) const {
  for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(line.substr(0, colon), name)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

absl::StatusOr<RawReply> RawExchange(int port, absl::string_view request, absl::Duration timeout) {
  RawConnection c(port);
  if (!c.connected()) return absl::UnavailableError(absl::StrCat("connect to port ", port));
  c.Send(request);
  return c.Receive(timeout);
}

}  // namespace x1368::testing
