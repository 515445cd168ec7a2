// The only module definition. Built once per instruction set as rnnkit._core
// (baseline), rnnkit._core_avx2 and rnnkit._core_avx512; RNNKIT_MODULE_NAME names it.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <iterator>

#include <Eigen/Core>
#include <string>

#include "bindings/bind_common.hpp"
#include "rnnkit/buffers.hpp"
#include "rnnkit/threads.hpp"

namespace py = pybind11;

namespace rnnkit::bind {
void bind_rnn(py::module_& m);
void bind_lstm(py::module_& m);
void bind_gru(py::module_& m);
void bind_rbm(py::module_& m);
void bind_jordan(py::module_& m);
}  // namespace rnnkit::bind

// Whether this CPU can run the kernels built for `isa`.
static bool cpu_supports(const std::string& isa) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && cpu_supports("avx2");
#endif
  return isa == "baseline";
}

PYBIND11_MODULE(RNNKIT_MODULE_NAME, m) {
  m.doc() = "rnnkit compiled kernels: forward and backpropagation through time over whole sequences";
  rnnkit::bind::bind_rnn(m);
  rnnkit::bind::bind_lstm(m);
  rnnkit::bind::bind_gru(m);
  rnnkit::bind::bind_rbm(m);
  rnnkit::bind::bind_jordan(m);

  rnnkit::start_threads(rnnkit::get_num_threads());  // the team's threads exist before the first call
  m.def("get_num_threads", &rnnkit::get_num_threads, "Threads the kernels use.");
  m.def(
      "release_memory",
      []() {
        rnnkit::bind::BlockPool::instance().clear();
        rnnkit::bind::Scratch<float>::release();
        rnnkit::bind::Scratch<double>::release();
      },
      "Frees the memory kept between calls: the blocks of freed result arrays (at most 256 MiB) and the "
      "calling thread's working buffers (at most 64 MiB per dtype).");
  m.def(
      "set_num_threads",
      [](long long n) {
        if (n < 1 || n > rnnkit::max_threads)
          throw py::value_error("n: expected a thread count in [1, " + std::to_string(rnnkit::max_threads) +
                                "], got " + std::to_string(n));
        rnnkit::set_num_threads(static_cast<int>(n));
      },
      py::arg("n"), "Set the threads the kernels use.");
  m.attr("MAX_THREADS") = rnnkit::max_threads;
  m.def(
      "_pack_threshold",
      [](py::object rows) {
        const auto previous = rnnkit::pack_threshold().load();
        if (!rows.is_none()) rnnkit::pack_threshold().store(std::max<rnnkit::Index>(0, py::cast<rnnkit::Index>(rows)));
        return previous;
      },
      py::arg("rows") = py::none(),
      "Calls with at least this many T*N rows pack W_hh once per call (for tests: both paths). Returns the "
      "previous value; None only reads it.");
  m.def(
      "_fail_in_next_team",
      [](int tid) { rnnkit::detail::fail_in_next_team().store(tid); },
      py::arg("tid"),
      "For tests: thread `tid` of the next team of two or more threads fails with std::bad_alloc (-1: none).");
  m.def(
      "_split_small_calls",
      [](py::object flag) {
        const bool previous = rnnkit::split_small_calls().load();
        if (!flag.is_none()) rnnkit::split_small_calls().store(py::cast<bool>(flag));
        return previous;
      },
      py::arg("flag") = py::none(),
      "Whether calls too small to repay threads use them anyway (for tests of the multi-threaded paths). "
      "Returns the previous value; None only reads it.");
  m.def(
      "_step_split",
      [](py::object mode) {
        static const char* names[] = {"auto", "units", "rows"};
        const int previous = rnnkit::step_split().load();
        if (!mode.is_none()) {
          const auto m = py::cast<std::string>(mode);
          const auto it = std::find(std::begin(names), std::end(names), m);
          if (it == std::end(names))
            throw py::value_error("mode: expected 'auto', 'units' or 'rows', got '" + m + "'");
          rnnkit::step_split().store(static_cast<int>(it - std::begin(names)));
        }
        return std::string(names[previous]);
      },
      py::arg("mode") = py::none(),
      "How threads share a step of the recurrence: 'auto' (by the problem's size), 'units' (hidden units) or "
      "'rows' (batch rows), for tests of both paths. Returns the previous mode; None only reads it.");
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
    d["isa"] = RNNKIT_ISA;
    return d;
  });
  m.def("cpu_supports", &cpu_supports, py::arg("isa"),
        "Whether this CPU can run kernels built for isa ('baseline', 'avx2', 'avx512').");
}
