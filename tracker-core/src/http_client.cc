#include "x1368/core/http_client.h"

#include <curl/curl.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace x1368::core {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// curl_global_init is not thread-safe; done once, before the first handle.
void InitCurlOnce() {
  static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)done;
}

// What went wrong, in a few words an operator acts on; curl's own text follows in brackets.
const char* Why(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
      return "connection refused";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "unknown host";
    case CURLE_OPERATION_TIMEDOUT:
      return "timed out";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
      return "TLS failed";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return "not an http:// or https:// URL";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      return "the connection broke";
    default:
      return "failed";
  }
}

}  // namespace

struct HttpClient::Body {
  const std::string* data = nullptr;  // with its content type
  std::string content_type;
  const std::vector<HttpFormField>* form = nullptr;  // or the form
};

HttpClient::HttpClient(std::string base_url, std::string bearer_token)
    : base_url_(std::move(base_url)), token_(std::move(bearer_token)) {}

absl::StatusOr<HttpReply> HttpClient::Get(const std::string& path) {
  return Perform("GET", path, nullptr, 30);
}

absl::StatusOr<HttpReply> HttpClient::Post(const std::string& path, const std::string& body,
                                           const std::string& content_type) {
  Body b{&body, content_type, nullptr};
  return Perform("POST", path, &b, 120);
}

absl::StatusOr<HttpReply> HttpClient::PostForm(const std::string& path,
                                               const std::vector<HttpFormField>& fields,
                                               long stall_s) {
  Body b{nullptr, "", &fields};
  return Perform("POST", path, &b, 0, stall_s);
}

absl::StatusOr<HttpReply> HttpClient::Perform(const std::string& method, const std::string& path,
                                              const Body* body, long timeout_s, long stall_s) {
  InitCurlOnce();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl: cannot create a handle");
  std::string url = absl::StrCat(base_url_, path);
  std::string received;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  if (!token_.empty()) {
    headers = curl_slist_append(headers, absl::StrCat("Authorization: Bearer ", token_).c_str());
  }
  if (body != nullptr && body->data != nullptr) {
    headers =
        curl_slist_append(headers, absl::StrCat("Content-Type: ", body->content_type).c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> owned_headers(headers,
                                                                            curl_slist_free_all);
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &received);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
  if (stall_s > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_s);
  }
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  std::unique_ptr<curl_mime, decltype(&curl_mime_free)> mime(nullptr, curl_mime_free);
  if (body != nullptr && body->data != nullptr) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->data->size()));
  } else if (body != nullptr) {
    // libcurl's own multipart (curl -F): the boundary, each part's headers, and a file part read
    // from disk while it is sent.
    mime.reset(curl_mime_init(h));
    if (!mime) return absl::InternalError("curl: cannot create a form");
    for (const HttpFormField& f : *body->form) {
      curl_mimepart* part = curl_mime_addpart(mime.get());
      CURLcode set = part == nullptr ? CURLE_OUT_OF_MEMORY : curl_mime_name(part, f.name.c_str());
      if (set == CURLE_OK) set = curl_mime_type(part, f.content_type.c_str());
      if (set == CURLE_OK) {
        set = f.file_path.empty() ? curl_mime_data(part, f.data.data(), f.data.size())
                                  : curl_mime_filedata(part, f.file_path.c_str());
      }
      if (set != CURLE_OK) {
        return absl::InvalidArgumentError(
            absl::StrCat("form part \"", f.name, "\"",
                         f.file_path.empty() ? "" : absl::StrCat(" (", f.file_path, ")"), ": ",
                         curl_easy_strerror(set)));
      }
    }
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime.get());
  }
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach ", base_url_, ": ", Why(rc), " (", method, " ", path, ": ",
                     error[0] != 0 ? error : curl_easy_strerror(rc), ")"));
  }
  HttpReply reply;
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  reply.status = static_cast<int>(status);
  char* type = nullptr;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type);
  if (type != nullptr) reply.content_type = type;
  reply.body = std::move(received);
  return reply;
}

}  // namespace x1368::core
