// A fixed pool of worker threads for the CPU kernels' data parallelism.
//
// ParallelFor hands out [begin, end) ranges from an atomic counter; the calling thread works too.
// Work items never share an output element, so results do not depend on the thread count or on
// which thread ran which range (the kernels' determinism rests on this).
// Thread-safety: ParallelFor may be called from any thread; concurrent calls run one at a time.
#ifndef FOXSERVE_KERNELS_THREAD_POOL_H_
#define FOXSERVE_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace foxserve {
namespace kernels {

class ThreadPool {
 public:
  // num_threads counts the calling thread; 0 means one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  // One per hardware thread, at most `cap`: for host work beside a pool that owns the cores.
  static int CappedThreads(int cap);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint ranges covering [0, n), each at most `grain` long.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // serializes ParallelFor calls

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;  // bumped per job
  int active_workers_ = 0;   // workers still inside the current job
  bool stop_ = false;

  // The current job; written under mutex_ before generation_ is bumped.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_THREAD_POOL_H_
