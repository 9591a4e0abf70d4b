// One pass per output pixel of a view: map, canvas tests, samples, blend (see warp.h for the contract).
//
// Work is done row by row: the masks P, Q, C as bytes; then, without an overlay, the copy's samples go straight
// to the output (bytes copied for nearest, rounded floats for bilinear); with one, both layers are sampled into
// float32 planes and blended. Affine maps (the common case) cost a bisection per row and test instead of a
// per-pixel evaluation; perspective maps are evaluated per pixel with the same formula. Bilinear taps are laid out
// per row (offsets, weights) and computed and gathered four columns at a time with SSE2 where the compiler targets
// x86-64: the same float32 operations lane by lane as the scalar loops that handle the tail and other CPUs.
//
// A planar layer (what the resizes make) reads each row's two taps as one 16-bit load (BilinearTaps' paired layout).
//
// Speed (2-core dev VM shared with other jobs, one thread, a 224 x 224 view of a 500 x 375 HWC image, standalone
// C++ driver, 2026-12-02): nearest ~0.2 ms, bilinear ~0.65 ms. render_view calls of 128 descriptor pairs replayed
// (min of 40, same day): one bilinear layer 0.50 ms (0.61-0.75 before the paired layout), with an overlay
// 0.55-0.73 ms (0.57-1.0 before); the bytes are unchanged (hashed).
#include "warp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>  // SSE2: part of every x86-64 CPU
#endif

namespace copynce {
namespace {

constexpr double kSnap = 256.0;  // copynce_fast.pixtrace.view.SNAP

// Round half to even without libm: SSE2 has no roundpd, and a libm call per pixel would cost more than the rest.
// Exact for |v| < 2^51 (adding 1.5 * 2^52 leaves no fraction bits, the default rounding mode breaks ties to even);
// larger values, infinities and NaN come back unrounded, which fails every canvas test just as the rounded value
// would (canvas sides are far below 2^43 snapped units).
inline double round_even(double v) {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return std::fabs(v) < 2251799813685248.0 ? (v + kMagic) - kMagic : v;
}

// A view -> image map evaluated as geometry.warp_coords does, with the per-column products computed once:
// m0 * x is the same double whichever row asks for it.
class RowMap {
 public:
  RowMap(const double* m, int64_t out_w) : cx_(out_w), cy_(out_w), cd_(out_w) {
    std::copy(m, m + 9, m_);
    affine_ = m_[6] == 0.0 && m_[7] == 0.0 && m_[8] == 1.0;  // geometry._is_affine
    bool finite = true;
    for (double v : m_) finite = finite && std::isfinite(v);
    intervals_ = affine_ && finite;  // NaN would break the monotonicity the bisection relies on
    for (int64_t c = 0; c < out_w; ++c) {
      const double x = static_cast<double>(c) + 0.5;
      cx_[c] = m_[0] * x;
      cy_[c] = m_[3] * x;
      cd_[c] = m_[6] * x;
    }
  }

  void set_row(int64_t r) {
    const double y = static_cast<double>(r) + 0.5;
    rx_ = m_[1] * y;
    ry_ = m_[4] * y;
    rd_ = m_[7] * y;
  }

  bool affine() const { return affine_; }
  bool intervals() const { return intervals_; }
  bool x_rising() const { return !(m_[0] < 0.0); }
  bool y_rising() const { return !(m_[3] < 0.0); }

  // Affine maps only: the raw coordinates of column c.
  double ax(int64_t c) const { return (cx_[c] + rx_) + m_[2]; }
  double ay(int64_t c) const { return (cy_[c] + ry_) + m_[5]; }

  // Any map: the coordinates of column c; false behind the horizon.
  bool point(int64_t c, double* x, double* y) const {
    const double nx = ax(c), ny = ay(c);
    if (affine_) {
      *x = nx;
      *y = ny;
      return true;
    }
    const double nd = (cd_[c] + rd_) + m_[8];
    const bool front = nd > 0.0;
    const double d = front ? nd : 1.0;
    *x = nx / d;
    *y = ny / d;
    return front;
  }

 private:
  double m_[9];
  bool affine_ = true, intervals_ = true;
  std::vector<double> cx_, cy_, cd_;
  double rx_ = 0.0, ry_ = 0.0, rd_ = 0.0;
};

// Smallest c in [0, n) with pred(c), n if none; pred must be false...false true...true.
template <typename Pred>
int64_t first_true(int64_t n, const Pred& pred) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// Columns [lo, hi) whose snapped coordinate s(c) lies in [0, limit), for s monotone (rising or falling).
template <typename Snapped>
void inside_interval(int64_t n, bool rising, double limit, const Snapped& s, int64_t* lo, int64_t* hi) {
  int64_t a, b;
  if (rising) {
    a = first_true(n, [&](int64_t c) { return s(c) >= 0.0; });
    b = first_true(n, [&](int64_t c) { return s(c) >= limit; });
  } else {
    a = first_true(n, [&](int64_t c) { return s(c) < limit; });
    b = first_true(n, [&](int64_t c) { return s(c) < 0.0; });
  }
  *lo = std::max(*lo, a);
  *hi = std::min(*hi, std::max(a, b));
}

// The columns of the current row whose point passes the canvas test [0, width) x [0, height) (snapped), for an
// affine map: one interval [lo, hi).
void affine_inside(const RowMap& map, int64_t height, int64_t width, int64_t n, int64_t* lo, int64_t* hi) {
  *lo = 0;
  *hi = n;
  inside_interval(n, map.x_rising(), static_cast<double>(width) * kSnap,
                  [&](int64_t c) { return round_even(map.ax(c) * kSnap); }, lo, hi);
  inside_interval(n, map.y_rising(), static_cast<double>(height) * kSnap,
                  [&](int64_t c) { return round_even(map.ay(c) * kSnap); }, lo, hi);
  if (*hi < *lo) *hi = *lo;
}

inline bool snapped_inside(double x, double y, int64_t height, int64_t width, double* sx, double* sy) {
  *sx = round_even(x * kSnap);
  *sy = round_even(y * kSnap);
  return *sx >= 0.0 && *sx < static_cast<double>(width) * kSnap && *sy >= 0.0 &&
         *sy < static_cast<double>(height) * kSnap;
}

// mask[c] &= the canvas test of column c in the current row.
void and_test_row(const RowMap& map, int64_t height, int64_t width, int64_t n, uint8_t* mask) {
  if (map.intervals()) {
    int64_t lo, hi;
    affine_inside(map, height, width, n, &lo, &hi);
    std::memset(mask, 0, static_cast<size_t>(lo));
    std::memset(mask + hi, 0, static_cast<size_t>(n - hi));
    return;
  }
  for (int64_t c = 0; c < n; ++c) {
    double x, y, sx, sy;
    const bool front = map.point(c, &x, &y);
    mask[c] &= static_cast<uint8_t>(front && snapped_inside(x, y, height, width, &sx, &sy));
  }
}

struct Sampler {
  const WarpLayer* layer;
  RowMap map;
};

// Nearest samples of the current row (geometry.sample_nearest): off[c] = element offset of the pixel column c
// shows, -1 where the sample is 0 (outside the image, behind the horizon, or not needed: need[c] == 0). Columns
// outside [*lo, *hi) are all -1 (and not written).
void nearest_offsets(const Sampler& s, const uint8_t* need, int64_t n, int32_t* col, int32_t* row, int64_t* off,
                     int64_t* lo, int64_t* hi) {
  const WarpLayer& L = *s.layer;
  if (s.map.intervals()) {
    affine_inside(s.map, L.height, L.width, n, lo, hi);
    constexpr double kMagic = 6755399441055744.0;  // round_even without its range test: |256 v| < 256 * side here
    for (int64_t c = *lo; c < *hi; ++c) {  // vectorised: no branch, no libm
      // rint(256 v) >= 0 inside the interval, so truncation is floor(rint(256 v) / 256) (division by 256 is exact)
      col[c] = static_cast<int32_t>(((s.map.ax(c) * kSnap + kMagic) - kMagic) * (1.0 / kSnap));
      row[c] = static_cast<int32_t>(((s.map.ay(c) * kSnap + kMagic) - kMagic) * (1.0 / kSnap));
    }
    const int64_t sy = L.stride_y, sx = L.stride_x;  // locals: the stores below may alias the layer's fields
    for (int64_t c = *lo; c < *hi; ++c) off[c] = need[c] ? row[c] * sy + col[c] * sx : -1;
    return;
  }
  *lo = 0;
  *hi = n;
  for (int64_t c = 0; c < n; ++c) {
    off[c] = -1;
    if (!need[c]) continue;
    double x, y, sx, sy;
    const bool front = s.map.point(c, &x, &y);
    if (!(front && snapped_inside(x, y, L.height, L.width, &sx, &sy))) continue;
    off[c] = static_cast<int64_t>(sy / kSnap) * L.stride_y + static_cast<int64_t>(sx / kSnap) * L.stride_x;
  }
}

// render_plan's float -> uint8: round half to even, clamp to [0, 255] (clamping after rounding, on integers).
inline uint8_t to_grey(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: rounds |v| < 2^22 half to even
  v = std::fabs(v) < 4194304.0f ? v : (v > 0.0f ? 4194304.0f : 0.0f);  // out of range (or NaN) -> clamped alike
  const int32_t r = static_cast<int32_t>((v + kMagic) - kMagic);
  return static_cast<uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
}

// Bilinear taps of one row: value(c) = ((w[0] v[0] + w[1] v[1]) + w[2] v[2]) + w[3] v[3] in float32, v[k] the
// byte at offset[k][c] (+ the channel's offset), in grid_sample's order nw, ne, sw, se. A tap outside the image,
// and every tap of a column not sampled, has weight 0 on a clamped (readable) offset: it adds +0 in the same place
// of the same sum as grid_sample's masked tap, without a branch. Offsets are int32: warp_cpp sends images of
// fewer than 2^31 elements (larger ones take the torch path).
//
// Paired layout (a layer whose columns are adjacent bytes, stride_x == 1, at least 2 wide: the planar images the
// resizes make): the two taps of a row are read as one 16-bit load at offset[0] (top) and offset[2] (bottom), the
// left and right bytes of a pair of columns (xb, xb + 1), xb = x0 clamped to [0, width - 2]; weight[0..3] are the
// left and right weights of the top row, then of the bottom row. Where x0 = -1 or x0 = width - 1 one tap is outside
// (weight 0) and the inside tap moves to the slot of its column: the non-zero terms keep their order in the sum and
// the zero terms add +0, so the value is the same float as in the four-tap layout.
struct BilinearTaps {
  explicit BilinearTaps(int64_t n) {
    for (int k = 0; k < 4; ++k) {
      offset[k].resize(n);
      weight[k].resize(n);
    }
  }
  std::vector<int32_t> offset[4];
  std::vector<float> weight[4];
  bool paired = false;
};

inline bool paired_layer(const WarpLayer& L) { return L.stride_x == 1 && L.width >= 2; }

#if defined(__SSE2__) || defined(_M_X64)
// Low 32 bits of the lane products (SSE2 has no pmulld): two 32 x 32 -> 64 products on the even and odd lanes.
inline __m128i mullo_epi32(__m128i a, __m128i b) {
  const __m128i even = _mm_mul_epu32(a, b);
  const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), _mm_srli_epi64(b, 32));
  return _mm_unpacklo_epi32(_mm_shuffle_epi32(even, _MM_SHUFFLE(0, 0, 2, 0)),
                            _mm_shuffle_epi32(odd, _MM_SHUFFLE(0, 0, 2, 0)));
}

inline __m128i select_epi32(__m128i mask, __m128i a, __m128i b) {  // mask ? a : b
  return _mm_or_si128(_mm_and_si128(mask, a), _mm_andnot_si128(mask, b));
}

inline __m128i clamp_epi32(__m128i v, __m128i lo, __m128i hi) {
  v = select_epi32(_mm_cmpgt_epi32(lo, v), lo, v);
  return select_epi32(_mm_cmpgt_epi32(v, hi), hi, v);
}

inline __m128i floor_epi32(__m128 v) {  // exact for |v| < 2^31: truncate, minus 1 where that went up
  const __m128i t = _mm_cvttps_epi32(v);
  return _mm_add_epi32(t, _mm_castps_si128(_mm_cmpgt_ps(_mm_cvtepi32_ps(t), v)));
}
#endif

// The taps of the current row (grid_sample, align_corners=False, zeros padding) at (x - 0.5, y - 0.5) of each
// column's point, for the columns with need[c] in [lo, hi) (the others weigh 0). The points are mapped in float64;
// the tap arithmetic is float32 like grid_sample's (its grid is float32): four columns at a time with SSE2 where
// the compiler targets x86-64, and the same operations one column at a time for the tail and other CPUs.
void bilinear_taps(const Sampler& s, const uint8_t* __restrict need, int64_t lo, int64_t hi, float* __restrict xs,
                   float* __restrict ys, BilinearTaps* t) {
  const WarpLayer& L = *s.layer;
  const double x_max = static_cast<double>(L.width) + 1.0, y_max = static_cast<double>(L.height) + 1.0;
  if (s.map.affine()) {  // the same values as below without the horizon branch, so the loop vectorises
    for (int64_t c = lo; c < hi; ++c) {
      double sx = s.map.ax(c) - 0.5, sy = s.map.ay(c) - 0.5;
      sx = sx > -2.0 ? (sx < x_max ? sx : x_max) : -2.0;
      sy = sy > -2.0 ? (sy < y_max ? sy : y_max) : -2.0;
      xs[c] = static_cast<float>(sx);
      ys[c] = static_cast<float>(sy);
    }
  }
  for (int64_t c = s.map.affine() ? hi : lo; c < hi; ++c) {
    double x, y;
    const bool front = s.map.point(c, &x, &y);
    // Clamped into [-2, side + 1] (NaN -> -2): finite float32 with an int32 floor; a clamped point has no tap
    // inside either way. Behind the horizon: outside.
    double sx = x - 0.5, sy = y - 0.5;
    sx = sx > -2.0 ? (sx < x_max ? sx : x_max) : -2.0;
    sy = sy > -2.0 ? (sy < y_max ? sy : y_max) : -2.0;
    xs[c] = front ? static_cast<float>(sx) : -2.0f;
    ys[c] = static_cast<float>(sy);
  }
  const int32_t width = static_cast<int32_t>(L.width), height = static_cast<int32_t>(L.height);
  const int32_t stride_x = static_cast<int32_t>(L.stride_x), stride_y = static_cast<int32_t>(L.stride_y);
  const float wf = static_cast<float>(width), hf = static_cast<float>(height);
  int32_t* __restrict o0 = t->offset[0].data();
  int32_t* __restrict o1 = t->offset[1].data();
  int32_t* __restrict o2 = t->offset[2].data();
  int32_t* __restrict o3 = t->offset[3].data();
  float* __restrict w0 = t->weight[0].data();
  float* __restrict w1 = t->weight[1].data();
  float* __restrict w2 = t->weight[2].data();
  float* __restrict w3 = t->weight[3].data();
  const bool paired = t->paired = paired_layer(L);
  int64_t c = lo;
#if defined(__SSE2__) || defined(_M_X64)
  const __m128i zero = _mm_setzero_si128(), one = _mm_set1_epi32(1), minus_one = _mm_set1_epi32(-1);
  const __m128i w_i = _mm_set1_epi32(width), h_i = _mm_set1_epi32(height);
  const __m128i w_last = _mm_set1_epi32(width - 1), h_last = _mm_set1_epi32(height - 1);
  const __m128i sx_i = _mm_set1_epi32(stride_x), sy_i = _mm_set1_epi32(stride_y);
  const __m128 one_f = _mm_set1_ps(1.0f), minus_one_f = _mm_set1_ps(-1.0f);
  const __m128i w_pair = _mm_set1_epi32(width - 2);
  for (; c + 4 <= hi; c += 4) {
    const __m128 sx = _mm_loadu_ps(xs + c), sy = _mm_loadu_ps(ys + c);
    int32_t need4;
    std::memcpy(&need4, need + c, 4);
    const __m128i need_i = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(need4), zero), zero);
    const __m128 inside = _mm_and_ps(_mm_and_ps(_mm_cmpgt_ps(sx, minus_one_f), _mm_cmplt_ps(sx, _mm_set1_ps(wf))),
                                     _mm_and_ps(_mm_cmpgt_ps(sy, minus_one_f), _mm_cmplt_ps(sy, _mm_set1_ps(hf))));
    const __m128i ok = _mm_andnot_si128(_mm_cmpeq_epi32(need_i, zero), _mm_castps_si128(inside));
    const __m128i x0 = floor_epi32(sx), y0 = floor_epi32(sy);
    const __m128i x1 = _mm_add_epi32(x0, one), y1 = _mm_add_epi32(y0, one);
    const __m128 tx = _mm_sub_ps(sx, _mm_cvtepi32_ps(x0)), ty = _mm_sub_ps(sy, _mm_cvtepi32_ps(y0));  // exact
    const __m128 ex = _mm_sub_ps(one_f, tx), ey = _mm_sub_ps(one_f, ty);
    const __m128i vx0 = _mm_cmpgt_epi32(x0, minus_one), vx1 = _mm_cmpgt_epi32(w_i, x1);
    const __m128i vy0 = _mm_and_si128(ok, _mm_cmpgt_epi32(y0, minus_one));
    const __m128i vy1 = _mm_and_si128(ok, _mm_cmpgt_epi32(h_i, y1));
    const __m128i ox0 = mullo_epi32(clamp_epi32(x0, zero, w_last), sx_i);
    const __m128i ox1 = mullo_epi32(clamp_epi32(x1, zero, w_last), sx_i);
    const __m128i oy0 = mullo_epi32(clamp_epi32(y0, zero, h_last), sy_i);
    const __m128i oy1 = mullo_epi32(clamp_epi32(y1, zero, h_last), sy_i);
    auto masked = [](__m128 v, __m128i m) { return _mm_and_ps(v, _mm_castsi128_ps(m)); };
    const __m128 nw = masked(_mm_mul_ps(ey, ex), _mm_and_si128(vy0, vx0));
    const __m128 ne = masked(_mm_mul_ps(ey, tx), _mm_and_si128(vy0, vx1));
    const __m128 sw = masked(_mm_mul_ps(ty, ex), _mm_and_si128(vy1, vx0));
    const __m128 se = masked(_mm_mul_ps(ty, tx), _mm_and_si128(vy1, vx1));
    if (paired) {  // see BilinearTaps: x0 < 0 -> the right tap in the left slot; x0 > width - 2 -> the reverse
      const __m128i xb = clamp_epi32(x0, zero, w_pair);
      const __m128 lo_m = _mm_castsi128_ps(_mm_cmpgt_epi32(zero, x0));
      const __m128 hi_m = _mm_castsi128_ps(_mm_cmpgt_epi32(x0, w_pair));
      auto left = [&](__m128 l, __m128 r) { return _mm_or_ps(_mm_and_ps(lo_m, r), _mm_andnot_ps(_mm_or_ps(lo_m, hi_m), l)); };
      auto right = [&](__m128 l, __m128 r) { return _mm_or_ps(_mm_and_ps(hi_m, l), _mm_andnot_ps(_mm_or_ps(lo_m, hi_m), r)); };
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o0 + c), _mm_add_epi32(oy0, xb));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o2 + c), _mm_add_epi32(oy1, xb));
      _mm_storeu_ps(w0 + c, left(nw, ne));
      _mm_storeu_ps(w1 + c, right(nw, ne));
      _mm_storeu_ps(w2 + c, left(sw, se));
      _mm_storeu_ps(w3 + c, right(sw, se));
      continue;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o0 + c), _mm_add_epi32(oy0, ox0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o1 + c), _mm_add_epi32(oy0, ox1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o2 + c), _mm_add_epi32(oy1, ox0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o3 + c), _mm_add_epi32(oy1, ox1));
    _mm_storeu_ps(w0 + c, nw);
    _mm_storeu_ps(w1 + c, ne);
    _mm_storeu_ps(w2 + c, sw);
    _mm_storeu_ps(w3 + c, se);
  }
#endif
  auto clamp = [](int32_t v, int32_t top) { return v < 0 ? 0 : (v > top ? top : v); };
  for (; c < hi; ++c) {  // the same operations, one column at a time
    const float sx = xs[c], sy = ys[c];
    const bool ok = need[c] && sx > -1.0f && sx < wf && sy > -1.0f && sy < hf;  // a tap inside
    int32_t x0 = static_cast<int32_t>(sx), y0 = static_cast<int32_t>(sy);
    x0 -= static_cast<float>(x0) > sx;  // floor
    y0 -= static_cast<float>(y0) > sy;
    const float tx = sx - static_cast<float>(x0), ty = sy - static_cast<float>(y0);
    const float ex = 1.0f - tx, ey = 1.0f - ty;
    const bool vx0 = x0 >= 0, vx1 = x0 + 1 < width, vy0 = ok && y0 >= 0, vy1 = ok && y0 + 1 < height;
    const int32_t ox0 = clamp(x0, width - 1) * stride_x, ox1 = clamp(x0 + 1, width - 1) * stride_x;
    const int32_t oy0 = clamp(y0, height - 1) * stride_y, oy1 = clamp(y0 + 1, height - 1) * stride_y;
    const float nw = (vy0 && vx0) ? ey * ex : 0.0f, ne = (vy0 && vx1) ? ey * tx : 0.0f;
    const float sw = (vy1 && vx0) ? ty * ex : 0.0f, se = (vy1 && vx1) ? ty * tx : 0.0f;
    if (paired) {  // see BilinearTaps
      const int32_t xb = clamp(x0, width - 2);
      const bool lo_side = x0 < 0, hi_side = x0 > width - 2;
      o0[c] = oy0 + xb;
      o2[c] = oy1 + xb;
      w0[c] = lo_side ? ne : (hi_side ? 0.0f : nw);
      w1[c] = hi_side ? nw : (lo_side ? 0.0f : ne);
      w2[c] = lo_side ? se : (hi_side ? 0.0f : sw);
      w3[c] = hi_side ? sw : (lo_side ? 0.0f : se);
      continue;
    }
    o0[c] = oy0 + ox0;
    o1[c] = oy0 + ox1;
    o2[c] = oy1 + ox0;
    o3[c] = oy1 + ox1;
    w0[c] = nw;
    w1[c] = ne;
    w2[c] = sw;
    w3[c] = se;
  }
}

// The left and right bytes at d + o (paired layout).
inline void pair_at(const uint8_t* p, float* left, float* right) {
  *left = static_cast<float>(p[0]);
  *right = static_cast<float>(p[1]);
}

// One column's sample of one channel, paired layout: the same sum as bilinear_at over the moved slots.
inline float bilinear_pair_at(const int32_t* const* o, const float* const* w, const uint8_t* d, int64_t c) {
  float tl, tr, bl, br;
  pair_at(d + o[0][c], &tl, &tr);
  pair_at(d + o[2][c], &bl, &br);
  return ((w[0][c] * tl + w[1][c] * tr) + w[2][c] * bl) + w[3][c] * br;
}

// One column's sample of one channel (d: the channel's first byte).
inline float bilinear_at(const int32_t* const* o, const float* const* w, const uint8_t* d, int64_t c) {
  return ((w[0][c] * static_cast<float>(d[o[0][c]]) + w[1][c] * static_cast<float>(d[o[1][c]])) +
          w[2][c] * static_cast<float>(d[o[2][c]])) +
         w[3][c] * static_cast<float>(d[o[3][c]]);
}

#if defined(__SSE2__) || defined(_M_X64)
// Four columns at once: the same float32 operations lane by lane (so bit-equal to bilinear_at).
inline __m128 bilinear_at4(const int32_t* const* o, const float* const* w, const uint8_t* d, int64_t c) {
  auto taps = [&](int k) {
    const int32_t* p = o[k] + c;
    return _mm_cvtepi32_ps(_mm_setr_epi32(d[p[0]], d[p[1]], d[p[2]], d[p[3]]));
  };
  __m128 acc = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(w[0] + c), taps(0)), _mm_mul_ps(_mm_loadu_ps(w[1] + c), taps(1)));
  acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(w[2] + c), taps(2)));
  return _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(w[3] + c), taps(3)));
}

// Paired layout, four columns: one 16-bit load per row and column (left byte low, right byte high).
inline __m128 bilinear_pair_at4(const int32_t* const* o, const float* const* w, const uint8_t* d, int64_t c) {
  const __m128i low = _mm_set1_epi32(0xFF);
  auto pairs = [&](int k) {
    const int32_t* p = o[k] + c;
    uint16_t v[4];
    for (int i = 0; i < 4; ++i) std::memcpy(&v[i], d + p[i], 2);
    return _mm_setr_epi32(v[0], v[1], v[2], v[3]);
  };
  const __m128i top = pairs(0), bottom = pairs(2);
  const __m128 tl = _mm_cvtepi32_ps(_mm_and_si128(top, low)), tr = _mm_cvtepi32_ps(_mm_srli_epi32(top, 8));
  const __m128 bl = _mm_cvtepi32_ps(_mm_and_si128(bottom, low)), br = _mm_cvtepi32_ps(_mm_srli_epi32(bottom, 8));
  __m128 acc = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(w[0] + c), tl), _mm_mul_ps(_mm_loadu_ps(w[1] + c), tr));
  acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(w[2] + c), bl));
  return _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(w[3] + c), br));
}

// to_grey on four lanes: clamp to [0, 255] (whole bounds: the same as clamping after rounding), round half to
// even, and the four bytes.
inline uint32_t to_grey4(__m128 v) {
  const __m128 magic = _mm_set1_ps(12582912.0f);
  v = _mm_min_ps(_mm_max_ps(v, _mm_setzero_ps()), _mm_set1_ps(255.0f));
  const __m128i i = _mm_cvttps_epi32(_mm_sub_ps(_mm_add_ps(v, magic), magic));
  const __m128i b = _mm_packus_epi16(_mm_packs_epi32(i, i), _mm_setzero_si128());
  return static_cast<uint32_t>(_mm_cvtsi128_si32(b));
}
#endif

// dst(ch, c) = the bilinear sample of column c, channel ch: rounded bytes (kToBytes; channel planes `plane` apart)
// or float32 (planes n apart).
template <bool kToBytes>
void bilinear_gather(const WarpLayer& L, const BilinearTaps& t, int64_t lo, int64_t hi, int64_t n, int64_t channels,
                     void* dst_row, int64_t plane) {
  const int32_t* o[4] = {t.offset[0].data(), t.offset[1].data(), t.offset[2].data(), t.offset[3].data()};
  const float* w[4] = {t.weight[0].data(), t.weight[1].data(), t.weight[2].data(), t.weight[3].data()};
  const uint8_t* data = L.data;
  const int64_t sc = L.stride_c;
  uint8_t* bytes = static_cast<uint8_t*>(dst_row);
  float* floats = static_cast<float*>(dst_row);
  const int64_t step = kToBytes ? plane : n;
  int64_t c = lo;
#if defined(__SSE2__) || defined(_M_X64)
  for (; c + 4 <= hi; c += 4) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      const __m128 v = t.paired ? bilinear_pair_at4(o, w, data + ch * sc, c) : bilinear_at4(o, w, data + ch * sc, c);
      if (kToBytes) {
        const uint32_t b = to_grey4(v);
        std::memcpy(bytes + ch * step + c, &b, 4);
      } else {
        _mm_storeu_ps(floats + ch * step + c, v);
      }
    }
  }
#endif
  for (; c < hi; ++c) {  // the tail, or every column without SSE2
    for (int64_t ch = 0; ch < channels; ++ch) {
      const float v = t.paired ? bilinear_pair_at(o, w, data + ch * sc, c) : bilinear_at(o, w, data + ch * sc, c);
      if (kToBytes) {
        bytes[ch * step + c] = to_grey(v);
      } else {
        floats[ch * step + c] = v;
      }
    }
  }
}

// [lo, hi): from the first to past the last column with need[c] (lo = hi when none).
void need_span(const uint8_t* need, int64_t n, int64_t* lo, int64_t* hi) {
  int64_t a = 0, b = n;
  while (a < n && !need[a]) ++a;
  while (b > a && !need[b - 1]) --b;
  *lo = a;
  *hi = b;
}

// planes[ch * n + c] = the layer's samples of the current row where need[c], 0 elsewhere (float32).
void sample_planes(const Sampler& s, const uint8_t* need, int64_t n, int64_t channels, int32_t* col, int32_t* row,
                   int64_t* off, float* xs, float* ys, BilinearTaps* taps, float* planes) {
  std::fill(planes, planes + channels * n, 0.0f);
  const WarpLayer& L = *s.layer;
  if (L.interp == WarpInterp::kNearest) {
    int64_t lo, hi;
    nearest_offsets(s, need, n, col, row, off, &lo, &hi);
    const uint8_t* data = L.data;
    const int64_t sc = L.stride_c;
    for (int64_t c = lo; c < hi; ++c) {
      if (off[c] < 0) continue;
      const uint8_t* px = data + off[c];
      for (int64_t ch = 0; ch < channels; ++ch) planes[ch * n + c] = static_cast<float>(px[ch * sc]);
    }
    return;
  }
  int64_t lo, hi;  // bilinear columns cost the same sampled or not: only the span that needs them is sampled
  need_span(need, n, &lo, &hi);
  bilinear_taps(s, need, lo, hi, xs, ys, taps);
  bilinear_gather<false>(L, *taps, lo, hi, n, channels, planes, n);
}

// The single-layer row (no overlay): out[ch * plane + c] = the rounded sample where need[c], 0 elsewhere.
void write_layer_row(const Sampler& s, const uint8_t* need, int64_t n, int64_t channels, int64_t plane,
                     int32_t* col, int32_t* row, int64_t* off, float* xs, float* ys, BilinearTaps* taps,
                     uint8_t* out) {
  for (int64_t ch = 0; ch < channels; ++ch) std::memset(out + ch * plane, 0, static_cast<size_t>(n));
  const WarpLayer& L = *s.layer;
  if (L.interp == WarpInterp::kNearest) {  // whole samples: bytes copied, no float round trip
    int64_t lo, hi;
    nearest_offsets(s, need, n, col, row, off, &lo, &hi);
    // Locals and __restrict: a byte store may alias anything, which would reload every field per pixel.
    const uint8_t* __restrict data = L.data;
    const int64_t* __restrict offs = off;
    uint8_t* __restrict dst = out;
    const int64_t sc = L.stride_c;
    if (channels == 3) {
      for (int64_t c = lo; c < hi; ++c) {
        const int64_t o = offs[c];
        if (o < 0) continue;
        dst[c] = data[o];
        dst[plane + c] = data[o + sc];
        dst[2 * plane + c] = data[o + 2 * sc];
      }
      return;
    }
    for (int64_t c = lo; c < hi; ++c) {
      if (offs[c] < 0) continue;
      for (int64_t ch = 0; ch < channels; ++ch) dst[ch * plane + c] = data[offs[c] + ch * sc];
    }
    return;
  }
  int64_t lo, hi;
  need_span(need, n, &lo, &hi);
  bilinear_taps(s, need, lo, hi, xs, ys, taps);
  bilinear_gather<true>(L, *taps, lo, hi, n, channels, out, plane);
}

void check_layer(const WarpLayer& L, const char* name) {
  if (L.data == nullptr || L.height <= 0 || L.width <= 0) {
    throw std::invalid_argument(std::string(name) + ": expected a non-empty image");
  }
}

}  // namespace

void render_view(const WarpView& v, uint8_t* out) {
  const int64_t h = v.out_h, w = v.out_w, nc = v.channels;
  if (h <= 0 || w <= 0 || nc <= 0) throw std::invalid_argument("out_hw: expected positive sizes and channels");
  check_layer(v.copy, "image");
  const bool overlay = v.other != nullptr;
  if (overlay) {
    check_layer(*v.other, "other");
    if (v.cover == nullptr) throw std::invalid_argument("cover: an overlay needs its cover test");
  }
  Sampler copy{&v.copy, RowMap(v.copy.matrix, w)};
  std::vector<Sampler> other;
  if (overlay) other.push_back(Sampler{v.other, RowMap(v.other->matrix, w)});
  auto maps_of = [w](const WarpTest* tests, int64_t count) {
    std::vector<RowMap> maps;
    for (int64_t i = 0; i < count; ++i) maps.emplace_back(tests[i].matrix, w);
    return maps;
  };
  std::vector<RowMap> p_maps = maps_of(v.copy_tests, v.num_copy_tests);
  std::vector<RowMap> q_maps = maps_of(v.shared_tests, v.num_shared_tests);
  std::vector<RowMap> c_maps = overlay ? maps_of(v.cover, 1) : std::vector<RowMap>();

  std::vector<uint8_t> q(w), p(w), pq(w), cover(w);
  std::vector<float> copy_planes(nc * w), other_planes(overlay ? nc * w : 0), wc(w), wo(w);
  std::vector<int32_t> col(w), row(w);
  std::vector<int64_t> off(w);
  std::vector<float> xs(w), ys(w);
  BilinearTaps taps(w);
  const float a = v.weights[0], b = v.weights[1], d = v.weights[2], g = v.weights[3];
  const int64_t plane = h * w;

  for (int64_t r = 0; r < h; ++r) {
    for (auto* maps : {&p_maps, &q_maps, &c_maps}) {
      for (auto& m : *maps) m.set_row(r);
    }
    copy.map.set_row(r);
    if (overlay) other[0].map.set_row(r);

    std::fill(q.begin(), q.end(), uint8_t(1));
    for (int64_t i = 0; i < v.num_shared_tests; ++i) {
      and_test_row(q_maps[i], v.shared_tests[i].height, v.shared_tests[i].width, w, q.data());
    }
    std::copy(q.begin(), q.end(), pq.begin());
    for (int64_t i = 0; i < v.num_copy_tests; ++i) {
      and_test_row(p_maps[i], v.copy_tests[i].height, v.copy_tests[i].width, w, pq.data());
    }
    uint8_t* out_row = out + r * w;
    if (!overlay) {  // final = Q * P * copy: the copy sampled where P and Q pass, 0 elsewhere
      write_layer_row(copy, pq.data(), w, nc, plane, col.data(), row.data(), off.data(), xs.data(), ys.data(),
                      &taps, out_row);
      continue;
    }
    // With an overlay: P alone (the copy tests) decides w_copy; Q multiplies the sum. Copy samples are taken only
    // where P and Q pass, the other layer's where Q passes: elsewhere the torch path multiplies them by 0.
    std::fill(p.begin(), p.end(), uint8_t(1));
    for (int64_t i = 0; i < v.num_copy_tests; ++i) {
      and_test_row(p_maps[i], v.copy_tests[i].height, v.copy_tests[i].width, w, p.data());
    }
    std::fill(cover.begin(), cover.end(), uint8_t(1));
    and_test_row(c_maps[0], v.cover->height, v.cover->width, w, cover.data());
    for (int64_t c = 0; c < w; ++c) {
      // executor_torch: w_copy = (a + b * cover) * keep; w_other = d + g * cover; float32, op by op.
      const float cv = cover[c] ? 1.0f : 0.0f;
      wc[c] = (b * cv + a) * (p[c] ? 1.0f : 0.0f);
      wo[c] = (g * cv + d) * (q[c] ? 1.0f : 0.0f);  // Q folded in: copy samples are 0 outside Q already
      // A sample weighed 0 adds 0 whatever it is: only the others are taken (a pasted copy's box, an overlay's).
      pq[c] = static_cast<uint8_t>(pq[c] && wc[c] != 0.0f);
      p[c] = static_cast<uint8_t>(q[c] && wo[c] != 0.0f);
    }
    sample_planes(copy, pq.data(), w, nc, col.data(), row.data(), off.data(), xs.data(), ys.data(), &taps,
                  copy_planes.data());
    sample_planes(other[0], p.data(), w, nc, col.data(), row.data(), off.data(), xs.data(), ys.data(), &taps,
                  other_planes.data());
    for (int64_t ch = 0; ch < nc; ++ch) {
      const float* cp = copy_planes.data() + ch * w;
      const float* op = other_planes.data() + ch * w;
      uint8_t* dst = out_row + ch * plane;
      int64_t c = 0;
#if defined(__SSE2__) || defined(_M_X64)
      for (; c + 4 <= w; c += 4) {
        const __m128 sum = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(wc.data() + c), _mm_loadu_ps(cp + c)),
                                      _mm_mul_ps(_mm_loadu_ps(wo.data() + c), _mm_loadu_ps(op + c)));
        const uint32_t bytes = to_grey4(sum);
        std::memcpy(dst + c, &bytes, 4);
      }
#endif
      for (; c < w; ++c) dst[c] = to_grey(wc[c] * cp[c] + wo[c] * op[c]);
    }
  }
}

}  // namespace copynce
