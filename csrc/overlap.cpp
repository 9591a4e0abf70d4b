// Patch overlap counts from geometry (see overlap.h): the entry point, and the general path for pairs with a
// rotation, shear or perspective step: one source row at a time, one tight vector loop per step, then a histogram
// by patch. Separable pairs go to overlap_separable.cpp. Why each shortcut is exact: overlap_steps.h.
#include "overlap.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "overlap_steps.h"
#include "parallel.h"

namespace copynce {
namespace overlap_detail {
namespace {

// The per-point validity mask has the width of F so that the loops vectorise without packing.
template <typename F>
using MaskOf = std::conditional_t<sizeof(F) == 4, int32_t, int64_t>;

// One step on n points, in place. Plain loops over arrays: the compiler vectorises them.
template <typename F>
COPYNCE_VECTOR_CLONES void apply_step(const Step<F>& s, int64_t n, F* __restrict x, F* __restrict y,
                                      MaskOf<F>* __restrict ok) {
  using Mask = MaskOf<F>;
  const F lo = kLow<F>, hx = s.hi_x, hy = s.hi_y;
  const F m0 = s.m[0], m1 = s.m[1], m2 = s.m[2], m3 = s.m[3], m4 = s.m[4], m5 = s.m[5];
  const F m6 = s.m[6], m7 = s.m[7], m8 = s.m[8];
  switch (s.kind) {
    case Kind::kSkip:
      return;
    case Kind::kCheckOnly:
      for (int64_t c = 0; c < n; ++c) {
        ok[c] &= Mask((x[c] >= lo) & (x[c] < hx) & (y[c] >= lo) & (y[c] < hy));
      }
      return;
    case Kind::kAxisAffine:
      for (int64_t c = 0; c < n; ++c) {
        const F nx = m0 * x[c] + m2, ny = m4 * y[c] + m5;
        x[c] = nx;
        y[c] = ny;
        ok[c] &= Mask((nx >= lo) & (nx < hx) & (ny >= lo) & (ny < hy));
      }
      return;
    case Kind::kAffine:
      for (int64_t c = 0; c < n; ++c) {
        const F nx = (m0 * x[c] + m1 * y[c]) + m2;
        const F ny = (m3 * x[c] + m4 * y[c]) + m5;
        x[c] = nx;
        y[c] = ny;
        ok[c] &= Mask((nx >= lo) & (nx < hx) & (ny >= lo) & (ny < hy));
      }
      return;
    case Kind::kProjective:
      for (int64_t c = 0; c < n; ++c) {
        const F nx = (m0 * x[c] + m1 * y[c]) + m2;
        const F ny = (m3 * x[c] + m4 * y[c]) + m5;
        const F nd = (m6 * x[c] + m7 * y[c]) + m8;
        const bool front = nd > F(0);  // behind the horizon of a perspective map: no image
        // The reference divides by 1 where nd <= 0; such a point is invalid, so its value is never used and the
        // division stays unconditional (a select before it would stop the loop from vectorising).
        const F px = nx / nd, py = ny / nd;
        x[c] = px;
        y[c] = py;
        ok[c] &= Mask(front & (px >= lo) & (px < hx) & (py >= lo) & (py < hy));
      }
      return;
  }
}

// v where mask is all ones, +0 where it is zero: a select written as bit operations, which the compiler vectorises
// (a ?: on floats stays a branch because the untaken side might trap).
template <typename Mask, typename F>
inline F keep_if(F v, Mask mask) {
  static_assert(sizeof(Mask) == sizeof(F), "mask and value must have the same width");
  Mask bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits &= mask;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Destination patch j of each mapped point (g.ld where it has no correspondence) and, for the occluder lookup,
// its flat destination pixel (0 where invalid). Pixel = floor(rint(256 v) / 256) (shortcuts 3 and 4).
template <typename F>
COPYNCE_VECTOR_CLONES void destination_patches(int64_t n, const Grid& g, const F* __restrict x,
                                               const F* __restrict y, const MaskOf<F>* __restrict ok,
                                               int32_t* __restrict j, int32_t* __restrict flat) {
  using Mask = MaskOf<F>;
  const F magic = kRoundMagic<F>, inv_patch = F(1) / F(g.patch);
  const Mask dst_h = g.dst_h, dst_w = g.dst_w, gd_w = g.gd_w, ld = g.ld;
  for (int64_t c = 0; c < n; ++c) {
    const Mask valid = -ok[c];                        // 0 or all ones
    const F ux = keep_if(x[c] * F(256), valid);      // invalid points may be inf or NaN: never convert those
    const F uy = keep_if(y[c] * F(256), valid);
    const Mask px = Mask((ux + magic) - magic) >> 8;  // >= 0 for valid points (u >= -1/2 rounds to >= -0)
    const Mask py = Mask((uy + magic) - magic) >> 8;
    const Mask inside = valid & -Mask((px < dst_w) & (py < dst_h));
    const Mask patch = Mask((F(py) + F(0.5)) * inv_patch) * gd_w + Mask((F(px) + F(0.5)) * inv_patch);
    j[c] = int32_t((patch & inside) | (ld & ~inside));
    flat[c] = int32_t((py * dst_w + px) & inside);
  }
}

// Add the j of one source row to the count rows of its source patches, run by run: a patch-wide stretch of a row
// holds a few runs of equal j (a homography maps the stretch to a segment crossing a patch border or two; edges
// and occluders add "no correspondence" runs). The run starts are found without branches (one bit per pixel),
// then each run is one add.
COPYNCE_VECTOR_CLONES void histogram_row(const Grid& g, int64_t r, const int32_t* j, int32_t* counts) {
  const int64_t bins = g.ld + 1, p = g.patch;
  int32_t* out = counts + (r / p) * g.gs_w * bins;
  for (int64_t c0 = 0; c0 < g.src_w; c0 += p, out += bins) {
    const int32_t* jb = j + c0;
    if (p > 64) {  // no bit mask wide enough: one add per pixel
      for (int64_t k = 0; k < p; ++k) ++out[jb[k]];
      continue;
    }
    uint64_t starts = 1;  // bit k: a run starts at pixel k
    for (int64_t k = 1; k < p; ++k) starts |= uint64_t(jb[k] != jb[k - 1]) << k;
    while (starts != 0) {
      const int k0 = lowest_bit(starts);
      starts &= starts - 1;
      const int k1 = starts != 0 ? lowest_bit(starts) : int(p);
      out[jb[k0]] += k1 - k0;
    }
  }
}

template <typename F>
void overlap_general(const std::vector<Step<F>>& plan, const Grid& g, const bool* src_occ, const bool* dst_occ,
                     int32_t* counts) {
  using Mask = MaskOf<F>;
  const int64_t w = g.src_w;
  std::vector<F> x(w), y(w), centres(w);
  std::vector<Mask> ok(w);
  std::vector<int32_t> j(w), flat(w);
  for (int64_t c = 0; c < w; ++c) centres[c] = F(c) + F(0.5);
  for (int64_t r = 0; r < g.src_h; ++r) {
    std::copy(centres.begin(), centres.end(), x.begin());
    std::fill(y.begin(), y.end(), F(r) + F(0.5));
    if (src_occ != nullptr) {
      const uint8_t* occ = reinterpret_cast<const uint8_t*>(src_occ + r * w);  // bools are bytes 0 / 1
      for (int64_t c = 0; c < w; ++c) ok[c] = Mask(1) - Mask(occ[c]);
    } else {
      std::fill(ok.begin(), ok.end(), Mask(1));
    }
    for (const Step<F>& s : plan) apply_step(s, w, x.data(), y.data(), ok.data());
    destination_patches(w, g, x.data(), y.data(), ok.data(), j.data(), flat.data());
    if (dst_occ != nullptr) {  // a gather: scalar, but without a branch (occluders are ragged)
      const uint8_t* occ = reinterpret_cast<const uint8_t*>(dst_occ);
      for (int64_t c = 0; c < w; ++c) j[c] ^= (j[c] ^ int32_t(g.ld)) & -int32_t(occ[flat[c]]);
    }
    histogram_row(g, r, j.data(), counts);
  }
}

void check_side(const char* name, int64_t v, int64_t limit) {
  if (v > limit) {
    throw std::invalid_argument(std::string(name) + ": side " + std::to_string(v) + " exceeds the kernel's limit " +
                                std::to_string(limit));
  }
}

}  // namespace
}  // namespace overlap_detail

template <typename F>
void patch_overlap(const F* matrices, const int32_t* canvases, int64_t batch, int64_t steps, int64_t src_h,
                   int64_t src_w, int64_t dst_h, int64_t dst_w, int64_t patch, const bool* src_occluder,
                   const bool* dst_occluder, int32_t* counts, int num_threads) {
  using namespace overlap_detail;
  if (patch <= 0) throw std::invalid_argument("patch_size: expected a positive int");
  if (src_h <= 0 || src_w <= 0 || src_h % patch || src_w % patch) {
    throw std::invalid_argument("src_hw: image size is not a positive multiple of patch_size");
  }
  if (dst_h <= 0 || dst_w <= 0 || dst_h % patch || dst_w % patch) {
    throw std::invalid_argument("dst_hw: image size is not a positive multiple of patch_size");
  }
  constexpr int64_t limit = overlap_max_side<F>();
  check_side("src_hw", std::max(src_h, src_w), limit);
  check_side("dst_hw", std::max(dst_h, dst_w), limit);
  for (int64_t k = 0; k < batch * steps * 2; ++k) check_side("canvases", canvases[k], limit);
  Grid g{src_h, src_w, dst_h, dst_w, patch, src_w / patch, dst_w / patch, 0, 0};
  g.ls = (src_h / patch) * g.gs_w;
  g.ld = (dst_h / patch) * g.gd_w;
  const int64_t out_stride = g.ls * (g.ld + 1);
  parallel_over_batch(batch, num_threads, [&](int64_t b) {
    const std::vector<Step<F>> plan = classify_steps(matrices + b * steps * 9, canvases + b * steps * 2, steps);
    const bool* src_occ = src_occluder ? src_occluder + b * src_h * src_w : nullptr;
    const bool* dst_occ = dst_occluder ? dst_occluder + b * dst_h * dst_w : nullptr;
    int32_t* out = counts + b * out_stride;
    if (is_separable(plan)) {
      overlap_separable(plan, g, src_occ, dst_occ, out);
    } else {
      overlap_general(plan, g, src_occ, dst_occ, out);
    }
  });
}

template void patch_overlap<float>(const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                   int64_t, const bool*, const bool*, int32_t*, int);
template void patch_overlap<double>(const double*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, const bool*, const bool*, int32_t*, int);

}  // namespace copynce
