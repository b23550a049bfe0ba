// Tests for the safetensors reader/writer and MappedFile. Malformed files are assembled byte by
// byte here (never with our writer), and the values checked in the golden files were read with
// python3's struct module straight from the files, independently of this reader.
#include "models/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/mapped_file.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace models {
namespace {

using ::foxserve::testing::GoldenDir;
using ::foxserve::testing::ReadFileOrDie;
using ::foxserve::testing::ScratchDir;
using ::foxserve::testing::WriteFileOrDie;
using ::testing::AllOf;
using ::testing::AllOfArray;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Matcher;

// --- helpers ----------------------------------------------------------------------------------

const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Debian's Abseil ships no status matchers.
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code && ::testing::Matcher<const std::string&>(message_matcher)
                                      .Matches(std::string(status.message()));
}

MATCHER(IsOk, "") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

// A message mentioning every one of `parts`.
Matcher<const std::string&> Mentions(const std::vector<std::string>& parts) {
  std::vector<Matcher<const std::string&>> matchers;
  for (const std::string& part : parts) matchers.push_back(HasSubstr(part));
  return AllOfArray(matchers);
}

constexpr absl::StatusCode kInvalidArgument = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

// `value` as 8 little-endian bytes, written out one byte at a time.
std::string Le64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

// A safetensors file from its parts; `header_length` is what the length field claims.
std::string RawFile(uint64_t header_length, const std::string& header, const std::string& data) {
  return Le64(header_length) + header + data;
}

// A well-formed file layout around `header` (not padded) and `data`.
std::string File(const std::string& header, const std::string& data) {
  return RawFile(header.size(), header, data);
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string out(values.size() * sizeof(float), '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

uint32_t FloatBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

absl::Span<const uint8_t> AsBytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string AsString(absl::Span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// --- MappedFile -------------------------------------------------------------------------------

TEST(MappedFileTest, MapsContents) {
  ScratchDir scratch;
  const std::string path = scratch.File("data.bin");
  WriteFileOrDie(path, std::string("ab\0cd", 5));
  auto file = MappedFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ((*file)->path(), path);
  EXPECT_EQ((*file)->size(), 5u);
  EXPECT_EQ(AsString((*file)->bytes()), std::string("ab\0cd", 5));
}

TEST(MappedFileTest, EmptyFileIsEmptySpan) {
  ScratchDir scratch;
  const std::string path = scratch.File("empty");
  WriteFileOrDie(path, "");
  auto file = MappedFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ((*file)->size(), 0u);
  EXPECT_TRUE((*file)->bytes().empty());
}

TEST(MappedFileTest, MissingFileIsNotFoundWithErrnoText) {
  ScratchDir scratch;
  const std::string path = scratch.File("absent");
  EXPECT_THAT(MappedFile::Open(path),
              StatusIs(kNotFound, Mentions({path, "No such file or directory"})));
}

TEST(MappedFileTest, DirectoryIsRejected) {
  ScratchDir scratch;
  EXPECT_THAT(MappedFile::Open(scratch.path()),
              StatusIs(kInvalidArgument, Mentions({scratch.path(), "not a regular file"})));
}

// --- DType and TensorView ---------------------------------------------------------------------

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kF64), "F64");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeName(DType::kBool), "BOOL");
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI8), 1u);
  EXPECT_EQ(DTypeSize(DType::kU8), 1u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
}

TEST(TensorViewTest, Numel) {
  TensorView view;
  view.shape = {};
  EXPECT_EQ(view.numel(), 1);
  view.shape = {2, 160, 512};
  EXPECT_EQ(view.numel(), 163840);
  view.shape = {3, 0, 7};
  EXPECT_EQ(view.numel(), 0);
}

// --- Golden files from the reference implementation --------------------------------------------

TEST(SafetensorsGoldenTest, FoxProGoldenLogits) {
  const std::string path = GoldenDir("fox-pro-tiny") + "/golden.safetensors";
  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_THAT((*file)->names(), ElementsAre("input_ids", "logits"));
  EXPECT_TRUE((*file)->metadata().empty());

  auto ids = (*file)->Get("input_ids");
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ids->name, "input_ids");
  EXPECT_EQ(ids->dtype, DType::kI64);
  EXPECT_THAT(ids->shape, ElementsAre(2, 160));
  ASSERT_EQ(ids->bytes.size(), 2u * 160u * 8u);
  auto id_at = [&](size_t i) {
    int64_t v;
    std::memcpy(&v, ids->bytes.data() + 8 * i, 8);
    return v;
  };
  EXPECT_EQ(id_at(0), 331);
  EXPECT_EQ(id_at(1), 155);
  EXPECT_EQ(id_at(4), 241);
  EXPECT_EQ(id_at(160), 46);
  EXPECT_EQ(id_at(319), 359);
  EXPECT_THAT(TensorToFloat32(*ids), StatusIs(kInvalidArgument, Mentions({"input_ids", "I64"})));

  auto logits = (*file)->Get("logits");
  ASSERT_THAT(logits, IsOk());
  EXPECT_EQ(logits->dtype, DType::kF32);
  EXPECT_THAT(logits->shape, ElementsAre(2, 160, 512));
  auto floats = TensorToFloat32(*logits);
  ASSERT_THAT(floats, IsOk());
  ASSERT_EQ(floats->size(), 163840u);
  // Bit patterns from python3: struct.unpack('<I', ...) at data offset 2560 + 4 * i.
  EXPECT_EQ(FloatBits((*floats)[0]), 0x401ccd51u);  // 2.4500315...
  EXPECT_EQ(FloatBits((*floats)[1]), 0x3da6edb8u);
  EXPECT_EQ(FloatBits((*floats)[512]), 0x3fa0a535u);
  EXPECT_EQ(FloatBits((*floats)[163839]), 0xbda17995u);

  // The view points at the bytes where the header says: file offset 8 + 144 + 2560.
  const std::string raw = ReadFileOrDie(path);
  ASSERT_EQ(raw.size(), 658072u);
  EXPECT_EQ(AsString(logits->bytes), raw.substr(8 + 144 + 2560, 655360));
  EXPECT_EQ(AsString(ids->bytes), raw.substr(8 + 144, 2560));
}

TEST(SafetensorsGoldenTest, FoxLlamaGoldenLogits) {
  auto file = SafetensorsFile::Open(GoldenDir("fox-llama-tiny") + "/golden.safetensors");
  ASSERT_THAT(file, IsOk());
  auto logits = (*file)->Get("logits");
  ASSERT_THAT(logits, IsOk());
  auto floats = TensorToFloat32(*logits);
  ASSERT_THAT(floats, IsOk());
  EXPECT_EQ(FloatBits((*floats)[0]), 0x3cf9f437u);  // 0.0305119...
  EXPECT_EQ(FloatBits((*floats)[511]), 0xbede84efu);
  EXPECT_EQ(FloatBits((*floats)[163839]), 0xbebfd931u);
}

struct GoldenWeights {
  const char* model;
  size_t num_tensors;
  uint32_t embedding_bits[4];  // elements 0, 1, 129 and 65535 of model.embeddings.weight
  float fgate_bias[2];         // model.layers.0.attn.fgate_proj.bias
  size_t embedding_file_offset;
};

class SafetensorsGoldenWeightsTest : public ::testing::TestWithParam<GoldenWeights> {};

TEST_P(SafetensorsGoldenWeightsTest, ReadsReferenceCheckpoint) {
  const GoldenWeights& golden = GetParam();
  const std::string path = GoldenDir(golden.model) + "/model.safetensors";
  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ((*file)->names().size(), golden.num_tensors);
  EXPECT_EQ((*file)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));

  auto embeddings = (*file)->Get("model.embeddings.weight");
  ASSERT_THAT(embeddings, IsOk());
  EXPECT_EQ(embeddings->dtype, DType::kF32);
  EXPECT_THAT(embeddings->shape, ElementsAre(512, 128));
  auto values = TensorToFloat32(*embeddings);
  ASSERT_THAT(values, IsOk());
  ASSERT_EQ(values->size(), 65536u);
  EXPECT_EQ(FloatBits((*values)[0]), golden.embedding_bits[0]);
  EXPECT_EQ(FloatBits((*values)[1]), golden.embedding_bits[1]);
  EXPECT_EQ(FloatBits((*values)[129]), golden.embedding_bits[2]);
  EXPECT_EQ(FloatBits((*values)[65535]), golden.embedding_bits[3]);
  const std::string raw = ReadFileOrDie(path);
  EXPECT_EQ(AsString(embeddings->bytes), raw.substr(golden.embedding_file_offset, 262144));

  auto bias = (*file)->Get("model.layers.0.attn.fgate_proj.bias");
  ASSERT_THAT(bias, IsOk());
  EXPECT_THAT(bias->shape, ElementsAre(2));
  EXPECT_THAT(TensorToFloat32(*bias).value(),
              ElementsAre(golden.fgate_bias[0], golden.fgate_bias[1]));

  // The directory holds a single model.safetensors, so the checkpoint is that file.
  auto checkpoint = SafetensorsCheckpoint::Open(GoldenDir(golden.model));
  ASSERT_THAT(checkpoint, IsOk());
  const std::vector<std::string> names = (*checkpoint)->names();
  ASSERT_EQ(names.size(), golden.num_tensors);
  EXPECT_EQ(names.front(), "lm_head.weight");
  EXPECT_EQ(names.back(), "model.norm.weight");
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  auto from_checkpoint = (*checkpoint)->Get("model.embeddings.weight");
  ASSERT_THAT(from_checkpoint, IsOk());
  EXPECT_EQ(AsString(from_checkpoint->bytes), AsString(embeddings->bytes));
}

INSTANTIATE_TEST_SUITE_P(
    Models, SafetensorsGoldenWeightsTest,
    ::testing::Values(GoldenWeights{"fox-pro-tiny",
                                    35,
                                    {0xbc2f0deeu, 0xbefb643cu, 0xbfdaebc9u, 0xbfd38b40u},
                                    {0.0f, 4.0f},
                                    3600 + 262144},
                      GoldenWeights{"fox-llama-tiny",
                                    23,
                                    {0x3fb46e3eu, 0xc00a90c9u, 0x3de8142bu, 0x3ec822afu},
                                    {1.0f, 5.0f},
                                    2320 + 262144}),
    [](const ::testing::TestParamInfo<GoldenWeights>& info) {
      return std::string(info.param.model) == "fox-pro-tiny" ? "FoxPro" : "FoxLlama";
    });

// --- Conversions ------------------------------------------------------------------------------

// A view over `bits` (16-bit patterns) stored one byte past an aligned address, so conversion
// must not assume aligned loads.
struct MisalignedHalfs {
  MisalignedHalfs(const std::vector<uint16_t>& bits, DType dtype) : storage(1 + 2 * bits.size()) {
    for (size_t i = 0; i < bits.size(); ++i) {
      storage[1 + 2 * i] = static_cast<uint8_t>(bits[i] & 0xff);
      storage[2 + 2 * i] = static_cast<uint8_t>(bits[i] >> 8);
    }
    view.name = "halfs";
    view.dtype = dtype;
    view.shape = {static_cast<int64_t>(bits.size())};
    view.bytes = absl::Span<const uint8_t>(storage.data() + 1, 2 * bits.size());
  }
  std::vector<uint8_t> storage;
  TensorView view;
};

TEST(TensorToFloat32Test, HalfPrecision) {
  MisalignedHalfs halfs({0x3c00, 0xc000, 0x7bff, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3555, 0x0000,
                         0x8000, 0x7c00, 0xfc00, 0x7e00, 0x7c01},
                        DType::kF16);
  auto out = TensorToFloat32(halfs.view);
  ASSERT_THAT(out, IsOk());
  ASSERT_EQ(out->size(), 14u);
  const std::vector<float>& f = *out;
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 65504.0f);
  EXPECT_EQ(f[3], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f[4], -std::ldexp(1.0f, -24));
  EXPECT_EQ(f[5], 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(f[6], std::ldexp(1.0f, -14));            // smallest normal
  EXPECT_EQ(f[7], 0.333251953125f);                  // 0x3555 = (1 + 341/1024) / 4
  EXPECT_EQ(FloatBits(f[8]), 0x00000000u);
  EXPECT_EQ(FloatBits(f[9]), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(f[10], std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[11], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f[12]));
  EXPECT_EQ(FloatBits(f[12]), 0x7fc00000u);  // the quiet NaN, payload shifted into place
  EXPECT_TRUE(std::isnan(f[13]));
  EXPECT_EQ(FloatBits(f[13]), 0x7f802000u);
}

TEST(TensorToFloat32Test, BFloat16) {
  MisalignedHalfs halfs({0x3f80, 0xc000, 0x4049, 0x0001, 0x8000, 0x7f80, 0xff80, 0x7fc0},
                        DType::kBF16);
  auto out = TensorToFloat32(halfs.view);
  ASSERT_THAT(out, IsOk());
  const std::vector<float>& f = *out;
  ASSERT_EQ(f.size(), 8u);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 3.140625f);
  EXPECT_EQ(FloatBits(f[3]), 0x00010000u);  // a float32 subnormal
  EXPECT_EQ(FloatBits(f[4]), 0x80000000u);
  EXPECT_EQ(f[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(f[6], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f[7]));
  EXPECT_EQ(FloatBits(f[7]), 0x7fc00000u);
}

TEST(TensorToFloat32Test, DoubleNarrowsWithIeeeRounding) {
  const std::vector<double> values = {1.5,
                                      -0.25,
                                      1e300,
                                      -1e300,
                                      3.4028234663852886e38,  // FLT_MAX
                                      0x1.fffffefffffffp127,  // just below FLT_MAX + ulp/2
                                      0x1.ffffffp127,         // FLT_MAX + ulp/2: ties to inf
                                      1e-50,
                                      std::numeric_limits<double>::quiet_NaN(),
                                      -std::numeric_limits<double>::infinity()};
  std::string storage(1 + 8 * values.size(), '\0');
  std::memcpy(storage.data() + 1, values.data(), 8 * values.size());
  TensorView view;
  view.name = "doubles";
  view.dtype = DType::kF64;
  view.shape = {static_cast<int64_t>(values.size())};
  view.bytes = AsBytes(storage).subspan(1);
  auto out = TensorToFloat32(view);
  ASSERT_THAT(out, IsOk());
  const std::vector<float>& f = *out;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -0.25f);
  EXPECT_EQ(f[2], inf);
  EXPECT_EQ(f[3], -inf);
  EXPECT_EQ(f[4], std::numeric_limits<float>::max());
  EXPECT_EQ(f[5], std::numeric_limits<float>::max());
  EXPECT_EQ(f[6], inf);
  EXPECT_EQ(f[7], 0.0f);
  EXPECT_TRUE(std::isnan(f[8]));
  EXPECT_EQ(f[9], -inf);
}

TEST(TensorToFloat32Test, Float32FromUnalignedBytes) {
  const std::string storage = "x" + FloatBytes({1.25f, -3.5f, 1e-40f});
  TensorView view;
  view.name = "f";
  view.dtype = DType::kF32;
  view.shape = {3};
  view.bytes = AsBytes(storage).subspan(1);
  auto out = TensorToFloat32(view);
  ASSERT_THAT(out, IsOk());
  EXPECT_THAT(*out, ElementsAre(1.25f, -3.5f, 1e-40f));
}

TEST(TensorToFloat32Test, IntegerDtypesAreRejectedNamingTheTensor) {
  for (const DType dtype :
       {DType::kI64, DType::kI32, DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    const std::string storage(8, '\0');
    TensorView view;
    view.name = "token.ids";
    view.dtype = dtype;
    view.shape = {1};
    view.bytes = AsBytes(storage).subspan(0, DTypeSize(dtype));
    EXPECT_THAT(TensorToFloat32(view),
                StatusIs(kInvalidArgument, Mentions({"token.ids", std::string(DTypeName(dtype))})));
  }
}

TEST(TensorToFloat32Test, ByteCountMismatchIsRejected) {
  const std::string storage(10, '\0');
  TensorView view;
  view.name = "short.one";
  view.dtype = DType::kF32;
  view.shape = {3};
  view.bytes = AsBytes(storage);
  EXPECT_THAT(TensorToFloat32(view), StatusIs(kInvalidArgument, Mentions({"short.one", "10"})));
}

// --- Writing and round trips --------------------------------------------------------------------

TEST(WriteSafetensorsTest, ExactLayout) {
  ScratchDir scratch;
  const std::string path = scratch.File("w.safetensors");
  const std::string data = FloatBytes({1.0f, 2.0f});
  ASSERT_THAT(
      WriteSafetensors(path, {TensorToWrite{"w", DType::kF32, {2}, AsBytes(data)}}, {{"k", "v"}}),
      IsOk());
  // 79 bytes of JSON padded with one space to 80.
  const std::string header =
      R"({"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )";
  ASSERT_EQ(header.size(), 80u);
  EXPECT_EQ(ReadFileOrDie(path), std::string("\x50\0\0\0\0\0\0\0", 8) + header + data);
}

TEST(WriteSafetensorsTest, EmptyFile) {
  ScratchDir scratch;
  const std::string path = scratch.File("empty.safetensors");
  ASSERT_THAT(WriteSafetensors(path, {}), IsOk());
  EXPECT_EQ(ReadFileOrDie(path), Le64(8) + "{}      ");
  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_TRUE((*file)->names().empty());
}

TEST(WriteSafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  ScratchDir scratch;
  const std::string path = scratch.File("all.safetensors");
  struct Case {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  // Names out of alphabetical order: the header must keep the given order.
  const std::vector<Case> cases = {
      {"z.f64", DType::kF64, {2}, std::string("\0\0\0\0\0\0\xf8\x3f\0\0\0\0\0\0\0\xc0", 16)},
      {"a.f32", DType::kF32, {2, 2}, FloatBytes({1.0f, -1.0f, 0.5f, 1e30f})},
      {"m.f16", DType::kF16, {3}, std::string("\x00\x3c\x00\xc0\xff\x7b", 6)},
      {"b.bf16", DType::kBF16, {1}, std::string("\x80\x3f", 2)},
      {"scalar.i64", DType::kI64, {}, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8)},
      {"empty.i32", DType::kI32, {0, 4}, ""},
      {"c.i16", DType::kI16, {2}, std::string("\x01\x80\xff\x7f", 4)},
      {"d.i8", DType::kI8, {3}, std::string("\x80\x00\x7f", 3)},
      {"e.u8", DType::kU8, {2, 1, 2}, std::string("\x00\x01\xfe\xff", 4)},
      {"f.bool", DType::kBool, {4}, std::string("\x01\x00\x00\x01", 4)},
  };
  std::vector<TensorToWrite> tensors;
  std::string all_data;
  for (const Case& c : cases) {
    tensors.push_back(TensorToWrite{c.name, c.dtype, c.shape, AsBytes(c.bytes)});
    all_data += c.bytes;
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "quote \" backslash \\ newline \n tab \t caf\xc3\xa9"}};
  ASSERT_THAT(WriteSafetensors(path, tensors, metadata), IsOk());

  // Layout, checked on the raw bytes.
  const std::string raw = ReadFileOrDie(path);
  ASSERT_GE(raw.size(), 8u);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | uint8_t(raw[i]);
  EXPECT_EQ(header_length % 8, 0u);
  ASSERT_EQ(raw.size(), 8 + header_length + all_data.size());
  EXPECT_EQ(raw.substr(8 + header_length), all_data);

  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  std::vector<std::string> expected_names;
  for (const Case& c : cases) expected_names.push_back(c.name);
  EXPECT_EQ((*file)->names(), expected_names);
  EXPECT_EQ((*file)->metadata(), metadata);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto view = (*file)->Get(c.name);
    ASSERT_THAT(view, IsOk());
    EXPECT_EQ(view->name, c.name);
    EXPECT_EQ(view->dtype, c.dtype);
    EXPECT_EQ(view->shape, c.shape);
    EXPECT_EQ(AsString(view->bytes), c.bytes);
  }
  EXPECT_THAT(TensorToFloat32((*file)->Get("m.f16").value()).value(),
              ElementsAre(1.0f, -2.0f, 65504.0f));
  EXPECT_THAT(TensorToFloat32((*file)->Get("z.f64").value()).value(), ElementsAre(1.5f, -2.0f));
  EXPECT_THAT(TensorToFloat32((*file)->Get("b.bf16").value()).value(), ElementsAre(1.0f));
  EXPECT_THAT(TensorToFloat32((*file)->Get("empty.i32").value()),
              StatusIs(kInvalidArgument, HasSubstr("empty.i32")));
}

TEST(WriteSafetensorsTest, ReplacesExistingFileAndLeavesNoTemporaries) {
  ScratchDir scratch;
  const std::string path = scratch.File("model.safetensors");
  const std::string first = FloatBytes({1.0f});
  const std::string second = FloatBytes({2.0f, 3.0f});
  ASSERT_THAT(WriteSafetensors(path, {TensorToWrite{"t", DType::kF32, {1}, AsBytes(first)}}),
              IsOk());
  ASSERT_THAT(WriteSafetensors(path, {TensorToWrite{"t", DType::kF32, {2}, AsBytes(second)}}),
              IsOk());
  EXPECT_THAT(ListDir(scratch.path()), ElementsAre("model.safetensors"));
  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_THAT(TensorToFloat32((*file)->Get("t").value()).value(), ElementsAre(2.0f, 3.0f));
}

TEST(WriteSafetensorsTest, ByteCountMismatchIsRejectedBeforeWriting) {
  ScratchDir scratch;
  const std::string path = scratch.File("bad.safetensors");
  const std::string data(7, '\0');
  EXPECT_THAT(
      WriteSafetensors(path, {TensorToWrite{"odd.tensor", DType::kF32, {2}, AsBytes(data)}}),
      StatusIs(kInvalidArgument, Mentions({path, "odd.tensor", "7 bytes", "needs 8"})));
  EXPECT_THAT(ListDir(scratch.path()), ElementsAre());
}

TEST(WriteSafetensorsTest, InvalidTensorsAreRejected) {
  ScratchDir scratch;
  const std::string path = scratch.File("bad.safetensors");
  const std::string four(4, '\0');
  EXPECT_THAT(WriteSafetensors(path, {TensorToWrite{"neg", DType::kU8, {-1}, {}}}),
              StatusIs(kInvalidArgument, Mentions({path, "neg", "[-1]"})));
  EXPECT_THAT(WriteSafetensors(path, {TensorToWrite{"dup", DType::kU8, {4}, AsBytes(four)},
                                      TensorToWrite{"dup", DType::kU8, {4}, AsBytes(four)}}),
              StatusIs(kInvalidArgument, Mentions({path, "dup", "duplicate"})));
  EXPECT_THAT(
      WriteSafetensors(path, {TensorToWrite{"__metadata__", DType::kU8, {4}, AsBytes(four)}}),
      StatusIs(kInvalidArgument, Mentions({path, "__metadata__", "reserved"})));
  EXPECT_THAT(WriteSafetensors(path, {TensorToWrite{"bad\xff", DType::kU8, {4}, AsBytes(four)}}),
              StatusIs(kInvalidArgument, Mentions({path, "UTF-8"})));
  EXPECT_THAT(WriteSafetensors(path, {}, {{"key", "\xc0\x80"}}),  // overlong NUL
              StatusIs(kInvalidArgument, Mentions({path, "UTF-8"})));
  EXPECT_THAT(ListDir(scratch.path()), ElementsAre());
}

TEST(WriteSafetensorsTest, ReportsIoErrors) {
  ScratchDir scratch;
  const std::string path = scratch.File("no/such/dir/model.safetensors");
  EXPECT_THAT(WriteSafetensors(path, {}),
              StatusIs(kNotFound, Mentions({path, "No such file or directory"})));
  // Renaming a file over a non-empty directory fails after the data was written.
  const std::string dir_path = scratch.File("occupied");
  ASSERT_EQ(mkdir(dir_path.c_str(), 0755), 0);
  WriteFileOrDie(dir_path + "/x", "x");
  const absl::Status status = WriteSafetensors(dir_path, {});
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), Mentions({"rename", dir_path}));
  EXPECT_THAT(ListDir(scratch.path()), ElementsAre("occupied"));
}

// --- Malformed files ----------------------------------------------------------------------------

class MalformedTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& contents) {
    WriteFileOrDie(path_, contents);
    return SafetensorsFile::Open(path_);
  }
  // An error message naming this file and each of `parts`.
  Matcher<const std::string&> Names(std::vector<std::string> parts) {
    parts.push_back(path_);
    return Mentions(parts);
  }

  ScratchDir scratch_;
  const std::string path_ = scratch_.File("bad.safetensors");
};

TEST_F(MalformedTest, MissingFile) {
  EXPECT_THAT(SafetensorsFile::Open(scratch_.File("absent.safetensors")),
              StatusIs(kNotFound, HasSubstr(scratch_.File("absent.safetensors"))));
}

TEST_F(MalformedTest, FileShorterThanLengthField) {
  EXPECT_THAT(Open(""), StatusIs(kDataLoss, Names({"0 bytes"})));
  EXPECT_THAT(Open(std::string("\x02\0\0\0\0", 5)), StatusIs(kDataLoss, Names({"5 bytes"})));
}

TEST_F(MalformedTest, HeaderLengthPastEndOfFile) {
  EXPECT_THAT(Open(RawFile(100, "{}", "")), StatusIs(kDataLoss, Names({"100", "2 bytes"})));
  EXPECT_THAT(Open(RawFile(3, "{}", "")), StatusIs(kDataLoss, Names({"header length 3"})));
}

TEST_F(MalformedTest, AbsurdHeaderLength) {
  EXPECT_THAT(Open(RawFile(uint64_t{1} << 40, "{}", "")),
              StatusIs(kInvalidArgument, Names({"1099511627776"})));
  EXPECT_THAT(Open(RawFile(~uint64_t{0}, "{}", "")),
              StatusIs(kInvalidArgument, Names({"18446744073709551615"})));
}

TEST_F(MalformedTest, HeaderIsNotJson) {
  for (const std::string& header :
       {std::string(""), std::string("not json"), std::string(R"({"t":)"),
        std::string(R"({"t":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} trailing)"),
        std::string("{}\0\0\0\0\0\0", 8), std::string("{}\0garbage", 10),
        std::string("{\"\xff\":{}}"), std::string("{'a':1}")}) {
    SCOPED_TRACE(header);
    EXPECT_THAT(Open(File(header, std::string(4, '\0'))),
                StatusIs(kInvalidArgument, Names({"not valid JSON"})));
  }
}

TEST_F(MalformedTest, HeaderIsNotAnObject) {
  for (const std::string header : {"[]", "\"F32\"", "null", "12", "true"}) {
    SCOPED_TRACE(header);
    EXPECT_THAT(Open(File(header, "")), StatusIs(kInvalidArgument, Names({"not a JSON object"})));
  }
}

TEST_F(MalformedTest, EntryIsNotAnObject) {
  for (const std::string value : {"[1,2]", "\"F32\"", "7", "null"}) {
    SCOPED_TRACE(value);
    EXPECT_THAT(Open(File(R"({"bad.tensor":)" + value + "}", "")),
                StatusIs(kInvalidArgument, Names({"\"bad.tensor\"", "not a JSON object"})));
  }
}

TEST_F(MalformedTest, MissingFields) {
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"shape":[1],"data_offsets":[0,4]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "missing \"dtype\""})));
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"F32","data_offsets":[0,4]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "missing \"shape\""})));
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"F32","shape":[1]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "missing \"data_offsets\""})));
  EXPECT_THAT(Open(File(R"({"bad.tensor":{}})", "")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "missing"})));
}

TEST_F(MalformedTest, MistypedDtype) {
  for (const std::string dtype : {"32", "null", "[\"F32\"]", "{}"}) {
    SCOPED_TRACE(dtype);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":)" + dtype + R"(,"shape":[1],"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "\"dtype\"", "not a string"})));
  }
}

TEST_F(MalformedTest, MistypedShape) {
  for (const std::string shape : {"\"[1]\"", "1", "{\"0\":1}", "null"}) {
    SCOPED_TRACE(shape);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "\"shape\"", "not an array"})));
  }
  for (const std::string shape : {"[\"1\"]", "[[1]]", "[null]", "[true]"}) {
    SCOPED_TRACE(shape);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "\"shape\"[0]", "not an integer"})));
  }
}

TEST_F(MalformedTest, MistypedDataOffsets) {
  const std::string prefix = R"({"bad.tensor":{"dtype":"U8","shape":[4],"data_offsets":)";
  EXPECT_THAT(
      Open(File(prefix + R"("0,4"}})", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "\"data_offsets\"", "not an array"})));
  EXPECT_THAT(Open(File(prefix + R"([4]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "has 1 elements, expected 2"})));
  EXPECT_THAT(Open(File(prefix + R"([]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "has 0 elements, expected 2"})));
  EXPECT_THAT(Open(File(prefix + R"([0,2,4]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "more than 2 elements"})));
  EXPECT_THAT(Open(File(prefix + R"([[0],[4]]}})", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "not an integer"})));
}

TEST_F(MalformedTest, UnknownDtype) {
  for (const std::string dtype : {"F8_E4M3", "f32", "U16", ""}) {
    SCOPED_TRACE(dtype);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":")" + dtype + R"(","shape":[1],"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "unknown dtype \"" + dtype + "\""})));
  }
}

TEST_F(MalformedTest, NegativeDimension) {
  EXPECT_THAT(
      Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[2,-2],"data_offsets":[0,4]}})", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "\"shape\"[1]", "negative"})));
}

TEST_F(MalformedTest, NonIntegerDimension) {
  for (const std::string dim : {"2.0", "1.5", "1e2", "18446744073709551616"}) {
    SCOPED_TRACE(dim);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[)" + dim + R"(],"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "not an integer", dim})));
  }
}

TEST_F(MalformedTest, DimensionAtOrAbove2To63IsRejectedNotWrapped) {
  // 2^63 would wrap to INT64_MIN; 2^64 - 4 to -4.
  for (const std::string dim : {"9223372036854775808", "18446744073709551612"}) {
    SCOPED_TRACE(dim);
    EXPECT_THAT(
        Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[)" + dim + R"(],"data_offsets":[0,4]}})",
                  "abcd")),
        StatusIs(kInvalidArgument, Names({"bad.tensor", "above 2^63-1"})));
  }
}

TEST_F(MalformedTest, ByteSizeOverflow) {
  // numel itself overflows: 2^62 * 4.
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[4611686018427387904,4],)"
                        R"("data_offsets":[0,4]}})",
                        "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "overflows"})));
  // numel = 2^61 fits, numel * 8 bytes does not.
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"F64","shape":[2305843009213693952],)"
                        R"("data_offsets":[0,0]}})",
                        "")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "overflows"})));
  // 2^63-1 bytes of U8 do not overflow, but the data is not there.
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[9223372036854775807],)"
                        R"("data_offsets":[0,9223372036854775807]}})",
                        "abcd")),
              StatusIs(kDataLoss, Names({"bad.tensor"})));
}

TEST_F(MalformedTest, BeginAfterEnd) {
  EXPECT_THAT(
      Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "[4, 0]", "end before begin"})));
}

TEST_F(MalformedTest, EndBeyondData) {
  EXPECT_THAT(
      Open(File(R"({"bad.tensor":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd")),
      StatusIs(kDataLoss, Names({"bad.tensor", "[0, 8]", "4 data bytes"})));
  EXPECT_THAT(Open(File(R"({"ok":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("bad.tensor":{"dtype":"U8","shape":[0],"data_offsets":[5,5]}})",
                        "abcd")),
              StatusIs(kDataLoss, Names({"bad.tensor", "[5, 5]"})));
}

TEST_F(MalformedTest, SizeDisagreesWithShape) {
  EXPECT_THAT(
      Open(File(R"({"bad.tensor":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "span 4 bytes", "needs 8"})));
  EXPECT_THAT(
      Open(File(R"({"bad.tensor":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}})", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "needs 2"})));
}

TEST_F(MalformedTest, BadOffsetValues) {
  const std::string prefix = R"({"bad.tensor":{"dtype":"U8","shape":[4],"data_offsets":)";
  EXPECT_THAT(Open(File(prefix + "[-4,0]}}", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "\"data_offsets\"[0]", "negative"})));
  EXPECT_THAT(
      Open(File(prefix + "[0,4.0]}}", "abcd")),
      StatusIs(kInvalidArgument, Names({"bad.tensor", "\"data_offsets\"[1]", "not an integer"})));
  EXPECT_THAT(Open(File(prefix + "[18446744073709551612,0]}}", "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "above 2^63-1"})));
}

TEST_F(MalformedTest, DuplicateTensorName) {
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("bad.tensor":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
                        "abcd")),
              StatusIs(kInvalidArgument, Names({"duplicate tensor name \"bad.tensor\""})));
}

TEST_F(MalformedTest, DuplicateKeysInsideEntryOrMetadata) {
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"U8","dtype":"F32","shape":[4],)"
                        R"("data_offsets":[0,4]}})",
                        "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "duplicate key \"dtype\""})));
  EXPECT_THAT(Open(File(R"({"__metadata__":{"k":"a","k":"b"}})", "")),
              StatusIs(kInvalidArgument, Names({"duplicate key \"k\""})));
  EXPECT_THAT(Open(File(R"({"__metadata__":{},"__metadata__":{}})", "")),
              StatusIs(kInvalidArgument, Names({"__metadata__", "twice"})));
}

TEST_F(MalformedTest, MetadataValuesMustBeStrings) {
  for (const std::string value : {"1", "null", "{\"x\":\"y\"}", "[\"a\"]", "false"}) {
    SCOPED_TRACE(value);
    EXPECT_THAT(Open(File(R"({"__metadata__":{"format":"pt","bad.key":)" + value + "}}", "")),
                StatusIs(kInvalidArgument, Names({"__metadata__", "\"bad.key\"", "not a string"})));
  }
  EXPECT_THAT(Open(File(R"({"__metadata__":"pt"})", "")),
              StatusIs(kInvalidArgument, Names({"__metadata__", "not a JSON object"})));
}

TEST_F(MalformedTest, DeepNestingIsRejectedWithoutRecursion) {
  // At the root: rejected at the first '[' as "not an object".
  const std::string deep(1 << 20, '[');
  EXPECT_THAT(Open(File(deep, "")), StatusIs(kInvalidArgument, Names({"not a JSON object"})));
  // Inside an unknown key, which is otherwise skipped.
  const std::string nested = std::string(1000, '[') + std::string(1000, ']');
  EXPECT_THAT(Open(File(R"({"bad.tensor":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":)" +
                            nested + "}}",
                        "abcd")),
              StatusIs(kInvalidArgument, Names({"bad.tensor", "\"x\"", "deeper"})));
}

TEST_F(MalformedTest, HugeNamesAreCutInMessages) {
  const std::string name(100000, 'n');
  auto result =
      Open(File(R"({")" + name + R"(":{"dtype":"X","shape":[],"data_offsets":[0,0]}})", ""));
  EXPECT_THAT(result, StatusIs(kInvalidArgument, Names({"unknown dtype", "100000 bytes"})));
  EXPECT_LT(result.status().message().size(), 2000u);
}

TEST_F(MalformedTest, GetOfAbsentTensorIsNotFound) {
  auto file = Open(File(R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "abcd"));
  ASSERT_THAT(file, IsOk());
  EXPECT_TRUE((*file)->Contains("t"));
  EXPECT_FALSE((*file)->Contains("u"));
  EXPECT_THAT((*file)->Get("u"), StatusIs(kNotFound, Names({"\"u\""})));
}

// Inputs that are unusual but valid.
TEST_F(MalformedTest, AcceptsPaddingUnknownKeysUnalignedDataAndAnyOrder) {
  const std::string header =
      R"({"late":{"dtype":"F32","shape":[1],"data_offsets":[4,8],"extra":{"a":[1,{"b":null}]}},)"
      R"("early":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
      R"("__metadata__":{}})"
      "   \n ";
  ASSERT_NE((8 + header.size()) % 4, 0u);  // the data starts unaligned
  auto file = Open(File(header, FloatBytes({-1.0f, 0.25f})));
  ASSERT_THAT(file, IsOk());
  EXPECT_THAT((*file)->names(), ElementsAre("late", "early"));
  EXPECT_THAT(TensorToFloat32((*file)->Get("late").value()).value(), ElementsAre(0.25f));
  EXPECT_THAT(TensorToFloat32((*file)->Get("early").value()).value(), ElementsAre(-1.0f));
  // "-0" is an integer zero.
  EXPECT_THAT(Open(File(R"({"z":{"dtype":"U8","shape":[-0],"data_offsets":[0,-0]}})", "")), IsOk());
}

// --- Sharded checkpoints ------------------------------------------------------------------------

class CheckpointTest : public ::testing::Test {
 protected:
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

  void SetUp() override {
    // Shard 1: "a" F32 [2] = {1, 2}. Shard 2: "b" I8 [3] = {1, -1, 127}.
    WriteFileOrDie(scratch_.File(kShard1),
                   File(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                        FloatBytes({1.0f, 2.0f})));
    WriteFileOrDie(
        scratch_.File(kShard2),
        File(R"({"b":{"dtype":"I8","shape":[3],"data_offsets":[0,3]}})", "\x01\xff\x7f"));
  }

  void WriteIndex(const std::string& json) { WriteFileOrDie(index_path_, json); }
  std::string WeightMap(const std::string& entries) {
    return R"({"metadata":{"total_size":11},"weight_map":{)" + entries + "}}";
  }

  ScratchDir scratch_;
  const std::string index_path_ = scratch_.File("model.safetensors.index.json");
};

TEST_F(CheckpointTest, TwoShards) {
  WriteIndex(WeightMap(std::string(R"("b":")") + kShard2 + R"(","a":")" + kShard1 + "\""));
  auto checkpoint = SafetensorsCheckpoint::Open(scratch_.path());
  ASSERT_THAT(checkpoint, IsOk());
  EXPECT_THAT((*checkpoint)->names(), ElementsAre("a", "b"));
  EXPECT_TRUE((*checkpoint)->Contains("a"));
  EXPECT_FALSE((*checkpoint)->Contains("c"));
  auto a = (*checkpoint)->Get("a");
  ASSERT_THAT(a, IsOk());
  EXPECT_THAT(TensorToFloat32(*a).value(), ElementsAre(1.0f, 2.0f));
  auto b = (*checkpoint)->Get("b");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->dtype, DType::kI8);
  EXPECT_EQ(AsString(b->bytes), "\x01\xff\x7f");
  EXPECT_THAT((*checkpoint)->Get("c"), StatusIs(kNotFound, Mentions({"\"c\"", scratch_.path()})));
}

TEST_F(CheckpointTest, IndexTakesPrecedenceOverSingleFile) {
  WriteFileOrDie(scratch_.File("model.safetensors"),
                 File(R"({"other":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})", ""));
  WriteIndex(WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":")" + kShard2 + "\""));
  auto checkpoint = SafetensorsCheckpoint::Open(scratch_.path());
  ASSERT_THAT(checkpoint, IsOk());
  EXPECT_THAT((*checkpoint)->names(), ElementsAre("a", "b"));
}

TEST_F(CheckpointTest, MissingShardFile) {
  WriteIndex(
      WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":"model-00003-of-00002.safetensors")"));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kNotFound, Mentions({index_path_, "model-00003-of-00002.safetensors",
                                            "\"b\"", "No such file"})));
}

TEST_F(CheckpointTest, ShardNamesMustBePlainFileNames) {
  for (const std::string& shard :
       {std::string("../") + kShard1, std::string("sub/") + kShard1, std::string("/etc/passwd"),
        std::string(".."), std::string("")}) {
    SCOPED_TRACE(shard);
    WriteIndex(WeightMap(R"("a":")" + shard + R"(","b":")" + kShard2 + "\""));
    EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
                StatusIs(kInvalidArgument,
                         Mentions({index_path_, "\"a\"", "\"" + shard + "\"", "plain file name"})));
  }
  WriteIndex(WeightMap(R"("a":"x\u0000y")"));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "plain file name"})));
}

TEST_F(CheckpointTest, TensorListedButAbsentFromShard) {
  WriteIndex(WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":")" + kShard2 +
                       R"(","ghost":")" + kShard1 + "\""));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument,
                       Mentions({index_path_, "\"ghost\"", kShard1, "does not hold it"})));
}

TEST_F(CheckpointTest, ShardTensorNotListedInIndex) {
  WriteFileOrDie(scratch_.File(kShard2),
                 File(R"({"b":{"dtype":"I8","shape":[3],"data_offsets":[0,3]},)"
                      R"("stowaway":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
                      std::string("\x01\xff\x7f\x00", 4)));
  WriteIndex(WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":")" + kShard2 + "\""));
  EXPECT_THAT(
      SafetensorsCheckpoint::Open(scratch_.path()),
      StatusIs(kInvalidArgument, Mentions({scratch_.File(kShard2), "\"stowaway\"", "not listed"})));
}

TEST_F(CheckpointTest, TensorStoredInTwoShards) {
  WriteFileOrDie(scratch_.File(kShard1),
                 File(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"I8","shape":[3],"data_offsets":[8,11]}})",
                      FloatBytes({1.0f, 2.0f}) + "\x01\xff\x7f"));
  WriteIndex(WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":")" + kShard2 + "\""));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({scratch_.File(kShard1), "\"b\"", kShard2})));
}

TEST_F(CheckpointTest, MalformedShardIsReportedWithItsPath) {
  WriteFileOrDie(scratch_.File(kShard2), File(R"({"b":{"dtype":"Q4","shape":[3],)"
                                              R"("data_offsets":[0,3]}})",
                                              "abc"));
  WriteIndex(WeightMap(std::string(R"("a":")") + kShard1 + R"(","b":")" + kShard2 + "\""));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument,
                       Mentions({index_path_, scratch_.File(kShard2), "\"b\"", "unknown dtype"})));
}

TEST_F(CheckpointTest, WeightMapIsNotAnObject) {
  for (const std::string weight_map : {R"(["a"])", R"("a")", "null", "3"}) {
    SCOPED_TRACE(weight_map);
    WriteIndex(R"({"weight_map":)" + weight_map + "}");
    EXPECT_THAT(
        SafetensorsCheckpoint::Open(scratch_.path()),
        StatusIs(kInvalidArgument, Mentions({index_path_, "\"weight_map\"", "not a JSON object"})));
  }
}

TEST_F(CheckpointTest, MalformedIndex) {
  WriteIndex(R"({"metadata":{}})");
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "no \"weight_map\""})));
  WriteIndex(R"({"weight_map":{"a":1}})");
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "\"a\"", "not a string"})));
  WriteIndex(R"({"weight_map":{"a":)");
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "not valid JSON"})));
  WriteIndex(R"(["weight_map"])");
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "not a JSON object"})));
  WriteIndex(std::string("{\"weight_map\":{}}\0garbage", 25));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "not valid JSON"})));
  WriteIndex(std::string(1 << 20, '['));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.path()),
              StatusIs(kInvalidArgument, Mentions({index_path_, "nests deeper"})));
}

TEST_F(CheckpointTest, NeitherFilePresent) {
  const std::string dir = scratch_.File("empty_model");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  EXPECT_THAT(SafetensorsCheckpoint::Open(dir),
              StatusIs(kNotFound, Mentions({dir + "/model.safetensors.index.json",
                                            dir + "/model.safetensors"})));
  EXPECT_THAT(SafetensorsCheckpoint::Open(scratch_.File("no_such_dir")),
              StatusIs(kNotFound, HasSubstr("no_such_dir/model.safetensors")));
}

}  // namespace
}  // namespace models
}  // namespace foxserve
