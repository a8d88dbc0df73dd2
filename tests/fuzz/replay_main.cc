// Replays a libFuzzer target without libFuzzer (the normal gcc build has none): runs
// LLVMFuzzerTestOneInput over every file of the corpus directory given as argv[1], then over
// deterministic pseudo-random mutations of those files (bit flips, byte edits, truncation,
// duplication, splicing), so CTest catches shallow crashes on every build.
//
//   <name>_replay <corpus-dir> [mutations]   (default 2000 mutations)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr size_t kMaxInputBytes = 8192;

void Run(const std::string& input) {
  // A copy in its own allocation, so a read past the end is caught by ASan when it is on.
  // libFuzzer never passes a null pointer, not even for an empty input.
  static const uint8_t kEmpty = 0;
  std::vector<uint8_t> buf(input.begin(), input.end());
  LLVMFuzzerTestOneInput(buf.empty() ? &kEmpty : buf.data(), buf.size());
}

std::string Mutate(const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  auto pick = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  std::string s = corpus[pick(corpus.size())];
  static constexpr uint8_t kInteresting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x1a};
  int edits = 1 + static_cast<int>(pick(4));
  for (int e = 0; e < edits; ++e) {
    switch (pick(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
        break;
      case 1:  // set a byte to an interesting value (varint edges, wire types)
        if (!s.empty())
          s[pick(s.size())] = static_cast<char>(kInteresting[pick(sizeof kInteresting)]);
        break;
      case 2:  // random byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
        break;
      case 3:  // insert a byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
                 static_cast<char>(rng()));
        break;
      case 4:  // erase a range
        if (!s.empty()) {
          size_t at = pick(s.size());
          s.erase(at, 1 + pick(std::min<size_t>(16, s.size() - at)));
        }
        break;
      case 5:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 6: {  // duplicate a range
        if (s.empty()) break;
        size_t at = pick(s.size());
        std::string piece = s.substr(at, 1 + pick(32));
        s.insert(pick(s.size() + 1), piece);
        break;
      }
      default: {  // splice with another input
        const std::string& other = corpus[pick(corpus.size())];
        size_t cut = pick(s.size() + 1);
        s = s.substr(0, cut) + other.substr(std::min(other.size(), pick(other.size() + 1)));
        break;
      }
    }
  }
  if (s.size() > kMaxInputBytes) s.resize(kMaxInputBytes);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <corpus-dir> [mutations]\n", argv[0]);
    return 2;
  }
  long mutations = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 2000;
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(argv[1], ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  if (ec) {
    fprintf(stderr, "cannot read %s: %s\n", argv[1], ec.message().c_str());
    return 2;
  }
  std::sort(files.begin(), files.end());  // the same order, hence the same mutations, every run
  std::vector<std::string> corpus;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    Run(corpus.back());
  }
  if (corpus.empty()) {
    fprintf(stderr, "%s holds no seed files\n", argv[1]);
    return 1;
  }
  std::mt19937_64 rng(1368);
  for (long i = 0; i < mutations; ++i) Run(Mutate(corpus, rng));
  printf("replayed %zu seeds and %ld mutations from %s\n", corpus.size(), mutations, argv[1]);
  return 0;
}
