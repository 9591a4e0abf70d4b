// PYBIND11_MODULE(_C): m.def lines only. The helpers live in their own files.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "copynce-fast C++ helpers (CPU, deterministic)";
}
