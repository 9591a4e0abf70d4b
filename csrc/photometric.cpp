// Photometric ops on planar uint8 images (see photometric.h): plain loops over contiguous rows that the compiler
// vectorises, with an AVX2 clone where the toolchain can build one (same IEEE operations, same results).
#include "photometric.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 6))
#define COPYNCE_PHOTO_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define COPYNCE_PHOTO_CLONES
#endif

namespace copynce {
namespace {

// Round half to even, then clamp to [0, 255], as torch's round_().clamp_(0, 255). For |y| < 2^22, adding and
// removing 1.5 * 2^23 rounds to the nearest integer, ties to even (the sum lies in [2^23, 2^24), where the float
// spacing is 1; setup.py builds without fast-math, so the two operations stay). The clamp is done on integers: a
// float compare after arithmetic keeps GCC from vectorising the loop (-ftrapping-math). colour_ops checks that its
// maps keep |y| below 2^21; blur values are averages of 0..255.
constexpr float kRoundMagic = 12582912.0f;

inline int32_t round_clamp(float y) {
  const int32_t v = static_cast<int32_t>((y + kRoundMagic) - kRoundMagic);
  return std::min(std::max(v, 0), 255);
}

constexpr int64_t kBlock = 256;  // pixels per pass of colour_ops: three float rows that stay in L1

COPYNCE_PHOTO_CLONES void colour_block(const uint8_t* __restrict s0, const uint8_t* __restrict s1,
                                       const uint8_t* __restrict s2, int64_t n, const float* maps, int64_t n_maps,
                                       float* __restrict x0, float* __restrict x1, float* __restrict x2) {
  for (int64_t i = 0; i < n; ++i) {
    x0[i] = s0[i];
    x1[i] = s1[i];
    x2[i] = s2[i];
  }
  for (int64_t k = 0; k < n_maps; ++k) {
    const float* m = maps + 12 * k;
    const float a0 = m[0], a1 = m[1], a2 = m[2], t0 = m[3];
    const float b0 = m[4], b1 = m[5], b2 = m[6], t1 = m[7];
    const float c0 = m[8], c1 = m[9], c2 = m[10], t2 = m[11];
    for (int64_t i = 0; i < n; ++i) {
      const float v0 = x0[i], v1 = x1[i], v2 = x2[i];
      x0[i] = static_cast<float>(round_clamp(((a0 * v0 + a1 * v1) + a2 * v2) + t0));
      x1[i] = static_cast<float>(round_clamp(((b0 * v0 + b1 * v1) + b2 * v2) + t1));
      x2[i] = static_cast<float>(round_clamp(((c0 * v0 + c1 * v1) + c2 * v2) + t2));
    }
  }
}

COPYNCE_PHOTO_CLONES void store_block(const float* __restrict x, int64_t n, uint8_t* __restrict d) {
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(static_cast<int32_t>(x[i]));
}

// Source index of padded position p (in [-r, n + r)) for torch's reflect (edge not repeated) or replicate pad.
inline int64_t border_index(int64_t p, int64_t n, bool reflect) {
  if (reflect) return p < 0 ? -p : (p >= n ? 2 * (n - 1) - p : p);
  return std::min(std::max(p, int64_t(0)), n - 1);
}

// acc[x] = sum_j taps[j] * rows[j][x], in the order of photometric.h. A block of kLanes sums lives in registers
// across the taps (fixed-size inner loops, which the compiler unrolls and vectorises); the tail goes one by one.
constexpr int64_t kLanes = 16;

COPYNCE_PHOTO_CLONES void tap_row(const float* const* rows, const float* taps, int64_t n_taps, int64_t n,
                                  float* __restrict acc) {
  int64_t x0 = 0;
  for (; x0 + kLanes <= n; x0 += kLanes) {
    float a[kLanes];
    const float* r = rows[0] + x0;
    for (int64_t l = 0; l < kLanes; ++l) a[l] = r[l] * taps[0];
    for (int64_t j = 1; j < n_taps; ++j) {
      const float* q = rows[j] + x0;
      const float k = taps[j];
      for (int64_t l = 0; l < kLanes; ++l) a[l] = a[l] + k * q[l];
    }
    for (int64_t l = 0; l < kLanes; ++l) acc[x0 + l] = a[l];
  }
  for (; x0 < n; ++x0) {
    float a = rows[0][x0] * taps[0];
    for (int64_t j = 1; j < n_taps; ++j) a = a + taps[j] * rows[j][x0];
    acc[x0] = a;
  }
}

COPYNCE_PHOTO_CLONES void widen_row(const uint8_t* __restrict s, int64_t n, float* __restrict d) {
  for (int64_t x = 0; x < n; ++x) d[x] = s[x];
}

COPYNCE_PHOTO_CLONES void narrow_row(const float* __restrict s, int64_t n, uint8_t* __restrict d) {
  for (int64_t x = 0; x < n; ++x) d[x] = static_cast<uint8_t>(round_clamp(s[x]));
}

// a[x] = r[x - 1] + r[x] + r[x + 1], replicate border.
COPYNCE_PHOTO_CLONES void row_sum3(const uint8_t* __restrict r, int64_t n, int32_t* __restrict a) {
  if (n == 1) {
    a[0] = 3 * int32_t(r[0]);
    return;
  }
  a[0] = 2 * int32_t(r[0]) + int32_t(r[1]);
  for (int64_t x = 1; x < n - 1; ++x) a[x] = int32_t(r[x - 1]) + int32_t(r[x]) + int32_t(r[x + 1]);
  a[n - 1] = int32_t(r[n - 2]) + 2 * int32_t(r[n - 1]);
}

// One output row of edge_enhance from the row's pixels and the 3-sums of the rows above, at and below it.
COPYNCE_PHOTO_CLONES void edge_row(const uint8_t* __restrict r, const int32_t* __restrict up,
                                   const int32_t* __restrict mid, const int32_t* __restrict down, int64_t n,
                                   bool more, uint8_t* __restrict d) {
  const int32_t centre = more ? 10 : 11;
  for (int64_t x = 0; x < n; ++x) {
    int32_t v = centre * int32_t(r[x]) - (up[x] + mid[x] + down[x]);
    if (!more) {  // v / 2 rounded half to even: the floor, plus one for an odd v whose floor is odd
      const int32_t q = v >> 1;  // arithmetic shift (GCC, Clang, MSVC): the floor for negative v too
      v = q + ((v & 1) & (q & 1));
    }
    d[x] = static_cast<uint8_t>(std::min(std::max(v, 0), 255));
  }
}

// d[x] = (d[x] (255 - a) + c a + 127) / 255 for the colour c and alpha a of patch pixel x (stride 4).
COPYNCE_PHOTO_CLONES void over_row(const uint8_t* __restrict colour, const uint8_t* __restrict alpha, int64_t n,
                                   uint8_t* __restrict d) {
  for (int64_t x = 0; x < n; ++x) {
    const uint32_t a = alpha[4 * x];
    const uint32_t v = uint32_t(d[x]) * (255u - a) + uint32_t(colour[4 * x]) * a;
    d[x] = static_cast<uint8_t>((v + 127u) / 255u);
  }
}

// torch's antialiased linear weights along one axis (UpSampleKernel.cpp, _compute_indices_min_size_weights_aa, in
// its float / double mix): output i reads input [first[i], first[i] + count[i]) with weights w[i * taps + j].
struct AxisWeights {
  int64_t taps = 0;
  std::vector<int64_t> first, count;
  std::vector<float> w;
};

AxisWeights antialias_weights(int64_t in, int64_t out) {
  AxisWeights a;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = scale >= 1.0f ? 1.0f * scale : 1.0f;  // interp_size / 2 = 1 for bilinear
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  a.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  a.first.resize(static_cast<size_t>(out));
  a.count.resize(static_cast<size_t>(out));
  a.w.assign(static_cast<size_t>(out * a.taps), 0.0f);
  for (int64_t i = 0; i < out; ++i) {
    const float center = static_cast<float>(scale * (i + 0.5));
    const int64_t lo = std::max(static_cast<int64_t>(center - support + 0.5), int64_t(0));
    const int64_t n = std::clamp(std::min(static_cast<int64_t>(center + support + 0.5), in) - lo, int64_t(0), a.taps);
    float* w = a.w.data() + i * a.taps;
    float total = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float x = std::fabs(static_cast<float>((static_cast<float>(j + lo) - center + 0.5) * invscale));
      w[j] = x < 1.0f ? 1.0f - x : 0.0f;
      total += w[j];
    }
    if (total != 0.0f) {
      for (int64_t j = 0; j < n; ++j) w[j] /= total;
    }
    a.first[i] = lo;
    a.count[i] = n;
  }
  return a;
}

// d[x * rows + y] = s[y * cols + x] (uint8 or float in, float out: the uint8 plane is widened on the way), in
// square tiles so that both sides stay in cache lines.
constexpr int64_t kTile = 32;

template <typename In>
void transpose(const In* s, int64_t rows, int64_t cols, float* d) {
  for (int64_t y0 = 0; y0 < rows; y0 += kTile) {
    for (int64_t x0 = 0; x0 < cols; x0 += kTile) {
      const int64_t y1 = std::min(y0 + kTile, rows), x1 = std::min(x0 + kTile, cols);
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = x0; x < x1; ++x) d[x * rows + y] = static_cast<float>(s[y * cols + x]);
      }
    }
  }
}

}  // namespace

void colour_ops(const uint8_t* src, uint8_t* dst, int64_t pixels, const float* maps, int64_t n_maps) {
  for (int64_t k = 0; k < n_maps; ++k) {  // inputs are 0..255: bound |y| for round_clamp (NaN fails too)
    for (int64_t i = 0; i < 3; ++i) {
      const float* r = maps + 12 * k + 4 * i;
      const double bound = 255.0 * (std::fabs(double(r[0])) + std::fabs(double(r[1])) + std::fabs(double(r[2]))) +
                           std::fabs(double(r[3]));
      if (!(bound < double(1 << 21))) throw std::invalid_argument("maps: an affine colour map too large (|y| >= 2^21)");
    }
  }
  float x0[kBlock], x1[kBlock], x2[kBlock];
  for (int64_t start = 0; start < pixels; start += kBlock) {
    const int64_t n = std::min(kBlock, pixels - start);
    colour_block(src + start, src + pixels + start, src + 2 * pixels + start, n, maps, n_maps, x0, x1, x2);
    store_block(x0, n, dst + start);
    store_block(x1, n, dst + pixels + start);
    store_block(x2, n, dst + 2 * pixels + start);
  }
}

void gaussian_blur(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width,
                   const float* taps, int64_t radius) {
  const int64_t n_taps = 2 * radius + 1;
  const bool reflect_x = radius <= width - 1, reflect_y = radius <= height - 1;
  std::vector<float> padded(static_cast<size_t>(width + 2 * radius)), row(static_cast<size_t>(width));
  std::vector<float> across(static_cast<size_t>(height * width));  // one channel after the row pass
  std::vector<const float*> rows(static_cast<size_t>(n_taps));
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* s = src + c * height * width;
    for (int64_t y = 0; y < height; ++y) {
      widen_row(s + y * width, width, padded.data() + radius);
      for (int64_t p = 1; p <= radius; ++p) {
        padded[radius - p] = s[y * width + border_index(-p, width, reflect_x)];
        padded[radius + width - 1 + p] = s[y * width + border_index(width - 1 + p, width, reflect_x)];
      }
      for (int64_t j = 0; j < n_taps; ++j) rows[j] = padded.data() + j;
      tap_row(rows.data(), taps, n_taps, width, across.data() + y * width);
    }
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t j = 0; j < n_taps; ++j) {
        rows[j] = across.data() + border_index(y - radius + j, height, reflect_y) * width;
      }
      tap_row(rows.data(), taps, n_taps, width, row.data());
      narrow_row(row.data(), width, dst + (c * height + y) * width);
    }
  }
}

void resize_antialias(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width,
                      int64_t out_h, int64_t out_w) {
  // Both passes combine whole rows (vectorised tap_row): the columns pass runs on the transposed plane.
  const AxisWeights rows_w = antialias_weights(height, out_h), cols_w = antialias_weights(width, out_w);
  std::vector<float> plane_t(static_cast<size_t>(width * height)), narrow_t(static_cast<size_t>(out_w * height));
  std::vector<float> narrow(static_cast<size_t>(height * out_w)), row(static_cast<size_t>(out_w));
  std::vector<const float*> rows(static_cast<size_t>(std::max(rows_w.taps, cols_w.taps)));
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* s = src + c * height * width;
    transpose(s, height, width, plane_t.data());
    for (int64_t x = 0; x < out_w; ++x) {
      for (int64_t j = 0; j < cols_w.count[x]; ++j) rows[j] = plane_t.data() + (cols_w.first[x] + j) * height;
      tap_row(rows.data(), cols_w.w.data() + x * cols_w.taps, cols_w.count[x], height,
              narrow_t.data() + x * height);
    }
    transpose(narrow_t.data(), out_w, height, narrow.data());
    for (int64_t y = 0; y < out_h; ++y) {
      for (int64_t j = 0; j < rows_w.count[y]; ++j) rows[j] = narrow.data() + (rows_w.first[y] + j) * out_w;
      tap_row(rows.data(), rows_w.w.data() + y * rows_w.taps, rows_w.count[y], out_w, row.data());
      narrow_row(row.data(), out_w, dst + (c * out_h + y) * out_w);
    }
  }
}

void edge_enhance(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width, bool more) {
  // 3-sums along rows (replicate border), then along columns: the 3x3 box sum, exact in int32.
  std::vector<int32_t> across(static_cast<size_t>(height * width));
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* s = src + c * height * width;
    for (int64_t y = 0; y < height; ++y) row_sum3(s + y * width, width, across.data() + y * width);
    for (int64_t y = 0; y < height; ++y) {
      const int32_t* up = across.data() + (y > 0 ? y - 1 : 0) * width;
      const int32_t* down = across.data() + (y + 1 < height ? y + 1 : height - 1) * width;
      edge_row(s + y * width, up, across.data() + y * width, down, width, more, dst + (c * height + y) * width);
    }
  }
}

void composite_rgba(uint8_t* img, int64_t height, int64_t width, const uint8_t* rgba, int64_t patch_h,
                    int64_t patch_w, int64_t top, int64_t left) {
  // The reference computes x (1 - a) + c a in float32 with a = A / 255: the exact value is N / 255 with
  // N = x (255 - A) + c A, whose distance to a .5 tie is at least 1 / 510, far above float32's error (< 1e-4 at
  // 255), so rounding N / 255 to nearest in integers gives the same pixels.
  for (int64_t ch = 0; ch < 3; ++ch) {
    for (int64_t y = 0; y < patch_h; ++y) {
      const uint8_t* p = rgba + y * patch_w * 4;
      over_row(p + ch, p + 3, patch_w, img + (ch * height + top + y) * width + left);
    }
  }
}

}  // namespace copynce
