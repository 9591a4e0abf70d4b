// Antialiased bilinear resize of uint8 images, torch's arithmetic (see resize.h): the taps of each axis in double,
// int16 fixed point, a horizontal pass into a uint8 intermediate, then a vertical pass. Two implementations of the
// passes, exact integer sums both: a portable scalar one, and an AVX2 one (x86-64 with GCC/Clang, chosen at run
// time) that reads HWC rows in place, processes two rows per register in the horizontal pass (Pillow-SIMD's
// pair-of-taps madd), and 32 bytes of a row per step in the vertical one.
#include "resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define COPYNCE_RESIZE_AVX2 1
#include <immintrin.h>
#define COPYNCE_AVX2_FN __attribute__((target("avx2")))
#endif

namespace copynce {
namespace {

// The taps of one axis: output i reads inputs first[i] .. first[i] + count[i] - 1 with weights[i * kpad + j]
// (int16, `precision` fractional bits); weights past count are zero, so a SIMD pass may read up to kpad taps.
struct AxisTaps {
  int64_t in_size = 0, out_size = 0;
  int kmax = 0;  // the largest count
  int kpad = 0;  // weights stored per output: kmax rounded up to even (the vertical SIMD pass reads pairs)
  int precision = 0;
  std::vector<int32_t> first, count;
  std::vector<int16_t> weights;
};

// The horizontal SIMD pass's layout of one axis's taps for pixels of P bytes: outputs padded to a multiple of 4
// (copies of the last one's reads, zero weights), each running `blocks` blocks of one 16-byte load; offset: byte
// offset of an output's first pixel; pairs: int16 weight pairs (low = the earlier tap) per block, zero past the
// count; reach: bytes read past a row's first pixel.
struct HorizontalPlan {
  int blocks = 0;
  int64_t out_pad = 0, reach = 0;
  std::vector<int32_t> offset, pairs;
};

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// torch's _compute_index_ranges_weights (antialias, linear filter) + _compute_index_ranges_int16_weights, written
// out op by op in the same order (double, no FMA: setup.py builds with -ffp-contract=off).
void compute_taps(int64_t in, int64_t out, AxisTaps& t) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = scale >= 1.0 ? scale : 1.0;  // (interp_size / 2) * max(scale, 1), interp_size = 2
  const int64_t max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  thread_local std::vector<double> wd;
  wd.assign(static_cast<size_t>(out * max_taps), 0.0);
  t.in_size = in;
  t.out_size = out;
  t.first.resize(static_cast<size_t>(out));
  t.count.resize(static_cast<size_t>(out));
  double wt_max = 0.0;
  int kmax = 0;
  for (int64_t i = 0; i < out; ++i) {
    const double centre = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(centre - support + 0.5), int64_t(0));
    int64_t xsize = std::min(static_cast<int64_t>(centre + support + 0.5), in) - xmin;
    xsize = std::clamp(xsize, int64_t(0), max_taps);  // torch: "rare cases when due to precision..."
    double* w = wd.data() + i * max_taps;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] = triangle((static_cast<double>(j + xmin) - centre + 0.5) * invscale);
      total += w[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        w[j] /= total;
        wt_max = std::max(wt_max, w[j]);
      }
    }
    t.first[i] = static_cast<int32_t>(xmin);
    t.count[i] = static_cast<int32_t>(xsize);
    kmax = std::max(kmax, static_cast<int>(xsize));
  }
  int precision = 0;
  for (precision = 0; precision < 22; ++precision) {
    const int next = static_cast<int>(0.5 + wt_max * (1 << (precision + 1)));
    if (next >= (1 << 15)) break;
  }
  t.precision = precision;
  t.kmax = kmax;
  t.kpad = kmax + (kmax & 1);
  t.weights.assign(static_cast<size_t>(out * t.kpad), 0);
  const double unit = static_cast<double>(1 << precision);
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t j = 0; j < t.count[i]; ++j) {
      const double v = wd[i * max_taps + j] * unit;
      t.weights[i * t.kpad + j] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
    }
  }
}

inline uint8_t clamp_shift(int32_t acc, int precision) {
  const int32_t v = acc >> precision;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// ---- scalar passes (any strides; the reference the SIMD passes must match bit for bit) ----

// Rows [0, rows) of the box -> tmp rows of width * C bytes (interleaved channels), row pitch `pitch`.
void horizontal_scalar(const ResizeImage& s, int64_t top, int64_t left, int64_t rows, const AxisTaps& t,
                       uint8_t* tmp, int64_t pitch) {
  const int64_t c_n = s.channels;
  const int32_t init = 1 << (t.precision - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = s.data + (top + r) * s.stride_y + left * s.stride_x;
    uint8_t* out = tmp + r * pitch;
    for (int64_t x = 0; x < t.out_size; ++x) {
      const int16_t* w = t.weights.data() + x * t.kpad;
      const uint8_t* px = row + static_cast<int64_t>(t.first[x]) * s.stride_x;
      for (int64_t c = 0; c < c_n; ++c) {
        int32_t acc = init;
        for (int32_t j = 0; j < t.count[x]; ++j) acc += w[j] * px[j * s.stride_x + c * s.stride_c];
        out[x * c_n + c] = clamp_shift(acc, t.precision);
      }
    }
  }
}

// One output row of the vertical pass: tmp rows first .. first + count - 1 -> out (nbytes).
void vertical_row_scalar(const uint8_t* tmp, int64_t pitch, const AxisTaps& t, int64_t y, int64_t nbytes,
                         uint8_t* out) {
  const int16_t* w = t.weights.data() + y * t.kpad;
  const uint8_t* base = tmp + static_cast<int64_t>(t.first[y]) * pitch;
  const int32_t init = 1 << (t.precision - 1);
  for (int64_t j = 0; j < nbytes; ++j) {
    int32_t acc = init;
    for (int32_t k = 0; k < t.count[y]; ++k) acc += w[k] * base[k * pitch + j];
    out[j] = clamp_shift(acc, t.precision);
  }
}

#ifdef COPYNCE_RESIZE_AVX2
// ---- AVX2 passes ----

COPYNCE_AVX2_FN inline __m256i broadcast_pair(const int16_t* k) {
  int32_t v;
  std::memcpy(&v, k, sizeof(v));
  return _mm256_set1_epi32(v);
}

COPYNCE_AVX2_FN inline __m256i load_two(const uint8_t* a, const uint8_t* b) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
}

// Byte shuffle (per 128-bit lane) taking pixels `p0` and `p0 + 1` (P bytes apart) of a 16-byte load to int16 pairs
// (c of p0, c of p0 + 1) for c = 0..3, the layout _mm256_madd_epi16 sums per channel. Channels >= P give 0.
COPYNCE_AVX2_FN inline __m256i pair_mask(int pixel_bytes, int p0) {
  alignas(32) int8_t m[32];
  for (int lane = 0; lane < 2; ++lane) {
    for (int c = 0; c < 4; ++c) {
      const bool ok = c < pixel_bytes;
      m[lane * 16 + 4 * c + 0] = static_cast<int8_t>(ok ? pixel_bytes * p0 + c : -1);
      m[lane * 16 + 4 * c + 1] = -1;
      m[lane * 16 + 4 * c + 2] = static_cast<int8_t>(ok ? pixel_bytes * (p0 + 1) + c : -1);
      m[lane * 16 + 4 * c + 3] = -1;
    }
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

// Per lane: 4 pixels of 4 bytes -> their first C bytes packed at the front.
COPYNCE_AVX2_FN inline __m256i compress_mask(int channels) {
  alignas(32) int8_t m[32];
  for (int lane = 0; lane < 2; ++lane) {
    int o = 0;
    for (int q = 0; q < 4; ++q) {
      for (int c = 0; c < channels; ++c) m[lane * 16 + o++] = static_cast<int8_t>(4 * q + c);
    }
    while (o < 16) m[lane * 16 + o++] = -1;
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

// Pixel 4 of a 16-byte load of 3-byte pixels as int16 pairs (c of pixel 4, 0): the fifth tap of a block.
COPYNCE_AVX2_FN inline __m256i fifth_mask() {
  alignas(32) int8_t m[32];
  for (int lane = 0; lane < 2; ++lane) {
    for (int c = 0; c < 4; ++c) {
      m[lane * 16 + 4 * c + 0] = static_cast<int8_t>(c < 3 ? 12 + c : -1);
      m[lane * 16 + 4 * c + 1] = m[lane * 16 + 4 * c + 2] = m[lane * 16 + 4 * c + 3] = -1;
    }
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
}

// Four rows in[0..3] (pixels P bytes apart, readable up to HorizontalPlan::reach) -> out[0..3] (C bytes per
// pixel, 16 bytes of slack past the row). Register lanes: rows 0 | 1 and rows 2 | 3; each output pixel is one
// int32 per channel. A block is one 16-byte load per row: 5 taps of RGB pixels (pairs (0,1), (2,3), (4,-)) or 4 of
// RGBA ((0,1), (2,3)); every output runs the same blocks (zero weights past its count: no data-dependent branch),
// and outputs are padded to a multiple of 4, packed to bytes four at a time.
template <int P>
COPYNCE_AVX2_FN void horizontal_four_rows_avx2(const uint8_t* const* in, uint8_t* const* out,
                                               const HorizontalPlan& hp, int64_t channels, int prec) {
  constexpr int kTaps = P == 3 ? 5 : 4, kPairs = P == 3 ? 3 : 2;
  const __m256i m0 = pair_mask(P, 0), m1 = pair_mask(P, 2), m2 = fifth_mask();
  const __m256i squeeze = compress_mask(static_cast<int>(channels));
  const __m256i init = _mm256_set1_epi32(1 << (prec - 1));
  const int32_t* offset = hp.offset.data();
  const int32_t* pairs = hp.pairs.data();
  const int blocks = hp.blocks;
  const int64_t per_x = static_cast<int64_t>(blocks) * kPairs;
  const uint8_t *in0 = in[0], *in1 = in[1], *in2 = in[2], *in3 = in[3];
  for (int64_t x0 = 0; x0 < hp.out_pad; x0 += 4) {
    __m256i s01[4], s23[4];
    for (int q = 0; q < 4; ++q) {
      const int64_t x = x0 + q;
      int64_t off = offset[x];
      const int32_t* w = pairs + x * per_x;
      __m256i a01 = init, a23 = init;
      for (int b = 0; b < blocks; ++b, off += kTaps * P, w += kPairs) {
        const __m256i v01 = load_two(in0 + off, in1 + off), v23 = load_two(in2 + off, in3 + off);
        const __m256i w0 = _mm256_set1_epi32(w[0]), w1 = _mm256_set1_epi32(w[1]);
        a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_shuffle_epi8(v01, m0), w0));
        a23 = _mm256_add_epi32(a23, _mm256_madd_epi16(_mm256_shuffle_epi8(v23, m0), w0));
        a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_shuffle_epi8(v01, m1), w1));
        a23 = _mm256_add_epi32(a23, _mm256_madd_epi16(_mm256_shuffle_epi8(v23, m1), w1));
        if (P == 3) {
          const __m256i w2 = _mm256_set1_epi32(w[2]);
          a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(_mm256_shuffle_epi8(v01, m2), w2));
          a23 = _mm256_add_epi32(a23, _mm256_madd_epi16(_mm256_shuffle_epi8(v23, m2), w2));
        }
      }
      s01[q] = _mm256_srai_epi32(a01, prec);
      s23[q] = _mm256_srai_epi32(a23, prec);
    }
    // int32 -> int16 (signed saturation) -> uint8 (unsigned saturation): the clamp to 0..255.
    __m256i p01 = _mm256_packus_epi16(_mm256_packs_epi32(s01[0], s01[1]), _mm256_packs_epi32(s01[2], s01[3]));
    __m256i p23 = _mm256_packus_epi16(_mm256_packs_epi32(s23[0], s23[1]), _mm256_packs_epi32(s23[2], s23[3]));
    p01 = _mm256_shuffle_epi8(p01, squeeze);
    p23 = _mm256_shuffle_epi8(p23, squeeze);
    const int64_t o = channels * x0;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[0] + o), _mm256_castsi256_si128(p01));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[1] + o), _mm256_extracti128_si256(p01, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[2] + o), _mm256_castsi256_si128(p23));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[3] + o), _mm256_extracti128_si256(p23, 1));
  }
}

// 32 bytes of one output row of the vertical pass (rows base, base + pitch, ... with weights k[0 .. n)).
COPYNCE_AVX2_FN inline __m256i vertical_chunk_avx2(const uint8_t* base, int64_t pitch, int n, const int16_t* k,
                                                    __m256i init, int prec) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i s0 = init, s1 = init, s2 = init, s3 = init;
  for (int i = 0; i < n; i += 2) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + i * pitch));
    const __m256i b = i + 1 < n ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + (i + 1) * pitch)) : zero;
    const __m256i w = broadcast_pair(k + i);  // k[i + 1] is 0 past the count (kpad is even)
    const __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_unpacklo_epi8(ab_lo, zero), w));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_unpackhi_epi8(ab_lo, zero), w));
    s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_unpacklo_epi8(ab_hi, zero), w));
    s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_unpackhi_epi8(ab_hi, zero), w));
  }
  s0 = _mm256_srai_epi32(s0, prec);
  s1 = _mm256_srai_epi32(s1, prec);
  s2 = _mm256_srai_epi32(s2, prec);
  s3 = _mm256_srai_epi32(s3, prec);
  // Lane-wise packs undo the lane-wise unpacks: bytes come out in their input order.
  return _mm256_packus_epi16(_mm256_packs_epi32(s0, s1), _mm256_packs_epi32(s2, s3));
}

// One output row: nbytes to out; tmp rows have >= 32 bytes of slack, so the last partial chunk is computed whole
// into `spill` and only its valid bytes are copied.
COPYNCE_AVX2_FN void vertical_row_avx2(const uint8_t* tmp, int64_t pitch, const AxisTaps& t, int64_t y,
                                       int64_t nbytes, uint8_t* out, uint8_t* spill) {
  const int16_t* k = t.weights.data() + y * t.kpad;
  const uint8_t* base = tmp + static_cast<int64_t>(t.first[y]) * pitch;
  const int n = t.count[y], prec = t.precision;
  const __m256i init = _mm256_set1_epi32(1 << (prec - 1));
  int64_t j = 0;
  for (; j + 32 <= nbytes; j += 32) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), vertical_chunk_avx2(base + j, pitch, n, k, init, prec));
  }
  if (j < nbytes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(spill), vertical_chunk_avx2(base + j, pitch, n, k, init, prec));
    std::memcpy(out + j, spill, static_cast<size_t>(nbytes - j));
  }
}

// Planar store of one interleaved RGB row: 16 pixels (48 bytes, three loads) per step; every plane byte k of a
// step gathers byte 3k + channel of the 48 from whichever load holds it (three shuffles and two ORs per plane).
COPYNCE_AVX2_FN void deinterleave_rgb_avx2(const uint8_t* row, int64_t width, uint8_t* p0, uint8_t* p1, uint8_t* p2) {
  alignas(16) int8_t m[3][3][16];  // [channel][load][byte]
  for (int ch = 0; ch < 3; ++ch) {
    for (int v = 0; v < 3; ++v) {
      for (int k = 0; k < 16; ++k) {
        const int b = 3 * k + ch - 16 * v;
        m[ch][v][k] = static_cast<int8_t>(b >= 0 && b < 16 ? b : -1);
      }
    }
  }
  __m128i mk[3][3];
  for (int ch = 0; ch < 3; ++ch) {
    for (int v = 0; v < 3; ++v) mk[ch][v] = _mm_load_si128(reinterpret_cast<const __m128i*>(m[ch][v]));
  }
  uint8_t* planes[3] = {p0, p1, p2};
  int64_t x = 0;
  for (; x + 16 <= width; x += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 3 * x));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 3 * x + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 3 * x + 32));
    for (int ch = 0; ch < 3; ++ch) {
      const __m128i v = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(a, mk[ch][0]), _mm_shuffle_epi8(b, mk[ch][1])),
                                     _mm_shuffle_epi8(c, mk[ch][2]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(planes[ch] + x), v);
    }
  }
  for (; x < width; ++x) {
    p0[x] = row[3 * x];
    p1[x] = row[3 * x + 1];
    p2[x] = row[3 * x + 2];
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif  // COPYNCE_RESIZE_AVX2

// Reused buffers: one set per thread, grown as needed (no heap traffic per call once warm).
struct Scratch {
  AxisTaps h, v;
  HorizontalPlan plan;
  std::vector<uint8_t> tmp, rows, out_row, spill;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Copy box row r into buf as pixels of P bytes (channels first, the rest of a pixel zero).
void gather_row(const ResizeImage& s, int64_t top, int64_t left, int64_t r, int64_t width, int pixel_bytes,
                uint8_t* buf) {
  const uint8_t* row = s.data + (top + r) * s.stride_y + left * s.stride_x;
  if (s.stride_c == 1 && s.stride_x == s.channels && pixel_bytes == s.channels) {
    std::memcpy(buf, row, static_cast<size_t>(width * s.channels));
    return;
  }
  for (int64_t x = 0; x < width; ++x) {
    for (int c = 0; c < pixel_bytes; ++c) {
      buf[x * pixel_bytes + c] = c < s.channels ? row[x * s.stride_x + c * s.stride_c] : 0;
    }
  }
}

#ifdef COPYNCE_RESIZE_AVX2
void plan_horizontal(const AxisTaps& t, int pixel_bytes, HorizontalPlan& hp) {
  const int taps = pixel_bytes == 3 ? 5 : 4, pairs = pixel_bytes == 3 ? 3 : 2;
  hp.blocks = (t.kmax + taps - 1) / taps;
  hp.out_pad = (t.out_size + 3) / 4 * 4;
  hp.offset.resize(static_cast<size_t>(hp.out_pad));
  hp.pairs.assign(static_cast<size_t>(hp.out_pad * hp.blocks * pairs), 0);
  hp.reach = 0;
  for (int64_t x = 0; x < hp.out_pad; ++x) {
    const int64_t xs = std::min(x, t.out_size - 1);
    hp.offset[x] = t.first[xs] * pixel_bytes;
    hp.reach = std::max(hp.reach, static_cast<int64_t>(hp.offset[x]) + (hp.blocks - 1) * taps * pixel_bytes + 16);
    if (x != xs) continue;  // padding: zero weights
    const int16_t* w = t.weights.data() + x * t.kpad;
    for (int b = 0; b < hp.blocks; ++b) {
      for (int q = 0; q < pairs; ++q) {
        const int j = b * taps + 2 * q;
        const bool second = 2 * q + 1 < taps;  // the fifth RGB tap pairs with a zero
        const uint16_t lo = j < t.count[x] ? static_cast<uint16_t>(w[j]) : 0;
        const uint16_t hi = second && j + 1 < t.count[x] ? static_cast<uint16_t>(w[j + 1]) : 0;
        hp.pairs[(x * hp.blocks + b) * pairs + q] = static_cast<int32_t>(static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16));
      }
    }
  }
}
#endif

void horizontal_pass(const ResizeImage& s, int64_t top, int64_t left, int64_t rows, int64_t box_w, const AxisTaps& t,
                     uint8_t* tmp, int64_t pitch, bool simd, Scratch& sc) {
#ifdef COPYNCE_RESIZE_AVX2
  if (simd && cpu_has_avx2()) {
    // Interleaved RGB / RGBA rows are read in place (3- or 4-byte pixels); anything else is gathered to 4-byte
    // pixels first (channels past C zero).
    const bool in_place = (s.channels == 3 || s.channels == 4) && s.stride_c == 1 && s.stride_x == s.channels;
    const int pb = in_place && s.channels == 3 ? 3 : 4;
    HorizontalPlan& hp = sc.plan;
    plan_horizontal(t, pb, hp);
    const int64_t buf_bytes = std::max(hp.reach, box_w * pb) + 32;
    if (sc.rows.size() < static_cast<size_t>(4 * buf_bytes)) sc.rows.resize(static_cast<size_t>(4 * buf_bytes));
    if (sc.out_row.size() < static_cast<size_t>(pitch)) sc.out_row.resize(static_cast<size_t>(pitch));
    const uint8_t* in[4];
    uint8_t* out[4];
    for (int64_t r = 0; r < rows; r += 4) {
      for (int i = 0; i < 4; ++i) {
        const int64_t rr = std::min(r + i, rows - 1);  // past the last row: recompute it into a dummy row
        const int64_t off = (top + rr) * s.stride_y + left * s.stride_x;
        if (in_place && off + hp.reach <= s.extent) {
          in[i] = s.data + off;
        } else {
          uint8_t* buf = sc.rows.data() + i * buf_bytes;
          gather_row(s, top, left, rr, box_w, pb, buf);
          in[i] = buf;
        }
        out[i] = r + i < rows ? tmp + (r + i) * pitch : sc.out_row.data();
      }
      if (pb == 3) {
        horizontal_four_rows_avx2<3>(in, out, hp, s.channels, t.precision);
      } else {
        horizontal_four_rows_avx2<4>(in, out, hp, s.channels, t.precision);
      }
    }
    return;
  }
#endif
  (void)box_w;
  (void)simd;
  (void)sc;
  horizontal_scalar(s, top, left, rows, t, tmp, pitch);
}

void vertical_row(const uint8_t* tmp, int64_t pitch, const AxisTaps& t, int64_t y, int64_t nbytes, uint8_t* out,
                  bool simd, Scratch& sc) {
#ifdef COPYNCE_RESIZE_AVX2
  if (simd && cpu_has_avx2()) {
    vertical_row_avx2(tmp, pitch, t, y, nbytes, out, sc.spill.data());
    return;
  }
#endif
  (void)simd;
  (void)sc;
  vertical_row_scalar(tmp, pitch, t, y, nbytes, out);
}

// Row y of the output, given as out_w * C interleaved bytes, into dst.
void store_row(const uint8_t* row, int64_t y, int64_t channels, int64_t out_h, int64_t out_w, uint8_t* dst,
               bool channels_last, bool simd) {
  if (channels_last) {
    std::memcpy(dst + y * out_w * channels, row, static_cast<size_t>(out_w * channels));
    return;
  }
#ifdef COPYNCE_RESIZE_AVX2
  if (simd && channels == 3 && cpu_has_avx2()) {
    const int64_t plane = out_h * out_w;
    uint8_t* p0 = dst + y * out_w;
    deinterleave_rgb_avx2(row, out_w, p0, p0 + plane, p0 + 2 * plane);
    return;
  }
#endif
  (void)simd;
  for (int64_t c = 0; c < channels; ++c) {
    uint8_t* plane = dst + (c * out_h + y) * out_w;
    for (int64_t x = 0; x < out_w; ++x) plane[x] = row[x * channels + c];
  }
}

}  // namespace

bool resize_has_avx2() {
#ifdef COPYNCE_RESIZE_AVX2
  return cpu_has_avx2();
#else
  return false;
#endif
}

void resize_bilinear_aa_u8(const ResizeImage& src, int64_t top, int64_t left, int64_t box_h, int64_t box_w,
                           int64_t out_h, int64_t out_w, uint8_t* dst, bool channels_last, bool simd) {
  const int64_t ch = src.channels;
  if (ch < 1 || ch > 4) throw std::invalid_argument("image: expected 1 to 4 channels");
  if (box_h < 1 || box_w < 1 || top < 0 || left < 0 || top + box_h > src.height || left + box_w > src.width) {
    throw std::invalid_argument("box: expected a non-empty box inside the image");
  }
  if (out_h < 1 || out_w < 1) throw std::invalid_argument("out_hw: expected positive sizes");
  Scratch& sc = scratch();
  const bool do_h = out_w != box_w, do_v = out_h != box_h;
  const int64_t nbytes = out_w * ch;  // one row of the intermediate / the output, channels interleaved
  const int64_t pitch = nbytes + 32;  // slack for 16-byte stores and 32-byte loads past the row
  if (sc.out_row.size() < static_cast<size_t>(pitch)) sc.out_row.resize(static_cast<size_t>(pitch));
  if (sc.spill.size() < 32) sc.spill.resize(32);
  if (!do_h && !do_v) {  // torch: output.copy_(input)
    for (int64_t r = 0; r < box_h; ++r) {
      gather_row(src, top, left, r, box_w, static_cast<int>(ch), sc.out_row.data());
      store_row(sc.out_row.data(), r, ch, out_h, out_w, dst, channels_last, simd);
    }
    return;
  }
  const size_t tmp_bytes = static_cast<size_t>(box_h * pitch);
  if (sc.tmp.size() < tmp_bytes) sc.tmp.resize(tmp_bytes);
  uint8_t* tmp = sc.tmp.data();
  if (do_h) {
    compute_taps(box_w, out_w, sc.h);
    horizontal_pass(src, top, left, box_h, box_w, sc.h, tmp, pitch, simd, sc);
  } else {
    for (int64_t r = 0; r < box_h; ++r) gather_row(src, top, left, r, box_w, static_cast<int>(ch), tmp + r * pitch);
  }
  if (!do_v) {
    for (int64_t r = 0; r < box_h; ++r) store_row(tmp + r * pitch, r, ch, out_h, out_w, dst, channels_last, simd);
    return;
  }
  compute_taps(box_h, out_h, sc.v);
  for (int64_t y = 0; y < out_h; ++y) {
    if (channels_last) {
      vertical_row(tmp, pitch, sc.v, y, nbytes, dst + y * nbytes, simd, sc);
    } else {
      vertical_row(tmp, pitch, sc.v, y, nbytes, sc.out_row.data(), simd, sc);
      store_row(sc.out_row.data(), y, ch, out_h, out_w, dst, false, simd);
    }
  }
}

}  // namespace copynce
