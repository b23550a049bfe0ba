// GPU test: skips, printing why, when no CUDA device is present (CI); run on the device machine.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/rms_norm.h"

namespace foxserve {
namespace kernels {
namespace {

TEST(RmsNormCudaTest, MatchesCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 63, 128, 1536, 4099}) {
    const int64_t rows = 37;
    std::vector<float> x(rows * n), w(n), out(rows * n, std::nanf("")), ref(rows * n);
    for (float& v : x) v = normal(rng) * 3.0f;
    for (float& v : w) v = normal(rng);
    for (int64_t r = 0; r < rows; ++r) RmsNorm(&x[r * n], w.data(), n, 1e-6f, &ref[r * n]);
    float *dx, *dw, *dout;
    FOXSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dx), x.size() * 4));
    FOXSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dw), w.size() * 4));
    FOXSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dout), out.size() * 4));
    FOXSERVE_CUDA_CHECK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    FOXSERVE_CUDA_CHECK(cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
    FOXSERVE_CUDA_CHECK(cudaMemcpy(dout, out.data(), out.size() * 4, cudaMemcpyHostToDevice));
    FOXSERVE_CUDA_CHECK(LaunchRmsNorm(dx, dw, rows, n, 1e-6f, dout, nullptr));
    FOXSERVE_CUDA_CHECK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(dout);
    double num = 0, den = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << "element " << i << " not written";
      num += (out[i] - ref[i]) * (out[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-6) << "n=" << n;
  }
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
