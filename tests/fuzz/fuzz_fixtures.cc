#include "tests/fuzz/fuzz_fixtures.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/model_backend.h"
#include "models/bpe_files.h"
#include "models/bpe_tokenizer.h"
#include "models/json_escape_tokenizer.h"
#include "models/model_config.h"
#include "models/sentencepiece_adapter.h"
#include "tests/fuzz/fuzz_target.h"

namespace foxserve {
namespace fuzz {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "fuzz fixture: %s\n", message.c_str());
  std::abort();
}

std::unique_ptr<models::BpeTokenizer> LoadBpe() {
  const std::string dir = std::string(FOXSERVE_SOURCE_DIR) + "/tests/fuzz/data/bpe";
  auto spec = models::ReadGpt2VocabAndMerges(dir + "/vocab.json", dir + "/merges.txt");
  if (!spec.ok()) Die(spec.status().ToString());
  auto bpe = models::BpeTokenizer::Create(*spec);
  if (!bpe.ok()) Die(bpe.status().ToString());
  models::BpeTokenizer::SpecialTokens special;
  special.eos_id = (*bpe)->TokenId("<|endoftext|>");
  special.bos_id = special.eos_id;
  (*bpe)->set_special_tokens(special);
  return std::move(bpe).value();
}

std::string TrainSentencePiece() {
  const std::string dir = std::string(FOXSERVE_BINARY_DIR) + "/fuzz_data/sentencepiece";
  const std::string model = dir + "/tokenizer.model";
  if (std::filesystem::exists(model)) return model;
  std::filesystem::create_directories(dir);
  // A private folder per process, renamed into place: fuzzers may start at the same time.
  const std::string work = absl::StrCat(dir, "/train.", getpid());
  std::filesystem::create_directories(work);
  {
    std::ifstream in(std::string(FOXSERVE_SOURCE_DIR) + "/models/corpus/tinyshakespeare.txt");
    std::string corpus(60000, '\0');
    in.read(corpus.data(), static_cast<std::streamsize>(corpus.size()));
    corpus.resize(static_cast<size_t>(in.gcount()));
    // A few characters outside the corpus, so that multi-byte pieces exist besides byte pieces.
    corpus += "\nnaïve café – “quoted” 日本語 😀 tabs\tand\ttabs\n";
    std::ofstream(work + "/corpus.txt") << corpus;
  }
  const std::string command =
      "spm_train --input=" + work + "/corpus.txt --model_prefix=" + work +
      "/tokenizer --vocab_size=400 --model_type=bpe --byte_fallback=true "
      "--character_coverage=1.0 --normalization_rule_name=identity --add_dummy_prefix=false "
      "--remove_extra_whitespaces=false --split_digits=true --num_threads=1 --minloglevel=2 "
      "> " + work + "/train.log 2>&1";
  if (std::system(command.c_str()) != 0) {
    Die("spm_train failed (Debian package sentencepiece); see " + work + "/train.log");
  }
  std::error_code ec;
  std::filesystem::rename(work + "/tokenizer.model", model, ec);
  std::filesystem::remove_all(work, ec);
  if (!std::filesystem::exists(model)) Die("no " + model + " after training");
  return model;
}

// Never computes: the validation fuzzer only checks and admits requests.
class ConfigOnlyBackend : public engine::ModelBackend {
 public:
  ConfigOnlyBackend() {
    auto config = models::LoadFoxConfig(std::string(FOXSERVE_SOURCE_DIR) +
                                        "/tests/data/golden/fox-pro-tiny");
    if (!config.ok()) Die(config.status().ToString());
    config_ = *config;
    bounds_.assign(config_.num_hidden_layers * config_.num_heads, 10.0);
  }
  const models::FoxConfig& config() const override { return config_; }
  std::string name() const override { return "validation-only"; }
  int32_t page_size() const override { return 64; }
  int64_t num_pages() const override { return kPoolPages; }
  int64_t page_bytes() const override { return 64 * 3 * 4 * config_.head_dim; }
  const models::AcpOptions& acp() const override { return acp_; }
  const std::vector<double>& logit_bounds() const override { return bounds_; }
  void PoisonPages(absl::Span<const int32_t>) override {}
  absl::Status Forward(absl::Span<const models::ForwardItem>, std::vector<float>*) override {
    Die("the validation engine must not run a forward pass");
  }
  absl::Status CandidateRow(int64_t, std::vector<float>*) override {
    Die("the validation engine must not run a forward pass");
  }

 private:
  models::FoxConfig config_;
  models::AcpOptions acp_;
  std::vector<double> bounds_;
};

}  // namespace

std::string Quote(absl::string_view bytes) {
  std::string out = "\"";
  for (size_t i = 0; i < bytes.size() && i < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (bytes.size() > 200) out += "...";
  return out + "\"";
}

const models::Tokenizer& BpeFixture() {
  static const models::BpeTokenizer* bpe = LoadBpe().release();
  return *bpe;
}

const models::Tokenizer& JsonBpeFixture() {
  static const models::Tokenizer* json = new models::JsonEscapeTokenizer(LoadBpe());
  return *json;
}

const models::Tokenizer& SentencePieceFixture() {
  static const models::Tokenizer* spm = [] {
    auto t = models::LoadSentencePieceTokenizer(TrainSentencePiece(), std::nullopt);
    if (!t.ok()) Die(t.status().ToString());
    return std::move(t).value().release();
  }();
  return *spm;
}

std::string MemoryFile(int slot, absl::string_view contents) {
  static int fds[4] = {-1, -1, -1, -1};
  if (slot < 0 || slot >= 4) Die("MemoryFile slot out of range");
  if (fds[slot] < 0) {
    fds[slot] = memfd_create(absl::StrCat("foxserve-fuzz-", slot).c_str(), 0);
    if (fds[slot] < 0) Die("memfd_create failed");
  }
  const int fd = fds[slot];
  if (ftruncate(fd, 0) != 0 || pwrite(fd, contents.data(), contents.size(), 0) !=
                                    static_cast<ssize_t>(contents.size())) {
    Die("cannot write the memory file");
  }
  return absl::StrCat("/proc/self/fd/", fd);
}

engine::Engine& ValidationEngine(const models::Tokenizer* tokenizer) {
  static std::mutex mu;
  static auto* backend = new ConfigOnlyBackend();
  static auto* engines = new std::map<const models::Tokenizer*, std::unique_ptr<engine::Engine>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& e = (*engines)[tokenizer];
  if (e == nullptr) {
    engine::EngineOptions options;
    options.max_model_len = 1024;
    options.scheduler.max_num_seqs = 16;
    options.scheduler.max_batch_tokens = 512;
    e = std::make_unique<engine::Engine>(backend, tokenizer, options, nullptr);
  }
  return *e;
}

}  // namespace fuzz
}  // namespace foxserve
