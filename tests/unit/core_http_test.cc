// core::HttpServer's bodies: a streamed POST route reads its body piecewise (raw or one
// multipart/form-data part at a time) and still answers when it stops reading half-way; every
// body is judged by its Content-Length before any of it is read (413 over the limit, refused
// without one), buffered or streamed, with or without "Expect: 100-continue"; what no route
// answers is a 404 or a 405 with Allow. Real sockets on 127.0.0.1: libcurl (what trackerctl
// sends) or the exact bytes of a raw connection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "testing/raw_http.h"
#include "testing/status_matchers.h"
#include "x1368/core/http.h"
#include "x1368/core/http_client.h"

namespace x1368::testing {
namespace {

using ::testing::HasSubstr;

constexpr size_t kLimit = 16 << 20;

std::string Post(const std::string& path, const std::string& content_type, uint64_t length,
                 const std::string& extra_headers = "") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", length, "\r\n", extra_headers, "\r\n");
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set_max_body_bytes(kLimit);
    server_.Post("/buffered", [](const core::HttpRequest& req) {
      return core::HttpResponse{200, "text/plain", absl::StrCat(req.body.size())};
    });
    // Counts the raw body; stops reading after `stop_after` bytes when the query asks.
    core::HttpStreamedRoute count;
    count.admit = [](const core::HttpRequest& req) {
      if (req.params.count("deny") > 0) return absl::PermissionDeniedError("denied by admit");
      return absl::OkStatus();
    };
    count.handle = [](const core::HttpRequest& req, core::HttpBodyReader& body) {
      uint64_t stop_after = 0;
      if (auto it = req.params.find("stop_after"); it != req.params.end()) {
        stop_after = std::stoull(it->second);
      }
      uint64_t n = 0;
      size_t pieces = 0;
      absl::Status s = body.Read([&](absl::string_view piece) {
        n += piece.size();
        ++pieces;
        if (stop_after > 0 && n >= stop_after) return absl::CancelledError("enough");
        return absl::OkStatus();
      });
      if (!s.ok()) return core::HttpResponse{422, "text/plain", std::string(s.message())};
      return core::HttpResponse{200, "text/plain",
                                absl::StrCat(n, " bytes in ", pieces > 1 ? "pieces" : "one piece")};
    };
    server_.PostStreamed("/count", count);
    // The parts of a form: "name:size" each.
    core::HttpStreamedRoute form;
    form.handle = [](const core::HttpRequest&, core::HttpBodyReader& body) {
      std::vector<std::string> parts;
      uint64_t size = 0;
      absl::Status s = body.ReadForm(
          [&](const core::HttpFormPart& part) {
            if (!parts.empty()) absl::StrAppend(&parts.back(), size);
            parts.push_back(absl::StrCat(part.name, "(", part.filename, "):"));
            size = 0;
            return absl::OkStatus();
          },
          [&](absl::string_view piece) {
            size += piece.size();
            return absl::OkStatus();
          });
      if (!s.ok()) return core::HttpResponse{400, "text/plain", std::string(s.message())};
      if (!parts.empty()) absl::StrAppend(&parts.back(), size);
      std::string out;
      for (const std::string& p : parts) absl::StrAppend(&out, p, " ");
      return core::HttpResponse{200, "text/plain", out};
    };
    server_.PostStreamed("/form", form);
    auto port = server_.Start("127.0.0.1:0");
    ASSERT_OK(port);
    port_ = *port;
    url_ = absl::StrCat("http://127.0.0.1:", port_);
  }

  core::HttpServer server_;
  int port_ = 0;
  std::string url_;
};

TEST_F(HttpServerTest, AStreamedBodyArrivesInPieces) {
  core::HttpClient http(url_, "");
  auto r = http.Post("/count", std::string(200 * 1024, 'x'), "application/octet-stream");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "204800 bytes in pieces");
}

TEST_F(HttpServerTest, AFormIsReadOnePartAtATime) {
  core::HttpClient http(url_, "");
  auto r = http.PostForm("/form", {{"first", std::string(1000, 'a'), ""},
                                   {"second", std::string(100 * 1024, 'b'), ""}});
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "first():1000 second():102400 ");
  // A raw body is not a form, and a form is not a raw body.
  r = http.Post("/form", "abc", "application/octet-stream");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_THAT(r->body, HasSubstr("not multipart/form-data"));
  r = http.PostForm("/count", {{"first", "abc", ""}});
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 422);
  EXPECT_THAT(r->body, HasSubstr("is multipart/form-data"));
}

// The handler stops reading at 16 KiB of a 12 MiB body: the rest is read and dropped, so a
// client that sends its whole body before it reads the answer (as many do) can, and then gets
// the handler's answer. Had the server closed the connection at once, that client's send would
// have met a reset half-way.
TEST_F(HttpServerTest, AHandlerThatStopsReadingStillAnswers) {
  std::string body(12 << 20, 'x');
  RawConnection c(port_);
  ASSERT_TRUE(c.connected());
  EXPECT_TRUE(
      c.Send(Post("/count?stop_after=16384", "application/octet-stream", body.size()) + body))
      << "the server stopped taking the body";
  auto r = c.Receive();
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(r->body, "enough");
  // libcurl, which reads while it sends, gets the same answer.
  core::HttpClient http(url_, "");
  auto curl = http.Post("/count?stop_after=16384", body, "application/octet-stream");
  ASSERT_OK(curl);
  EXPECT_EQ(curl->status, 422) << curl->body;
}

TEST_F(HttpServerTest, ABodyOverTheLimitIsRefusedBeforeItIsRead) {
  for (const std::string path : {"/buffered", "/count", "/form"}) {
    for (const std::string expect : {"", "Expect: 100-continue\r\n"}) {
      SCOPED_TRACE(path + " " + expect);
      // The headers alone: an answer that waited for the body would not come (the connection
      // stays open, and cpp-httplib's read timeout is 5 s).
      auto r = RawExchange(port_, Post(path, "application/octet-stream", kLimit + 1, expect),
                           absl::Seconds(3));
      ASSERT_OK(r);
      EXPECT_FALSE(r->continued);
      EXPECT_EQ(r->status, 413) << r->body;
      EXPECT_THAT(r->body, HasSubstr(absl::StrCat(kLimit + 1, " bytes is over the limit of ",
                                                  kLimit, " bytes")));
    }
  }
  // At the limit: read.
  std::string body(kLimit, 'x');
  auto r = RawExchange(port_, Post("/count", "application/octet-stream", kLimit) + body);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = RawExchange(port_, Post("/buffered", "application/octet-stream", kLimit) + body);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, absl::StrCat(kLimit));
}

// A chunked body has no length to judge before it is read (and cpp-httplib reads one without
// bound): refused.
TEST_F(HttpServerTest, ABodyWithoutAContentLengthIsRefused) {
  for (const std::string path : {"/buffered", "/count"}) {
    SCOPED_TRACE(path);
    std::string request = Post(path, "application/octet-stream", 0);
    request.replace(request.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
    auto r = RawExchange(port_, request + "5\r\nhello\r\n0\r\n\r\n");
    ASSERT_OK(r);
    EXPECT_EQ(r->status, path == "/buffered" ? 411 : 400) << r->body;
    EXPECT_THAT(r->body, HasSubstr("needs a Content-Length"));
  }
}

// A route's admit() refuses on the headers; with "Expect: 100-continue" the client hears it
// before it sends the body. Without a refuse() of the route's, the answer is plain text.
TEST_F(HttpServerTest, AdmitRefusesOnTheHeaders) {
  for (const std::string expect : {"", "Expect: 100-continue\r\n"}) {
    SCOPED_TRACE(expect);
    auto r = RawExchange(port_, Post("/count?deny=1", "application/octet-stream", 10, expect) +
                                    (expect.empty() ? "0123456789" : ""));
    ASSERT_OK(r);
    EXPECT_FALSE(r->continued);
    EXPECT_EQ(r->status, 403) << r->body;
    EXPECT_EQ(r->body, "denied by admit\n");
  }
  // Admitted: "continue", then the body is read.
  auto r = RawExchange(
      port_,
      Post("/count", "application/octet-stream", 10, "Expect: 100-continue\r\n") + "0123456789");
  ASSERT_OK(r);
  EXPECT_TRUE(r->continued);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, "10 bytes in one piece");
}

// What no route answers, the server answers itself: 404 for an unknown path, 405 with an Allow
// header for a path routed under other methods only (cpp-httplib alone says 404 to both, with
// an empty body); in text unless the server is given another format (root's admin API: JSON).
TEST_F(HttpServerTest, AnUnknownPathIs404AndAnotherMethodIs405WithAllow) {
  auto missing = RawExchange(port_, "GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ASSERT_OK(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_EQ(missing->body, "no resource at /nowhere\n");
  auto wrong = RawExchange(port_, "GET /count HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ASSERT_OK(wrong);
  EXPECT_EQ(wrong->status, 405) << wrong->body;
  EXPECT_EQ(wrong->Header("Allow"), "POST") << wrong->headers;
  EXPECT_THAT(wrong->body, HasSubstr("GET is not allowed on /count"));
  std::vector<std::string> routes;
  for (const core::HttpRoute& r : server_.routes()) routes.push_back(r.method + " " + r.pattern);
  EXPECT_EQ(routes, (std::vector<std::string>{"POST /buffered", "POST /count", "POST /form"}));
}

}  // namespace
}  // namespace x1368::testing
