#include "kernels/cuda/attention_tasks.h"

#include <algorithm>

#include "kernels/check.h"

namespace foxserve {
namespace kernels {

void BuildAttentionTasks(const std::vector<AttentionItem>& items, int32_t num_heads,
                         int32_t page_size, int32_t decode_chunk_blocks, HostAttentionTasks* out) {
  *out = HostAttentionTasks();
  out->row_partials.push_back(0);
  for (const AttentionItem& item : items) {
    const int64_t first_block = item.first_position / page_size;
    const int64_t last_block = (item.first_position + item.num_tokens - 1) / page_size;
    const int64_t num_qblocks = last_block - first_block + 1;
    FOXSERVE_CHECK_EQ(static_cast<int64_t>(item.starts.size()), num_heads * num_qblocks);
    for (int32_t h = 0; h < num_heads; ++h) {
      if (item.num_tokens == 1) {
        const int32_t start = item.starts[h];
        for (int64_t b = start; b <= last_block; b += decode_chunk_blocks) {
          out->decode_token.push_back(item.first_token);
          out->decode_head.push_back(h);
          out->decode_row.push_back(static_cast<int32_t>(out->row_token.size()));
          out->decode_begin.push_back(static_cast<int32_t>(b));
          out->decode_end.push_back(
              static_cast<int32_t>(std::min<int64_t>(last_block + 1, b + decode_chunk_blocks)));
        }
        out->live_key_blocks += last_block + 1 - start;
        out->row_token.push_back(item.first_token);
        out->row_head.push_back(h);
        out->row_partials.push_back(static_cast<int32_t>(out->decode_token.size()));
        continue;
      }
      for (int64_t qb = 0; qb < num_qblocks; ++qb) {
        const int64_t block = first_block + qb;
        const int64_t row_begin = std::max<int64_t>(item.first_position, block * page_size);
        const int64_t row_end =
            std::min<int64_t>(item.first_position + item.num_tokens, (block + 1) * page_size);
        const int32_t start = item.starts[h * num_qblocks + qb];
        out->prefill_first_token.push_back(
            static_cast<int32_t>(item.first_token + row_begin - item.first_position));
        out->prefill_num_rows.push_back(static_cast<int32_t>(row_end - row_begin));
        out->prefill_head.push_back(h);
        out->prefill_start.push_back(start);
        out->live_key_blocks += block + 1 - start;
      }
    }
  }
}

int32_t ChooseDecodeChunkBlocks(const std::vector<AttentionItem>& items, int32_t num_heads,
                                int32_t page_size) {
  int64_t longest = 0;
  for (const AttentionItem& item : items) {
    if (item.num_tokens != 1) continue;
    const int64_t last_block = item.first_position / page_size;
    for (int32_t h = 0; h < num_heads; ++h) {
      const int64_t start = h < static_cast<int32_t>(item.starts.size()) ? item.starts[h] : 0;
      longest = std::max(longest, last_block + 1 - std::min(start, last_block));
    }
  }
  return longest > 128 ? 32 : 16;
}

bool PrefersThreeConsumerPrefill(int64_t first_position, int64_t num_tokens) {
  return num_tokens > 1 && first_position + num_tokens >= kThreeConsumerPrefillTokens;
}

bool FourCtasFillWavesBetter(int64_t tasks, int64_t three_cta_slots, int64_t four_cta_slots) {
  if (tasks <= 0 || three_cta_slots <= 0 || four_cta_slots <= 0) return false;
  auto filled = [tasks](int64_t per_wave) {
    const int64_t waves = (tasks + per_wave - 1) / per_wave;
    return static_cast<double>(tasks) / (static_cast<double>(waves) * per_wave);
  };
  return filled(four_cta_slots) > filled(three_cta_slots) + 0.05;
}

void BuildAttentionTaskShapes(const std::vector<AttentionItem>& items, int32_t num_heads,
                              int32_t page_size, int32_t decode_chunk_blocks,
                              HostAttentionTasks* out, std::vector<int32_t>* prefill_task_base,
                              std::vector<int32_t>* decode_row_base) {
  *out = HostAttentionTasks();
  prefill_task_base->assign(items.size(), -1);
  decode_row_base->assign(items.size(), -1);
  out->row_partials.push_back(0);
  for (size_t i = 0; i < items.size(); ++i) {
    const AttentionItem& item = items[i];
    const int64_t first_block = item.first_position / page_size;
    const int64_t last_block = (item.first_position + item.num_tokens - 1) / page_size;
    if (item.num_tokens == 1) {
      FOXSERVE_CHECK_EQ(static_cast<int64_t>(item.starts.size()), num_heads);
      (*decode_row_base)[i] = static_cast<int32_t>(out->row_token.size());
      for (int32_t h = 0; h < num_heads; ++h) {
        const int64_t lower = std::min<int64_t>(item.starts[h], last_block);
        const int64_t chunks = (last_block + 1 - lower + decode_chunk_blocks - 1) / decode_chunk_blocks;
        for (int64_t c = 0; c < chunks; ++c) {
          out->decode_token.push_back(item.first_token);
          out->decode_head.push_back(h);
          out->decode_row.push_back(static_cast<int32_t>(out->row_token.size()));
        }
        out->row_token.push_back(item.first_token);
        out->row_head.push_back(h);
        out->row_partials.push_back(static_cast<int32_t>(out->decode_token.size()));
      }
      continue;
    }
    (*prefill_task_base)[i] = static_cast<int32_t>(out->prefill_first_token.size());
    for (int32_t h = 0; h < num_heads; ++h) {
      for (int64_t block = first_block; block <= last_block; ++block) {
        const int64_t row_begin = std::max<int64_t>(item.first_position, block * page_size);
        const int64_t row_end =
            std::min<int64_t>(item.first_position + item.num_tokens, (block + 1) * page_size);
        out->prefill_first_token.push_back(
            static_cast<int32_t>(item.first_token + row_begin - item.first_position));
        out->prefill_num_rows.push_back(static_cast<int32_t>(row_end - row_begin));
        out->prefill_head.push_back(h);
      }
    }
  }
  out->prefill_start.assign(out->prefill_first_token.size(), 0);
  out->decode_begin.assign(out->decode_token.size(), 0);
  out->decode_end.assign(out->decode_token.size(), 0);
}

}  // namespace kernels
}  // namespace foxserve
