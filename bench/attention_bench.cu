// Attention of FoX on the GPU: foxserve's paged prefill and decode kernels, ACP on and off, on
// the synthetic decay mix of issue 5, with the card's copy bandwidth measured in the same run.
//
//   attention_bench [--shapes 16x4096,4x16384,2x32768] [--heads 24] [--repeats 5]
//                   [--decode-chunks auto,16,32] [--taus-out FILE] [--skip-simple 1]
//                   [--timeline-dir DIR]
// --decode-chunks: key blocks per split-K decode task, one decode line each; "auto" is the
// CUDA model's per-step choice (kernels::ChooseDecodeChunkBlocks).
// --taus-out writes each shape's per-head decay times ("BxT tau_0 ... tau_H-1" a line), which
// bench/attention_reference.py --taus reads, so that the reference kernels run the same mix (a
// draw of 24 log-uniform decay times moves the fraction of tiles ACP skips by several points).
// --timeline-dir: after timing each TMA prefill shape with logit bounds, one more launch writes
// its timeline (kernels::kPrefillTimelineSlots words a tile, one line each) to
// DIR/timeline_<shape>_<B>x<T>_<dense|acp>.txt, and the prefill tasks go to
// DIR/tasks_<B>x<T>_<dense|acp>.txt; bench/prefill_timeline.py summarises them.
//
// Decay mix: per head a decay time tau log-uniform in [1, 1e4] tokens; per token the gate logit
// is bias(tau) + 0.5 N(0, 1) with bias(tau) = -log(expm1(1 / tau)); q and k rows have unit RMS
// (|q| = |k| = 8 at head_dim 64), so U = 8 and delta = -(2U + log T) - 10.
// Prefill: the whole sequence in one chunk. Decode: one query per sequence at the last position.
// FLOPs are counted dense causal: 4 * d * T^2 / 2 per (sequence, head).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "kernels/acp_boundary.h"
#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace {

using namespace kernels;
constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;

struct Shape {
  int64_t batch, tokens;
};

__global__ void FillKv(uint8_t* pool, int64_t num_pages, uint64_t seed) {
  // K and V of every page: a cheap hash-based uniform in [-sqrt(3), sqrt(3)] (unit RMS).
  const int64_t page = blockIdx.x;
  __nv_bfloat16* kv = reinterpret_cast<__nv_bfloat16*>(pool + page * CudaPageBytes(PS, D));
  for (int i = threadIdx.x; i < 2 * PS * D; i += blockDim.x) {
    uint64_t x = seed ^ (static_cast<uint64_t>(page) * 0x9E3779B97F4A7C15ULL + i);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    const float u = static_cast<float>(x >> 40) / static_cast<float>(1ULL << 24);
    kv[i] = __float2bfloat16((2.0f * u - 1.0f) * 1.7320508f);
  }
}

double Elapsed(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return ms;
}

int Run(int argc, char** argv) {
  std::vector<Shape> shapes = {{16, 4096}, {4, 16384}, {2, 32768}};
  int heads = 24, repeats = 5;
  std::vector<int> decode_chunks = {0};  // key blocks per split-K decode task; 0: auto
  bool skip_simple = false;
  std::string taus_out, timeline_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--shapes") {
      shapes.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        std::vector<std::string> bt = absl::StrSplit(s, 'x');
        shapes.push_back({std::stoll(bt[0]), std::stoll(bt[1])});
      }
    } else if (flag == "--heads") {
      heads = std::stoi(value);
    } else if (flag == "--repeats") {
      repeats = std::stoi(value);
    } else if (flag == "--decode-chunk" || flag == "--decode-chunks") {
      decode_chunks.clear();
      for (absl::string_view c : absl::StrSplit(value, ',')) {
        decode_chunks.push_back(c == "auto" ? 0 : std::stoi(std::string(c)));
      }
    } else if (flag == "--skip-simple") {
      skip_simple = value == "1";
    } else if (flag == "--taus-out") {
      taus_out = value;
    } else if (flag == "--timeline-dir") {
      timeline_dir = value;
    }
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  // Copy ceiling: 1 GiB device to device, bytes read + written.
  double copy_gbs = 0;
  {
    DeviceBuffer<uint8_t> a(1 << 30), b(1 << 30);
    cudaMemcpy(b.get(), a.get(), 1 << 30, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e0);
    for (int r = 0; r < 5; ++r) cudaMemcpy(b.get(), a.get(), 1 << 30, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    copy_gbs = 5.0 * 2 * (1 << 30) / (Elapsed(e0, e1) * 1e-3) / 1e9;
    std::printf("copy bandwidth: %.0f GB/s (read + write)\n", copy_gbs);
  }
  // err: the worst row's relative difference from the simple kernel (fp32 probabilities), or
  // with --skip-simple 1 from the mma kernel.
  std::printf("%-9s %-5s %10s %10s %10s %10s %10s %10s %10s %10s %9s\n", "B x T", "acp",
              "simple ms", "TFLOP/s", "mma ms", "TFLOP/s", "mma err", "wgmma ms", "TFLOP/s",
              "wgmma err", "skipped");
  std::printf("  tma rows: %-9s %-5s %-8s %10s %10s %10s %8s\n", "B x T", "acp", "shape", "ms",
              "TFLOP/s", "err", "/wgmma");
  // decode rows: "warp us" the warp-split kernel and a merge launch, "merged us" the kernel with
  // the merge fused into it (the CUDA model's path; GB/s and "of copy" are its), both with the
  // CTA build the launcher chooses; below, the fused path with each build forced.
  std::printf("  decode rows: %-9s %-5s %6s %12s %12s %12s %10s %8s %9s\n", "B x T", "acp",
              "chunk", "simple us", "warp us", "merged us", "GB/s live", "of copy", "skipped");
  std::ofstream taus_file;
  if (!taus_out.empty()) taus_file.open(taus_out);
  std::mt19937 rng(1);
  for (const Shape& shape : shapes) {
    const int64_t B = shape.batch, T = shape.tokens, H = heads;
    const int64_t blocks = T / PS, num_pages = B * H * blocks;
    DeviceBuffer<uint8_t> pool_d(num_pages * CudaPageBytes(PS, D));
    FillKv<<<num_pages, 256>>>(pool_d.get(), num_pages, 1234);
    FOXSERVE_CUDA_CHECK(cudaGetLastError());
    // Decay mix and c per (sequence, head); C written into the pages.
    std::vector<double> tau(H);
    std::uniform_real_distribution<double> uni(0, 4);
    std::normal_distribution<double> normal;
    for (double& t : tau) t = std::pow(10.0, uni(rng));
    if (taus_file.is_open()) {
      taus_file << B << "x" << T;
      for (double t : tau) {
        char text[32];
        std::snprintf(text, sizeof(text), " %.17g", t);
        taus_file << text;
      }
      taus_file << std::endl;
    }
    std::vector<std::vector<double>> c(B * H), first(B * H), last(B * H);
    std::vector<int32_t> pages(num_pages);
    for (int64_t p = 0; p < num_pages; ++p) pages[p] = static_cast<int32_t>(p);
    std::vector<float> c_rel_pages(num_pages * PS);
    for (int64_t s = 0; s < B * H; ++s) {
      const double bias = -std::log(std::expm1(1.0 / tau[s % H]));
      c[s].resize(T);
      first[s].resize(blocks);
      last[s].resize(blocks);
      double cum = 0;
      for (int64_t t = 0; t < T; ++t) {
        const double x = bias + 0.5 * normal(rng);
        cum += std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x)));
        c[s][t] = cum;
        if (t % PS == 0) first[s][t / PS] = cum;
        last[s][t / PS] = cum;
        c_rel_pages[(s * blocks + t / PS) * PS + t % PS] = static_cast<float>(cum - first[s][t / PS]);
      }
    }
    for (int64_t p = 0; p < num_pages; ++p) {
      FOXSERVE_CUDA_CHECK(cudaMemcpy(pool_d.get() + p * CudaPageBytes(PS, D) + 4 * PS * D,
                                     &c_rel_pages[p * PS], PS * 4, cudaMemcpyHostToDevice));
    }
    std::vector<double> base;
    for (int64_t s = 0; s < B * H; ++s) base.insert(base.end(), first[s].begin(), first[s].end());
    const double delta = AcpThreshold(8.0, static_cast<double>(T), -10.0);
    CudaKvPool pool{pool_d.get(), num_pages, PS, D};
    DeviceBuffer<int32_t> pages_d;
    pages_d.Upload(pages);
    DeviceBuffer<double> base_d;
    base_d.Upload(base);

    for (bool acp : {false, true}) {
      // - Prefill: all T tokens of every sequence.
      std::vector<AttentionItem> items;
      std::vector<int32_t> positions;
      std::vector<int64_t> table;
      std::vector<double> row_c;
      for (int64_t b = 0; b < B; ++b) {
        AttentionItem item;
        item.first_token = static_cast<int32_t>(b * T);
        item.num_tokens = static_cast<int32_t>(T);
        item.first_position = 0;
        item.starts.assign(H * blocks, 0);
        for (int64_t h = 0; h < H; ++h) {
          if (acp) {
            PlanQueryBlockStarts(last[b * H + h].data(), 0, 0, T, c[b * H + h].data(), PS, delta,
                                 item.starts.data() + h * blocks);
          }
        }
        items.push_back(item);
        for (int64_t t = 0; t < T; ++t) {
          positions.push_back(static_cast<int32_t>(t));
          for (int64_t h = 0; h < H; ++h) {
            table.push_back((b * H + h) * blocks);
            row_c.push_back(c[b * H + h][t]);
          }
        }
      }
      HostAttentionTasks tasks;
      BuildAttentionTasks(items, static_cast<int32_t>(H), PS, 16, &tasks);
      const int64_t dense_tiles = B * H * blocks * (blocks + 1) / 2;
      DeviceBuffer<int32_t> pos_d, pf, pn, ph, pst;
      DeviceBuffer<int64_t> table_d;
      DeviceBuffer<double> c_d;
      DeviceBuffer<float> q_d(B * T * H * D), out_d(B * T * H * D);
      cudaMemset(q_d.get(), 0, q_d.size() * 4);  // overwritten below with unit-RMS rows
      // Each row's logit bound |q| max|k| scale, as the model's planner gives it: |k| <= 8 times
      // FillKv's largest element (sqrt(3), rounded up past bf16's rounding).
      DeviceBuffer<float> bound_d(B * T * H);
      float max_bound = 0;  // what the model knows from its weights (max_row_logit_bound)
      {
        std::vector<float> q(B * T * H * D), bound(B * T * H);
        for (float& x : q) x = static_cast<float>(normal(rng));
        for (int64_t r = 0; r < B * T * H; ++r) {
          double norm2 = 0;
          for (int i = 0; i < D; ++i) norm2 += static_cast<double>(q[r * D + i]) * q[r * D + i];
          bound[r] = static_cast<float>(std::sqrt(norm2) * 1.735 * std::sqrt(D) * 0.125);
        }
        q_d.Upload(q);
        bound_d.Upload(bound);
        max_bound = *std::max_element(bound.begin(), bound.end());
      }
      pos_d.Upload(positions);
      table_d.Upload(table);
      c_d.Upload(row_c);
      pf.Upload(tasks.prefill_first_token);
      pn.Upload(tasks.prefill_num_rows);
      ph.Upload(tasks.prefill_head);
      pst.Upload(tasks.prefill_start);
      CudaAttentionRows rows{pos_d.get(), table_d.get(), pages_d.get(), base_d.get(), c_d.get(),
                             q_d.get(), out_d.get(), static_cast<int32_t>(H), 0.125f};
      CudaPrefillTasks prefill{pf.get(), pn.get(), ph.get(), pst.get(),
                               static_cast<int32_t>(tasks.prefill_first_token.size())};
      // The TMA prefill's tile counter (zero, and left zero by each launch).
      DeviceBuffer<int32_t> tile_counter;
      tile_counter.Upload(std::vector<int32_t>(2, 0));
      // Milliseconds per call of a prefill launcher on these tasks (one warm-up call).
      auto time_prefill = [&](auto launch) {
        FOXSERVE_CUDA_CHECK(launch(pool, rows, prefill, nullptr));
        cudaEventRecord(e0);
        for (int r = 0; r < repeats; ++r) launch(pool, rows, prefill, nullptr);
        cudaEventRecord(e1);
        FOXSERVE_CUDA_CHECK(cudaEventSynchronize(e1));
        return Elapsed(e0, e1) / repeats;
      };
      // The reference the other kernels' outputs are compared with: the simple kernel's (fp32
      // probabilities) where it runs, else the mma kernel's (bf16 probabilities, rounded like the
      // others').
      const double prefill_ms = skip_simple ? NAN : time_prefill(LaunchPagedPrefill);
      std::vector<float> reference_out;
      if (!skip_simple) reference_out = out_d.Download();
      const double mma_ms = time_prefill(LaunchPagedPrefillMma);
      auto diff_from_reference = [&]() {
        const std::vector<float> out = out_d.Download();
        double worst = 0;
        for (size_t r = 0; r < reference_out.size() / D; ++r) {
          double num = 0, den = 0;
          for (int i = 0; i < D; ++i) {
            const double x = out[r * D + i], y = reference_out[r * D + i];
            num += (x - y) * (x - y);
            den += y * y;
          }
          const double rel = std::sqrt(num / std::max(den, 1e-30));
          worst = std::isfinite(rel) ? std::max(worst, rel) : INFINITY;
        }
        return worst;
      };
      // Milliseconds and the worst row's difference from the reference; outputs are poisoned
      // with NaN first, so that a row the kernel does not write shows.
      auto time_and_compare = [&](auto launch, double* diff) {
        cudaMemset(out_d.get(), 0xFF, out_d.size() * 4);
        const double ms = time_prefill(launch);
        *diff = diff_from_reference();
        return ms;
      };
      double mma_diff = 0;
      if (skip_simple) {
        reference_out = out_d.Download();
      } else {
        mma_diff = diff_from_reference();
      }
      double wgmma_diff = 0;
      const double wgmma_ms = time_and_compare(LaunchPagedPrefillWgmma, &wgmma_diff);
      // "b": with each row's logit bound (the softmax maximum fixed), else online maxima.
      struct TmaCase {
        const char* name;
        TmaPrefillShape shape;
        bool bounded;
        bool counter = true;  // tiles taken from the counter, else a fixed share a CTA
        double ms = 0, diff = 0;
      };
      // "o": the softmax under the previous P V (the three-group shape); "t": the rows' sums of
      // P by the tensor cores; "s": fixed shares of the tiles.
      TmaCase tma_cases[] = {{"2x128b", TmaPrefillShape::kTwoGroups128Keys, true},
                             {"2x128", TmaPrefillShape::kTwoGroups128Keys, false},
                             {"2x128tb", TmaPrefillShape::kTwoGroups128KeysTensorSums, true},
                             {"2x128t", TmaPrefillShape::kTwoGroups128KeysTensorSums, false},
                             {"3x128ob", TmaPrefillShape::kThreeGroups128KeysOverlap, true},
                             {"3x128o", TmaPrefillShape::kThreeGroups128KeysOverlap, false},
                             {"3x128obs", TmaPrefillShape::kThreeGroups128KeysOverlap, true,
                              false}};
      if (!timeline_dir.empty()) {
        // The tasks the timelines' tiles run, one line each (head, KV table, first and last key
        // block), for bench/prefill_timeline.py to count a tile's walks and iterations.
        std::ofstream f(timeline_dir + "/tasks_" + std::to_string(B) + "x" + std::to_string(T) +
                        (acp ? "_acp" : "_dense") + ".txt");
        for (size_t i = 0; i < tasks.prefill_first_token.size(); ++i) {
          const int64_t first = tasks.prefill_first_token[i];
          const int64_t last = first + tasks.prefill_num_rows[i] - 1;
          const int32_t head = tasks.prefill_head[i];
          f << head << " " << table[first * H + head] << " " << tasks.prefill_start[i] << " "
            << positions[last] / PS << "\n";
        }
      }
      for (TmaCase& k : tma_cases) {
        const TmaPrefillShape tma_shape = k.shape;
        CudaAttentionRows r = rows;
        r.row_logit_bound = k.bounded ? bound_d.get() : nullptr;
        r.max_row_logit_bound = k.bounded ? max_bound : INFINITY;
        CudaPrefillTasks t = prefill;
        t.tile_counter = k.counter ? tile_counter.get() : nullptr;
        k.ms = time_and_compare(
            [tma_shape, r, t](const CudaKvPool& pool, const CudaAttentionRows&,
                              const CudaPrefillTasks&, auto&&... a) {
              return LaunchPagedPrefillTma(pool, r, t, a..., tma_shape);
            },
            &k.diff);
        if (!timeline_dir.empty() && k.bounded) {
          const int tiles = PrefillTmaTiles(prefill, tma_shape);
          DeviceBuffer<uint64_t> timeline(static_cast<size_t>(tiles) * kPrefillTimelineSlots);
          FOXSERVE_CUDA_CHECK(
              LaunchPagedPrefillTma(pool, r, t, nullptr, tma_shape, timeline.get()));
          const std::vector<uint64_t> words = timeline.Download();
          const std::string path = timeline_dir + "/timeline_" + k.name + "_" +
                                   std::to_string(B) + "x" + std::to_string(T) +
                                   (acp ? "_acp" : "_dense") + ".txt";
          std::ofstream f(path);
          for (int tile = 0; tile < tiles; ++tile) {
            for (int i = 0; i < kPrefillTimelineSlots; ++i) {
              f << (i ? " " : "") << words[static_cast<size_t>(tile) * kPrefillTimelineSlots + i];
            }
            f << "\n";
          }
        }
      }
      const double flops = 4.0 * D * static_cast<double>(T) * T / 2 * B * H;
      const double prefill_skipped = 1.0 - static_cast<double>(tasks.live_key_blocks) / dense_tiles;

      // - Decode: one query per sequence at position T - 1.
      std::vector<AttentionItem> dec_items;
      std::vector<int64_t> dec_table;
      std::vector<double> dec_c;
      std::vector<int32_t> dec_pos;
      for (int64_t b = 0; b < B; ++b) {
        AttentionItem item;
        item.first_token = static_cast<int32_t>(b);
        item.num_tokens = 1;
        item.first_position = T - 1;
        item.starts.assign(H, 0);
        for (int64_t h = 0; h < H; ++h) {
          if (acp) {
            PlanQueryBlockStarts(last[b * H + h].data(), 0, T - 1, 1, &c[b * H + h][T - 1], PS,
                                 delta, &item.starts[h]);
          }
          dec_table.push_back((b * H + h) * blocks);
          dec_c.push_back(c[b * H + h][T - 1]);
        }
        dec_pos.push_back(static_cast<int32_t>(T - 1));
        dec_items.push_back(item);
      }
      std::printf(
          "%3lldx%-5lld %-5s %10.2f %10.1f %10.2f %10.1f %10.1e %10.2f %10.1f %10.1e %8.1f%%\n",
          static_cast<long long>(B), static_cast<long long>(T), acp ? "on" : "off", prefill_ms,
          flops / (prefill_ms * 1e-3) / 1e12, mma_ms, flops / (mma_ms * 1e-3) / 1e12, mma_diff,
          wgmma_ms, flops / (wgmma_ms * 1e-3) / 1e12, wgmma_diff, 100 * prefill_skipped);
      for (const TmaCase& k : tma_cases) {
        std::printf("  tma rows: %3lldx%-5lld %-5s %-8s %10.2f %10.1f %10.1e %7.3fx\n",
                    static_cast<long long>(B), static_cast<long long>(T), acp ? "on" : "off",
                    k.name, k.ms, flops / (k.ms * 1e-3) / 1e12, k.diff, wgmma_ms / k.ms);
      }
      // One case per chunk size; the cases are timed in turn over several rounds and each
      // reports its median, since a decode call's time moves by several percent between calls.
      struct DecodeCase {
        int chunk = 0;
        bool automatic = false;
        HostAttentionTasks tasks;
        DeviceBuffer<int32_t> dt, dh, db, de, dr, rt, rh, rp, arrivals;
        DeviceBuffer<float> pm, pl, pacc;
        CudaDecodeTasks decode, merged;  // merged: with the fused merge's task rows and counters
        double simple_us = 0;
        std::vector<double> warp_us, merged_us;
        std::vector<double> three_us, four_us;  // fused merge, each CTA build forced
      };
      DeviceBuffer<int32_t> dpos;
      DeviceBuffer<int64_t> dtable;
      DeviceBuffer<double> dc;
      DeviceBuffer<float> dout(B * H * D);
      dpos.Upload(dec_pos);
      dtable.Upload(dec_table);
      dc.Upload(dec_c);
      CudaAttentionRows drows{dpos.get(), dtable.get(), pages_d.get(), base_d.get(), dc.get(),
                              q_d.get(), dout.get(), static_cast<int32_t>(H), 0.125f};
      std::vector<std::unique_ptr<DecodeCase>> cases;
      for (const int chunk_flag : decode_chunks) {
        auto dcase = std::make_unique<DecodeCase>();
        DecodeCase& k = *dcase;
        k.automatic = chunk_flag <= 0;
        k.chunk = k.automatic ? ChooseDecodeChunkBlocks(dec_items, H, PS) : chunk_flag;
        BuildAttentionTasks(dec_items, static_cast<int32_t>(H), PS, k.chunk, &k.tasks);
        const size_t n = k.tasks.decode_token.size();
        k.pm.Resize(n);
        k.pl.Resize(n);
        k.pacc.Resize(n * D);
        k.dt.Upload(k.tasks.decode_token);
        k.dh.Upload(k.tasks.decode_head);
        k.db.Upload(k.tasks.decode_begin);
        k.de.Upload(k.tasks.decode_end);
        k.rt.Upload(k.tasks.row_token);
        k.rh.Upload(k.tasks.row_head);
        k.rp.Upload(k.tasks.row_partials);
        k.decode = CudaDecodeTasks{k.dt.get(), k.dh.get(), k.db.get(), k.de.get(),
                                   static_cast<int32_t>(n), k.rt.get(), k.rh.get(), k.rp.get(),
                                   static_cast<int32_t>(k.tasks.row_token.size()), k.pm.get(),
                                   k.pl.get(), k.pacc.get()};
        k.dr.Upload(k.tasks.decode_row);
        k.arrivals.Upload(std::vector<int32_t>(k.tasks.row_token.size(), 0));
        k.merged = k.decode;
        k.merged.task_row = k.dr.get();
        k.merged.row_arrivals = k.arrivals.get();
        cases.push_back(std::move(dcase));
      }
      // The warp-split launcher with a CTA build (kChosen: the launcher's choice).
      auto warp_split = [](DecodeOccupancy occupancy) {
        return [occupancy](const CudaKvPool& p, const CudaAttentionRows& r,
                           const CudaDecodeTasks& t, cudaStream_t s) {
          return LaunchPagedDecodeWarpSplit(p, r, t, s, occupancy);
        };
      };
      const auto chosen_ctas = warp_split(DecodeOccupancy::kChosen);
      const auto three_ctas = warp_split(DecodeOccupancy::kThreeCtasPerSm);
      const auto four_ctas = warp_split(DecodeOccupancy::kFourCtasPerSm);
      // Microseconds per call of a decode launcher on a case's tasks (one warm-up call).
      auto time_decode = [&](auto launch, const CudaDecodeTasks& decode) {
        constexpr int kRepeats = 50;
        FOXSERVE_CUDA_CHECK(launch(pool, drows, decode, nullptr));
        cudaEventRecord(e0);
        for (int r = 0; r < kRepeats; ++r) launch(pool, drows, decode, nullptr);
        cudaEventRecord(e1);
        FOXSERVE_CUDA_CHECK(cudaEventSynchronize(e1));
        return Elapsed(e0, e1) * 1000 / kRepeats;
      };
      for (auto& k : cases) {
        k->simple_us = time_decode(LaunchPagedDecode, k->decode);
        const std::vector<float> simple_out = dout.Download();
        cudaMemset(dout.get(), 0xFF, dout.size() * 4);
        FOXSERVE_CUDA_CHECK(LaunchPagedDecodeWarpSplit(pool, drows, k->decode, nullptr));
        const std::vector<float> warp_out = dout.Download();
        cudaMemset(dout.get(), 0xFF, dout.size() * 4);
        FOXSERVE_CUDA_CHECK(LaunchPagedDecodeWarpSplit(pool, drows, k->merged, nullptr));
        const std::vector<float> merged_out = dout.Download();
        for (size_t i = 0; i < warp_out.size(); ++i) {
          const float tolerance = 1e-3f * (1 + std::fabs(simple_out[i]));
          if (!(std::fabs(warp_out[i] - simple_out[i]) <= tolerance) ||
              !(std::fabs(merged_out[i] - simple_out[i]) <= tolerance)) {
            std::printf("decode mismatch at %zu: %g (merge launch) / %g (merged) vs %g\n", i,
                        warp_out[i], merged_out[i], simple_out[i]);
            return 1;
          }
        }
      }
      for (int round = 0; round < 5; ++round) {
        for (auto& k : cases) {
          k->warp_us.push_back(time_decode(chosen_ctas, k->decode));
          k->merged_us.push_back(time_decode(chosen_ctas, k->merged));
          k->three_us.push_back(time_decode(three_ctas, k->merged));
          k->four_us.push_back(time_decode(four_ctas, k->merged));
        }
      }
      auto median = [](std::vector<double> rounds) {
        std::sort(rounds.begin(), rounds.end());
        return rounds[rounds.size() / 2];
      };
      for (auto& k : cases) {
        const double warp_us = median(k->warp_us), merged_us = median(k->merged_us);
        const double live_bytes =
            static_cast<double>(k->tasks.live_key_blocks) * CudaPageBytes(PS, D);
        const double decode_skipped =
            1.0 - static_cast<double>(k->tasks.live_key_blocks) / (B * H * blocks);
        const double merged_gbs = live_bytes / (merged_us * 1e-6) / 1e9;
        std::printf("  decode rows: %3lldx%-5lld %-5s %3d%-3s %12.1f %12.1f %12.1f %10.0f %7.1f%%"
                    " %8.1f%%  (merged rounds %.1f-%.1f)\n",
                    static_cast<long long>(B), static_cast<long long>(T), acp ? "on" : "off",
                    k->chunk, k->automatic ? "a" : "", k->simple_us, warp_us, merged_us,
                    merged_gbs, 100 * merged_gbs / copy_gbs, 100 * decode_skipped,
                    *std::min_element(k->merged_us.begin(), k->merged_us.end()),
                    *std::max_element(k->merged_us.begin(), k->merged_us.end()));
        for (int ctas : {3, 4}) {
          const double us = median(ctas == 3 ? k->three_us : k->four_us);
          std::printf("    %d CTAs an SM: %.1f us (%.1f%% of copy)\n", ctas, us,
                      100 * live_bytes / (us * 1e-6) / 1e9 / copy_gbs);
        }
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace foxserve

int main(int argc, char** argv) { return foxserve::Run(argc, argv); }
