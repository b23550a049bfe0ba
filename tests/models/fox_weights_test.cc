#include "models/fox_weights.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using testing::GoldenDir;
using testing::ReadFileOrDie;
using testing::ScratchDir;
using testing::WriteFileOrDie;

// Rewrites a golden checkpoint into `dir` through `edit`, which may drop, rename or alter tensors.
struct EditableTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

template <typename Edit>
void WriteEdited(const std::string& golden, const std::string& dir, Edit edit) {
  WriteFileOrDie(dir + "/config.json", ReadFileOrDie(GoldenDir(golden) + "/config.json"));
  auto ckpt = SafetensorsCheckpoint::Open(GoldenDir(golden));
  ASSERT_TRUE(ckpt.ok());
  std::vector<EditableTensor> tensors;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    tensors.push_back({name, t->dtype, t->shape, {t->bytes.begin(), t->bytes.end()}});
  }
  edit(tensors);
  std::vector<TensorToWrite> out;
  for (const auto& t : tensors) out.push_back({t.name, t.dtype, t.shape, t.bytes});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", out).ok());
}

absl::StatusOr<std::unique_ptr<FoxWeights>> Load(const std::string& dir) {
  auto config = LoadFoxConfig(dir);
  if (!config.ok()) return config.status();
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  if (!ckpt.ok()) return ckpt.status();
  return LoadFoxWeights(**ckpt, *config);
}

TEST(FoxWeightsTest, LoadsBothGoldenModels) {
  for (const char* name : {"fox-pro-tiny", "fox-llama-tiny"}) {
    auto w = Load(GoldenDir(name));
    ASSERT_TRUE(w.ok()) << name << ": " << w.status();
    EXPECT_EQ((*w)->layers.size(), 2u);
    EXPECT_EQ((*w)->embeddings.size(), 512u * 128u);
    EXPECT_EQ((*w)->lm_head.size(), 512u * 128u);
  }
  auto pro = Load(GoldenDir("fox-pro-tiny"));
  const InProjLayout& ip = (*pro)->in_proj;
  // q, k, v, k_shift, v_shift, fgate, ogate.
  EXPECT_EQ(ip.rows, 128 * 3 + 2 + 2 + 2 + 128);
  // The fused rows hold the checkpoint's tensors: compare against the file read directly.
  auto ckpt = SafetensorsCheckpoint::Open(GoldenDir("fox-pro-tiny"));
  auto vshift = (*ckpt)->Get("model.layers.1.attn.v_proj.shift_proj.weight");
  ASSERT_TRUE(vshift.ok());
  float first;
  std::memcpy(&first, vshift->bytes.data() + 128 * 4, 4);  // row 1, column 0
  EXPECT_EQ((*pro)->layers[1].in_proj[(ip.v_shift + 1) * 128], first);
  auto bias = (*ckpt)->Get("model.layers.0.attn.fgate_proj.bias");
  float b1;
  std::memcpy(&b1, bias->bytes.data() + 4, 4);
  EXPECT_EQ((*pro)->layers[0].fgate_bias[1], b1);
}

TEST(FoxWeightsTest, MissingTensorIsNamed) {
  ScratchDir dir;
  WriteEdited("fox-pro-tiny", dir.path(), [](std::vector<EditableTensor>& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const EditableTensor& e) {
                             return e.name == "model.layers.1.attn.k_norm.weight";
                           }),
            t.end());
  });
  auto w = Load(dir.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find("model.layers.1.attn.k_norm.weight"), std::string::npos)
      << w.status();
}

TEST(FoxWeightsTest, WrongShapeIsNamed) {
  ScratchDir dir;
  WriteEdited("fox-llama-tiny", dir.path(), [](std::vector<EditableTensor>& t) {
    for (auto& e : t) {
      if (e.name == "model.layers.0.mlp.down_proj.weight") e.shape = {512, 128};  // transposed
    }
  });
  auto w = Load(dir.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("model.layers.0.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(w.status().message().find("[128, 512]"), std::string::npos) << w.status();
}

TEST(FoxWeightsTest, UnexpectedTensorIsNamed) {
  ScratchDir dir;
  WriteEdited("fox-llama-tiny", dir.path(), [](std::vector<EditableTensor>& t) {
    EditableTensor extra = t.front();
    extra.name = "model.layers.0.attn.rotary.inv_freq";
    t.push_back(extra);
  });
  auto w = Load(dir.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("rotary.inv_freq"), std::string::npos) << w.status();
}

TEST(FoxWeightsTest, ConfigThatDisagreesWithWeights) {
  // A Pro checkpoint under a LLaMA config: k_proj.weight is missing (it is k_proj.linear.weight).
  ScratchDir dir;
  WriteEdited("fox-pro-tiny", dir.path(), [](std::vector<EditableTensor>&) {});
  WriteFileOrDie(dir.path() + "/config.json",
                 ReadFileOrDie(GoldenDir("fox-llama-tiny") + "/config.json"));
  auto w = Load(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("model.layers.0.attn.k_proj.weight"), std::string::npos)
      << w.status();
}

TEST(FoxWeightsTest, IntegerWeightsAreRefused) {
  ScratchDir dir;
  WriteEdited("fox-llama-tiny", dir.path(), [](std::vector<EditableTensor>& t) {
    for (auto& e : t) {
      if (e.name == "model.norm.weight") e.dtype = DType::kI32;  // same byte count
    }
  });
  auto w = Load(dir.path());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("model.norm.weight"), std::string::npos) << w.status();
}

// BF16 and F16 checkpoints load to the rounded values of the F32 ones.
TEST(FoxWeightsTest, HalfPrecisionCheckpoints) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    ScratchDir dir;
    WriteEdited("fox-pro-tiny", dir.path(), [dtype](std::vector<EditableTensor>& t) {
      for (auto& e : t) {
        std::vector<uint8_t> half(e.bytes.size() / 2);
        for (size_t i = 0; i < e.bytes.size() / 4; ++i) {
          uint32_t bits;
          std::memcpy(&bits, e.bytes.data() + 4 * i, 4);
          uint16_t h;
          if (dtype == DType::kBF16) {
            h = static_cast<uint16_t>(bits >> 16);  // truncation: exact within 2^-7 relative
          } else {
            float f;
            std::memcpy(&f, &bits, 4);
            h = static_cast<uint16_t>(_cvtss_sh(f, 0));
          }
          std::memcpy(half.data() + 2 * i, &h, 2);
        }
        e.bytes = half;
        e.dtype = dtype;
      }
    });
    auto w = Load(dir.path());
    ASSERT_TRUE(w.ok()) << w.status();
    auto ref = Load(GoldenDir("fox-pro-tiny"));
    const auto& a = (*w)->layers[0].in_proj;
    const auto& b = (*ref)->layers[0].in_proj;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_NEAR(a[i], b[i], std::fabs(b[i]) * (dtype == DType::kBF16 ? 1.0 / 128 : 1.0 / 1024) + 1e-7)
          << i;
    }
  }
}

}  // namespace
}  // namespace models
}  // namespace foxserve
