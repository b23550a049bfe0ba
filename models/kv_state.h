// The decode state of one sequence on the host (FOX.md section 2): per (layer, head) stream its
// block table with the c metadata of each block and its ACP pointer; per layer the token-shift
// state. The engine allocates pages into the block tables (KvBlockManager); the forward pass
// writes K/V/C into them and advances the pointers.
#ifndef FOXSERVE_MODELS_KV_STATE_H_
#define FOXSERVE_MODELS_KV_STATE_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/paged_kv.h"

namespace foxserve {
namespace models {

struct KvStream {
  std::vector<int32_t> pages;          // [num_blocks] physical page ids (kEvictedPage once freed)
  std::vector<double> block_c_first;   // [blocks written] absolute c of each block's first token
  std::vector<double> block_c_last;    // [blocks written] absolute c of each block's last token
  // ACP: blocks before it are dead for every future query of the request (threshold fixed per
  // request: U valid for all queries, L = the request's maximum length). Only moves forward.
  int64_t first_live_block = 0;
  // Blocks [0, num_evicted) have had their pages freed (pages[b] == kEvictedPage); always
  // <= first_live_block.
  int64_t num_evicted = 0;
  double c_now = 0.0;       // absolute c of the last written token
  float max_key_norm = 0;  // largest |k| written, for the per-step bound without qk-norm

  kernels::KvStreamView View(int64_t num_tokens) const {
    kernels::KvStreamView v;
    v.pages = pages.data();
    v.block_c_first = block_c_first.data();
    v.block_c_last = block_c_last.data();
    v.num_blocks = static_cast<int64_t>(pages.size());
    v.num_tokens = num_tokens;
    return v;
  }
};

// What a backend keeps of a sequence outside host memory (the CUDA backend's device copy of the
// block tables and c metadata, kernels/cuda/device_kv_mirror.h). Freed with the sequence, and
// dropped by Reset, so a backend never sees state that the host has forgotten.
class BackendSequenceState {
 public:
  virtual ~BackendSequenceState() = default;
};

struct SequenceKvState {
  SequenceKvState(int64_t num_layers, int64_t num_heads, int64_t hidden_size,
                  int64_t max_total_tokens)
      : num_layers(num_layers),
        num_heads(num_heads),
        max_total_tokens(max_total_tokens),
        streams(num_layers * num_heads),
        k_shift_prev(num_layers * hidden_size, 0.0f),
        v_shift_prev(num_layers * hidden_size, 0.0f) {}

  KvStream& stream(int64_t layer, int64_t head) { return streams[layer * num_heads + head]; }
  // Forgets everything written (preemption by recompute). Pages must have been released first.
  void Reset() {
    backend_state.reset();
    num_tokens = 0;
    for (KvStream& s : streams) s = KvStream();
    std::fill(k_shift_prev.begin(), k_shift_prev.end(), 0.0f);
    std::fill(v_shift_prev.begin(), v_shift_prev.end(), 0.0f);
  }
  const KvStream& stream(int64_t layer, int64_t head) const {
    return streams[layer * num_heads + head];
  }
  // Block-table length of every stream (all streams of a sequence cover the same token range;
  // evicted blocks keep their slot).
  int64_t num_blocks() const { return streams.empty() ? 0 : streams[0].pages.size(); }
  // Pages freed by ACP eviction, over all streams.
  int64_t num_evicted_pages() const {
    int64_t n = 0;
    for (const KvStream& s : streams) n += s.num_evicted;
    return n;
  }

  int64_t num_layers;
  int64_t num_heads;
  int64_t num_tokens = 0;  // tokens written to the cache
  // The longest the sequence may grow: L in ACP's per-request threshold.
  int64_t max_total_tokens;
  std::vector<KvStream> streams;     // [layer][head]
  std::vector<float> k_shift_prev;   // [layer][D] pre-shift k projection of the last token
  std::vector<float> v_shift_prev;   // [layer][D] pre-shift v projection of the last token
  // Set by a backend that keeps state on its device. The CUDA backend then keeps the token-shift
  // state there only (k_shift_prev / v_shift_prev above are not updated); everything else above
  // is brought back after every forward step.
  std::unique_ptr<BackendSequenceState> backend_state;
};

// Blocks computed and skipped by ACP, per (layer, head). A block is one (query block, key block)
// tile of a step: queries of one page of positions against one page of keys.
struct AcpCounters {
  AcpCounters() = default;
  AcpCounters(int64_t num_layers, int64_t num_heads)
      : num_heads(num_heads),
        computed(num_layers * num_heads, 0),
        skipped(num_layers * num_heads, 0) {}
  void Add(const AcpCounters& other) {
    for (size_t i = 0; i < computed.size() && i < other.computed.size(); ++i) {
      computed[i] += other.computed[i];
      skipped[i] += other.skipped[i];
    }
  }
  uint64_t total_computed() const;
  uint64_t total_skipped() const;

  int64_t num_heads = 0;
  std::vector<uint64_t> computed;  // [layer][head]
  std::vector<uint64_t> skipped;   // [layer][head]
};

inline uint64_t AcpCounters::total_computed() const {
  uint64_t s = 0;
  for (uint64_t v : computed) s += v;
  return s;
}
inline uint64_t AcpCounters::total_skipped() const {
  uint64_t s = 0;
  for (uint64_t v : skipped) s += v;
  return s;
}

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_KV_STATE_H_
