// The decode step's matrix products at few rows (cuBLASLt through CublasLtGemm, as the CUDA model
// runs them), each timed as a CUDA graph of repeated launches, as decode steps run, so launch
// cost is not counted. The lm head also runs with its output rows padded to a multiple of 64
// floats (the vocabulary, 50257, is odd, so its fp32 rows are only 4-byte aligned) and with its
// weight padded to that many rows, to show what the alignment costs. Prints a table per row
// count: product, n x k (output row stride), microseconds a run, the weight bytes a second, and
// the sum over one decode step of the model (layers x the four layer products + the lm head).
//   gemm_bench [--hidden 1536] [--intermediate 3584] [--in-proj 6216] [--vocab 50257]
//              [--layers 24] [--rows 1,8,16,32,64,128,256] [--repeats 50]
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "kernels/cuda/cublaslt_library.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm_cuda.h"

namespace {

using foxserve::kernels::CublasLtGemm;
using foxserve::kernels::DeviceBuffer;

struct Product {
  const char* name;
  int64_t n, k, ldy;
  int per_step;  // how many times one decode step runs it (0: a variant, not in the step sum)
};

// Microseconds a run of y = x w^T, timed over a graph of `repeats` launches (the plan made by a
// plain run first).
float TimeProduct(CublasLtGemm* gemm, const __nv_bfloat16* x, const __nv_bfloat16* w, float* y,
                  int64_t m, const Product& p, int repeats, cudaStream_t stream) {
  const int64_t n = p.n, k = p.k;
  FOXSERVE_CHECK(gemm->Run(x, m, k, k, w, n, y, p.ldy, stream) == CUBLAS_STATUS_SUCCESS);
  FOXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  FOXSERVE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int r = 0; r < repeats; ++r) {
    FOXSERVE_CHECK(gemm->Run(x, m, k, k, w, n, y, p.ldy, stream) == CUBLAS_STATUS_SUCCESS);
  }
  FOXSERVE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  FOXSERVE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  FOXSERVE_CUDA_CHECK(cudaGraphLaunch(exec, stream));  // warm
  cudaEvent_t start, stop;
  FOXSERVE_CUDA_CHECK(cudaEventCreate(&start));
  FOXSERVE_CUDA_CHECK(cudaEventCreate(&stop));
  constexpr int kLaunches = 5;
  FOXSERVE_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < kLaunches; ++i) FOXSERVE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  FOXSERVE_CUDA_CHECK(cudaEventRecord(stop, stream));
  FOXSERVE_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  FOXSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return 1000.0f * ms / (kLaunches * repeats);
}

bool ParseInt(const char* text, int64_t* out) { return absl::SimpleAtoi(text, out) && *out > 0; }

}  // namespace

int main(int argc, char** argv) {
  int64_t hidden = 1536, inter = 3584, in_proj = 6216, vocab = 50257, layers = 24, repeats = 50;
  std::vector<int64_t> rows = {1, 8, 16, 32, 64, 128, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    int64_t* target = flag == "--hidden"         ? &hidden
                      : flag == "--intermediate" ? &inter
                      : flag == "--in-proj"      ? &in_proj
                      : flag == "--vocab"        ? &vocab
                      : flag == "--layers"       ? &layers
                      : flag == "--repeats"      ? &repeats
                                                 : nullptr;
    if (flag == "--rows") {
      rows.clear();
      for (absl::string_view part : absl::StrSplit(argv[i + 1], ',')) {
        int64_t r = 0;
        if (!absl::SimpleAtoi(part, &r) || r <= 0) {
          std::fprintf(stderr, "bad --rows\n");
          return 2;
        }
        rows.push_back(r);
      }
    } else if (target == nullptr || !ParseInt(argv[i + 1], target)) {
      std::fprintf(stderr, "bad flag %s (see the header of bench/gemm_bench.cc)\n", argv[i]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  std::string why;
  const foxserve::kernels::CublasLtLibrary* lib = foxserve::kernels::OpenCublasLt(&why);
  if (lib == nullptr) {
    std::fprintf(stderr, "%s\n", why.c_str());
    return 1;
  }
  const int64_t padded_vocab = (vocab + 63) / 64 * 64;
  const int per_layer = static_cast<int>(layers);
  const std::vector<Product> products = {
      {"in_proj", in_proj, hidden, in_proj, per_layer},
      {"o_proj", hidden, hidden, hidden, per_layer},
      {"gate_up", 2 * inter, hidden, 2 * inter, per_layer},
      {"down", hidden, inter, hidden, per_layer},
      {"lm_head", vocab, hidden, vocab, 1},
      {"lm_head, rows padded", vocab, hidden, padded_vocab, 0},
      {"lm_head, weight padded", padded_vocab, hidden, padded_vocab, 0},
  };
  int64_t max_rows = 0, max_n = 0, max_k = 0;
  for (int64_t r : rows) max_rows = std::max(max_rows, r);
  for (const Product& p : products) {
    max_n = std::max(max_n, p.ldy);
    max_k = std::max(max_k, p.k);
  }
  // Operands filled with small values (the products' cost does not depend on them).
  std::vector<__nv_bfloat16> host_x(max_rows * max_k), host_w(max_n * max_k);
  for (size_t i = 0; i < host_x.size(); ++i) host_x[i] = __float2bfloat16(0.01f * (i % 97));
  for (size_t i = 0; i < host_w.size(); ++i) host_w[i] = __float2bfloat16(0.001f * (i % 89));
  DeviceBuffer<__nv_bfloat16> x, w;
  x.Upload(host_x);
  w.Upload(host_w);
  DeviceBuffer<float> y;
  y.Resize(max_rows * max_n);
  cudaStream_t stream;
  FOXSERVE_CUDA_CHECK(cudaStreamCreate(&stream));
  CublasLtGemm gemm(lib);

  cudaDeviceProp prop;
  FOXSERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s; hidden %lld, intermediate %lld, in_proj rows %lld, vocab %lld, %lld layers\n",
              prop.name, (long long)hidden, (long long)inter, (long long)in_proj,
              (long long)vocab, (long long)layers);
  std::printf("| rows | product | n x k (ldy) | us | weight GB/s |\n|---|---|---|---|---|\n");
  for (int64_t m : rows) {
    double step_us = 0;
    for (const Product& p : products) {
      const float us =
          TimeProduct(&gemm, x.get(), w.get(), y.get(), m, p, static_cast<int>(repeats), stream);
      std::printf("| %lld | %s | %lld x %lld (%lld) | %.2f | %.0f |\n", (long long)m, p.name,
                  (long long)p.n, (long long)p.k, (long long)p.ldy, us,
                  2.0 * p.n * p.k / (us * 1e3));
      step_us += us * p.per_step;
    }
    std::printf("| %lld | **decode step** | | %.1f | |\n", (long long)m, step_us);
  }
  cudaStreamDestroy(stream);
  return 0;
}
