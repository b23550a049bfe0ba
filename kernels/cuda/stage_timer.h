// GPU time per named stage of a forward step, for finding where a step goes
// (FOXSERVE_PROFILE_STAGES=1 in the CUDA model; off, Mark is one branch; =host times only the
// host parts). Events are recorded on the stream between stages; the elapsed times are collected
// at the step's synchronization, so the profile adds no synchronization of its own. Marks inside
// a captured CUDA graph become event nodes that record at each launch of the graph. Summary()
// prints a table per kind of step: stage, ms a step, share of the step. Gaps where the GPU waits
// for the host count toward the stage whose launch was late.
//
// Not thread-safe; one timer per stream.
#ifndef FOXSERVE_KERNELS_CUDA_STAGE_TIMER_H_
#define FOXSERVE_KERNELS_CUDA_STAGE_TIMER_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace foxserve {
namespace kernels {

class StageTimer {
 public:
  // The marks a captured CUDA graph records each time it runs: their events belong to the graph
  // (recorded as event nodes), not to the timer's per-step pool.
  struct GraphMarks {
    std::vector<std::pair<const char*, cudaEvent_t>> marks;
    GraphMarks() = default;
    GraphMarks(const GraphMarks&) = delete;
    GraphMarks& operator=(const GraphMarks&) = delete;
    GraphMarks(GraphMarks&& other) noexcept : marks(std::move(other.marks)) {}
    GraphMarks& operator=(GraphMarks&& other) noexcept {
      std::swap(marks, other.marks);
      return *this;
    }
    ~GraphMarks() {
      for (auto& [name, e] : marks) cudaEventDestroy(e);
    }
  };

  // `profile`: the FOXSERVE_PROFILE_STAGES value (null: off; "host": host parts only; any other
  // value: host parts and GPU marks).
  explicit StageTimer(const char* profile)
      : enabled_(profile != nullptr),
        gpu_marks_(profile != nullptr && std::string(profile) != "host") {}
  ~StageTimer() {
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

  bool enabled() const { return enabled_; }
  bool gpu_marks() const { return gpu_marks_; }
  // Ends the previous stage and starts `stage` (a string literal) at this point of the stream.
  // Between BeginCapture and EndCapture the mark becomes an event node of the captured graph.
  void Mark(const char* stage, cudaStream_t stream) {
    if (!gpu_marks_) return;
    if (capturing_ != nullptr) {
      cudaEvent_t e;
      cudaEventCreate(&e);
      cudaEventRecordWithFlags(e, stream, cudaEventRecordExternal);
      capturing_->marks.emplace_back(stage, e);
      return;
    }
    if (used_ == pool_.size()) {
      cudaEvent_t e;
      cudaEventCreate(&e);
      pool_.push_back(e);
    }
    cudaEventRecord(pool_[used_], stream);
    marks_.emplace_back(stage, pool_[used_]);
    ++used_;
  }
  // The marks of a graph being captured go to `graph` (kept by the caller with the graph), and
  // count toward this step as they do toward every step that launches the graph (Replay).
  void BeginCapture(GraphMarks* graph) {
    if (!gpu_marks_) return;
    graph->marks.clear();
    capturing_ = graph;
  }
  void EndCapture() { capturing_ = nullptr; }
  // A launch of a graph whose marks are `graph`: they take their place among the step's marks.
  void Replay(const GraphMarks& graph) {
    if (!gpu_marks_) return;
    marks_.insert(marks_.end(), graph.marks.begin(), graph.marks.end());
  }
  // After the stream has passed every mark: adds the step's stage times to the steps of `kind`
  // ("decode", "prefill": each kind gets its own table). The host parts added since the last
  // Collect go to this step's kind too.
  void Collect(const char* kind) {
    if (!enabled_) return;
    Kind& k = kinds_[kind];
    for (const auto& [part, ms] : pending_host_) k.host[part] += ms;
    pending_host_.clear();
    ++k.steps;
    if (!gpu_marks_) return;
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second);
      k.totals[marks_[i].first] += ms;
    }
    used_ = 0;
    marks_.clear();
  }
  // Host wall time of a part of the step since `since` (the CPU work between and around the
  // GPU's marks, which the events cannot see); counted toward the kind of the next Collect.
  void AddHost(const char* part, std::chrono::steady_clock::time_point since) {
    if (!enabled_) return;
    pending_host_[part] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
                       .count();
  }
  void Summary(FILE* out) const {
    if (!enabled_) return;
    for (const auto& [kind, k] : kinds_) {
      if (k.steps > 0 && !k.host.empty()) {
        std::fprintf(out, "%s steps: forward host parts over %lld steps (wall ms a step)\n",
                     kind.c_str(), k.steps);
        for (const auto& [part, ms] : k.host) {
          std::fprintf(out, "  %-22s %9.3f\n", part.c_str(), ms / k.steps);
        }
      }
    }
    for (const auto& [kind, k] : kinds_) {
      if (!gpu_marks_) {
        std::fprintf(out, "%s steps: %lld\n", kind.c_str(), k.steps);
        continue;
      }
      double all = 0;
      std::vector<std::pair<double, std::string>> rows;
      for (const auto& [name, ms] : k.totals) {
        all += ms;
        rows.emplace_back(ms, name);
      }
      std::sort(rows.rbegin(), rows.rend());
      std::fprintf(out, "%s steps: %lld, GPU time between marks %.3f ms a step\n", kind.c_str(),
                   k.steps, all / k.steps);
      for (const auto& [ms, name] : rows) {
        std::fprintf(out, "  %-22s %9.3f ms a step %6.1f%%\n", name.c_str(), ms / k.steps,
                     100.0 * ms / all);
      }
    }
  }

 private:
  const bool enabled_;
  const bool gpu_marks_;
  std::vector<cudaEvent_t> pool_;
  size_t used_ = 0;  // pool_ events recorded this step
  std::vector<std::pair<const char*, cudaEvent_t>> marks_;  // this step's, in stream order
  GraphMarks* capturing_ = nullptr;
  struct Kind {
    std::map<std::string, double> totals;
    std::map<std::string, double> host;
    long long steps = 0;
  };
  std::map<std::string, Kind> kinds_;
  std::map<std::string, double> pending_host_;
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_STAGE_TIMER_H_
