// Host-side planning of the CUDA attention work (plain C++): turns a batch's per-sequence ACP
// starts into the task lists of paged_attention_cuda.h. A sequence with one new token is a
// decode row, split over its live key blocks; longer chunks are prefill query blocks.
#ifndef FOXSERVE_KERNELS_CUDA_ATTENTION_TASKS_H_
#define FOXSERVE_KERNELS_CUDA_ATTENTION_TASKS_H_

#include <cstdint>
#include <vector>

namespace foxserve {
namespace kernels {

struct AttentionItem {
  int32_t first_token = 0;     // index of the item's first new token in the batch
  int32_t num_tokens = 0;
  int64_t first_position = 0;  // absolute position of that token
  // [head][query block] first live key block, query blocks along page boundaries.
  std::vector<int32_t> starts;
};

struct HostAttentionTasks {
  // Prefill.
  std::vector<int32_t> prefill_first_token, prefill_num_rows, prefill_head, prefill_start;
  // Decode: split-K tasks, then the rows and their partial ranges.
  std::vector<int32_t> decode_token, decode_head, decode_begin, decode_end;
  std::vector<int32_t> decode_row;  // per task its row (an index into row_*); -1: padding
  std::vector<int32_t> row_token, row_head, row_partials;
  int64_t live_key_blocks = 0;  // key blocks read, over all tasks
};

// decode_chunk_blocks: key blocks per decode task (the split-K granularity).
void BuildAttentionTasks(const std::vector<AttentionItem>& items, int32_t num_heads,
                         int32_t page_size, int32_t decode_chunk_blocks, HostAttentionTasks* out);

// Key blocks per split-K decode task for a step's decode rows (items with one token): 32 when
// some row has more than 128 live blocks (more than 8 partials to merge at 16), else 16 (and
// with no decode row). Why: tasks must be short enough to spread the rows over the SMs and long
// enough that a long row's partials stay few. One H200, same process (bench/RESULTS.md, ninth
// stop; the fused merge, the launcher's CTA build), us with 16 / 32: ACP 16x4096 (longest 64)
// 78.3 / 82.7, 4x16384 73.9 / 64.3, 8x16384 122.1 / 117.0, 2x32768 57.8 / 53.1; dense 4x16384
// 111.7 / 105.7, 16x16384 388.4 / 382.0; 16x16384 with ACP is the case left 1% behind (128.7 /
// 129.8). The rows' starts may be lower bounds (the shapes of a GPU-planned step): the longest
// range is then an upper bound.
int32_t ChooseDecodeChunkBlocks(const std::vector<AttentionItem>& items, int32_t num_heads,
                                int32_t page_size);

// Whether a step's prefill takes the TMA kernel's three-consumer shape rather than two: when some
// prefill item (more than one new token, from first_position) ends at or past
// kThreeConsumerPrefillTokens positions; a step asks this of each of its items.
// Why: the kernel alone, three consumers are faster at every length measured (dense: 4% at 4k,
// 11% at 16k, 13% at 32k), but end to end on a 760M-shaped model (one H200; bench/RESULTS.md,
// eleventh stop; run-to-run spread up to 20% with ACP off) two were 2-10% faster at 64 x 2048,
// about as fast with ACP and faster without it at 32 x 8192, and three 0-2% (ACP on) and 4-19%
// (ACP off) faster at 16 x 16384 in each of three runs.
inline constexpr int64_t kThreeConsumerPrefillTokens = 16384;
bool PrefersThreeConsumerPrefill(int64_t first_position, int64_t num_tokens);

// Whether `tasks` decode CTAs fill their waves (launches of as many CTAs as the GPU holds at
// once: three_cta_slots or four_cta_slots, the GPU's SMs times 3 or 4) at least 5 points better
// with 4 CTAs an SM than with 3; the warp-split decode launcher then takes its 4-CTA build
// (paged_attention_cuda.h says why). Ties go to 3, the faster build on dense steps.
bool FourCtasFillWavesBetter(int64_t tasks, int64_t three_cta_slots, int64_t four_cta_slots);

// The same task lists for a step whose ACP starts are planned on the GPU (acp_plan_cuda.h): the
// shapes only, in the same order, prefill_start and decode_begin/end left for the planner. Per
// decode item, item.starts holds [head] a block that no start of this step can precede (the
// host's copy of the pointer, one step old); its row gets the tasks that cover the blocks from
// there. prefill_task_base / decode_row_base: per item, its first prefill task (-1 if decode)
// and its first decode row (-1 if prefill).
void BuildAttentionTaskShapes(const std::vector<AttentionItem>& items, int32_t num_heads,
                              int32_t page_size, int32_t decode_chunk_blocks,
                              HostAttentionTasks* out, std::vector<int32_t>* prefill_task_base,
                              std::vector<int32_t>* decode_row_base);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_ATTENTION_TASKS_H_
