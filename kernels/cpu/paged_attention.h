// FoX attention over the paged KV cache on the CPU: the reference twin of the CUDA prefill and
// decode kernels.
//
// For query t (absolute position p, cumulative log forget c_t) and keys j <= p of its stream:
//   s_tj = q_t . k_j * scale + (c_t - c_j),   o_t = sum_j softmax_j(s_tj) v_j
// Keys are read page by page from `start_block` of the query's block group up to the page that
// holds p; ACP chooses start_block (acp_boundary.h), 0 means dense. Each query row is computed
// by the same sequence of operations whatever the batch, chunking or thread count, so a decode
// step reproduces the matching prefill row bit for bit when both start from the same block.
#ifndef FOXSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
#define FOXSERVE_KERNELS_CPU_PAGED_ATTENTION_H_

#include <cstdint>

#include "kernels/paged_kv.h"

namespace foxserve {
namespace kernels {

// The queries of one (sequence, head) in one step: n consecutive positions starting at
// first_position, whose K/V/C are already in the stream.
struct StreamQueries {
  const float* q = nullptr;  // [n][head_dim], row stride q_stride
  int64_t q_stride = 0;
  const double* c = nullptr;  // [n] absolute c of each query token
  int64_t first_position = 0;
  int64_t n = 0;
};

// Query blocks follow page boundaries of absolute positions: query i belongs to block
// (first_position + i) / page_size - first_position / page_size.
inline int64_t NumQueryBlocks(int64_t first_position, int64_t n, int32_t page_size) {
  if (n == 0) return 0;
  return (first_position + n - 1) / page_size - first_position / page_size + 1;
}

// Computes rows [row_begin, row_end) of the output. start_blocks: [NumQueryBlocks] first key
// block of each query block. out: [n][head_dim], row stride out_stride.
void PagedAttentionRows(const KvPoolView& pool, const KvStreamView& stream,
                        const StreamQueries& queries, const int32_t* start_blocks, float scale,
                        int64_t row_begin, int64_t row_end, float* out, int64_t out_stride);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
