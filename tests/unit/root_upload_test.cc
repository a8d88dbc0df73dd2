// Root's release upload through its real admin API (X.1368 §11.3 a): POST /v1/releases takes the
// signed manifest and the image as multipart/form-data, streams the image into a temporary file
// in images_dir, checks it from there and renames it into place. An accepted upload is what the
// devices then download; every refused one (a short, long or tampered image, a wrong chunk table,
// a missing or oversized part, a bad token, an oversized or unknown body length, a body cut
// short, the old protobuf body) is answered with a clear error and leaves nothing behind: no file
// in images_dir, no release in the registry. Uploads go through libcurl's multipart (what
// `curl -F` sends) or, where the test needs the exact bytes on the wire, through a raw socket.
// Real keys and signatures, real files; the in-memory broker (no Mosquitto).
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "testing/raw_http.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/http_client.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kToken[] = "upload-test-token-0123456789abcdef";
constexpr uint64_t kMaxImageBytes = 1 << 20;  // root's limit here; its body limit is 1 MiB more
constexpr char kBoundary[] = "x1368-test-boundary-7d3f";

// One multipart/form-data part, framed as curl frames it.
std::string FormPart(const std::string& name, const std::string& filename,
                     const std::string& data) {
  return absl::StrCat("--", kBoundary, "\r\nContent-Disposition: form-data; name=\"", name,
                      "\"; filename=\"", filename,
                      "\"\r\nContent-Type: application/octet-stream\r\n\r\n", data, "\r\n");
}
std::string FormEnd() { return absl::StrCat("--", kBoundary, "--\r\n"); }

// A POST /v1/releases request with `extra_headers` and `body` (the Content-Length is the body's
// unless given).
std::string ReleaseRequest(const std::string& body, const std::string& extra_headers = "",
                           std::optional<uint64_t> content_length = std::nullopt) {
  return absl::StrCat("POST /v1/releases HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ",
                      kToken, "\r\nContent-Type: multipart/form-data; boundary=", kBoundary,
                      "\r\nContent-Length: ", content_length.value_or(body.size()), "\r\n",
                      extra_headers, "\r\n", body);
}

class RootUploadTest : public ::testing::Test {
 protected:
  void StartRoot() {
    root_ = tree_.AddRoot([](nodes::RootSpec& spec) {
      spec.options.admin_listen = "127.0.0.1:0";
      spec.options.admin_token = kToken;
      spec.options.max_image_bytes = kMaxImageBytes;
    });
    port_ = root_->root->admin_port();
    ASSERT_GT(port_, 0);
    url_ = absl::StrCat("http://127.0.0.1:", port_);
  }

  std::string ImagesDir() const { return tree_.dir() + "/root/images"; }
  std::vector<std::string> ImageFiles() const {
    std::vector<std::string> names =
        core::ListDir(ImagesDir()).value_or(std::vector<std::string>{"(no images_dir)"});
    std::sort(names.begin(), names.end());
    return names;
  }

  // A release on disk: `image` signed by the author as fw `version` / `sequence`; `edit` may
  // change the manifest before it is signed.
  struct Files {
    std::string image;
    v1::Manifest manifest;
    std::string manifest_bytes;  // the SignedManifest, as trackerctl author sign writes it
    std::string manifest_path;
    std::string image_path;
  };
  Files Sign(const std::string& name, const std::string& image, const std::string& version,
             uint64_t sequence, const std::function<void(v1::Manifest&)>& edit = nullptr) {
    Files f;
    f.image = image;
    f.manifest = TestPki::ManifestFor(image, "fw", version, sequence, {"board-a"},
                                      tree_.author().id, tree_.publish_chunk_size);
    if (edit) edit(f.manifest);
    f.manifest_bytes = TestPki::Sign(tree_.author(), f.manifest).SerializeAsString();
    f.manifest_path = files_.File(name + ".manifest");
    f.image_path = files_.File(name + ".bin");
    EXPECT_OK(core::WriteFileAtomic(f.manifest_path, f.manifest_bytes));
    EXPECT_OK(core::WriteFileAtomic(f.image_path, image));
    return f;
  }

  // The form trackerctl and `curl -F manifest=@M -F image=@I` send, through libcurl.
  absl::StatusOr<core::HttpReply> Upload(std::vector<core::HttpFormField> fields,
                                         const std::string& token = kToken) {
    core::HttpClient http(url_, token);
    return http.PostForm("/v1/releases", fields, /*stall_s=*/20);
  }
  absl::StatusOr<core::HttpReply> Upload(const Files& f) {
    return Upload({{"manifest", "", f.manifest_path}, {"image", "", f.image_path}});
  }

  static v1::ErrorReply ErrorOf(const std::string& body) {
    v1::ErrorReply e;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(body, &e).ok()) << body;
    return e;
  }

  // The refusal: `status`, the typed `reason` (when there is one) and `text` in its message.
  void ExpectRefused(int got_status, const std::string& body, int status, v1::Reason reason,
                     const std::string& text) {
    EXPECT_EQ(got_status, status) << body;
    v1::ErrorReply e = ErrorOf(body);
    EXPECT_EQ(e.details().reason(), reason) << body;
    EXPECT_THAT(e.message(), HasSubstr(text));
  }
  void ExpectRefused(const absl::StatusOr<core::HttpReply>& r, int status, v1::Reason reason,
                     const std::string& text) {
    ASSERT_OK(r);
    ExpectRefused(r->status, r->body, status, reason, text);
  }

  // Nothing of a refused upload remains: no file in images_dir (temporary or not), no release.
  void ExpectNothingStored() {
    EXPECT_THAT(ImageFiles(), IsEmpty());
    EXPECT_EQ(tree_.Fleet().releases_size(), 0);
  }

  TempDir files_;  // the author's side: manifests and images to upload
  TestTree tree_{nullptr};
  RootNode* root_ = nullptr;
  int port_ = 0;
  std::string url_;
};

TEST_F(RootUploadTest, AStreamedUploadIsPublishedAndTheDevicesDownloadIt) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  tree_.AddIntermediate("gw1", "root", {"dev-*"});
  std::vector<std::string> devices = {"dev-1", "dev-2"};
  for (const std::string& d : devices) tree_.AddClient(d, "gw1");
  ASSERT_TRUE(tree_.WaitForDevices(devices, [](const v1::DeviceRecord& d) {
    return d.version() == "1.0.0";
  })) << "devices never reported to root";

  // 300 KiB in 16 KiB chunks, the last one short.
  Files f = Sign("fw-2.0.0", TestPki::MakeImage(300 * 1024 + 123, 5), "2.0.0", 2);
  auto r = Upload(f);
  ASSERT_OK(r);
  ASSERT_EQ(r->status, 201) << r->body;
  v1::ReleaseInfo info;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r->body, &info).ok()) << r->body;
  const std::string hex = core::HexEncode(core::Sha256(f.image));
  EXPECT_EQ(info.version(), "2.0.0");
  EXPECT_EQ(info.size(), f.image.size());
  EXPECT_EQ(info.sha256_hex(), hex);

  // In place under its digest, beside its chunk table, owner-only; no temporary file left.
  EXPECT_THAT(ImageFiles(), ElementsAre(hex, hex + ".chunks"));
  EXPECT_EQ(core::ReadFile(ImagesDir() + "/" + hex).value_or(""), f.image);
  struct stat st {};
  ASSERT_EQ(::stat((ImagesDir() + "/" + hex).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_OK(tree_.StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_.WaitForVersion(devices, "2.0.0")) << "fleet did not converge";
  for (const std::string& d : devices) EXPECT_EQ(tree_.Device(d)->sequence_number(), 2u) << d;

  // The very same upload again: idempotent, nothing more stored.
  auto again = Upload(f);
  ASSERT_OK(again);
  EXPECT_EQ(again->status, 201) << again->body;
  EXPECT_THAT(ImageFiles(), ElementsAre(hex, hex + ".chunks"));
  EXPECT_EQ(tree_.Fleet().releases_size(), 1);
}

// The form built here byte by byte, as `curl -F manifest=@fw.manifest -F image=@fw.bin` frames
// it (and with "Expect: 100-continue", which curl sends for a body over 1 MiB): accepted.
TEST_F(RootUploadTest, ACurlStyleFormBuiltByHandIsAccepted) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(40 * 1024, 9), "2.0.0", 2);
  std::string body = absl::StrCat(FormPart("manifest", "fw.manifest", f.manifest_bytes),
                                  FormPart("image", "fw.bin", f.image), FormEnd());
  auto r = RawExchange(port_, ReleaseRequest(body, "Expect: 100-continue\r\n"));
  ASSERT_OK(r);
  EXPECT_TRUE(r->continued);
  ASSERT_EQ(r->status, 201) << r->body;
  std::string hex = core::HexEncode(core::Sha256(f.image));
  EXPECT_THAT(ImageFiles(), ElementsAre(hex, hex + ".chunks"));
  v1::FleetStatus fleet = tree_.Fleet();
  ASSERT_EQ(fleet.releases_size(), 1);
  EXPECT_EQ(fleet.releases(0).sha256_hex(), hex);
}

TEST_F(RootUploadTest, AnImageShorterThanTheManifestSaysIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  ASSERT_OK(core::WriteFileAtomic(f.image_path, f.image.substr(0, f.image.size() - 1000)));
  ExpectRefused(Upload(f), 400, v1::SIZE_MISMATCH, "image has 64536 bytes, manifest says 65536");
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AnImageLongerThanTheManifestSaysIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  ASSERT_OK(core::WriteFileAtomic(f.image_path, f.image + std::string(5000, 'x')));
  ExpectRefused(Upload(f), 400, v1::SIZE_MISMATCH, "longer than the 65536 bytes");
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AnImageWithAnotherDigestIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  std::string tampered = f.image;
  tampered[40000] ^= 0x01;
  ASSERT_OK(core::WriteFileAtomic(f.image_path, tampered));
  ExpectRefused(Upload(f), 400, v1::DIGEST_MISMATCH, "image digest differs");
  ExpectNothingStored();
}

// The whole image's digest right, the signed chunk table's digest not that of its chunks.
TEST_F(RootUploadTest, AManifestWithAnotherChunkTableIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2, [](v1::Manifest& m) {
    m.set_chunk_table_sha256(core::Sha256("not the chunk table"));
  });
  ExpectRefused(Upload(f), 400, v1::DIGEST_MISMATCH, "chunk table");
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AManifestWithABadSignatureIsRefusedBeforeTheImageIsStored) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  v1::SignedManifest sm;
  ASSERT_TRUE(sm.ParseFromString(f.manifest_bytes));
  sm.mutable_signature()->back() ^= 0x01;
  ASSERT_OK(core::WriteFileAtomic(f.manifest_path, sm.SerializeAsString()));
  ExpectRefused(Upload(f), 403, v1::MANIFEST_BAD_SIGNATURE, "author signature");
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AFormWithoutAManifestPartIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  ExpectRefused(Upload({{"image", "", f.image_path}}), 400, v1::MALFORMED,
                "without a manifest part");
  ExpectNothingStored();
  ExpectRefused(Upload({{"manifest", "", f.manifest_path}}), 400, v1::MALFORMED, "no image part");
  ExpectNothingStored();
  // The parts in the other order: the image cannot be bounded or checked as it arrives.
  ExpectRefused(Upload({{"image", "", f.image_path}, {"manifest", "", f.manifest_path}}), 400,
                v1::MALFORMED, "without a manifest part before it");
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AManifestPartOver64KiBIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(100 * 1024, 1), "2.0.0", 2);
  // The image given as the manifest, as a slip of the operator's fingers would.
  auto r = Upload({{"manifest", "", f.image_path}, {"image", "", f.image_path}});
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_THAT(ErrorOf(r->body).message(), HasSubstr("the manifest part is over 65536 bytes"));
  ExpectNothingStored();
}

TEST_F(RootUploadTest, AWrongOrMissingTokenIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 1), "2.0.0", 2);
  for (const std::string token : {"not-the-token-0123456789abcdef", ""}) {
    auto r = Upload({{"manifest", "", f.manifest_path}, {"image", "", f.image_path}}, token);
    ASSERT_OK(r);
    EXPECT_EQ(r->status, 401) << r->body;
    EXPECT_THAT(ErrorOf(r->body).message(), HasSubstr("bearer token"));
  }
  // With "Expect: 100-continue", refused before the client sends a byte of its body.
  std::string body = absl::StrCat(FormPart("manifest", "fw.manifest", f.manifest_bytes),
                                  FormPart("image", "fw.bin", f.image), FormEnd());
  std::string request = ReleaseRequest(body, "Expect: 100-continue\r\n");
  request.replace(request.find(kToken), sizeof(kToken) - 1, "wrong");
  auto r = RawExchange(port_, request.substr(0, request.find("\r\n\r\n") + 4));
  ASSERT_OK(r);
  EXPECT_FALSE(r->continued);
  EXPECT_EQ(r->status, 401) << r->body;
  ExpectNothingStored();
}

// A Content-Length over the limit is refused at once, from the headers: root neither reads nor
// waits for the body (cpp-httplib alone would read it all, or wait out its 5 s read timeout for
// it, before answering).
TEST_F(RootUploadTest, AContentLengthOverTheLimitIsRefusedWithoutReadingTheBody) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  const uint64_t limit = kMaxImageBytes + (1 << 20);
  for (const std::string expect : {"", "Expect: 100-continue\r\n"}) {
    SCOPED_TRACE(expect);
    std::string headers = ReleaseRequest("", expect, limit + 1);
    // Only the headers and a first piece of the body are sent; the connection stays open.
    auto r = RawExchange(port_, headers + FormPart("manifest", "m", "x").substr(0, 20),
                         absl::Seconds(3));
    ASSERT_OK(r);
    EXPECT_FALSE(r->continued);
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_THAT(ErrorOf(r->body).message(),
                HasSubstr(absl::StrCat(limit + 1, " bytes is over the limit of ", limit)));
  }
  ExpectNothingStored();
}

TEST_F(RootUploadTest, ABodyWithoutAContentLengthIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  std::string request = ReleaseRequest("");
  request.replace(request.find("Content-Length: 0"), 17, "Transfer-Encoding: chunked");
  auto r = RawExchange(port_, request + "5\r\nhello\r\n0\r\n\r\n");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_THAT(ErrorOf(r->body).message(), HasSubstr("needs a Content-Length"));
  ExpectNothingStored();
}

// The image reaches the disk while it arrives (a temporary file in images_dir, growing), and
// when the client goes away half-way through, that file goes too.
TEST_F(RootUploadTest, ABodyCutShortIsRefusedAndItsFileRemoved) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(512 * 1024, 1), "2.0.0", 2);
  std::string body = absl::StrCat(FormPart("manifest", "fw.manifest", f.manifest_bytes),
                                  FormPart("image", "fw.bin", f.image), FormEnd());
  std::string request = ReleaseRequest(body);
  RawConnection c(port_);
  ASSERT_TRUE(c.connected());
  c.Send(request.substr(0, request.size() - 256 * 1024));
  std::string partial;
  uint64_t on_disk = 0;
  ASSERT_TRUE(WaitFor([&] {
    for (const std::string& name : ImageFiles()) {
      if (!absl::StartsWith(name, "upload-")) continue;
      partial = name;
      on_disk = core::FileSize(ImagesDir() + "/" + name).value_or(0);
    }
    return on_disk >= 128 * 1024;
  })) << "no temporary file of 128 KiB or more in "
      << ImagesDir() << " (last seen: \"" << partial << "\", " << on_disk << " bytes)";
  EXPECT_LT(on_disk, f.image.size());
  c.Close();
  EXPECT_TRUE(WaitFor([&] { return ImageFiles().empty(); }))
      << "left behind: " << ::testing::PrintToString(ImageFiles());
  EXPECT_EQ(tree_.Fleet().releases_size(), 0);
}

// The submission as one protobuf body (the form before streaming) is not taken any more; the
// answer says what is.
TEST_F(RootUploadTest, TheProtobufBodyIsRefusedWithUnsupportedMediaType) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(4096, 1), "2.0.0", 2);
  v1::ReleaseSubmission sub;
  ASSERT_TRUE(sub.mutable_manifest()->ParseFromString(f.manifest_bytes));
  sub.set_image(f.image);
  core::HttpClient http(url_, kToken);
  auto r = http.Post("/v1/releases", sub.SerializeAsString(), "application/x-protobuf");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 415) << r->body;
  EXPECT_THAT(ErrorOf(r->body).message(), HasSubstr("multipart/form-data"));
  EXPECT_THAT(ErrorOf(r->body).message(), HasSubstr("-F image=@"));
  ExpectNothingStored();
}

// Refused uploads do not use up a version or a sequence number: the good one goes through after.
TEST_F(RootUploadTest, AfterRefusalsTheGoodUploadIsAccepted) {
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  Files f = Sign("fw", TestPki::MakeImage(64 * 1024, 3), "2.0.0", 2);
  ASSERT_OK(core::WriteFileAtomic(f.image_path, f.image.substr(1)));
  ExpectRefused(Upload(f), 400, v1::SIZE_MISMATCH, "manifest says");
  ASSERT_OK(core::WriteFileAtomic(f.image_path, f.image));
  auto r = Upload(f);
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(tree_.Fleet().releases_size(), 1);
}

// Uploads cut short by a crash leave their temporary files; root removes them when it starts,
// and leaves the images alone.
TEST_F(RootUploadTest, StaleUploadFilesAreRemovedAtStart) {
  ASSERT_OK(core::MakeDirs(ImagesDir()));
  for (const char* stale : {"upload-0.part", "upload-17.part", "feedbeef.tmp"}) {
    ASSERT_OK(core::WriteFileAtomic(ImagesDir() + "/" + stale, "partial"));
  }
  ASSERT_OK(core::WriteFileAtomic(ImagesDir() + "/0123abcd", "an image"));
  ASSERT_OK(core::WriteFileAtomic(ImagesDir() + "/0123abcd.chunks", "its table"));
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  EXPECT_THAT(ImageFiles(), ElementsAre("0123abcd", "0123abcd.chunks"));
}

}  // namespace
}  // namespace x1368::testing
