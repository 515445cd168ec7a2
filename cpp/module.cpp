// The only module definition: rnnkit._core.
#include <pybind11/pybind11.h>

#include <Eigen/Core>
#include <string>

#include "rnnkit/threads.hpp"

namespace py = pybind11;

namespace rnnkit::bind {
void bind_rnn(py::module_& m);
void bind_lstm(py::module_& m);
void bind_gru(py::module_& m);
}  // namespace rnnkit::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnkit compiled kernels: forward and backpropagation through time over whole sequences";
  rnnkit::bind::bind_rnn(m);
  rnnkit::bind::bind_lstm(m);
  rnnkit::bind::bind_gru(m);

  m.def("get_num_threads", &rnnkit::get_num_threads, "Threads the kernels use.");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("n: expected a thread count >= 1, got " + std::to_string(n));
        rnnkit::set_num_threads(n);
      },
      py::arg("n"), "Set the threads the kernels use.");
  m.def("build_info", []() {
    py::dict d;
    d["compiler"] = RNNKIT_COMPILER;
    d["build_type"] = RNNKIT_BUILD_TYPE;
    d["flags"] = RNNKIT_CXX_FLAGS;
    d["openmp"] = rnnkit::have_openmp();
    d["num_threads"] = rnnkit::get_num_threads();
    d["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                 std::to_string(EIGEN_MINOR_VERSION);
    d["simd"] = std::string(Eigen::SimdInstructionSetsInUse());
    return d;
  });
}
