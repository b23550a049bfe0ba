#include "models/fox_weights.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

InProjLayout MakeInProjLayout(const FoxConfig& c) {
  InProjLayout l;
  int64_t row = 0;
  auto take = [&row](int64_t n) {
    const int64_t at = row;
    row += n;
    return at;
  };
  l.q = take(c.hidden_size);
  l.k = take(c.hidden_size);
  l.v = take(c.hidden_size);
  if (c.use_k_shift) l.k_shift = take(c.num_heads);
  if (c.use_v_shift) l.v_shift = take(c.num_heads);
  if (c.fgate_type == FgateType::kFull) l.fgate = take(c.num_heads);
  if (c.use_output_gate) l.ogate = take(c.hidden_size);
  l.rows = row;
  return l;
}

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Reads tensors by name, remembering which ones were used so leftovers can be reported.
class TensorReader {
 public:
  TensorReader(const SafetensorsCheckpoint& ckpt, const LoadProgress& progress)
      : ckpt_(ckpt), progress_(progress) {
    if (progress_) {
      for (const std::string& name : ckpt_.names()) {
        auto t = ckpt_.Get(name);
        if (t.ok()) total_bytes_ += static_cast<int64_t>(t->bytes.size());
      }
    }
  }

  // Copies the tensor, converted to float32, into dst[offset ...].
  absl::Status Read(const std::string& name, const std::vector<int64_t>& shape,
                    std::vector<float>* dst, int64_t offset = 0) {
    used_.insert(name);
    if (!ckpt_.Contains(name)) {
      return absl::NotFoundError(absl::StrCat("checkpoint lacks tensor \"", name, "\" ",
                                              ShapeString(shape), " that the config implies"));
    }
    FOXSERVE_ASSIGN_OR_RETURN(TensorView view, ckpt_.Get(name));
    if (view.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ",
                                                     ShapeString(view.shape), ", expected ",
                                                     ShapeString(shape)));
    }
    if (view.dtype != DType::kF32 && view.dtype != DType::kBF16 && view.dtype != DType::kF16) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has dtype ",
                                                     DTypeName(view.dtype),
                                                     "; weights must be F32, BF16 or F16"));
    }
    FOXSERVE_ASSIGN_OR_RETURN(std::vector<float> values, TensorToFloat32(view));
    if (dst->size() < static_cast<size_t>(offset) + values.size()) {
      dst->resize(offset + values.size());
    }
    std::copy(values.begin(), values.end(), dst->begin() + offset);
    done_bytes_ += static_cast<int64_t>(view.bytes.size());
    if (progress_) progress_(done_bytes_, total_bytes_);
    return absl::OkStatus();
  }

  void MarkOptional(const std::string& name) { used_.insert(name); }

  absl::Status CheckNoLeftovers() const {
    std::vector<std::string> extra;
    for (const std::string& name : ckpt_.names()) {
      if (used_.count(name) == 0) extra.push_back(name);
    }
    if (extra.empty()) return absl::OkStatus();
    if (extra.size() > 5) {
      extra.resize(5);
      extra.push_back("...");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint has tensors the config does not use: ", absl::StrJoin(extra, ", "),
        " (does config.json match the weights?)"));
  }

 private:
  const SafetensorsCheckpoint& ckpt_;
  const LoadProgress& progress_;
  int64_t total_bytes_ = 0;
  int64_t done_bytes_ = 0;
  std::set<std::string> used_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FoxWeights>> LoadFoxWeights(const SafetensorsCheckpoint& checkpoint,
                                                           const FoxConfig& c,
                                                           const LoadProgress& progress) {
  auto w = std::make_unique<FoxWeights>();
  w->config = c;
  w->in_proj = MakeInProjLayout(c);
  const int64_t D = c.hidden_size, H = c.num_heads, I = c.intermediate_size, V = c.vocab_size;
  TensorReader r(checkpoint, progress);

  FOXSERVE_RETURN_IF_ERROR(r.Read("model.embeddings.weight", {V, D}, &w->embeddings));
  w->layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    FoxLayerWeights& lw = w->layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const std::string a = p + "attn.";
    const InProjLayout& ip = w->in_proj;
    FOXSERVE_RETURN_IF_ERROR(r.Read(p + "attn_norm.weight", {D}, &lw.attn_norm));
    lw.in_proj.assign(ip.rows * D, 0.0f);
    FOXSERVE_RETURN_IF_ERROR(r.Read(a + "q_proj.weight", {D, D}, &lw.in_proj, ip.q * D));
    if (c.use_k_shift) {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "k_proj.linear.weight", {D, D}, &lw.in_proj, ip.k * D));
      FOXSERVE_RETURN_IF_ERROR(
          r.Read(a + "k_proj.shift_proj.weight", {H, D}, &lw.in_proj, ip.k_shift * D));
    } else {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "k_proj.weight", {D, D}, &lw.in_proj, ip.k * D));
    }
    if (c.use_v_shift) {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "v_proj.linear.weight", {D, D}, &lw.in_proj, ip.v * D));
      FOXSERVE_RETURN_IF_ERROR(
          r.Read(a + "v_proj.shift_proj.weight", {H, D}, &lw.in_proj, ip.v_shift * D));
    } else {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "v_proj.weight", {D, D}, &lw.in_proj, ip.v * D));
    }
    switch (c.fgate_type) {
      case FgateType::kFull:
        FOXSERVE_RETURN_IF_ERROR(
            r.Read(a + "fgate_proj.weight", {H, D}, &lw.in_proj, ip.fgate * D));
        FOXSERVE_RETURN_IF_ERROR(r.Read(a + "fgate_proj.bias", {H}, &lw.fgate_bias));
        break;
      case FgateType::kBiasOnly:
      case FgateType::kFixed:
        FOXSERVE_RETURN_IF_ERROR(r.Read(a + "fgate_bias", {H}, &lw.fgate_bias));
        break;
      case FgateType::kNone:
        break;
    }
    if (c.qk_norm) {
      const int64_t n = c.qk_norm_share_param_across_head ? c.head_dim : D;
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "q_norm.weight", {n}, &lw.q_norm));
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "k_norm.weight", {n}, &lw.k_norm));
    }
    if (c.use_output_gate) {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "ogate_proj.weight", {D, D}, &lw.in_proj, ip.ogate * D));
    }
    if (c.use_output_norm) {
      FOXSERVE_RETURN_IF_ERROR(r.Read(a + "output_norm.weight", {D}, &lw.output_norm));
    }
    FOXSERVE_RETURN_IF_ERROR(r.Read(a + "o_proj.weight", {D, D}, &lw.o_proj));
    FOXSERVE_RETURN_IF_ERROR(r.Read(p + "mlp_norm.weight", {D}, &lw.mlp_norm));
    FOXSERVE_RETURN_IF_ERROR(r.Read(p + "mlp.gate_proj.weight", {2 * I, D}, &lw.gate_up_proj));
    FOXSERVE_RETURN_IF_ERROR(r.Read(p + "mlp.down_proj.weight", {D, I}, &lw.down_proj));
  }
  FOXSERVE_RETURN_IF_ERROR(r.Read("model.norm.weight", {D}, &w->final_norm));
  if (c.tie_word_embeddings) {
    // Some exporters still write the tied copy; it carries no information.
    r.MarkOptional("lm_head.weight");
  } else {
    FOXSERVE_RETURN_IF_ERROR(r.Read("lm_head.weight", {V, D}, &w->lm_head));
  }
  FOXSERVE_RETURN_IF_ERROR(r.CheckNoLeftovers());
  return w;
}

}  // namespace models
}  // namespace foxserve
