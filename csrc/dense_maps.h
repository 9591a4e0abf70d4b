// Dense-map inverse and composition (reference layout), CPU, deterministic.
//
// A dense map is a C-contiguous [B, 2, H, W] array: channel 0 = row, channel 1 = col, value = coordinate in some
// source frame, -1 = invalid. These helpers are the CPU twins of copynce_fast.pixtrace.dense (numpy fallback and
// torch version); all three give bit-identical results.
//
// Coordinate -> pixel index (both helpers):
//   1. raw test: 0 <= v < limit, compared in the input's own type (like numpy / torch comparing with a Python int);
//      NaN fails every comparison, +-inf fails the range test, so non-finite values are invalid;
//   2. round half to even (std::nearbyint under the default rounding mode, = torch.round / np.rint);
//   3. test again on the rounded value: 223.6 passes step 1 at limit 224 but rounds to 224 and is invalid.
//
// invert_dense: inv[b, :, r(My(p)), r(Mx(p))] = (y, x) for every valid source pixel p = (y, x). Pixels are visited in
// raster order, so the LAST valid writer wins a collision, and both channels always come from that writer. This is
// the rule that reproduces the official PixTrace numbers bit-for-bit (REFERENCE.md section 1.6). holes[b] = number of
// target pixels nothing maps to.
//
// compose_dense: t[b, :, p] = B_int[b, :, r(A(p))] when A(p) is valid in [0, H2) x [0, W2), else (-1, -1). B's values
// are carried through (a -1 stays -1); float B values are rounded half to even, and B values that are NaN or outside
// [-2^63, 2^63) become -1.
//
// Threads: num_threads > 1 spreads the BATCH dimension over std::threads; each batch element is still processed
// sequentially by one thread, so the result does not depend on the thread count.
#pragma once

#include <cstdint>

namespace copynce {

// maps [batch, 2, height, width] -> inv [batch, 2, out_h, out_w] int64 (-1 = hole), holes [batch] int64.
// T is float, double or int64_t.
template <typename T>
void invert_dense(const T* maps, int64_t batch, int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                  int64_t* inv, int64_t* holes, int num_threads);

// a [batch, 2, height, width] (coordinates in b's frame), b [batch, 2, height_b, width_b]
// -> out [batch, 2, height, width] int64. TA and TB are float, double or int64_t.
template <typename TA, typename TB>
void compose_dense(const TA* a, const TB* b, int64_t batch, int64_t height, int64_t width, int64_t height_b,
                   int64_t width_b, int64_t* out, int num_threads);

}  // namespace copynce
