// Wall time per named stage of the engine's step (FOXSERVE_PROFILE_STAGES=1; the CUDA model
// prints its GPU stages under the same switch), printed when the engine is destroyed. Used to
// find host work between forward passes; off, Start and Add are one branch each.
//
// Not thread-safe: the engine thread only.
#ifndef FOXSERVE_ENGINE_HOST_STAGE_PROFILE_H_
#define FOXSERVE_ENGINE_HOST_STAGE_PROFILE_H_

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

namespace foxserve {
namespace engine {

class HostStageProfile {
 public:
  using Clock = std::chrono::steady_clock;
  explicit HostStageProfile(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  // The start of a stage: the clock only when profiling (the decode loop reads it per sequence).
  Clock::time_point Start() const { return enabled_ ? Clock::now() : Clock::time_point(); }
  void Add(const char* stage, Clock::time_point since) {
    if (enabled_) totals_[stage] += std::chrono::duration<double>(Clock::now() - since).count();
  }
  void CountStep() { steps_ += enabled_ ? 1 : 0; }
  void Summary(FILE* out) const {
    if (!enabled_ || steps_ == 0) return;
    std::fprintf(out, "engine host stages over %lld steps (wall ms a step)\n", steps_);
    for (const auto& [name, seconds] : totals_) {
      std::fprintf(out, "  %-22s %9.3f\n", name.c_str(), 1e3 * seconds / steps_);
    }
  }

 private:
  const bool enabled_;
  std::map<std::string, double> totals_;
  long long steps_ = 0;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_HOST_STAGE_PROFILE_H_
