// The CUDA paged attention against its CPU twin (kernels/cpu/paged_attention.h) on random
// inputs: several sequences of different lengths in one batch, chunks that start mid-page, one
// decode row per sequence split over 1, 2 or 16 blocks per task, forget gates that forget fast,
// slowly or in bursts, pages shuffled and unused pages poisoned with NaN. The CPU twin reads the
// same bf16-rounded K/V, so the comparison measures the kernels' arithmetic; ACP starts come from
// the shared planner with a large eps so pruning really changes the output.
// Skips, printing why, without a GPU.
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/acp_boundary.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace kernels {
namespace {

constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;

float RoundBf16(float x) { return __bfloat162float(__float2bfloat16(x)); }

struct Sequence {
  int64_t length;         // tokens in the cache after this step
  int64_t first_position; // first query of this step
  double log_f_scale;     // how fast its heads forget
};

struct Batch {
  int32_t H = 2;
  std::vector<Sequence> seqs;
  // Host state of every (sequence, head) stream.
  std::vector<std::vector<int32_t>> pages;         // [seq * H + h][block]
  std::vector<std::vector<double>> block_first;    // c of each block's first token
  std::vector<std::vector<double>> block_last;
  std::vector<std::vector<double>> c;              // [stream][position]
  std::vector<float> cpu_pool;                     // float pages (K, V bf16-rounded)
  std::vector<uint8_t> gpu_pool;                   // bf16 pages
  int64_t num_pages = 0;
  std::vector<float> q;                            // [tokens][H * D]
  std::vector<int32_t> token_position;
  std::vector<int32_t> token_seq;
};

Batch MakeBatch(const std::vector<Sequence>& seqs, std::mt19937& rng) {
  Batch b;
  b.seqs = seqs;
  const int H = b.H;
  int64_t blocks = 0;
  for (const Sequence& s : seqs) blocks += (s.length + PS - 1) / PS;
  b.num_pages = blocks * H + 5;
  KvPageLayout layout{PS, D};
  b.cpu_pool.assign(b.num_pages * layout.page_floats(), std::numeric_limits<float>::quiet_NaN());
  b.gpu_pool.assign(b.num_pages * CudaPageBytes(PS, D), 0xFF);  // bf16 0xFFFF is a NaN
  std::vector<int32_t> ids(b.num_pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  size_t next = 0;
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uni(0, 1);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int h = 0; h < H; ++h) {
      const int64_t nb = (seqs[s].length + PS - 1) / PS;
      std::vector<int32_t> pages(ids.begin() + next, ids.begin() + next + nb);
      next += nb;
      std::vector<double> c(seqs[s].length), first(nb), last(nb);
      double cum = 0;
      for (int64_t t = 0; t < seqs[s].length; ++t) {
        double log_f = -seqs[s].log_f_scale * uni(rng) * (h + 1);
        if (seqs[s].log_f_scale < 0 && t % 300 == 150) log_f = -300;  // burst
        cum += std::min(log_f, 0.0);
        c[t] = cum;
        const int64_t blk = t / PS, slot = t % PS;
        if (slot == 0) first[blk] = cum;
        last[blk] = cum;
        float* cpu = b.cpu_pool.data() + pages[blk] * layout.page_floats();
        uint8_t* gpu = b.gpu_pool.data() + pages[blk] * CudaPageBytes(PS, D);
        for (int i = 0; i < D; ++i) {
          const float k = RoundBf16(static_cast<float>(normal(rng)));
          const float v = RoundBf16(static_cast<float>(normal(rng)));
          cpu[layout.k_offset() + slot * D + i] = k;
          cpu[layout.v_offset() + slot * D + i] = v;
          const __nv_bfloat16 kb = __float2bfloat16(k), vb = __float2bfloat16(v);
          std::memcpy(gpu + (slot * D + i) * 2, &kb, 2);
          std::memcpy(gpu + 2 * PS * D + (slot * D + i) * 2, &vb, 2);
        }
        const float c_rel = static_cast<float>(cum - first[blk]);
        cpu[layout.c_offset() + slot] = c_rel;
        std::memcpy(gpu + 4 * PS * D + slot * 4, &c_rel, 4);
      }
      b.pages.push_back(pages);
      b.block_first.push_back(first);
      b.block_last.push_back(last);
      b.c.push_back(c);
    }
    for (int64_t p = seqs[s].first_position; p < seqs[s].length; ++p) {
      b.token_position.push_back(static_cast<int32_t>(p));
      b.token_seq.push_back(static_cast<int32_t>(s));
      for (int i = 0; i < H * D; ++i) b.q.push_back(static_cast<float>(normal(rng)));
    }
  }
  return b;
}

// kTma* follow TmaPrefillShape's order.
enum class PrefillKernel {
  kSimple,
  kMma,
  kWgmma,
  kTma,
  kTmaTensorSums,
  kTmaThreeGroupsOverlap,
};

// Runs the batch on the GPU and the CPU twin with starts planned at `log_eps` (0: dense) and
// returns the worst per-row relative error.
// kWarpSplitMerged*: the warp-split kernel with the merge fused into its launch, the CTA build
// as the launcher chooses it (3 CTAs an SM at these sizes) or forced to 4 CTAs an SM.
enum class DecodeKernel { kSimple, kWarpSplit, kWarpSplitMerged, kWarpSplitMergedFourCtas };

// Inserts an empty task (begin == end) after every decode row's tasks, as the GPU planner leaves
// when a row's live range is shorter than the host's bound: they must weigh nothing.
void AddEmptyDecodeTasks(HostAttentionTasks* t) {
  HostAttentionTasks padded = *t;
  padded.decode_token.clear();
  padded.decode_head.clear();
  padded.decode_begin.clear();
  padded.decode_end.clear();
  padded.decode_row.clear();
  padded.row_partials = {0};
  for (size_t r = 0; r + 1 < t->row_partials.size(); ++r) {
    for (int32_t i = t->row_partials[r]; i < t->row_partials[r + 1]; ++i) {
      padded.decode_token.push_back(t->decode_token[i]);
      padded.decode_head.push_back(t->decode_head[i]);
      padded.decode_begin.push_back(t->decode_begin[i]);
      padded.decode_end.push_back(t->decode_end[i]);
      padded.decode_row.push_back(static_cast<int32_t>(r));
    }
    padded.decode_token.push_back(t->row_token[r]);
    padded.decode_head.push_back(t->row_head[r]);
    padded.decode_begin.push_back(7);
    padded.decode_end.push_back(7);
    padded.decode_row.push_back(static_cast<int32_t>(r));
    padded.row_partials.push_back(static_cast<int32_t>(padded.decode_token.size()));
  }
  // Padding tasks of no row past the rows' own, as a graph step's (models/fox_cuda_device_plan.cc).
  for (int i = 0; i < 3; ++i) {
    padded.decode_token.push_back(0);
    padded.decode_head.push_back(0);
    padded.decode_begin.push_back(0);
    padded.decode_end.push_back(0);
    padded.decode_row.push_back(-1);
  }
  *t = padded;
}

// bound_scale != 0: the rows carry logit bounds, |q| max|k| scale (the stream's keys) times
// bound_scale, which the TMA prefill may use as the softmax maximum; host_bound: the launch is
// also told the largest of them (CudaAttentionRows::max_row_logit_bound), as the model tells it
// its weights' bound, so the TMA prefill may take its build without the online softmax.
// non_finite_rows: where to count rows with a non-finite output instead of failing on them.
double Compare(const Batch& b, double log_eps, int32_t decode_chunk_blocks, int64_t* skipped,
               PrefillKernel kernel = PrefillKernel::kSimple,
               DecodeKernel decode_kernel = DecodeKernel::kSimple, bool empty_tasks = false,
               double bound_scale = 0, int64_t* non_finite_rows = nullptr,
               std::vector<uint64_t>* tma_timeline = nullptr, bool host_bound = false) {
  const int H = b.H;
  const int64_t tokens = static_cast<int64_t>(b.token_position.size());
  std::vector<AttentionItem> items;
  std::vector<int64_t> row_table(tokens * H);
  std::vector<int32_t> all_pages;
  std::vector<double> all_base, row_c(tokens * H);
  std::vector<float> row_bound(tokens * H);
  std::vector<int64_t> stream_offset(b.pages.size());
  for (size_t st = 0; st < b.pages.size(); ++st) {
    stream_offset[st] = static_cast<int64_t>(all_pages.size());
    all_pages.insert(all_pages.end(), b.pages[st].begin(), b.pages[st].end());
    all_base.insert(all_base.end(), b.block_first[st].begin(), b.block_first[st].end());
  }
  int32_t token = 0;
  std::vector<float> cpu_out(tokens * H * D, std::nanf(""));
  KvPoolView cpu_pool{const_cast<float*>(b.cpu_pool.data()), b.num_pages, KvPageLayout{PS, D}};
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const Sequence& seq = b.seqs[s];
    AttentionItem item;
    item.first_token = token;
    item.num_tokens = static_cast<int32_t>(seq.length - seq.first_position);
    item.first_position = seq.first_position;
    const int64_t nqb = NumQueryBlocks(seq.first_position, item.num_tokens, PS);
    item.starts.assign(H * nqb, 0);
    for (int h = 0; h < H; ++h) {
      const size_t st = s * H + h;
      std::vector<double> c_rows(b.c[st].begin() + seq.first_position, b.c[st].end());
      if (log_eps != 0) {
        // U = max|q| max|k| / sqrt(d) bounds: normal rows of 64 have norms near 8; take 12 * 12.
        const double delta = AcpThreshold(12.0 * 12.0 / 8.0, static_cast<double>(seq.length), log_eps);
        PlanQueryBlockStarts(b.block_last[st].data(), 0, seq.first_position, item.num_tokens,
                             c_rows.data(), PS, delta, item.starts.data() + h * nqb);
      }
      double max_k2 = 0;
      for (int64_t t = 0; t < seq.length; ++t) {
        const float* k = b.cpu_pool.data() + b.pages[st][t / PS] * cpu_pool.layout.page_floats() +
                         cpu_pool.layout.k_offset() + (t % PS) * D;
        double k2 = 0;
        for (int i = 0; i < D; ++i) k2 += static_cast<double>(k[i]) * k[i];
        max_k2 = std::max(max_k2, k2);
      }
      for (int t = 0; t < item.num_tokens; ++t) {
        row_table[(token + t) * H + h] = stream_offset[st];
        row_c[(token + t) * H + h] = c_rows[t];
        const float* qr = b.q.data() + (token + t) * H * D + h * D;
        double q2 = 0;
        for (int i = 0; i < D; ++i) q2 += static_cast<double>(qr[i]) * qr[i];
        row_bound[(token + t) * H + h] =
            static_cast<float>(std::sqrt(q2 * max_k2) * 0.125 * (1 + 1e-6) * bound_scale);
      }
      // CPU twin.
      KvStreamView view{b.pages[st].data(), b.block_first[st].data(), b.block_last[st].data(),
                        static_cast<int64_t>(b.pages[st].size()), seq.length};
      StreamQueries queries{b.q.data() + token * H * D + h * D, H * D, c_rows.data(),
                            seq.first_position, item.num_tokens};
      PagedAttentionRows(cpu_pool, view, queries, item.starts.data() + h * nqb, 0.125f, 0,
                         item.num_tokens, cpu_out.data() + token * H * D + h * D, H * D);
    }
    items.push_back(item);
    token += item.num_tokens;
  }
  HostAttentionTasks host;
  BuildAttentionTasks(items, H, PS, decode_chunk_blocks, &host);
  int64_t dense_blocks = 0;
  for (const auto& item : items) {
    const int64_t first = item.first_position / PS, last = (item.first_position + item.num_tokens - 1) / PS;
    for (int64_t blk = first; blk <= last; ++blk) dense_blocks += H * (blk + 1);
  }
  *skipped += dense_blocks - host.live_key_blocks;
  if (empty_tasks) AddEmptyDecodeTasks(&host);

  DeviceBuffer<uint8_t> pool_d;
  pool_d.Upload(b.gpu_pool);
  DeviceBuffer<int32_t> positions, pages, pf, pn, ph, ps_, dt, dh, db, de, dr, rt, rh, rp;
  DeviceBuffer<int32_t> arrivals;
  DeviceBuffer<int64_t> table;
  DeviceBuffer<double> base, c;
  DeviceBuffer<float> q, out, pm, pl, pacc, bound;
  positions.Upload(b.token_position);
  pages.Upload(all_pages);
  table.Upload(row_table);
  base.Upload(all_base);
  c.Upload(row_c);
  q.Upload(b.q);
  bound.Upload(row_bound);
  out.Upload(std::vector<float>(tokens * H * D, std::nanf("")));
  pf.Upload(host.prefill_first_token);
  pn.Upload(host.prefill_num_rows);
  ph.Upload(host.prefill_head);
  ps_.Upload(host.prefill_start);
  dt.Upload(host.decode_token);
  dh.Upload(host.decode_head);
  db.Upload(host.decode_begin);
  de.Upload(host.decode_end);
  rt.Upload(host.row_token);
  rh.Upload(host.row_head);
  rp.Upload(host.row_partials);
  dr.Upload(host.decode_row);
  arrivals.Upload(std::vector<int32_t>(host.row_token.size(), 0));
  pm.Resize(host.decode_token.size());
  pl.Resize(host.decode_token.size());
  pacc.Resize(host.decode_token.size() * D);

  CudaKvPool pool{pool_d.get(), b.num_pages, PS, D};
  CudaAttentionRows rows{positions.get(), table.get(), pages.get(), base.get(), c.get(),
                         q.get(), out.get(), H, 0.125f, bound_scale != 0 ? bound.get() : nullptr};
  if (host_bound) rows.max_row_logit_bound = *std::max_element(row_bound.begin(), row_bound.end());
  CudaPrefillTasks prefill{pf.get(), pn.get(), ph.get(), ps_.get(),
                           static_cast<int32_t>(host.prefill_first_token.size())};
  CudaDecodeTasks decode{dt.get(), dh.get(), db.get(), de.get(),
                         static_cast<int32_t>(host.decode_token.size()), rt.get(), rh.get(),
                         rp.get(), static_cast<int32_t>(host.row_token.size()), pm.get(), pl.get(),
                         pacc.get()};
  switch (kernel) {
    case PrefillKernel::kSimple:
      FOXSERVE_CUDA_CHECK(LaunchPagedPrefill(pool, rows, prefill, nullptr));
      break;
    case PrefillKernel::kMma:
      FOXSERVE_CUDA_CHECK(LaunchPagedPrefillMma(pool, rows, prefill, nullptr));
      break;
    case PrefillKernel::kWgmma:
      FOXSERVE_CUDA_CHECK(LaunchPagedPrefillWgmma(pool, rows, prefill, nullptr));
      break;
    default: {
      const auto shape = static_cast<TmaPrefillShape>(static_cast<int>(kernel) -
                                                      static_cast<int>(PrefillKernel::kTma));
      // The persistent kernel three ways: CTAs taking a fixed share of the tiles, one CTA an SM
      // (at these sizes mostly one tile each); then three CTAs taking tiles from the shared
      // counter (many each, so that the slots and stages wrap from tile to tile), twice: the
      // second launch relies on the first leaving the counter at zero. A task's rows do not
      // depend on which CTA runs them: the outputs must agree bit for bit.
      // Poisoned first, as before the launches below: rows of decode items are not written.
      FOXSERVE_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.size() * sizeof(float)));
      FOXSERVE_CUDA_CHECK(LaunchPagedPrefillTma(pool, rows, prefill, nullptr, shape));
      const std::vector<float> fixed_share = out.Download();
      DeviceBuffer<int32_t> counter;
      counter.Upload(std::vector<int32_t>(2, 0));
      prefill.tile_counter = counter.get();
      DeviceBuffer<uint64_t> timeline;
      if (tma_timeline != nullptr) {  // every word poisoned, so that one left unwritten shows
        timeline.Upload(std::vector<uint64_t>(
            static_cast<size_t>(PrefillTmaTiles(prefill, shape)) * kPrefillTimelineSlots,
            ~uint64_t{0}));
      }
      constexpr int kFewCtas = 3;
      FOXSERVE_CUDA_CHECK(
          LaunchPagedPrefillTma(pool, rows, prefill, nullptr, shape, nullptr, kFewCtas));
      FOXSERVE_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.size() * sizeof(float)));  // NaN
      FOXSERVE_CUDA_CHECK(
          LaunchPagedPrefillTma(pool, rows, prefill, nullptr, shape, timeline.get(), kFewCtas));
      if (tma_timeline != nullptr) *tma_timeline = timeline.Download();
      for (int32_t c : counter.Download()) EXPECT_EQ(c, 0) << "the tile counter left set";
      const std::vector<float> taken = out.Download();
      int64_t differ = 0;
      for (size_t i = 0; i < taken.size(); ++i) {
        differ += std::memcmp(&taken[i], &fixed_share[i], sizeof(float)) != 0 ? 1 : 0;
      }
      EXPECT_EQ(differ, 0) << "outputs differ between the CTAs' fixed shares and taken tiles";
      break;
    }
  }
  const bool merged = decode_kernel == DecodeKernel::kWarpSplitMerged ||
                      decode_kernel == DecodeKernel::kWarpSplitMergedFourCtas;
  if (merged && decode.count > 0) {
    decode.task_row = dr.get();
    decode.row_arrivals = arrivals.get();
    const DecodeOccupancy occupancy = decode_kernel == DecodeKernel::kWarpSplitMerged
                                          ? DecodeOccupancy::kChosen
                                          : DecodeOccupancy::kFourCtasPerSm;
    // Twice: the second launch relies on the first leaving every row's counter at zero.
    FOXSERVE_CUDA_CHECK(LaunchPagedDecodeWarpSplit(pool, rows, decode, nullptr, occupancy));
    FOXSERVE_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.size() * sizeof(float)));  // NaN
    FOXSERVE_CUDA_CHECK(LaunchPagedDecodeWarpSplit(pool, rows, decode, nullptr, occupancy));
    for (int32_t count : arrivals.Download()) EXPECT_EQ(count, 0) << "a counter left set";
  } else if (decode_kernel == DecodeKernel::kWarpSplit) {
    FOXSERVE_CUDA_CHECK(LaunchPagedDecodeWarpSplit(pool, rows, decode, nullptr));
  } else {
    FOXSERVE_CUDA_CHECK(LaunchPagedDecode(pool, rows, decode, nullptr));
  }
  FOXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> gpu_out = out.Download();
  double worst = 0;
  for (int64_t r = 0; r < tokens * H; ++r) {
    if (non_finite_rows != nullptr &&
        !std::all_of(gpu_out.begin() + r * D, gpu_out.begin() + (r + 1) * D,
                     [](float g) { return std::isfinite(g); })) {
      ++*non_finite_rows;
      continue;
    }
    double num = 0, den = 0;
    for (int i = 0; i < D; ++i) {
      const double g = gpu_out[r * D + i], e = cpu_out[r * D + i];
      EXPECT_TRUE(std::isfinite(g)) << "row " << r << " not written or read a poisoned page";
      num += (g - e) * (g - e);
      den += e * e;
    }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

TEST(PagedAttentionCudaTest, MatchesTheCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::mt19937 rng(7);
  int64_t skipped = 0;
  double worst = 0;
  // Prefill chunks: whole sequences and chunks starting mid-page.
  const std::vector<std::vector<Sequence>> prefills = {
      {{1, 0, 0.0}, {63, 0, 0.01}, {64, 0, 0.5}, {65, 0, 5.0}},
      {{1020, 0, 0.05}, {2098, 2098 - 700, 2.0}, {300, 17, -1}},
      {{700, 0, 0.0}, {129, 64, 3.0}},
  };
  for (const auto& seqs : prefills) {
    const Batch b = MakeBatch(seqs, rng);
    for (double log_eps : {0.0, -10.0, -2.0}) {
      const double e = Compare(b, log_eps, 16, &skipped);
      printf("[ measured ] prefill batch, log eps %g: worst row relative error %.3g\n", log_eps, e);
      worst = std::max(worst, e);
    }
  }
  // Decode rows: one new token per sequence, split-K at several granularities.
  const std::vector<Sequence> decodes = {
      {1, 0, 0.1}, {64, 63, 0.0}, {65, 64, 1.0}, {2049, 2048, 0.01}, {4000, 3999, 5.0},
      {3000, 2999, -1}};
  const Batch b = MakeBatch(decodes, rng);
  for (DecodeKernel kernel :
       {DecodeKernel::kSimple, DecodeKernel::kWarpSplit, DecodeKernel::kWarpSplitMerged,
        DecodeKernel::kWarpSplitMergedFourCtas}) {
    for (int chunk : {1, 2, 8, 16, 32}) {
      for (double log_eps : {0.0, -10.0, -2.0}) {
        for (bool empty : {false, true}) {
          const double e =
              Compare(b, log_eps, chunk, &skipped, PrefillKernel::kSimple, kernel, empty);
          printf("[ measured ] %s decode, %d blocks per task%s, log eps %g: worst %.3g\n",
                 kernel == DecodeKernel::kSimple      ? "simple"
                 : kernel == DecodeKernel::kWarpSplit ? "warp-split"
                 : kernel == DecodeKernel::kWarpSplitMerged ? "warp-split merged"
                                                            : "warp-split merged, 4 CTAs an SM",
                 chunk, empty ? " (+ empty tasks)" : "", log_eps, e);
          worst = std::max(worst, e);
        }
      }
    }
  }
  EXPECT_LT(worst, 2e-3) << "same bf16 inputs: only fp32 rounding may differ";
  EXPECT_GT(skipped, 100) << "the cases must exercise ACP skipping";
}

// The tensor-core prefills round Q and the probabilities to bf16: within 2e-2 of the twin. The
// batches mix pairs of tasks that share their pages (neighbouring query blocks of one sequence
// and head) with pairs that do not (one-block sequences, whose neighbouring task is another head).
void ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel kernel, const char* name,
                                           double bound_scale = 0, bool host_bound = false) {
  std::mt19937 rng(8);
  int64_t skipped = 0;
  double worst = 0;
  const std::vector<std::vector<Sequence>> prefills = {
      {{1, 0, 0.0}, {63, 0, 0.01}, {64, 0, 0.5}, {65, 0, 5.0}},
      {{1020, 0, 0.05}, {2098, 2098 - 700, 2.0}, {300, 17, -1}},
      {{700, 0, 0.0}, {129, 64, 3.0}},
  };
  for (const auto& seqs : prefills) {
    const Batch b = MakeBatch(seqs, rng);
    for (double log_eps : {0.0, -10.0, -2.0}) {
      const double e = Compare(b, log_eps, 16, &skipped, kernel, DecodeKernel::kSimple, false,
                               bound_scale, nullptr, nullptr, host_bound);
      printf("[ measured ] %s prefill, logit bounds x%g%s, log eps %g: worst row relative "
             "error %.3g\n",
             name, bound_scale, host_bound ? " (largest given)" : "", log_eps, e);
      worst = std::max(worst, e);
    }
  }
  EXPECT_LT(worst, 2e-2);
  EXPECT_GT(skipped, 100) << "the cases must exercise ACP skipping";
}

TEST(MmaPrefillTest, MatchesTheCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel::kMma, "mma");
}

TEST(WgmmaPrefillTest, MatchesTheCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel::kWgmma, "wgmma");
}

// Walks that join two tasks, walks of one task (a head or a sequence changes between the CTA's
// tasks), partly written last pages holding NaN, missing second pages of a pair.
TEST(TmaPrefillTest, MatchesTheCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  // Logit bounds: none (online maxima), exact (the fixed maximum), 2.5 times too loose (still
  // fixed: probabilities near e^-55, which must neither flush nor lose precision) and 3 times
  // (past the kernel's limit: online maxima again); each with the largest bound unknown to the
  // launch (the build with both paths) and given (the bounded build where it is at most 30).
  for (double bound_scale : {0.0, 1.0, 2.5, 3.0}) {
    for (bool host_bound : {false, true}) {
      if (bound_scale == 0 && host_bound) continue;
      ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel::kTma, "tma", bound_scale, host_bound);
      ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel::kTmaTensorSums,
                                            "tma, row sums by the tensor cores", bound_scale,
                                            host_bound);
      ExpectTensorCorePrefillMatchesTheTwin(PrefillKernel::kTmaThreeGroupsOverlap,
                                            "tma, 3 groups, softmax under P V", bound_scale,
                                            host_bound);
    }
  }
}

// That the bounds are used, not only harmless: with bounds far below the logits (a broken
// contract: -10 times |q| max|k| scale, about -100) a task whose largest row bound lies below
// about -88 takes probabilities past fp32's range on the fixed-maximum path, which the online
// softmax cannot; the same rows past the limit of 30 (10 times the bound) are exact again.
TEST(TmaPrefillTest, TakesTheRowBoundsAsTheMaximum) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::mt19937 rng(9);
  const Batch b = MakeBatch({{700, 0, 0.0}, {129, 64, 3.0}}, rng);
  for (PrefillKernel kernel : {PrefillKernel::kTma, PrefillKernel::kTmaTensorSums,
                               PrefillKernel::kTmaThreeGroupsOverlap}) {
    // Largest bound unknown to the launch, then given (the bounded build, for -10x).
    for (bool host_bound : {false, true}) {
      int64_t skipped = 0, overflowed = 0;
      Compare(b, 0.0, 16, &skipped, kernel, DecodeKernel::kSimple, false, -10.0, &overflowed,
              nullptr, host_bound);
      EXPECT_GT(overflowed, 0) << "shape " << static_cast<int>(kernel) << ": bounds ignored";
      int64_t past_limit = 0;
      const double e = Compare(b, 0.0, 16, &skipped, kernel, DecodeKernel::kSimple, false, 10.0,
                               &past_limit, nullptr, host_bound);
      EXPECT_EQ(past_limit, 0);
      EXPECT_LT(e, 2e-2);
      printf("[ measured ] shape %d%s: %lld of %zu rows overflow under bounds -10x; bounds 10x: "
             "%.3g\n",
             static_cast<int>(kernel), host_bound ? " (largest given)" : "",
             static_cast<long long>(overflowed), b.token_position.size() * b.H, e);
    }
  }
}

// The timeline a benchmark asks for: one record a tile, stamps in order, a start and a done
// stamp for every task and none for the consumers without one; three CTAs (so three SMs), each
// consumer starting a tile only after it finished its previous one on that SM; the outputs as
// without it.
TEST(TmaPrefillTest, WritesATimeline) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  int sm_count = 0;
  FOXSERVE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, 0));
  std::mt19937 rng(10);
  const Batch b = MakeBatch({{700, 0, 0.0}, {129, 64, 3.0}}, rng);
  int64_t tasks = 0;  // one a query block and head
  for (const Sequence& s : b.seqs) tasks += ((s.length - 1) / PS - s.first_position / PS + 1) * b.H;
  for (PrefillKernel kernel : {PrefillKernel::kTma, PrefillKernel::kTmaThreeGroupsOverlap}) {
    const int consumers = kernel == PrefillKernel::kTma ? 2 : 3;
    std::vector<uint64_t> t;
    int64_t skipped = 0;
    const double e = Compare(b, -10.0, 16, &skipped, kernel, DecodeKernel::kSimple, false, 1.0,
                             nullptr, &t, /*host_bound=*/true);  // the bounded build, as served
    EXPECT_LT(e, 2e-2);
    ASSERT_EQ(t.size(), static_cast<size_t>((tasks + consumers - 1) / consumers) *
                            kPrefillTimelineSlots);
    int64_t started = 0, done = 0;
    // Per SM, its tiles' (start, done) stamps per consumer.
    std::map<uint64_t, std::vector<std::array<std::pair<uint64_t, uint64_t>, 3>>> by_sm;
    for (size_t tile = 0; tile < t.size() / kPrefillTimelineSlots; ++tile) {
      const uint64_t* r = t.data() + tile * kPrefillTimelineSlots;
      EXPECT_LT(r[0], static_cast<uint64_t>(sm_count)) << "tile " << tile << ": its SM";
      EXPECT_GT(r[1], 0u);
      EXPECT_LE(r[1], r[2]) << "tile " << tile << ": staged before it was taken";
      std::array<std::pair<uint64_t, uint64_t>, 3> spans{};
      for (int g = 0; g < 3; ++g) {
        const uint64_t start_at = r[3 + g], done_at = r[6 + g];
        if (g >= consumers) {
          EXPECT_EQ(start_at, 0u);
          EXPECT_EQ(done_at, 0u);
          continue;
        }
        EXPECT_EQ(start_at == 0, done_at == 0) << "tile " << tile << ", consumer " << g;
        started += start_at != 0 ? 1 : 0;  // apart: a record with one stamp fails a total
        done += done_at != 0 ? 1 : 0;
        if (start_at == 0) continue;
        EXPECT_LE(r[2], start_at) << "tile " << tile << ", consumer " << g;
        EXPECT_LE(start_at, done_at) << "tile " << tile << ", consumer " << g;
        spans[g] = {start_at, done_at};
      }
      by_sm[r[0]].push_back(spans);
    }
    EXPECT_EQ(started, tasks);
    EXPECT_EQ(done, tasks);
    EXPECT_LE(by_sm.size(), 3u) << "more SMs than CTAs";
    for (auto& [sm, tiles] : by_sm) {
      for (int g = 0; g < consumers; ++g) {
        std::vector<std::pair<uint64_t, uint64_t>> spans;
        for (const auto& s : tiles) {
          if (s[g].first != 0) spans.push_back(s[g]);
        }
        std::sort(spans.begin(), spans.end());
        for (size_t i = 1; i < spans.size(); ++i) {
          EXPECT_LE(spans[i - 1].second, spans[i].first)
              << "SM " << sm << ", consumer " << g << ": a tile started before the last ended";
        }
      }
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
