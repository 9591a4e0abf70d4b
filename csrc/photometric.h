// Photometric ops of the torch executor on uint8 images, CPU: the twins of copynce_fast.data.photometric's torch
// code (apply_photo_op_torch) and occluders.composite_torch. Images are planar [channels, height, width] uint8,
// C-contiguous; every function writes a new image (dst) except composite_rgba (in place).
//
// Exactness against the torch reference:
// - edge_enhance and composite_rgba are integer maths and bit-equal (the reference's floats are exact there, or
//   never near a rounding tie; see photometric.cpp).
// - colour_ops, gaussian_blur and resize_antialias compute in float32 op by op without FMA contraction, in a fixed
//   order; torch sums in its own order (einsum's GEMM, vectorised fmadd, separable passes), so a value within a
//   few ulps of a .5 tie may round the other way: at most 1 grey level, on a tiny fraction of pixels
//   (tests/test_data_photometric_cpp.py bounds it). Results do not depend on the machine (the AVX2 clones round
//   like the baseline build).
#pragma once

#include <cstdint>

namespace copynce {

// n_maps affine colour maps applied in order to every pixel, each followed by round half to even and a clamp to
// [0, 255] (torchvision's per-op semantics): y_i = ((m_i0 x_0 + m_i1 x_1) + m_i2 x_2) + m_i3.
// maps: [n_maps, 3, 4] float32 (row-major [M | t]); src, dst: [3, pixels] (may be the same buffer).
void colour_ops(const uint8_t* src, uint8_t* dst, int64_t pixels, const float* maps, int64_t n_maps);

// Separable Gaussian: rows then columns, taps [2 radius + 1] float32 (normalised by the caller), reflect border on
// an axis longer than radius, replicate otherwise; rounded half to even and clamped to uint8.
// Accumulation per pixel: acc = v_0 k_0, then acc = acc + k_j v_j for j = 1 .. 2 radius (the reference's order).
void gaussian_blur(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width,
                   const float* taps, int64_t radius);

// Antialiased bilinear down-scale (torch's F.interpolate(mode="bilinear", antialias=True, align_corners=False) on
// float input): a triangle filter stretched by the scale, weights normalised per output pixel, columns then rows
// (torch: rows then columns; the same sums in another float order), rounded half to even and clamped to uint8.
// src [channels, height, width] -> dst [channels, out_h, out_w]; out_h <= height and out_w <= width.
void resize_antialias(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width,
                      int64_t out_h, int64_t out_w);

// PIL's EDGE_ENHANCE (more = false: ((11 x - box3x3) / 2), rounded half to even) or EDGE_ENHANCE_MORE
// (10 x - box3x3), replicate border, clamped to [0, 255]. Integer maths.
void edge_enhance(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height, int64_t width, bool more);

// Straight-alpha "over" of an RGBA patch [patch_h, patch_w, 4] at (top, left) onto img [3, height, width], in
// place: v = (x (255 - a) + c a) / 255 rounded to nearest ((v + 127) / 255 in integers; never a tie, 255 is odd).
// The patch must lie inside the image (the caller checks).
void composite_rgba(uint8_t* img, int64_t height, int64_t width, const uint8_t* rgba, int64_t patch_h,
                    int64_t patch_w, int64_t top, int64_t left);

}  // namespace copynce
