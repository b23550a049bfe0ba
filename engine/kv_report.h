// What the paged cache holds for one request, per (layer, head) stream: the debug view of ACP
// eviction (issue 6). Built on the engine thread from the sequence's block tables, so it is a
// consistent snapshot between two steps.
#ifndef FOXSERVE_ENGINE_KV_REPORT_H_
#define FOXSERVE_ENGINE_KV_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace foxserve {
namespace engine {

struct StreamKvReport {
  int32_t layer = 0;
  int32_t head = 0;
  // Blocks in the table: live + dead_resident + evicted.
  int64_t blocks = 0;
  // Blocks some future query may still attend to (from the ACP pointer on).
  int64_t live = 0;
  // Blocks proved dead whose pages are still held (eviction off, or not yet run).
  int64_t dead_resident = 0;
  // Blocks whose pages went back to the pool.
  int64_t evicted = 0;
};

struct RequestKvReport {
  uint64_t engine_id = 0;
  std::string request_id;
  bool running = false;        // false: waiting for admission (or preempted)
  int64_t num_tokens = 0;      // prompt + generated so far
  // Tokens whose K/V are in the cache, or being written by a step in flight (overlapped decode).
  int64_t num_cached = 0;
  int64_t max_total_tokens = 0;  // L of the per-request eviction bound
  int64_t pages_held = 0;      // pages this request holds in the pool now
  std::vector<StreamKvReport> streams;  // [layer][head]
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_KV_REPORT_H_
