// Dense-map inverse and composition: plain raster-order loops (see dense_maps.h for the semantics).
#include "dense_maps.h"

#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace copynce {
namespace {

// Raw range test 0 <= v < limit in v's own type: a float map is compared with float(limit), exactly as numpy and
// torch compare a float32 array with a Python int. NaN fails both comparisons.
template <typename T>
inline bool raw_in_range(T v, int64_t limit) {
  return v >= T(0) && v < static_cast<T>(limit);
}

// Round half to even. Only called on values that passed raw_in_range, so the cast cannot overflow.
template <typename T>
inline int64_t round_to_index(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<int64_t>(std::nearbyint(v));  // default FE_TONEAREST = half to even, like torch.round
  } else {
    return static_cast<int64_t>(v);
  }
}

// Map coordinate (vy, vx) to a flat pixel index of an (h, w) grid, or -1 if it is invalid before or after rounding.
template <typename T>
inline int64_t flat_index(T vy, T vx, int64_t h, int64_t w) {
  if (!(raw_in_range(vy, h) && raw_in_range(vx, w))) return -1;
  const int64_t ry = round_to_index(vy);
  const int64_t rx = round_to_index(vx);
  if (ry >= h || rx >= w) return -1;  // 223.6 -> 224 at h = 224; rounding can never go below 0
  return ry * w + rx;
}

// A value stored in the second map of a composition, as an int64 coordinate. Floats are rounded half to even;
// NaN and values outside [-2^63, 2^63) (which have no int64 value) become -1.
template <typename T>
inline int64_t carried_value(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    constexpr T kTwo63 = T(9223372036854775808.0);  // exactly representable in float and double
    if (!(v >= -kTwo63 && v < kTwo63)) return -1;
    return static_cast<int64_t>(std::nearbyint(v));
  } else {
    return static_cast<int64_t>(v);
  }
}

template <typename T>
void invert_one(const T* map, int64_t height, int64_t width, int64_t out_h, int64_t out_w, int64_t* inv,
                int64_t* holes) {
  const int64_t hw = height * width;
  const int64_t out_hw = out_h * out_w;
  const T* my = map;
  const T* mx = map + hw;
  int64_t* iy = inv;
  int64_t* ix = inv + out_hw;
  std::fill(inv, inv + 2 * out_hw, int64_t(-1));
  // Raster order: a later writer overwrites an earlier one, and writes both channels together.
  for (int64_t y = 0, p = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x, ++p) {
      const int64_t t = flat_index(my[p], mx[p], out_h, out_w);
      if (t < 0) continue;
      iy[t] = y;
      ix[t] = x;
    }
  }
  *holes = std::count(iy, iy + out_hw, int64_t(-1));
}

template <typename TA, typename TB>
void compose_one(const TA* a, const TB* b, int64_t height, int64_t width, int64_t height_b, int64_t width_b,
                 int64_t* out) {
  const int64_t hw = height * width;
  const int64_t hw_b = height_b * width_b;
  const TA* ay = a;
  const TA* ax = a + hw;
  const TB* by = b;
  const TB* bx = b + hw_b;
  int64_t* oy = out;
  int64_t* ox = out + hw;
  for (int64_t p = 0; p < hw; ++p) {
    const int64_t q = flat_index(ay[p], ax[p], height_b, width_b);
    if (q < 0) {
      oy[p] = -1;
      ox[p] = -1;
    } else {
      oy[p] = carried_value(by[q]);
      ox[p] = carried_value(bx[q]);
    }
  }
}

}  // namespace

template <typename T>
void invert_dense(const T* maps, int64_t batch, int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                  int64_t* inv, int64_t* holes, int num_threads) {
  const int64_t in_stride = 2 * height * width;
  const int64_t out_stride = 2 * out_h * out_w;
  parallel_over_batch(batch, num_threads, [&](int64_t b) {
    invert_one(maps + b * in_stride, height, width, out_h, out_w, inv + b * out_stride, holes + b);
  });
}

template <typename TA, typename TB>
void compose_dense(const TA* a, const TB* b, int64_t batch, int64_t height, int64_t width, int64_t height_b,
                   int64_t width_b, int64_t* out, int num_threads) {
  const int64_t a_stride = 2 * height * width;
  const int64_t b_stride = 2 * height_b * width_b;
  parallel_over_batch(batch, num_threads, [&](int64_t i) {
    compose_one(a + i * a_stride, b + i * b_stride, height, width, height_b, width_b, out + i * a_stride);
  });
}

// Explicit instantiations: the dtypes the bindings accept (everything else is converted in Python first).
#define COPYNCE_INVERT(T) \
  template void invert_dense<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t*, int64_t*, int);
#define COPYNCE_COMPOSE(TA, TB)                                                                                \
  template void compose_dense<TA, TB>(const TA*, const TB*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t*, int);
COPYNCE_INVERT(float)
COPYNCE_INVERT(double)
COPYNCE_INVERT(int64_t)
COPYNCE_COMPOSE(float, float)
COPYNCE_COMPOSE(float, double)
COPYNCE_COMPOSE(float, int64_t)
COPYNCE_COMPOSE(double, float)
COPYNCE_COMPOSE(double, double)
COPYNCE_COMPOSE(double, int64_t)
COPYNCE_COMPOSE(int64_t, float)
COPYNCE_COMPOSE(int64_t, double)
COPYNCE_COMPOSE(int64_t, int64_t)
#undef COPYNCE_INVERT
#undef COPYNCE_COMPOSE

}  // namespace copynce
