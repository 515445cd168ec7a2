// The kernels' thread team: one parallel region per kernel call, split over
// batch rows (recurrence) or matrix rows (projections, weight gradients).
#pragma once

#include <algorithm>
#include <atomic>
#include <utility>

#include "rnnkit/shapes.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnnkit {

inline std::atomic<int>& thread_setting() {
#ifdef _OPENMP
  static std::atomic<int> n{std::max(1, omp_get_max_threads())};
#else
  static std::atomic<int> n{1};
#endif
  return n;
}
inline int get_num_threads() { return thread_setting().load(); }
inline void set_num_threads(int n) { thread_setting().store(std::max(1, n)); }

inline bool have_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

// Runs body(tid, nt) on nt threads; serially (tid 0 of 1) when nt == 1 or without OpenMP.
template <class F>
inline void parallel(int nt, F&& body) {
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

// Called by every thread of the team that parallel() started.
inline void barrier(int nt) {
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp barrier
  }
#else
  (void)nt;
#endif
}

// Whether small calls still use every thread (for tests of the multi-threaded paths on small problems).
inline std::atomic<bool>& split_small_calls() {
  static std::atomic<bool> split{false};
  return split;
}

// How threads share a step of the recurrence (sequence.hpp): chosen by the problem's size (0), always
// splitting the hidden units (1) or always the batch rows (2). For tests of both paths.
inline std::atomic<int>& step_split() {
  static std::atomic<int> mode{0};
  return mode;
}

// The threads worth starting for `flops` of work: a parallel region costs microseconds
// (far more when the machine is busy), so small calls run on the calling thread.
inline int threads_for(double flops, int requested) {
  constexpr double min_flops_per_thread = 4e6;
  if (split_small_calls()) return std::max(1, requested);
  return static_cast<int>(std::max(1.0, std::min<double>(requested, flops / min_flops_per_thread)));
}

// Thread tid's share [begin, end) of n items.
inline std::pair<Index, Index> share(Index n, int tid, int nt) {
  return {n * tid / nt, n * (tid + 1) / nt};
}

}  // namespace rnnkit
