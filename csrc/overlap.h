// Patch overlap counts from trace-path geometry, CPU: the twin of copynce_fast.ops.patch_overlap_ref.
//
// For every source pixel centre (x, y) = (col + 0.5, row + 0.5) and every step t (matrix m, canvas (H, W)):
//   nx = (m0 x + m1 y) + m2,  ny = (m3 x + m4 y) + m5,  nd = (m6 x + m7 y) + m8
//   ok = nd > 0 (else nd := 1);  x, y = nx / nd, ny / nd                     (IEEE, no FMA contraction)
//   valid &= ok & 0 <= rint(256 x) < 256 W & 0 <= rint(256 y) < 256 H          (rint: round half to even)
// then pixel = floor(rint(256 v) / 256), inside the destination (Hd, Wd) and not occluded there.
// counts[b, i, j] = #{pixels of source patch i landing in destination patch j}; j = Ld: no correspondence.
// The arithmetic is the reference's, operation for operation, in the matrices' own type (float or double), so
// the integer counts are bit-equal (overlap_steps.h lists the shortcuts it takes and why each is exact).
//
// Threads: num_threads > 1 spreads the pairs (batch) over std::threads; one pair is one thread's work, so the
// result does not depend on the thread count.
#pragma once

#include <cstdint>

namespace copynce {

// Largest canvas side the kernel accepts for F (the exactness argument of overlap.cpp needs side * 512 < 2^24 for
// float and int32 pixel indices); larger canvases raise std::invalid_argument (the Python side uses torch then).
template <typename F>
constexpr int64_t overlap_max_side() {
  return sizeof(F) == 4 ? (int64_t(1) << 14) : (int64_t(1) << 22);
}

// matrices [batch, steps, 3, 3] (F = float or double), canvases [batch, steps, 2] int32 (H, W),
// src_occluder [batch, src_h, src_w] / dst_occluder [batch, dst_h, dst_w] bool or nullptr (true = occluded),
// counts [batch, Ls, Ld + 1] int32, zero on entry (a calloc'd buffer is zero without a second pass);
// Ls = (src_h / patch) * (src_w / patch), Ld likewise.
// Throws std::invalid_argument for sizes not divisible by patch or beyond overlap_max_side<F>().
template <typename F>
void patch_overlap(const F* matrices, const int32_t* canvases, int64_t batch, int64_t steps, int64_t src_h,
                   int64_t src_w, int64_t dst_h, int64_t dst_w, int64_t patch, const bool* src_occluder,
                   const bool* dst_occluder, int32_t* counts, int num_threads);

}  // namespace copynce
