#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/gemm.h"

namespace foxserve {
namespace kernels {
namespace {

// One query row, online softmax over key pages [start_block, position / page_size].
void AttendRow(const KvPoolView& pool, const KvStreamView& stream, const float* q, double c_q,
               int64_t position, int64_t start_block, float scale, float* scores, float* acc,
               float* out) {
  const KvPageLayout& layout = pool.layout;
  const int64_t d = layout.head_dim;
  const int64_t last_block = position / layout.page_size;
  float running_max = -std::numeric_limits<float>::infinity();
  float denom = 0.0f;
  std::fill(acc, acc + d, 0.0f);
  for (int64_t b = start_block; b <= last_block; ++b) {
    const int32_t page_id = stream.pages[b];
    FOXSERVE_CHECK(page_id >= 0 && page_id < pool.num_pages)
        << "block " << b << " of a stream reads page " << page_id << " (evicted or unset)";
    const float* page = pool.page(page_id);
    const float* keys = page + layout.k_offset();
    const float* values = page + layout.v_offset();
    const float* c_rel = page + layout.c_offset();
    const int64_t num_keys = b == last_block ? position % layout.page_size + 1 : layout.page_size;
    // c_q - c_j = (c_q - block base) - C_j; the first difference is taken in double.
    const float decay_base = static_cast<float>(c_q - stream.block_c_first[b]);
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < num_keys; ++j) {
      const float s = Dot(q, keys + j * d, d) * scale + (decay_base - c_rel[j]);
      scores[j] = s;
      block_max = std::max(block_max, s);
    }
    const float new_max = std::max(running_max, block_max);
    const float rescale = std::exp(running_max - new_max);  // 0 on the first block
    denom *= rescale;
    for (int64_t i = 0; i < d; ++i) acc[i] *= rescale;
    for (int64_t j = 0; j < num_keys; ++j) {
      const float p = std::exp(scores[j] - new_max);
      denom += p;
      const float* v = values + j * d;
      for (int64_t i = 0; i < d; ++i) acc[i] += p * v[i];
    }
    running_max = new_max;
  }
  const float inv = 1.0f / denom;
  for (int64_t i = 0; i < d; ++i) out[i] = acc[i] * inv;
}

}  // namespace

void PagedAttentionRows(const KvPoolView& pool, const KvStreamView& stream,
                        const StreamQueries& queries, const int32_t* start_blocks, float scale,
                        int64_t row_begin, int64_t row_end, float* out, int64_t out_stride) {
  const int32_t page_size = pool.layout.page_size;
  FOXSERVE_CHECK_LE(queries.first_position + queries.n, stream.num_tokens);
  std::vector<float> scratch(page_size + pool.layout.head_dim);
  const int64_t first_block = queries.first_position / page_size;
  for (int64_t i = row_begin; i < row_end; ++i) {
    const int64_t position = queries.first_position + i;
    const int64_t start = start_blocks[position / page_size - first_block];
    AttendRow(pool, stream, queries.q + i * queries.q_stride, queries.c[i], position, start, scale,
              scratch.data(), scratch.data() + page_size, out + i * out_stride);
  }
}

}  // namespace kernels
}  // namespace foxserve
