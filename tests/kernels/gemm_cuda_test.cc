// GPU test: skips, printing why, when no CUDA device is present (CI); run on the device machine.
// The cuBLASLt products against a double-precision reference on the same bf16 operands, at
// decode's few rows and prefill's many, with packed and padded output rows (the padding must be
// left alone).
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cublaslt_library.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm_cuda.h"

namespace foxserve {
namespace kernels {
namespace {

struct Operands {
  std::vector<__nv_bfloat16> x, w;
  std::vector<double> reference;  // [m, n]
};

Operands MakeOperands(int64_t m, int64_t n, int64_t k, std::mt19937* rng) {
  std::normal_distribution<float> normal;
  Operands o;
  o.x.resize(m * k);
  o.w.resize(n * k);
  for (auto& v : o.x) v = __float2bfloat16(normal(*rng));
  for (auto& v : o.w) v = __float2bfloat16(normal(*rng) / std::sqrt(static_cast<float>(k)));
  o.reference.assign(m * n, 0.0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < k; ++i) {
        sum += static_cast<double>(__bfloat162float(o.x[r * k + i])) *
               __bfloat162float(o.w[c * k + i]);
      }
      o.reference[r * n + c] = sum;
    }
  }
  return o;
}

TEST(GemmCudaTest, MatchesDoubleReference) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::string open_why;
  const CublasLtLibrary* lib = OpenCublasLt(&open_why);
  ASSERT_NE(lib, nullptr) << open_why;
  CublasLtGemm gemm(lib);
  cudaStream_t stream;
  FOXSERVE_CUDA_CHECK(cudaStreamCreate(&stream));
  std::mt19937 rng(17);
  // m, n, k, output row stride.
  for (auto [m, n, k, ldy] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 1536, 1536, 1536},
                              {7, 2048, 1024, 2048}, {64, 7168, 1536, 7168},
                              {64, 1536, 3584, 1536}, {33, 2011, 512, 2048},
                              {300, 384, 256, 384}, {1024, 1000, 256, 1024}}) {
    SCOPED_TRACE(testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ldy=" << ldy);
    const Operands o = MakeOperands(m, n, k, &rng);
    DeviceBuffer<__nv_bfloat16> x, w;
    x.Upload(o.x);
    w.Upload(o.w);
    DeviceBuffer<float> y;
    y.Upload(std::vector<float>(m * ldy, std::nanf("")));
    ASSERT_EQ(gemm.Run(x.get(), m, k, k, w.get(), n, y.get(), ldy, stream), CUBLAS_STATUS_SUCCESS);
    FOXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> out = y.Download();
    double num = 0, den = 0;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < ldy; ++c) {
        const float v = out[r * ldy + c];
        if (c >= n) {
          ASSERT_TRUE(std::isnan(v)) << "padding written at row " << r << " column " << c;
          continue;
        }
        ASSERT_TRUE(std::isfinite(v)) << "row " << r << " column " << c << " not written";
        const double ref = o.reference[r * n + c];
        num += (v - ref) * (v - ref);
        den += ref * ref;
      }
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5);
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
