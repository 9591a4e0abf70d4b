// PYBIND11_MODULE(_C): m.def lines, plus the thin numpy <-> pointer glue they need. The helpers live in their own
// files and know nothing about Python.
//
// Arguments are taken with .noconvert(): an array must already be C-contiguous and of an accepted dtype (float32,
// float64 or int64 maps; float32/float64 matrices, int32 canvases and bool masks for patch_overlap), otherwise
// pybind11 raises TypeError instead of silently casting. The Python callers (copynce_fast.pixtrace.dense,
// copynce_fast.ops.overlap) normalise dtypes and layout before calling in here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "dense_maps.h"
#include "overlap.h"
#include "photometric.h"
#include "resize.h"
#include "warp.h"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

template <typename T>
void check_map(const CArray<T>& m, const char* name) {
  if (m.ndim() != 4 || m.shape(1) != 2) {
    std::string got = "(";
    for (py::ssize_t i = 0; i < m.ndim(); ++i) got += (i ? ", " : "") + std::to_string(m.shape(i));
    throw py::value_error(std::string(name) + ": expected shape [B,2,H,W], got " + got + ")");
  }
}

template <typename T>
py::tuple invert_dense_np(const CArray<T>& maps, int64_t out_h, int64_t out_w, int num_threads) {
  check_map(maps, "maps");
  if (out_h <= 0 || out_w <= 0) throw py::value_error("out_hw: expected two positive ints");
  const int64_t batch = maps.shape(0), height = maps.shape(2), width = maps.shape(3);
  CArray<int64_t> inv({batch, int64_t(2), out_h, out_w});
  CArray<int64_t> holes({batch});
  const T* src = maps.data();
  int64_t* inv_ptr = inv.mutable_data();
  int64_t* holes_ptr = holes.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::invert_dense(src, batch, height, width, out_h, out_w, inv_ptr, holes_ptr, num_threads);
  }
  return py::make_tuple(inv, holes);
}

template <typename TA, typename TB>
CArray<int64_t> compose_dense_np(const CArray<TA>& a, const CArray<TB>& b, int num_threads) {
  check_map(a, "a");
  check_map(b, "b");
  if (a.shape(0) != b.shape(0)) throw py::value_error("b: batch size does not match a's batch size");
  const int64_t batch = a.shape(0), height = a.shape(2), width = a.shape(3);
  CArray<int64_t> out({batch, int64_t(2), height, width});
  const TA* a_ptr = a.data();
  const TB* b_ptr = b.data();
  int64_t* out_ptr = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::compose_dense(a_ptr, b_ptr, batch, height, width, b.shape(2), b.shape(3), out_ptr, num_threads);
  }
  return out;
}

template <typename F>
CArray<int32_t> patch_overlap_np(const CArray<F>& matrices, const CArray<int32_t>& canvases, int64_t src_h,
                                 int64_t src_w, int64_t dst_h, int64_t dst_w, int64_t patch_size,
                                 const std::optional<CArray<bool>>& src_occluder,
                                 const std::optional<CArray<bool>>& dst_occluder, int num_threads) {
  if (matrices.ndim() != 4 || matrices.shape(2) != 3 || matrices.shape(3) != 3) {
    throw py::value_error("matrices: expected shape [B,T,3,3]");
  }
  const int64_t batch = matrices.shape(0), steps = matrices.shape(1);
  if (canvases.ndim() != 3 || canvases.shape(0) != batch || canvases.shape(1) != steps || canvases.shape(2) != 2) {
    throw py::value_error("canvases: expected shape [B,T,2] matching matrices");
  }
  auto occ_ptr = [batch](const std::optional<CArray<bool>>& occ, int64_t h, int64_t w, const char* name) {
    if (!occ) return static_cast<const bool*>(nullptr);
    if (occ->ndim() != 3 || occ->shape(0) != batch || occ->shape(1) != h || occ->shape(2) != w) {
      throw py::value_error(std::string(name) + ": expected a bool mask [B,H,W] matching the batch and image size");
    }
    return occ->data();
  };
  const bool* src_occ = occ_ptr(src_occluder, src_h, src_w, "src_occluder");
  const bool* dst_occ = occ_ptr(dst_occluder, dst_h, dst_w, "dst_occluder");
  if (patch_size <= 0 || src_h % patch_size || src_w % patch_size || dst_h % patch_size || dst_w % patch_size) {
    throw py::value_error("patch_size: src_hw and dst_hw must be positive multiples of it");
  }
  const int64_t ls = (src_h / patch_size) * (src_w / patch_size), ld = (dst_h / patch_size) * (dst_w / patch_size);
  // numpy.zeros is calloc: fresh pages arrive zeroed, so the kernel does not clear 150 KB per pair a second time.
  CArray<int32_t> counts = py::module_::import("numpy").attr("zeros")(
      py::make_tuple(batch, ls, ld + 1), py::dtype::of<int32_t>()).cast<CArray<int32_t>>();
  const F* m = matrices.data();
  const int32_t* c = canvases.data();
  int32_t* out = counts.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::patch_overlap(m, c, batch, steps, src_h, src_w, dst_h, dst_w, patch_size, src_occ, dst_occ, out,
                           num_threads);
  }
  return counts;
}

constexpr const char* kInvertDoc =
    "invert_dense(maps [B,2,H,W] float32|float64|int64 C-contiguous, out_h, out_w, num_threads=1)\n"
    "-> (inv [B,2,out_h,out_w] int64, holes [B] int64). Last valid raster writer wins; -1 = hole.";
constexpr const char* kComposeDoc =
    "compose_dense(a [B,2,H,W], b [B,2,H2,W2], num_threads=1) -> [B,2,H,W] int64: b[round(a(p))] where a(p) is\n"
    "inside [0,H2)x[0,W2) before and after rounding, else -1. Dtypes float32|float64|int64, C-contiguous.";

constexpr const char* kOverlapDoc =
    "patch_overlap(matrices [B,T,3,3] float32|float64, canvases [B,T,2] int32, src_h, src_w, dst_h, dst_w,\n"
    "patch_size, src_occluder [B,Hs,Ws] bool|None, dst_occluder [B,Hd,Wd] bool|None, num_threads=1)\n"
    "-> counts [B,Ls,Ld+1] int32, bit-equal to ops.patch_overlap_ref (csrc/overlap.h). C-contiguous arrays.";

template <typename T>
void def_invert(py::module_& m) {
  m.def("invert_dense", &invert_dense_np<T>, kInvertDoc, py::arg("maps").noconvert(), py::arg("out_h"),
        py::arg("out_w"), py::arg("num_threads") = 1);
}

template <typename TA, typename TB>
void def_compose(py::module_& m) {
  m.def("compose_dense", &compose_dense_np<TA, TB>, kComposeDoc, py::arg("a").noconvert(), py::arg("b").noconvert(),
        py::arg("num_threads") = 1);
}

template <typename TA>
void def_compose_all_b(py::module_& m) {
  def_compose<TA, float>(m);
  def_compose<TA, double>(m);
  def_compose<TA, int64_t>(m);
}

template <typename F>
void def_overlap(py::module_& m) {
  m.def("patch_overlap", &patch_overlap_np<F>, kOverlapDoc, py::arg("matrices").noconvert(),
        py::arg("canvases").noconvert(), py::arg("src_h"), py::arg("src_w"), py::arg("dst_h"), py::arg("dst_w"),
        py::arg("patch_size"), py::arg("src_occluder").noconvert() = py::none(),
        py::arg("dst_occluder").noconvert() = py::none(), py::arg("num_threads") = 1);
}

// ---- photometric ops on planar uint8 images [C, H, W] (csrc/photometric.h) ----
using U8 = CArray<uint8_t>;

void check_planar(const U8& img, const char* name, bool rgb) {
  if (img.ndim() != 3 || (rgb && img.shape(0) != 3) || img.shape(1) <= 0 || img.shape(2) <= 0) {
    throw py::value_error(std::string(name) + ": expected a uint8 image " + (rgb ? "[3,H,W]" : "[C,H,W]"));
  }
}

U8 colour_ops_np(const U8& img, const CArray<float>& maps) {
  check_planar(img, "img", true);
  if (maps.ndim() != 3 || maps.shape(1) != 3 || maps.shape(2) != 4) {
    throw py::value_error("maps: expected float32 [K,3,4] affine colour maps");
  }
  U8 out({img.shape(0), img.shape(1), img.shape(2)});
  const uint8_t* src = img.data();
  const float* m = maps.data();
  uint8_t* dst = out.mutable_data();
  const int64_t pixels = img.shape(1) * img.shape(2), n_maps = maps.shape(0);
  {
    py::gil_scoped_release nogil;
    copynce::colour_ops(src, dst, pixels, m, n_maps);
  }
  return out;
}

U8 gaussian_blur_np(const U8& img, const CArray<float>& taps) {
  check_planar(img, "img", false);
  if (taps.ndim() != 1 || taps.shape(0) < 3 || taps.shape(0) % 2 == 0) {
    throw py::value_error("taps: expected float32 [2r+1] with r >= 1");
  }
  U8 out({img.shape(0), img.shape(1), img.shape(2)});
  const uint8_t* src = img.data();
  const float* k = taps.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::gaussian_blur(src, dst, img.shape(0), img.shape(1), img.shape(2), k, (taps.shape(0) - 1) / 2);
  }
  return out;
}

U8 resize_antialias_np(const U8& img, int64_t out_h, int64_t out_w) {
  check_planar(img, "img", false);
  if (out_h < 1 || out_w < 1 || out_h > img.shape(1) || out_w > img.shape(2)) {
    throw py::value_error("out_h, out_w: expected a down-scale, 1 <= out size <= the image size");
  }
  U8 out({img.shape(0), out_h, out_w});
  const uint8_t* src = img.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::resize_antialias(src, dst, img.shape(0), img.shape(1), img.shape(2), out_h, out_w);
  }
  return out;
}

U8 edge_enhance_np(const U8& img, bool more) {
  check_planar(img, "img", false);
  U8 out({img.shape(0), img.shape(1), img.shape(2)});
  const uint8_t* src = img.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    copynce::edge_enhance(src, dst, img.shape(0), img.shape(1), img.shape(2), more);
  }
  return out;
}

void composite_rgba_np(U8& img, const U8& rgba, int64_t top, int64_t left) {
  check_planar(img, "img", true);
  if (rgba.ndim() != 3 || rgba.shape(2) != 4) throw py::value_error("rgba: expected a uint8 patch [h,w,4]");
  const int64_t h = img.shape(1), w = img.shape(2), ph = rgba.shape(0), pw = rgba.shape(1);
  if (top < 0 || left < 0 || top + ph > h || left + pw > w) {
    throw py::value_error("top, left: the patch must lie inside the image");
  }
  uint8_t* dst = img.mutable_data();  // raises for a read-only array
  const uint8_t* p = rgba.data();
  {
    py::gil_scoped_release nogil;
    copynce::composite_rgba(dst, h, w, p, ph, pw, top, left);
  }
}

void def_photometric(py::module_& m) {
  m.def("colour_ops", &colour_ops_np,
        "colour_ops(img [3,H,W] uint8, maps [K,3,4] float32) -> [3,H,W] uint8: the K affine maps in order, each\n"
        "rounded half to even and clamped (csrc/photometric.h). C-contiguous arrays.",
        py::arg("img").noconvert(), py::arg("maps").noconvert());
  m.def("gaussian_blur", &gaussian_blur_np,
        "gaussian_blur(img [C,H,W] uint8, taps [2r+1] float32) -> [C,H,W] uint8: separable, reflect border\n"
        "(replicate on an axis not longer than r), rounded half to even. C-contiguous arrays.",
        py::arg("img").noconvert(), py::arg("taps").noconvert());
  m.def("resize_antialias", &resize_antialias_np,
        "resize_antialias(img [C,H,W] uint8, out_h, out_w) -> [C,out_h,out_w] uint8: antialiased bilinear\n"
        "down-scale (torch's antialias=True, align_corners=False), rounded half to even. C-contiguous.",
        py::arg("img").noconvert(), py::arg("out_h"), py::arg("out_w"));
  m.def("edge_enhance", &edge_enhance_np,
        "edge_enhance(img [C,H,W] uint8, more) -> [C,H,W] uint8: PIL's EDGE_ENHANCE(_MORE), replicate border.",
        py::arg("img").noconvert(), py::arg("more"));
  m.def("composite_rgba", &composite_rgba_np,
        "composite_rgba(img [3,H,W] uint8 (written), rgba [h,w,4] uint8, top, left): straight-alpha over, in place.",
        py::arg("img").noconvert(), py::arg("rgba").noconvert(), py::arg("top"), py::arg("left"));
}
// ---- end of photometric ops ----

// ---- view warps (csrc/warp.h), the fused twin of executor_torch._render_layers ----
// image / other: [C, H, W] uint8 of any strides (a torch tensor's .numpy(): an HWC buffer is read in place);
// matrices [3, 3] float64; tests [n, 3, 3] float64 with test_hw [n, 2] int64: the first num_copy are P, the next
// num_shared are Q, then the cover test C when there is an overlay.
using StridedU8 = py::array_t<uint8_t>;

copynce::WarpLayer warp_layer(const StridedU8& img, const CArray<double>& matrix, bool bilinear, const char* name) {
  if (img.ndim() != 3) throw py::value_error(std::string(name) + ": expected a [C, H, W] uint8 array");
  if (matrix.ndim() != 2 || matrix.shape(0) != 3 || matrix.shape(1) != 3) {
    throw py::value_error(std::string(name) + "_matrix: expected a [3, 3] float64 array");
  }
  copynce::WarpLayer layer;
  layer.data = img.data();
  layer.height = img.shape(1);
  layer.width = img.shape(2);
  layer.stride_c = img.strides(0);  // bytes = elements for uint8
  layer.stride_y = img.strides(1);
  layer.stride_x = img.strides(2);
  std::copy(matrix.data(), matrix.data() + 9, layer.matrix);
  layer.interp = bilinear ? copynce::WarpInterp::kBilinear : copynce::WarpInterp::kNearest;
  return layer;
}

CArray<uint8_t> render_view_np(int64_t out_h, int64_t out_w, const StridedU8& image, const CArray<double>& copy_matrix,
                               bool copy_bilinear, const std::optional<StridedU8>& other,
                               const std::optional<CArray<double>>& other_matrix, bool other_bilinear,
                               const CArray<double>& tests, const CArray<int64_t>& test_hw, int64_t num_copy,
                               int64_t num_shared, const std::vector<float>& weights) {
  copynce::WarpView view;
  view.out_h = out_h;
  view.out_w = out_w;
  view.copy = warp_layer(image, copy_matrix, copy_bilinear, "image");
  view.channels = image.shape(0);
  copynce::WarpLayer other_layer;
  const bool overlay = other.has_value();
  if (overlay) {
    if (!other_matrix) throw py::value_error("other_matrix: required with other");
    other_layer = warp_layer(*other, *other_matrix, other_bilinear, "other");
    if (other->shape(0) != view.channels) throw py::value_error("other: expected as many channels as image");
    view.other = &other_layer;
  }
  const int64_t n = tests.ndim() == 3 ? tests.shape(0) : -1;
  if (n < 0 || tests.shape(1) != 3 || tests.shape(2) != 3 || test_hw.ndim() != 2 || test_hw.shape(0) != n ||
      test_hw.shape(1) != 2) {
    throw py::value_error("tests: expected [n, 3, 3] float64 matrices and test_hw [n, 2] int64");
  }
  if (num_copy < 0 || num_shared < 0 || num_copy + num_shared + (overlay ? 1 : 0) != n) {
    throw py::value_error("tests: expected num_copy + num_shared tests, plus the cover test with an overlay");
  }
  if (weights.size() != 4) throw py::value_error("weights: expected (a, b, d, g)");
  std::vector<copynce::WarpTest> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    std::copy(tests.data() + 9 * i, tests.data() + 9 * (i + 1), all[i].matrix);
    all[i].height = test_hw.data()[2 * i];
    all[i].width = test_hw.data()[2 * i + 1];
  }
  view.copy_tests = all.data();
  view.num_copy_tests = num_copy;
  view.shared_tests = all.data() + num_copy;
  view.num_shared_tests = num_shared;
  view.cover = overlay ? all.data() + num_copy + num_shared : nullptr;
  std::copy(weights.begin(), weights.end(), view.weights);
  if (out_h <= 0 || out_w <= 0) throw py::value_error("out_hw: expected positive sizes");
  CArray<uint8_t> out({view.channels, out_h, out_w});
  uint8_t* out_ptr = out.mutable_data();
  try {
    py::gil_scoped_release nogil;
    copynce::render_view(view, out_ptr);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return out;
}

void def_warp(py::module_& m) {
  m.def("render_view", &render_view_np,
        "render_view(out_h, out_w, image [C,H,W] uint8, copy_matrix [3,3] float64, copy_bilinear, other, other_matrix,\n"
        "other_bilinear, tests [n,3,3] float64, test_hw [n,2] int64, num_copy, num_shared, weights (a, b, d, g))\n"
        "-> [C, out_h, out_w] uint8: one view's layered warp, canvas tests and blend (csrc/warp.h). Any strides.",
        py::arg("out_h"), py::arg("out_w"), py::arg("image").noconvert(), py::arg("copy_matrix").noconvert(),
        py::arg("copy_bilinear"), py::arg("other").noconvert().none(true),
        py::arg("other_matrix").noconvert().none(true), py::arg("other_bilinear"),
        py::arg("tests").noconvert(), py::arg("test_hw").noconvert(), py::arg("num_copy"), py::arg("num_shared"),
        py::arg("weights"));
}
// ---- end of view warps ----

// ---- antialiased uint8 resize (csrc/resize.h), the twin of F.interpolate(bilinear, antialias=True) on uint8 ----
// image: [C, H, W] uint8 of any non-negative strides (an HWC buffer's .numpy() view is read in place). Returns
// [C, out_h, out_w]: a view of a new [out_h, out_w, C] array when channels_last (torch's layout for a channels-last
// input), else a C-contiguous array.
py::array resize_bilinear_aa_np(const StridedU8& image, int64_t top, int64_t left, int64_t height, int64_t width,
                                int64_t out_h, int64_t out_w, bool channels_last, bool simd) {
  if (image.ndim() != 3) throw py::value_error("image: expected a [C, H, W] uint8 array");
  copynce::ResizeImage src;
  src.data = image.data();
  src.channels = image.shape(0);
  src.height = image.shape(1);
  src.width = image.shape(2);
  src.stride_c = image.strides(0);  // bytes = elements for uint8
  src.stride_y = image.strides(1);
  src.stride_x = image.strides(2);
  if (src.stride_c < 0 || src.stride_y < 0 || src.stride_x < 0) {
    throw py::value_error("image: expected non-negative strides");
  }
  if (src.channels < 1 || src.channels > 4 || src.height < 1 || src.width < 1) {
    throw py::value_error("image: expected 1 to 4 channels and a non-empty image");
  }
  src.extent = 1 + (src.channels - 1) * src.stride_c + (src.height - 1) * src.stride_y + (src.width - 1) * src.stride_x;
  if (out_h < 1 || out_w < 1) throw py::value_error("out_hw: expected positive sizes");
  if (height < 1 || width < 1 || top < 0 || left < 0 || top + height > src.height || left + width > src.width) {
    throw py::value_error("box: expected a non-empty box inside the image");
  }
  const int64_t c = src.channels;
  CArray<uint8_t> out = channels_last ? CArray<uint8_t>({out_h, out_w, c}) : CArray<uint8_t>({c, out_h, out_w});
  uint8_t* dst = out.mutable_data();
  try {
    py::gil_scoped_release nogil;
    copynce::resize_bilinear_aa_u8(src, top, left, height, width, out_h, out_w, dst, channels_last, simd);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  if (!channels_last) return std::move(out);
  return out.attr("transpose")(2, 0, 1).cast<py::array>();
}

void def_resize(py::module_& m) {
  m.def("resize_bilinear_aa", &resize_bilinear_aa_np,
        "resize_bilinear_aa(image [C,H,W] uint8 any strides, top, left, height, width, out_h, out_w,\n"
        "channels_last=True, simd=True) -> [C, out_h, out_w] uint8: the box resized exactly as torch's\n"
        "F.interpolate(mode='bilinear', antialias=True, align_corners=False) on uint8 (csrc/resize.h); C in 1..4.\n"
        "channels_last: the result is a view of an [out_h, out_w, C] array; simd=False: the scalar path.",
        py::arg("image").noconvert(), py::arg("top"), py::arg("left"), py::arg("height"), py::arg("width"),
        py::arg("out_h"), py::arg("out_w"), py::arg("channels_last") = true, py::arg("simd") = true);
  m.def("resize_has_avx2", &copynce::resize_has_avx2, "True when resize_bilinear_aa's AVX2 path runs here.");
}
// ---- end of antialiased uint8 resize ----

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "copynce-fast C++ helpers (CPU, deterministic)";

  // Dense maps (csrc/dense_maps.h): one overload per accepted dtype.
  def_invert<float>(m);
  def_invert<double>(m);
  def_invert<int64_t>(m);
  def_compose_all_b<float>(m);
  def_compose_all_b<double>(m);
  def_compose_all_b<int64_t>(m);

  // Patch overlap counts from geometry (csrc/overlap.h).
  def_overlap<float>(m);
  def_overlap<double>(m);

  // Photometric ops of the torch executor (csrc/photometric.h).
  def_photometric(m);

  // View warps of the torch executor (csrc/warp.h).
  def_warp(m);

  // Antialiased uint8 resize of the executors' box and pre-shrink layers (csrc/resize.h).
  def_resize(m);
}
