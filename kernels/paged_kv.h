// The paged KV cache as the kernels see it: non-owning views passed by value. Ownership and
// accounting live in engine/ (KvBlockManager) and models/ (SequenceKvState).
//
// Pages are per (sequence, layer, head) stream (KERNELS.md section 3): a page holds `page_size`
// consecutive tokens of ONE head, so a block that ACP has killed for one head can be freed while
// other heads still need theirs. Page layout in the CPU pool (float32):
//   K [page_size][head_dim] | V [page_size][head_dim] | C [page_size]
// where C[i] = c(token) - block_c_first[block]: the cumulative log forget value of the token
// relative to the block's first token. Keeping C relative to a per-block base (held in double)
// bounds its magnitude by page_size * |log f|, so float32 keeps c differences precise however
// long the sequence grows; an absolute float32 c loses ~|c| * 2^-24 per difference (0.4% of an
// attention weight at |c| = 4e4).
#ifndef FOXSERVE_KERNELS_PAGED_KV_H_
#define FOXSERVE_KERNELS_PAGED_KV_H_

#include <cstdint>

namespace foxserve {
namespace kernels {

inline constexpr int32_t kDefaultPageSize = 64;
// A block-table entry whose page was freed by ACP eviction; never dereferenced.
inline constexpr int32_t kEvictedPage = -1;

struct KvPageLayout {
  int32_t page_size = kDefaultPageSize;
  int32_t head_dim = 0;

  int64_t k_offset() const { return 0; }
  int64_t v_offset() const { return int64_t{page_size} * head_dim; }
  int64_t c_offset() const { return 2 * int64_t{page_size} * head_dim; }
  int64_t page_floats() const { return int64_t{page_size} * (2 * head_dim + 1); }
};

struct KvPoolView {
  float* data = nullptr;  // [num_pages][layout.page_floats()]
  int64_t num_pages = 0;
  KvPageLayout layout;

  float* page(int32_t id) const { return data + int64_t{id} * layout.page_floats(); }
};

// One (sequence, layer, head) stream.
struct KvStreamView {
  const int32_t* pages = nullptr;         // [num_blocks] page id of each logical block
  const double* block_c_first = nullptr;  // [num_blocks] absolute c of each block's first token
  const double* block_c_last = nullptr;   // [num_blocks] absolute c of each block's last written token
  int64_t num_blocks = 0;
  int64_t num_tokens = 0;  // tokens written to the stream
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_PAGED_KV_H_
