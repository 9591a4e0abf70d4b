// PYBIND11_MODULE(_C): m.def lines, plus the thin numpy <-> pointer glue they need. The helpers live in their own
// files and know nothing about Python.
//
// Arguments are taken with .noconvert(): an array must already be C-contiguous and of an accepted dtype (float32,
// float64 or int64), otherwise pybind11 raises TypeError instead of silently casting. copynce_fast.pixtrace.dense
// normalises dtypes and layout before calling in here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dense_maps.h"

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

constexpr const char* kInvertDoc =
    "invert_dense(maps [B,2,H,W] float32|float64|int64 C-contiguous, out_h, out_w, num_threads=1)\n"
    "-> (inv [B,2,out_h,out_w] int64, holes [B] int64). Last valid raster writer wins; -1 = hole.";
constexpr const char* kComposeDoc =
    "compose_dense(a [B,2,H,W], b [B,2,H2,W2], num_threads=1) -> [B,2,H,W] int64: b[round(a(p))] where a(p) is\n"
    "inside [0,H2)x[0,W2) before and after rounding, else -1. Dtypes float32|float64|int64, C-contiguous.";

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
}
