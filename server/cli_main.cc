// foxserve-cli: run a FoX model from the command line, without the server.
//
//   foxserve-cli logits   --model DIR --input IN.safetensors --output OUT.safetensors [--acp on|off]
//   foxserve-cli generate --model DIR (--prompt TEXT | --input-ids 1,2,3) --max-new-tokens N
//                         [--temperature X --top-p P --top-k K --min-p M --seed S] [--print-ids]
//
// Common flags: --threads N, --acp on|off, --acp-log-eps X, --prefill-chunk N.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <cstring>
#include <set>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/cpu_backend.h"
#include "engine/kv_block_manager.h"
#include "engine/sampler.h"
#include "engine/sequence_runner.h"
#include "models/safetensors.h"
#include "models/status_macros.h"
#include "models/tokenizer.h"
#include "server/cli_remote.h"
#include "server/command_line.h"

namespace foxserve {
namespace {

using server::CommandLine;

constexpr char kUsage[] =
    "usage:\n"
    "  foxserve-cli logits   --model DIR --input IN.safetensors --output OUT.safetensors\n"
    "  foxserve-cli generate (--model DIR | --server HOST:PORT [--stream] [--timeout S])\n"
    "                        (--prompt TEXT | --input-ids 1,2,3) --max-new-tokens N\n"
    "                        [--temperature X] [--top-p P] [--top-k K] [--min-p M] [--seed S]\n"
    "                        [--ignore-eos] [--print-ids]\n"
    "  foxserve-cli acp-report --model DIR --text-file FILE [--tokens N]\n"
    "common: --threads N  --acp on|off  --acp-log-eps X  --prefill-chunk N\n";

const std::set<std::string> kCommonFlags = {"model", "threads", "acp", "acp-log-eps",
                                            "prefill-chunk"};

std::set<std::string> With(std::set<std::string> flags, std::initializer_list<std::string> more) {
  flags.insert(more.begin(), more.end());
  return flags;
}

// Backend with a KV pool of exactly `pages` pages.
absl::StatusOr<std::unique_ptr<engine::CpuBackend>> LoadBackend(const CommandLine& cl,
                                                                int64_t tokens_per_sequence) {
  FOXSERVE_ASSIGN_OR_RETURN(std::string model_dir, cl.Required("model"));
  engine::CpuBackendOptions options;
  FOXSERVE_ASSIGN_OR_RETURN(int64_t threads, cl.Int("threads", 0, 0, 1024));
  options.num_threads = static_cast<int>(threads);
  FOXSERVE_ASSIGN_OR_RETURN(options.acp.enabled, cl.Bool("acp", true));
  if (cl.Has("acp-log-eps")) {
    FOXSERVE_ASSIGN_OR_RETURN(options.acp.log_eps, cl.Double("acp-log-eps", -10, -1e6, -1e-6));
    options.log_eps_from_config = false;
  }
  FOXSERVE_ASSIGN_OR_RETURN(models::FoxConfig config, models::LoadFoxConfig(model_dir));
  const int64_t blocks = (tokens_per_sequence + options.page_size - 1) / options.page_size;
  options.num_pages = std::max<int64_t>(1, blocks * config.num_hidden_layers * config.num_heads);
  return engine::CpuBackend::Load(model_dir, options);
}

void PrintAcp(const engine::ModelBackend& backend, const models::AcpCounters& counters) {
  const uint64_t computed = counters.total_computed(), skipped = counters.total_skipped();
  std::fprintf(stderr, "acp: %s, log eps %.3g, blocks computed %llu, skipped %llu (%.1f%%)\n",
               backend.acp().enabled ? "on" : "off", backend.acp().log_eps,
               static_cast<unsigned long long>(computed), static_cast<unsigned long long>(skipped),
               computed + skipped == 0 ? 0.0 : 100.0 * skipped / (computed + skipped));
}

absl::Status RunLogits(const std::vector<std::string>& args) {
  FOXSERVE_ASSIGN_OR_RETURN(CommandLine cl,
                            CommandLine::Parse(args, With(kCommonFlags, {"input", "output"})));
  FOXSERVE_ASSIGN_OR_RETURN(std::string input_path, cl.Required("input"));
  FOXSERVE_ASSIGN_OR_RETURN(std::string output_path, cl.Required("output"));
  FOXSERVE_ASSIGN_OR_RETURN(int64_t chunk, cl.Int("prefill-chunk", 0, 0, int64_t{1} << 30));
  FOXSERVE_ASSIGN_OR_RETURN(auto input, models::SafetensorsFile::Open(input_path));
  FOXSERVE_ASSIGN_OR_RETURN(models::TensorView ids, input->Get("input_ids"));
  if (ids.shape.size() != 2 || (ids.dtype != models::DType::kI64 && ids.dtype != models::DType::kI32)) {
    return absl::InvalidArgumentError(
        absl::StrCat(input_path, ": input_ids must be I64 or I32 of shape [batch, tokens]"));
  }
  const int64_t batch = ids.shape[0], tokens = ids.shape[1];
  if (tokens == 0) return absl::InvalidArgumentError(absl::StrCat(input_path, ": input_ids is empty"));
  FOXSERVE_ASSIGN_OR_RETURN(auto backend, LoadBackend(cl, tokens));
  const int64_t vocab = backend->config().vocab_size;
  engine::KvBlockManager blocks(backend->num_pages());
  std::vector<float> logits;
  logits.reserve(batch * tokens * vocab);
  models::AcpCounters acp(backend->config().num_hidden_layers, backend->config().num_heads);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> row(tokens);
    for (int64_t t = 0; t < tokens; ++t) {
      int64_t v;
      if (ids.dtype == models::DType::kI64) {
        std::memcpy(&v, ids.bytes.data() + (b * tokens + t) * 8, 8);
      } else {
        int32_t v32;
        std::memcpy(&v32, ids.bytes.data() + (b * tokens + t) * 4, 4);
        v = v32;
      }
      if (v < 0 || v >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(input_path, ": input_ids[", b, ", ", t,
                                                       "] = ", v, " is outside [0, ", vocab, ")"));
      }
      row[t] = static_cast<int32_t>(v);
    }
    engine::SequenceRunner runner(backend.get(), &blocks, tokens);
    FOXSERVE_ASSIGN_OR_RETURN(std::vector<float> row_logits, runner.Feed(row, true, chunk));
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
    acp.Add(runner.acp_counters());
  }
  PrintAcp(*backend, acp);
  models::TensorToWrite ids_out{"input_ids", ids.dtype, ids.shape, ids.bytes};
  models::TensorToWrite logits_out{
      "logits", models::DType::kF32, {batch, tokens, vocab},
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(logits.data()), logits.size() * 4)};
  return models::WriteSafetensors(output_path, {ids_out, logits_out});
}

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text, int64_t vocab) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v) || v < 0 || v >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("--input-ids: \"", part,
                                                     "\" is not a token id in [0, ", vocab, ")"));
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) return absl::InvalidArgumentError("--input-ids is empty");
  return ids;
}

// Returns the exit code: the remote call reports its own errors (gRPC code name and message).
absl::StatusOr<int> RunRemoteGenerate(const CommandLine& cl) {
  v1::GenerateRequest request;
  if (cl.Has("prompt")) {
    request.set_text(*cl.Get("prompt"));
  } else {
    for (absl::string_view part : absl::StrSplit(*cl.Get("input-ids"), ',', absl::SkipWhitespace())) {
      int32_t v;
      if (!absl::SimpleAtoi(part, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--input-ids: \"", part, "\" is not an id"));
      }
      request.mutable_token_ids()->add_ids(v);
    }
  }
  // Range checks are the server's: it answers INVALID_ARGUMENT naming the field.
  FOXSERVE_ASSIGN_OR_RETURN(int64_t max_new, cl.Int("max-new-tokens", 16, 0, UINT32_MAX));
  request.set_max_new_tokens(static_cast<uint32_t>(max_new));
  const bool sampled = cl.Has("temperature") || cl.Has("top-p") || cl.Has("top-k") ||
                       cl.Has("min-p") || cl.Has("seed");
  FOXSERVE_ASSIGN_OR_RETURN(double temperature, cl.Double("temperature", sampled ? 1.0 : 0.0, -1e9, 1e9));
  request.mutable_sampling()->set_temperature(static_cast<float>(temperature));
  if (cl.Has("top-p")) {
    FOXSERVE_ASSIGN_OR_RETURN(double top_p, cl.Double("top-p", 1, -1e9, 1e9));
    request.mutable_sampling()->set_top_p(static_cast<float>(top_p));
  }
  FOXSERVE_ASSIGN_OR_RETURN(int64_t top_k, cl.Int("top-k", 0, INT32_MIN, INT32_MAX));
  request.mutable_sampling()->set_top_k(static_cast<int32_t>(top_k));
  FOXSERVE_ASSIGN_OR_RETURN(double min_p, cl.Double("min-p", 0, -1e9, 1e9));
  request.mutable_sampling()->set_min_p(static_cast<float>(min_p));
  if (cl.Has("seed")) {
    FOXSERVE_ASSIGN_OR_RETURN(int64_t seed, cl.Int("seed", 0, 0, INT64_MAX));
    request.mutable_sampling()->set_seed(static_cast<uint64_t>(seed));
  }
  FOXSERVE_ASSIGN_OR_RETURN(bool ignore_eos, cl.Bool("ignore-eos", false));
  request.set_ignore_eos(ignore_eos);
  server::RemoteOptions remote;
  remote.server = *cl.Get("server");
  FOXSERVE_ASSIGN_OR_RETURN(remote.stream, cl.Bool("stream", false));
  FOXSERVE_ASSIGN_OR_RETURN(remote.print_ids, cl.Bool("print-ids", false));
  FOXSERVE_ASSIGN_OR_RETURN(remote.timeout_seconds, cl.Double("timeout", 600, 0.001, 1e7));
  return server::RemoteGenerate(remote, request, std::cout, std::cerr);
}

absl::StatusOr<int> RunGenerate(const std::vector<std::string>& args) {
  FOXSERVE_ASSIGN_OR_RETURN(
      CommandLine cl,
      CommandLine::Parse(args,
                         With(kCommonFlags, {"prompt", "input-ids", "max-new-tokens", "temperature",
                                             "top-p", "top-k", "min-p", "seed", "print-ids",
                                             "ignore-eos", "server", "stream", "timeout"}),
                         {"print-ids", "ignore-eos", "stream"}));
  if (cl.Has("prompt") == cl.Has("input-ids")) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --input-ids");
  }
  if (cl.Has("server")) return RunRemoteGenerate(cl);
  FOXSERVE_ASSIGN_OR_RETURN(std::string model_dir, cl.Required("model"));
  FOXSERVE_ASSIGN_OR_RETURN(int64_t max_new, cl.Int("max-new-tokens", 16, 1, 1 << 20));
  FOXSERVE_ASSIGN_OR_RETURN(int64_t chunk, cl.Int("prefill-chunk", 0, 0, int64_t{1} << 30));
  FOXSERVE_ASSIGN_OR_RETURN(models::FoxConfig config, models::LoadFoxConfig(model_dir));

  std::unique_ptr<models::Tokenizer> tokenizer;
  auto tokenizer_or = models::LoadTokenizer(model_dir);
  if (tokenizer_or.ok()) {
    tokenizer = std::move(tokenizer_or).value();
  } else if (!absl::IsNotFound(tokenizer_or.status())) {
    return tokenizer_or.status();
  }
  std::vector<int32_t> prompt;
  if (cl.Has("prompt")) {
    if (tokenizer == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(model_dir, " has no tokenizer; pass --input-ids instead of --prompt"));
    }
    if (tokenizer->add_bos() && tokenizer->bos_id()) prompt.push_back(*tokenizer->bos_id());
    FOXSERVE_ASSIGN_OR_RETURN(std::vector<int32_t> encoded, tokenizer->Encode(*cl.Get("prompt")));
    prompt.insert(prompt.end(), encoded.begin(), encoded.end());
    if (prompt.empty()) return absl::InvalidArgumentError("--prompt encodes to no tokens");
  } else {
    FOXSERVE_ASSIGN_OR_RETURN(prompt, ParseIds(*cl.Get("input-ids"), config.vocab_size));
  }

  engine::SamplingParams sampling;
  const bool sampled = cl.Has("temperature") || cl.Has("top-p") || cl.Has("top-k") ||
                       cl.Has("min-p") || cl.Has("seed");
  FOXSERVE_ASSIGN_OR_RETURN(double temperature, cl.Double("temperature", sampled ? 1.0 : 0.0, 0, 100));
  FOXSERVE_ASSIGN_OR_RETURN(double top_p, cl.Double("top-p", 1.0, 0, 1));
  FOXSERVE_ASSIGN_OR_RETURN(int64_t top_k, cl.Int("top-k", 0, 0, 1 << 30));
  FOXSERVE_ASSIGN_OR_RETURN(double min_p, cl.Double("min-p", 0.0, 0, 1));
  sampling.temperature = static_cast<float>(temperature);
  sampling.top_p = static_cast<float>(top_p);
  sampling.top_k = static_cast<int32_t>(top_k);
  sampling.min_p = static_cast<float>(min_p);
  if (cl.Has("seed")) {
    FOXSERVE_ASSIGN_OR_RETURN(int64_t seed, cl.Int("seed", 0, 0, INT64_MAX));
    sampling.seed = static_cast<uint64_t>(seed);
  }
  FOXSERVE_RETURN_IF_ERROR(engine::ValidateSamplingParams(sampling));

  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new;
  FOXSERVE_ASSIGN_OR_RETURN(auto backend, LoadBackend(cl, total));
  engine::KvBlockManager blocks(backend->num_pages());
  engine::SequenceRunner runner(backend.get(), &blocks, total);
  engine::Sampler sampler(sampling, prompt);
  engine::GenerateOptions options;
  options.max_new_tokens = max_new;
  options.prefill_chunk = chunk;
  FOXSERVE_ASSIGN_OR_RETURN(bool ignore_eos, cl.Bool("ignore-eos", false));
  options.stop_at_eos = !ignore_eos;
  FOXSERVE_ASSIGN_OR_RETURN(std::vector<int32_t> generated,
                            engine::GenerateTokens(runner, prompt, options, sampler,
                                                   config.eos_token_ids));
  if (tokenizer != nullptr) {
    std::string text;
    if (cl.Has("prompt")) text = *cl.Get("prompt");
    FOXSERVE_ASSIGN_OR_RETURN(std::string continuation, tokenizer->Decode(generated));
    std::cout << text << continuation << "\n";
  }
  FOXSERVE_ASSIGN_OR_RETURN(bool print_ids, cl.Bool("print-ids", false));
  if (print_ids || tokenizer == nullptr) std::cout << absl::StrJoin(generated, " ") << "\n";
  std::cout.flush();
  PrintAcp(*backend, runner.acp_counters());
  return 0;
}

// Prefills BOS + the first tokens of a text file with ACP on and prints, per layer and head, the
// fraction of (query block, key block) tiles skipped, as a Markdown table.
absl::Status RunAcpReport(const std::vector<std::string>& args) {
  FOXSERVE_ASSIGN_OR_RETURN(CommandLine cl,
                            CommandLine::Parse(args, With(kCommonFlags, {"text-file", "tokens"})));
  FOXSERVE_ASSIGN_OR_RETURN(std::string model_dir, cl.Required("model"));
  FOXSERVE_ASSIGN_OR_RETURN(std::string path, cl.Required("text-file"));
  FOXSERVE_ASSIGN_OR_RETURN(int64_t tokens, cl.Int("tokens", 1024, 2, 1 << 22));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  FOXSERVE_ASSIGN_OR_RETURN(auto tokenizer, models::LoadTokenizer(model_dir));
  std::vector<int32_t> ids;
  if (tokenizer->bos_id()) ids.push_back(*tokenizer->bos_id());
  FOXSERVE_ASSIGN_OR_RETURN(std::vector<int32_t> encoded, tokenizer->Encode(text.str()));
  ids.insert(ids.end(), encoded.begin(), encoded.end());
  if (static_cast<int64_t>(ids.size()) < tokens) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has only ", ids.size(), " tokens"));
  }
  ids.resize(tokens);
  FOXSERVE_ASSIGN_OR_RETURN(auto backend, LoadBackend(cl, tokens));
  engine::KvBlockManager blocks(backend->num_pages());
  engine::SequenceRunner runner(backend.get(), &blocks, tokens);
  FOXSERVE_RETURN_IF_ERROR(runner.Feed(ids, false).status());
  const models::AcpCounters& c = runner.acp_counters();
  const int64_t H = backend->config().num_heads, L = backend->config().num_hidden_layers;
  std::cout << "| layer |";
  for (int64_t h = 0; h < H; ++h) std::cout << " head " << h << " |";
  std::cout << " layer |\n|---|";
  for (int64_t h = 0; h <= H; ++h) std::cout << "---|";
  std::cout << "\n";
  for (int64_t l = 0; l < L; ++l) {
    std::cout << "| " << l << " |";
    uint64_t lc = 0, ls = 0;
    for (int64_t h = 0; h < H; ++h) {
      const uint64_t computed = c.computed[l * H + h], skipped = c.skipped[l * H + h];
      lc += computed;
      ls += skipped;
      std::cout << absl::StrFormat(" %.1f%% |", 100.0 * skipped / (computed + skipped));
    }
    std::cout << absl::StrFormat(" %.1f%% |\n", 100.0 * ls / (lc + ls));
  }
  std::cout << absl::StrFormat("\nall layers: %.1f%% of %d tiles skipped (%d tokens, log eps %.3g)\n",
                               100.0 * c.total_skipped() / (c.total_computed() + c.total_skipped()),
                               c.total_computed() + c.total_skipped(), tokens,
                               backend->acp().log_eps);
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  absl::StatusOr<int> exit_code = 0;
  if (command == "logits") {
    absl::Status status = RunLogits(args);
    if (!status.ok()) exit_code = status;
  } else if (command == "generate") {
    exit_code = RunGenerate(args);
  } else if (command == "acp-report") {
    absl::Status status = RunAcpReport(args);
    if (!status.ok()) exit_code = status;
  } else if (command == "--help" || command == "help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  } else {
    std::fprintf(stderr, "foxserve-cli: unknown command \"%s\"\n%s", command.c_str(), kUsage);
    return 2;
  }
  if (!exit_code.ok()) {
    std::fprintf(stderr, "foxserve-cli %s: %s\n", command.c_str(),
                 exit_code.status().ToString().c_str());
    return 1;
  }
  return *exit_code;
}

}  // namespace
}  // namespace foxserve

int main(int argc, char** argv) { return foxserve::Main(argc, argv); }
