// Antialiased bilinear resize of uint8 images, bit-equal to torch's CPU uint8 path of
// F.interpolate(mode="bilinear", antialias=True, align_corners=False) (ATen's UpSampleKernelAVXAntialias, after
// Pillow-SIMD's Resample), for 1..4 channels.
//
// The arithmetic (what makes it bit-equal; every step is torch's):
// - per axis (in -> out samples): scale = in / out (double), support = max(scale, 1), and for output i:
//   centre = scale (i + 0.5), first = max(trunc(centre - support + 0.5), 0),
//   count = min(trunc(centre + support + 0.5), in) - first (clamped to [0, 2 ceil(support) + 1]),
//   w_j = triangle((first + j - centre + 0.5) / max(scale, 1)), normalised by their sum, all in double;
// - fixed point: precision p = the first p in 0..21 with round(max_w 2^(p+1)) >= 2^15 (max_w over the whole axis),
//   else 22; int16 weights round(w 2^p) (half away from zero);
// - a horizontal pass (rows of the box, each output pixel (2^(p-1) + sum w_j x_j) >> p, clamped to 0..255) into a
//   uint8 intermediate, then a vertical pass the same way; an axis that keeps its size is not resampled.
// All sums are exact int32 arithmetic, so the order of the terms (SIMD or scalar) does not change a bit.
#pragma once

#include <cstdint>

namespace copynce {

// A uint8 image [channels, height, width] addressed by element strides (bytes; any non-negative values, e.g. an
// HWC buffer seen as [C, H, W] has strides (1, W C, C)). extent: bytes readable from data (1 + the offset of the
// last element): the SIMD path reads a little past a row only while it stays inside it.
struct ResizeImage {
  const uint8_t* data = nullptr;
  int64_t channels = 0, height = 0, width = 0;
  int64_t stride_c = 0, stride_y = 0, stride_x = 0;
  int64_t extent = 0;
};

// Resize the box (top, left, box_h, box_w) of src (inside it) to out_h x out_w. dst: channels_last ? [out_h, out_w,
// channels] : [channels, out_h, out_w], C-contiguous. simd = false forces the portable scalar path (tests compare
// the two; both are exact). Not thread-safe per call site only in the sense of a thread_local scratch: each thread
// has its own. Throws std::invalid_argument for a bad box, size or channel count.
void resize_bilinear_aa_u8(const ResizeImage& src, int64_t top, int64_t left, int64_t box_h, int64_t box_w,
                           int64_t out_h, int64_t out_w, uint8_t* dst, bool channels_last, bool simd = true);

// True when the AVX2 path is compiled in and the CPU has AVX2 (what simd = true uses; else scalar).
bool resize_has_avx2();

}  // namespace copynce
