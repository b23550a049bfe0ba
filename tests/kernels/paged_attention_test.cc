// The CPU paged attention against a dense float64 reference computed from the same inputs, with
// physical pages shuffled and every page the stream does not own poisoned with NaN (a read of a
// wrong page then fails the comparison).
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/acp_boundary.h"

namespace foxserve {
namespace kernels {
namespace {

enum class GateRegime { kNoForget, kSlow, kFast, kVeryFast, kBurst };

struct Case {
  int64_t length;          // tokens in the stream
  int64_t first_position;  // first query position (queries run to the end)
  int32_t page_size;
  int32_t head_dim;
  GateRegime gates;
};

class StreamFixture {
 public:
  StreamFixture(const Case& c, uint32_t seed) : c_(c), rng_(seed) {
    layout_.page_size = c.page_size;
    layout_.head_dim = c.head_dim;
    const int64_t d = c.head_dim;
    const int64_t blocks = (c.length + c.page_size - 1) / c.page_size;
    const int64_t num_pages = blocks * 2 + 3;  // spare pages stay poisoned
    storage_.assign(num_pages * layout_.page_floats(), std::numeric_limits<float>::quiet_NaN());
    std::vector<int32_t> ids(num_pages);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng_);
    pages_.assign(ids.begin(), ids.begin() + blocks);
    pool_ = {storage_.data(), num_pages, layout_};

    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    q_.resize(c.length * d);
    k_.resize(c.length * d);
    v_.resize(c.length * d);
    for (auto* vec : {&q_, &k_, &v_})
      for (float& x : *vec) x = static_cast<float>(normal(rng_));
    c_abs_.resize(c.length);
    double cum = 0;
    for (int64_t t = 0; t < c.length; ++t) {
      double log_f = 0;
      switch (c.gates) {
        case GateRegime::kNoForget: log_f = 0; break;
        case GateRegime::kSlow: log_f = -0.01 * uni(rng_); break;
        case GateRegime::kFast: log_f = -5.0 * uni(rng_); break;
        case GateRegime::kVeryFast: log_f = -(5.0 + 5.0 * uni(rng_)); break;
        case GateRegime::kBurst: log_f = (t % 300 == 150) ? -400.0 : -0.002; break;
      }
      cum += log_f;
      c_abs_[t] = cum;
    }
    // Write pages the way the model does.
    block_c_first_.resize(blocks);
    block_c_last_.resize(blocks);
    for (int64_t t = 0; t < c.length; ++t) {
      const int64_t b = t / c.page_size, slot = t % c.page_size;
      if (slot == 0) block_c_first_[b] = c_abs_[t];
      block_c_last_[b] = c_abs_[t];
      float* page = pool_.page(pages_[b]);
      std::copy(&k_[t * d], &k_[t * d] + d, page + layout_.k_offset() + slot * d);
      std::copy(&v_[t * d], &v_[t * d] + d, page + layout_.v_offset() + slot * d);
      page[layout_.c_offset() + slot] = static_cast<float>(c_abs_[t] - block_c_first_[b]);
    }
    stream_.pages = pages_.data();
    stream_.block_c_first = block_c_first_.data();
    stream_.block_c_last = block_c_last_.data();
    stream_.num_blocks = blocks;
    stream_.num_tokens = c.length;
    scale_ = 1.0f / std::sqrt(static_cast<float>(d));
  }

  int64_t num_queries() const { return c_.length - c_.first_position; }

  StreamQueries Queries() const {
    StreamQueries q;
    q.q = q_.data() + c_.first_position * c_.head_dim;
    q.q_stride = c_.head_dim;
    q.c = c_abs_.data() + c_.first_position;
    q.first_position = c_.first_position;
    q.n = num_queries();
    return q;
  }

  // ACP start blocks for the given delta, by a plain linear scan of the tile rule.
  std::vector<int32_t> LinearStarts(double delta) const {
    const int64_t nqb = NumQueryBlocks(c_.first_position, num_queries(), c_.page_size);
    std::vector<int32_t> starts(nqb);
    const int64_t first_block = c_.first_position / c_.page_size;
    for (int64_t qb = 0; qb < nqb; ++qb) {
      const int64_t first_q = std::max(c_.first_position, (first_block + qb) * c_.page_size);
      int64_t b = 0;
      while (b < first_block + qb && c_abs_[first_q] - block_c_last_[b] < delta) ++b;
      starts[qb] = static_cast<int32_t>(b);
    }
    return starts;
  }

  // Dense float64 attention of query position p over keys [key_begin, p].
  std::vector<double> Reference(int64_t p, int64_t key_begin) const {
    const int64_t d = c_.head_dim;
    std::vector<double> s(p + 1, -std::numeric_limits<double>::infinity());
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = key_begin; j <= p; ++j) {
      double dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(q_[p * d + i]) * k_[j * d + i];
      s[j] = dot / std::sqrt(static_cast<double>(d)) + (c_abs_[p] - c_abs_[j]);
      m = std::max(m, s[j]);
    }
    std::vector<double> o(d, 0.0);
    double z = 0;
    for (int64_t j = key_begin; j <= p; ++j) {
      const double w = std::exp(s[j] - m);
      z += w;
      for (int64_t i = 0; i < d; ++i) o[i] += w * v_[j * d + i];
    }
    for (double& x : o) x /= z;
    return o;
  }

  std::vector<float> Run(const std::vector<int32_t>& starts) const {
    const int64_t n = num_queries(), d = c_.head_dim;
    std::vector<float> out(n * d, std::numeric_limits<float>::quiet_NaN());
    // Two calls over a split row range, as the engine's tasks do.
    const int64_t split = n / 3;
    PagedAttentionRows(pool_, stream_, Queries(), starts.data(), scale_, 0, split, out.data(), d);
    PagedAttentionRows(pool_, stream_, Queries(), starts.data(), scale_, split, n, out.data(), d);
    return out;
  }

  double MaxAbsV() const {
    double m = 0;
    for (float x : v_) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
  }
  double LogitBound() const {
    // max |q| max |k| / sqrt(d) from the data (what the engine's per-step bound uses).
    auto max_norm = [&](const std::vector<float>& x) {
      double best = 0;
      for (int64_t t = 0; t < c_.length; ++t) {
        double s = 0;
        for (int64_t i = 0; i < c_.head_dim; ++i) s += double{x[t * c_.head_dim + i]} * x[t * c_.head_dim + i];
        best = std::max(best, std::sqrt(s));
      }
      return best;
    };
    return max_norm(q_) * max_norm(k_) / std::sqrt(static_cast<double>(c_.head_dim));
  }

  const Case& c() const { return c_; }
  const std::vector<double>& block_c_last() const { return block_c_last_; }

 private:
  Case c_;
  std::mt19937 rng_;
  KvPageLayout layout_;
  std::vector<float> storage_;
  std::vector<int32_t> pages_;
  KvPoolView pool_;
  KvStreamView stream_;
  std::vector<float> q_, k_, v_;
  std::vector<double> c_abs_, block_c_first_, block_c_last_;
  float scale_;
};

// Rows worth a float64 reference: all of short runs; for long ones every 13th row plus the rows at
// page edges and the last one (the reference is O(length * head_dim) per row).
bool Checked(const Case& c, int64_t i) {
  const int64_t n = c.length - c.first_position, p = c.first_position + i;
  if (n <= 200) return true;
  const int64_t slot = p % c.page_size;
  return i % 13 == 0 || i == n - 1 || slot == 0 || slot == c.page_size - 1;
}

double RowRelError(const float* out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double diff = static_cast<double>(out[i]) - ref[i];
    num += diff * diff;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int64_t length : {1, 63, 64, 65, 200, 1020, 2098}) {
    for (GateRegime g : {GateRegime::kNoForget, GateRegime::kSlow, GateRegime::kFast,
                         GateRegime::kVeryFast, GateRegime::kBurst}) {
      // Whole prefill, and a chunk that starts mid-page.
      cases.push_back({length, 0, 64, 64, g});
      if (length > 40) cases.push_back({length, length - 37, 64, 64, g});
    }
  }
  cases.push_back({300, 0, 16, 32, GateRegime::kFast});
  cases.push_back({300, 299, 128, 128, GateRegime::kSlow});  // one decode query
  return cases;
}

TEST(PagedAttentionTest, DenseMatchesFloat64Reference) {
  uint32_t seed = 10;
  for (const Case& c : Cases()) {
    StreamFixture f(c, seed++);
    const auto starts = f.LinearStarts(-std::numeric_limits<double>::infinity());
    for (int32_t s : starts) ASSERT_EQ(s, 0);
    const auto out = f.Run(starts);
    for (int64_t i = 0; i < f.num_queries(); ++i) {
      if (!Checked(c, i)) continue;
      const int64_t p = c.first_position + i;
      const double err = RowRelError(out.data() + i * c.head_dim, f.Reference(p, 0));
      ASSERT_LT(err, 2e-5) << "len " << c.length << " pos " << p << " regime "
                           << static_cast<int>(c.gates);
    }
  }
}

// With ACP starts, the output equals the float64 attention restricted to the kept keys (the
// pruning decision is applied exactly), and differs from dense attention by less than the bound.
TEST(PagedAttentionTest, AcpSkipsWithinTheBound) {
  uint32_t seed = 100;
  int64_t skipped_total = 0;
  for (const Case& c : Cases()) {
    for (double log_eps : {-10.0, -2.0}) {
      StreamFixture f(c, seed++);
      const double eps = std::exp(log_eps);
      const double delta = AcpThreshold(f.LogitBound(), static_cast<double>(c.length), log_eps);
      const auto starts = f.LinearStarts(delta);
      const auto out = f.Run(starts);
      const int64_t first_block = c.first_position / c.page_size;
      for (int64_t i = 0; i < f.num_queries(); ++i) {
        const int64_t p = c.first_position + i;
        const int64_t start = starts[p / c.page_size - first_block];
        skipped_total += start;
        if (!Checked(c, i)) continue;
        const auto kept = f.Reference(p, start * c.page_size);
        ASSERT_LT(RowRelError(out.data() + i * c.head_dim, kept), 2e-5)
            << "len " << c.length << " pos " << p;
        const auto dense = f.Reference(p, 0);
        for (int64_t e = 0; e < c.head_dim; ++e) {
          // Dropped weight < eps moves each output coordinate by < 2 eps max|v|.
          ASSERT_LE(std::fabs(out[i * c.head_dim + e] - dense[e]), 2 * eps * f.MaxAbsV() + 1e-4)
              << "len " << c.length << " pos " << p << " log eps " << log_eps;
        }
      }
    }
  }
  EXPECT_GT(skipped_total, 1000) << "the cases must exercise real skipping";
}

TEST(PagedAttentionTest, GallopingBoundaryEqualsLinearScan) {
  uint32_t seed = 500;
  for (const Case& c : Cases()) {
    StreamFixture f(c, seed++);
    for (double delta : {-1e9, -60.0, -20.0, -3.0, -0.5, 0.0, 5.0}) {
      const auto linear = f.LinearStarts(delta);
      const int64_t first_block = c.first_position / c.page_size;
      int64_t begin = 0;
      for (size_t qb = 0; qb < linear.size(); ++qb) {
        const int64_t first_q = std::max<int64_t>(c.first_position, (first_block + qb) * c.page_size);
        const double c_q = f.Queries().c[first_q - c.first_position];
        begin = FirstLiveBlock(f.block_c_last().data(), begin, first_block + qb, c_q, delta);
        ASSERT_EQ(begin, linear[qb]) << "len " << c.length << " qb " << qb << " delta " << delta;
      }
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
