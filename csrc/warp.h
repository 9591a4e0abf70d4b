// The geometry of one training view in one pass, CPU: the twin of copynce_fast.data.executor_torch._render_layers.
//
// The contract is copynce_fast/data/geometry.py's module docstring. For every output pixel centre
// (x, y) = (col + 0.5, row + 0.5) of an out_h x out_w view:
//
//   final = Q * [ (a + b C) * P * copy + (d + g C) * other ]                      (float32, as the torch path)
//
// - a map (3x3, row-major, view -> image or canvas) sends (x, y) to (nx / nd, ny / nd) with
//   nx = (m0 x + m1 y) + m2, ny = (m3 x + m4 y) + m5, nd = (m6 x + m7 y) + m8 in float64 (no FMA contraction);
//   a map with last row exactly (0, 0, 1) is affine (no division, every point in front), otherwise points with
//   nd <= 0 are behind the horizon (outside every canvas, zero in every layer): geometry.warp_coords.
// - a canvas test (P: copy_tests, Q: shared_tests, C: cover) passes iff the point is in front and
//   0 <= rint(256 x) < 256 W and 0 <= rint(256 y) < 256 H (rint: half to even): geometry.canvas_mask.
// - a layer is sampled at its map's point, zero outside its image:
//   nearest:  image[floor(rint(256 y) / 256), floor(rint(256 x) / 256)] (geometry.sample_nearest, exact);
//   bilinear: torch grid_sample(align_corners=False, padding_mode="zeros") at source coordinate
//             (x - 0.5, y - 0.5) (the point in float64, rounded to float32 for the taps, as grid_sample's float32
//             grid): 4 taps nw, ne, sw, se summed in that order, taps outside the image count as 0, float32.
// - weights (a, b, d, g) are float32; w_copy = a + b C (times P), w_other = d + g C; the sum
//   w_copy * copy + w_other * other is formed in float32 in that order, times Q, then rounded half to even and
//   clamped to [0, 255] (render_plan's float -> uint8 step).
// With nearest layers every step is the torch path's own float operation, so the uint8 output is bit-equal to it.
// Bilinear layers differ from grid_sample only in float rounding of the coordinates (torch goes through a float32
// normalised grid): at most one grey level, on ~1e-5 of the pixels (tests/test_data_warp_cpp.py).
// A layer is sampled only where its weight is non-zero (a sample weighed 0 adds 0 whatever it is).
//
// Canvas tests and nearest bounds of affine maps are evaluated as intervals per row: the snapped coordinate is a
// monotone function of the column (each step -- a product with a fixed factor, a sum, a scaling by 256, rounding
// -- is monotone), so the columns inside are one interval, found by bisection with the exact per-pixel formula.
#pragma once

#include <cstdint>

namespace copynce {

enum class WarpInterp { kNearest, kBilinear };

// One warped image: uint8 samples at data[ch * stride_c + row * stride_y + col * stride_x] (strides in elements,
// so a [C, H, W] view of HWC memory is read in place).
struct WarpLayer {
  const uint8_t* data = nullptr;
  int64_t height = 0, width = 0;
  int64_t stride_c = 0, stride_y = 0, stride_x = 0;
  double matrix[9] = {};  // view -> image
  WarpInterp interp = WarpInterp::kNearest;
};

struct WarpTest {
  double matrix[9] = {};  // view -> canvas
  int64_t height = 0, width = 0;
};

struct WarpView {
  int64_t out_h = 0, out_w = 0, channels = 0;
  WarpLayer copy;
  const WarpLayer* other = nullptr;  // the overlay's layer, nullptr without overlay
  const WarpTest* copy_tests = nullptr;  // P
  int64_t num_copy_tests = 0;
  const WarpTest* shared_tests = nullptr;  // Q
  int64_t num_shared_tests = 0;
  const WarpTest* cover = nullptr;  // C; required with an overlay, ignored without
  float weights[4] = {1.0f, 0.0f, 0.0f, 0.0f};  // (a, b, d, g)
};

// out: [channels, out_h, out_w] uint8, C-contiguous. Both layers have `channels` channels.
// Throws std::invalid_argument for inconsistent sizes (non-positive sizes, overlay without cover).
void render_view(const WarpView& view, uint8_t* out);

}  // namespace copynce
