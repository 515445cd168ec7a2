// The kernels' thread team: one parallel region per kernel call, split over
// batch rows (recurrence) or matrix rows (projections, weight gradients).
//
// The team's threads meet at barriers of their own (TeamBarrier), not OpenMP's. On a machine whose other
// cores have gone idle, the scheduler often puts the sleeping OpenMP thread a kernel call wakes on the
// caller's own core; a waiter that only spins there (as OpenMP's barriers do, for milliseconds) keeps the
// thread it waits for off the core. Measured on a 2-core virtual machine, an LSTM step at H = 512 and
// batch 1 called every 100 ms took 11.7 ms (median) with OpenMP's barriers, 0.7 ms with these and the
// move below. So a waiter yields its core to a thread that has not started yet, a woken thread that
// finds itself on the caller's core moves to another core the process may use, and the team meets once
// more at the end of each region, before OpenMP's own (spinning) join.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "rnnkit/shapes.hpp"
#include "rnnkit/tuning.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
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
// The most threads a call may use: a thread of the team costs a stack and a core to spin on, and OpenMP
// runtimes fail to start thousands (GNU OpenMP ends the process).
constexpr int max_threads = 256;
inline int get_num_threads() { return thread_setting().load(); }

inline void start_threads(int n);  // below parallel()
inline void set_num_threads(int n) {
  thread_setting().store(std::clamp(n, 1, max_threads));
  start_threads(thread_setting().load());
}

inline bool have_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

namespace detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The core the calling thread runs on, or -1 where that is not known.
inline int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// The cores this process may use (counted once).
inline int available_cpus() {
  static const int n = [] {
#if defined(__linux__)
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) return std::max(1, CPU_COUNT(&allowed));
#endif
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return n;
}

// The threads of every parallel() team running in this process now.
inline std::atomic<int>& active_threads() {
  static std::atomic<int> n{0};
  return n;
}

// The barrier of one parallel() team: the last thread to arrive opens the next phase. A waiter spins
// (like OpenMP's), and after a short spin (tuning::barrier_spins, about 10 us) yields its core between checks
// only when the thread it may be waiting for cannot run elsewhere: one that has not started yet (woken onto
// this core, see the top of the file), one last seen on this core, or any when the teams have more threads
// than the process has cores. A waiter whose team runs on cores of its own never yields: on a core shared
// with another busy process a yield hands that process a whole time slice.
class TeamBarrier {
 public:
  explicit TeamBarrier(int nt) : cores_(static_cast<size_t>(nt)) {}

  // thread tid is running (on the core it reports)
  void started(int tid) { cores_[tid].value.store(current_cpu(), std::memory_order_relaxed); }

  void wait(int tid, int n) {
    const int core = current_cpu();
    cores_[tid].value.store(core, std::memory_order_relaxed);
    const unsigned phase = phase_.load(std::memory_order_acquire);
    if (aborted()) throw Aborted{};
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      count_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);
      return;
    }
    for (unsigned i = 1; phase_.load(std::memory_order_acquire) == phase; ++i) {
      if (aborted()) throw Aborted{};
      if (i >= tuning::barrier_spins && i % tuning::barrier_yield_every == 0 && should_yield(tid, core, n))
        std::this_thread::yield();
      else
        cpu_relax();
    }
  }

  // A thread of the team failed (threw): it will reach no more barriers, so every other thread leaves at
  // its next one (wait throws Aborted) and the team ends. The first failure is kept for the caller.
  struct Aborted {};
  void abort(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::move(e);
    }
    aborted_.store(true, std::memory_order_release);
  }
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  std::exception_ptr error() const { return error_; }

 private:
  static constexpr int not_started = -2;

  bool should_yield(int tid, int core, int n) const {
    if (active_threads().load(std::memory_order_relaxed) > available_cpus()) return true;
    for (int k = 0; k < n; ++k) {
      const int c = cores_[k].value.load(std::memory_order_relaxed);
      if (k != tid && (c == not_started || (c >= 0 && c == core))) return true;
    }
    return false;
  }

  struct alignas(64) Core {
    std::atomic<int> value{not_started};
  };
  std::vector<Core> cores_;                 // where each thread last reported from
  alignas(64) std::atomic<int> count_{0};  // count_ and phase_ on lines of their own: waiters read phase_ in a loop
  alignas(64) std::atomic<unsigned> phase_{0};
  alignas(64) std::atomic<bool> aborted_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// The team this thread belongs to while it runs a parallel() body, and its number in it.
struct TeamSeat {
  TeamBarrier* team = nullptr;
  int tid = 0;
};
inline TeamSeat& current_seat() {
  static thread_local TeamSeat seat;
  return seat;
}

// Moves the calling thread off core `cpu` to another core it may use, then allows it every core it had.
inline void leave_cpu(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || sched_getcpu() != cpu) return;
  cpu_set_t allowed, others;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) return;
  others = allowed;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof(others), &others) == 0)
    sched_setaffinity(0, sizeof(allowed), &allowed);
#else
  (void)cpu;
#endif
}

}  // namespace detail

// Runs body(tid, nt) on nt threads; serially (tid 0 of 1) when nt == 1 or without OpenMP. An exception
// thrown by any thread's body (std::bad_alloc from a buffer of its own, say) ends the team at its next
// barrier and is rethrown to the caller here, never left to escape the parallel region (which would end
// the process).
namespace detail {
// For tests of the failure path: the thread of this number in the next team of at least two threads
// throws std::bad_alloc before its body runs (-1: none).
inline std::atomic<int>& fail_in_next_team() {
  static std::atomic<int> tid{-1};
  return tid;
}
}  // namespace detail

template <class F>
inline void parallel(int nt, F&& body) {
#ifdef _OPENMP
  if (nt > 1) {
    detail::TeamBarrier team(nt);
    const int caller_cpu = detail::current_cpu();
    detail::active_threads() += nt;
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num(), n = omp_get_num_threads();
      const detail::TeamSeat outer = detail::current_seat();
      try {
        if (tid > 0) detail::leave_cpu(caller_cpu);
        team.started(tid);
        detail::current_seat() = {&team, tid};
        int fail = tid;
        if (detail::fail_in_next_team().load(std::memory_order_relaxed) == tid &&
            detail::fail_in_next_team().compare_exchange_strong(fail, -1))
          throw std::bad_alloc();
        body(tid, n);
        if (n > 1) team.wait(tid, n);
      } catch (const detail::TeamBarrier::Aborted&) {
        // another thread failed; its exception is the one the caller gets
      } catch (...) {
        team.abort(std::current_exception());
      }
      detail::current_seat() = outer;
    }
    detail::active_threads() -= nt;
    if (team.aborted()) std::rethrow_exception(team.error());
    return;
  }
#endif
  body(0, 1);
}

// Has the OpenMP runtime create the threads of a team of n now, and each of them its thread-local seat (the
// runtime keeps its threads for later teams), so that a kernel call on this thread does not have to: GNU OpenMP
// ends the process when it cannot create a thread, and the C library when it cannot allocate a thread's
// thread-local data, say under an address-space limit that the call's own buffers brought close.
inline void start_threads(int n) {
  parallel(n, [](int, int) {});
}

// Called by every thread of the team that parallel() started.
inline void barrier(int nt) {
  if (nt > 1) detail::current_seat().team->wait(detail::current_seat().tid, nt);
}

// Whether small calls still use every thread (for tests of the multi-threaded paths on small problems).
inline std::atomic<bool>& split_small_calls() {
  static std::atomic<bool> split{false};
  return split;
}

// How threads share a step of the recurrence (split_rows in buffers.hpp): chosen by the problem's size (0),
// always splitting the hidden units (1) or always the batch rows (2). For tests of both paths.
inline std::atomic<int>& step_split() {
  static std::atomic<int> mode{0};
  return mode;
}

// The threads worth starting for `flops` of work: small calls run on the calling thread
// (tuning::min_flops_per_thread).
inline int threads_for(double flops, int requested) {
  if (split_small_calls()) return std::max(1, requested);
  return static_cast<int>(std::max(1.0, std::min<double>(requested, flops / tuning::min_flops_per_thread)));
}

// Thread tid's share [begin, end) of n items.
inline std::pair<Index, Index> share(Index n, int tid, int nt) {
  return {n * tid / nt, n * (tid + 1) / nt};
}

// f(begin, end) for thread tid's blocks of n rows of a matrix product, inside a parallel() body. A product
// rounds a row differently depending on where in the call it falls (Eigen's kernels take a call's last rows
// apart), so the rows are cut at the same places whatever the thread count: at most
// tuning::max_product_blocks blocks of at least `min_rows`, each its own call, and each thread takes whole
// blocks. Results are then the same to the bit on any number of threads.
template <class F>
inline void for_row_blocks(Index n, Index min_rows, int tid, int nt, F&& f) {
  constexpr Index max_blocks = tuning::max_product_blocks;
  const Index size = std::max<Index>({Index(1), min_rows, (n + max_blocks - 1) / max_blocks});
  const auto [b0, b1] = share((n + size - 1) / size, tid, nt);
  for (Index b = b0; b < b1; ++b) f(b * size, std::min(n, (b + 1) * size));
}

}  // namespace rnnkit
