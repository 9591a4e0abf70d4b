// Internals shared by the two overlap paths (overlap.cpp: general, overlap_separable.cpp: separable pairs).
//
// Exactness. The build disables FMA contraction (-ffp-contract=off) and fast-math, so every + * / of the kernel
// rounds like the torch reference's separate tensor ops. The shortcuts below are each exact for every point that is
// still valid (an invalid point never becomes valid again and only valid points reach the histogram, so what an
// invalid point computes does not matter; a valid point has finite x, y after every step):
//   1. The snap test 0 <= rint(256 v) < 256 W is the comparison -1/512 <= v < W - 1/512: 256 v is exact (a power
//      of two), rint(u) >= 0 iff u >= -1/2 (rint(-1/2) = -0), and rint(u) < 256 W iff u < 256 W - 1/2 (the tie
//      256 W - 1/2 rounds to the even 256 W). W - 1/512 is exact while W * 512 < 2^24 (overlap_max_side).
//   2. A step whose matrix is affine (m6 = m7 = 0, m8 = 1) has nd = (0 x + 0 y) + 1 = 1 for finite x, y: no
//      division. If also m1 = m3 = 0 (resize, crop, flip, pad, paste), nx = (m0 x + (+-0)) + m2 equals
//      m0 x + m2 (at most the sign of a zero differs, which no later comparison or product can see), so each
//      axis needs its own coordinate only. The identity only tests its canvas (nothing if the canvas repeats).
//   3. rint of the final 256 v uses the 1.5 * 2^23 (2^52 for double) magic number: (u + M) - M rounds u to an
//      integer, half to even, for |u| <= 2^22, which holds for valid points of a canvas within overlap_max_side.
//   4. The patch of pixel v is floor((v + 1/2) * fl(1/P)): (v + 1/2) / P is at least 1/(2P) from an integer and the
//      product's error is below v * 2^-23 / P <= 2^-9 / P for v < 2^14 (float), so the floor is v / P.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

// Vector loops get an AVX2 clone picked at load time (an ifunc: x86-64 glibc, GCC >= 6 or Clang >= 14); elsewhere
// the baseline build only (SSE2 on x86-64), with the same results.
#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 6))
#define COPYNCE_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define COPYNCE_VECTOR_CLONES
#endif

namespace copynce {
namespace overlap_detail {

// Index of the lowest set bit of a non-zero word.
inline int lowest_bit(uint64_t word) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(word);
#else
  int k = 0;
  for (; (word & 1) == 0; word >>= 1) ++k;
  return k;
#endif
}

// One step, classified once per pair.
enum class Kind { kCheckOnly, kSkip, kAxisAffine, kAffine, kProjective };

template <typename F>
struct Step {
  F m[9];
  F hi_x, hi_y;  // W - 1/512, H - 1/512: a point is inside iff -1/512 <= x < hi_x and -1/512 <= y < hi_y
  Kind kind;
};

template <typename F>
constexpr F kLow = F(-1.0 / 512.0);

// (u + M) - M: round half to even for |u| <= 2^22 (float) / 2^51 (double).
template <typename F>
constexpr F kRoundMagic = sizeof(F) == 4 ? F(12582912.0) : F(6755399441055744.0);

template <typename F>
std::vector<Step<F>> classify_steps(const F* mats, const int32_t* canv, int64_t steps) {
  std::vector<Step<F>> out(static_cast<size_t>(steps));
  for (int64_t t = 0; t < steps; ++t) {
    Step<F>& s = out[t];
    std::memcpy(s.m, mats + 9 * t, sizeof(s.m));
    const F* m = s.m;
    s.hi_x = F(canv[2 * t + 1]) - F(1.0 / 512.0);
    s.hi_y = F(canv[2 * t]) - F(1.0 / 512.0);
    const bool affine = m[6] == F(0) && m[7] == F(0) && m[8] == F(1);
    const bool axis = affine && m[1] == F(0) && m[3] == F(0);
    const bool identity = axis && m[0] == F(1) && m[4] == F(1) && m[2] == F(0) && m[5] == F(0);
    const bool same_canvas = t > 0 && canv[2 * t] == canv[2 * t - 2] && canv[2 * t + 1] == canv[2 * t - 1];
    if (identity) {
      s.kind = same_canvas ? Kind::kSkip : Kind::kCheckOnly;
    } else {
      s.kind = axis ? Kind::kAxisAffine : affine ? Kind::kAffine : Kind::kProjective;
    }
  }
  return out;
}

template <typename F>
bool is_separable(const std::vector<Step<F>>& plan) {
  for (const Step<F>& s : plan) {
    if (s.kind == Kind::kAffine || s.kind == Kind::kProjective) return false;
  }
  return true;
}

// Sizes of one direction of a batch: images, patch size, patch grids (columns) and patch counts.
struct Grid {
  int64_t src_h, src_w, dst_h, dst_w, patch, gs_w, gd_w, ls, ld;
};

// Counts of one separable pair (overlap_separable.cpp); counts zeroed on entry.
template <typename F>
void overlap_separable(const std::vector<Step<F>>& plan, const Grid& g, const bool* src_occ, const bool* dst_occ,
                       int32_t* counts);

}  // namespace overlap_detail
}  // namespace copynce
