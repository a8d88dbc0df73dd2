// libFuzzer target: bytes as the file behind core::FileKvStore (a device's sequence numbers,
// replay windows and update record). A corrupt or hostile file must give an error, never a
// crash or a silently reset store. The first input byte holds flags: bit 0 makes the harness
// prefix the correct SHA-256, so fuzzing reaches the snapshot parsing behind the checksum; bit 1
// adds a Write and a re-open. Checked: a rejection is STORAGE_ERROR; an accepted file returns
// exactly the entries it holds; what Write stores comes back after a re-open.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "x1368/core/crypto.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/v1/storage.pb.h"

namespace {

void Fail(const char* what) {
  fprintf(stderr, "kv_snapshot: %s\n", what);
  abort();
}

// A private directory, on tmpfs when there is one (FileKvStore::Write fsyncs), removed at exit.
const std::string& Dir() {
  static const std::string* dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/x1368-kvfuzz-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) Fail("mkdtemp");
    auto* d = new std::string(tmpl);
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(Dir(), ec);
    });
    return d;
  }();
  return *dir;
}

void WriteRaw(const std::string& path, const std::string& bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  if (f == nullptr) Fail("cannot create the store file");
  if (!bytes.empty() && fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
    Fail("short write");
  fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::string payload(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string file = (flags & 1) ? absl::StrCat(core::Sha256(payload), payload) : payload;
  const std::string path = Dir() + "/state.kv";
  WriteRaw(path, file);

  auto store = core::FileKvStore::Open(path);
  if (!store.ok()) {
    if (core::ReasonOf(store.status()) != v1::STORAGE_ERROR) Fail("rejection is not STORAGE_ERROR");
    return 0;
  }
  // Accepted: it must be a checksummed snapshot, and hold exactly its entries.
  v1::KvSnapshot snapshot;
  if (file.size() < 32 || core::Sha256(file.substr(32)) != file.substr(0, 32) ||
      !snapshot.ParseFromString(file.substr(32))) {
    Fail("accepted a file that is not a checksummed snapshot");
  }
  for (const auto& [key, value] : snapshot.entries()) {
    auto got = (*store)->Get(key);
    if (!got.ok() || !got->has_value() || **got != value) Fail("an entry does not read back");
  }
  auto missing = (*store)->Get("\x01no such key");
  if (!missing.ok() || (missing->has_value() && snapshot.entries().count("\x01no such key") == 0)) {
    Fail("a missing key reads as present");
  }
  if (flags & 2) {
    const std::string key = "own_seq";
    const std::string value = "1024";
    if (!(*store)->Put(key, value).ok()) Fail("write to a valid store failed");
    auto reopened = core::FileKvStore::Open(path);
    if (!reopened.ok()) Fail("the store does not re-open after a write");
    auto got = (*reopened)->Get(key);
    if (!got.ok() || !got->has_value() || **got != value)
      Fail("a written value does not read back");
    for (const auto& [k, v] : snapshot.entries()) {
      if (k == key) continue;
      auto kept = (*reopened)->Get(k);
      if (!kept.ok() || !kept->has_value() || **kept != v) Fail("a write lost another entry");
    }
  }
  return 0;
}
