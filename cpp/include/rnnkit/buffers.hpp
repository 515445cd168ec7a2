// The layout of one call of the time loop (sequence.hpp): where its data lives and which thread computes
// which part of it. The caller's buffers (ForwardBuffers, BackwardBuffers); the choices that shape a call
// (pack_threshold, fuse_projection, split_rows, step_threads; their thresholds are in tuning.hpp); the batch
// rows in the order a step runs them (RowOrder); one thread's slice of a step's weights (RecurrentSlice); and
// the helpers for sequences of their own lengths that jordan.hpp shares.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <vector>

#include "rnnkit/packed.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit {

// Buffers of one forward call, all owned by the caller. Without `inference` the call keeps a cache for
// backward: h_prev, h_rec, aux and gates hold every step. With it h_prev, h_rec and aux are null (the loop
// keeps the state of one pass of rows); gates either holds every step's input projection, computed at once,
// or is null: then each thread projects each step's input for its own units just before the step, so the
// gates never leave its cache (worth it while a thread's share of W_ih and W_hh fits in its L2, see fuse_projection).
template <class S>
struct ForwardBuffers {
  const S* x;              // [T, N, C]
  const S* h0;             // [N, H] or nullptr (zeros)
  const S* c0;             // [N, H] or nullptr (zeros); cells with a cell state
  const int64_t* lengths;  // [N] or nullptr (all T); values in [0, T]
  const S* recurrent_mask; // [N, H] or nullptr: h_rec = h_prev * mask feeds W_hh (recurrent dropout)
  bool reverse;
  S* y;       // [T, N, H] out
  S* h_n;     // [N, H] out
  S* c_n;     // [N, H] out; cells with a cell state
  S* h_prev;  // [T, N, H] cache: the state entering step t (null in inference)
  S* h_rec;   // [T, N, H] cache: h_prev * recurrent_mask; only with a recurrent_mask (null in inference)
  S* aux;     // [T, N, H] cache: the cell's own record; cells with has_aux() (null in inference)
  S* gates;   // [T, N, G*H] cache: activated gates (a working buffer for cells whose gates are the state)
  S* m;       // [T, N, H] cache: the output before its projection (only with W_hr; null in inference)
  bool inference = false;
};

// Buffers of one backward call, all owned by the caller.
template <class S>
struct BackwardBuffers {
  const S* x;  // [T, N, C]      the forward's inputs and cache
  const S* recurrent_mask;  // [N, H] or nullptr
  const S* h_prev;
  const S* h_rec;           // [T, N, H]; only with a recurrent_mask
  const S* aux;
  const S* gates;           // or nullptr for cells whose gates are the state: read from h_prev and h_last
  const S* h_last;          // [N, H] the state after the last step; only without gates
  const int64_t* lengths;
  bool reverse;
  const S* dy;    // [T, N, H]
  const S* dh_n;  // [N, H] or nullptr (zero)
  const S* dc_n;  // [N, H] or nullptr (zero)
  S* dx;          // [T, N, C] out
  S* dh0;         // [N, H] out
  S* dc0;         // [N, H] out; cells with a cell state
  S* dW_ih;       // [G*H, C] out
  S* dW_hh;       // [G*H, H] out
  S* db_ih;       // [G*H] out
  S* db_hh;       // [G*H] out
  S* dparams;     // [K*H] out: the gradients of the cell's own parameters
  S* dgates;      // [T, N, G*H] workspace: gradient of the gate pre-activations
  S* dextra;      // [T, N, H] workspace for cells with has_dextra()
  const S* m;     // [T, N, H] the forward's output before its projection (only with W_hr)
  S* dW_hr;       // [P, H] out (only with W_hr)
  S* dproj;       // [T, N, P] workspace: the gradient reaching each step's h_t (only with W_hr)
};

// ---- the choices that shape a call

// Calls with at least this many T*N rows pack W_hh once; shorter ones (a streaming step)
// read it in place (tuning::pack_min_rows). Settable for tests, which cover both paths.
inline std::atomic<Index>& pack_threshold() {
  static std::atomic<Index> rows{tuning::pack_min_rows};
  return rows;
}

// Whether inference projects each step's input inside the time loop: while the step's weights (W_ih and
// W_hh) are small enough (tuning::fuse_projection_bytes).
template <class S>
inline bool fuse_projection(Index G, Index H, Index C) {
  return static_cast<double>(G) * H * (C + H) * sizeof(S) <= tuning::fuse_projection_bytes;
}

// Whether the threads split the batch rows instead of the hidden units: each thread then runs the whole
// recurrence of its own rows, with no barrier per step, at the price of reading every weight of the step
// (W_hh, and W_ih when each step projects its input) instead of its share. Worth it while those weights
// stay in a thread's L2 (tuning::split_rows_bytes) and every thread has rows of its own.
template <class S>
inline bool split_rows(Index N, Index G, Index H, Index C_step, int threads) {
  if (threads < 2 || N < threads) return false;
  if (step_split().load() != 0) return step_split().load() == 2;
  return static_cast<double>(G) * H * (H + C_step) * sizeof(S) <= tuning::split_rows_bytes;
}

// The threads a step's W_hh product is worth splitting over (each step ends in a barrier: see
// tuning::min_step_flops_per_thread). At most one thread per hidden unit.
inline int step_threads(Index N, Index GH, Index H) {
  const double per_step = 2.0 * static_cast<double>(N) * GH * H;
  const Index worth = split_small_calls() ? H : static_cast<Index>(per_step / tuning::min_step_flops_per_thread);
  return static_cast<int>(std::max<Index>(1, std::min<Index>(H, worth)));
}

// ---- rows and weights as a step reads them

// Batch rows in the order a step runs them: longest sequence first (stable), so the rows
// still inside their sequences at time t are the first active[t].
struct RowOrder {
  std::vector<Index> rows;
  std::vector<Index> active;

  RowOrder(const int64_t* lengths, Index N, Index T) : rows(static_cast<size_t>(N)), active(static_cast<size_t>(T), N) {
    std::iota(rows.begin(), rows.end(), Index(0));
    if (!lengths) return;
    std::stable_sort(rows.begin(), rows.end(), [&](Index a, Index b) { return lengths[a] > lengths[b]; });
    for (Index t = 0; t < T; ++t) {
      Index m = 0;
      while (m < N && lengths[rows[m]] > t) ++m;
      active[t] = m;
    }
  }
  // Every nt-th row from position tid on (still longest first): thread tid's part when threads split
  // the rows, dealt out in turn so that each gets as many long sequences as short ones.
  RowOrder(const RowOrder& all, int tid, int nt) : active(all.active.size()) {
    for (size_t i = static_cast<size_t>(tid); i < all.rows.size(); i += static_cast<size_t>(nt)) rows.push_back(all.rows[i]);
    for (size_t t = 0; t < active.size(); ++t) active[t] = std::max<Index>(0, all.active[t] - tid + nt - 1) / nt;
  }
};

// One thread's columns of W_hh for the step products, packed once per call or read in place.
//   forward:  rec[r, k*gs + u] = sum_i A(r, i) W_hh(k*H + j0 + u, i)        (A = h_rec or the cell's aux)
//   backward: rec[r, u] (+)= sum_{k, i} A(r, k*H + i) W_hh(k*H + i, j0 + u)   (A = the gate gradients)
//   (forward also serves W_ih [G*H, C] for inference, which projects each step's input the same way, and
//   backward serves it for dx = dG W_ih: K = C, the row length of W)
// Forward gates lie gs = w apart ("compact": G*w columns padded once to whole panels) when the cell
// always asks for the products of every gate at once; else each gate is padded to whole panels
// (gs = w rounded up), so that any range of gates is a range of panels. An LSTM at H = 50 computes 224
// columns compact, 256 padded.
template <class S>
class RecurrentSlice {
 public:
  RecurrentSlice(const S* W, int G, Index H, Index j0, Index w, bool packed, bool backward, Index K = -1,
                 bool compact = false)
      : W_(W), G_(G), H_(H), K_(K < 0 ? H : K), j0_(j0), w_(w), ws_(round_up(w, PackTraits<S>::NR)),
        gs_(compact ? w : ws_), ld_(round_up(G * gs_, PackTraits<S>::NR)), packed_(packed) {
    if (!packed) return;
    if (backward)
      B_.pack_rows(G * H, ws_, w, [&](Index k) { return W + k * K_ + j0; });
    else
      B_.pack_columns(K_, ld_, [&](Index c) {
        const Index g = c / gs_, u = c % gs_;
        return g < G && u < w ? W + (g * H + j0 + u) * K_ : nullptr;
      });
  }
  Index ws() const { return ws_; }
  // forward: where gate k's products start in a row of rec, and how long the row is
  Index gate_stride() const { return gs_; }
  Index row_length() const { return ld_; }

  // rec[r, g0*gs : g1*gs) (+)= the products with rows a[r] of K values. Compact slices take all gates at once.
  void forward(Index m, const S* const* a, int g0, int g1, S* rec, Index ld, bool accumulate = false) const {
    if (packed_) return packed_product(m, a, B_, 0, K_, g0 * gs_, g1 == G_ ? ld_ : g1 * gs_, rec, ld, accumulate);
    const bool contiguous = w_ == H_ && gs_ == H_ && g1 - g0 > 1;  // all units of these gates: one run of W and rec
    for (Index r = 0; r < m; ++r)
      if (contiguous)
        detail::dot_rows(a[r], W_ + g0 * H_ * K_, K_, (g1 - g0) * H_, K_, rec + r * ld + g0 * gs_, accumulate);
      else
        for (int g = g0; g < g1; ++g)
          detail::dot_rows(a[r], W_ + (g * H_ + j0_) * K_, K_, w_, K_, rec + r * ld + g * gs_, accumulate);
  }
  // rec[r, 0 : ws) (+)= rows a[r] (starting at gate k0) over gates [k0, k1).
  void backward(Index m, const S* const* a, int k0, int k1, S* rec, Index ld, bool accumulate) const {
    if (packed_) return packed_product(m, a, B_, k0 * H_, k1 * H_, 0, ws_, rec, ld, accumulate);
    for (Index r = 0; r < m; ++r)
      detail::axpy_rows(a[r], W_ + k0 * H_ * K_ + j0_, K_, w_, (k1 - k0) * H_, rec + r * ld, accumulate);
  }

 private:
  const S* W_;
  int G_;
  Index H_, K_, j0_, w_, ws_, gs_, ld_;
  bool packed_;
  PackedB<S> B_;
};

// ---- sequences of their own lengths

namespace detail {

inline Index min_length(const int64_t* lengths, Index r0, Index r1, Index T) {
  Index m = T;
  if (lengths)
    for (Index r = r0; r < r1; ++r) m = std::min<Index>(m, lengths[r]);
  return m;
}
inline bool valid(const int64_t* lengths, Index n, Index t) { return !lengths || t < lengths[n]; }

// out [1, cols] = the sum of the rows of a, added in row order: the same bits whatever the buffers'
// alignment (Eigen's colwise().sum() sums aligned packets pairwise and peeled columns in order).
template <class A, class Out>
inline void sum_rows(const A& a, Out out) {
  out.setZero();
  for (Index r = 0; r < a.rows(); ++r) out += a.row(r);
}

// x [T, N, C] with the padded steps (t >= lengths[n]) read as zeros, in `own` if any of them is not
// finite (padding never enters the computation, but a weight gradient summing 0 * x over every row would
// turn it into NaN); else x itself.
template <class S>
inline const S* finite_padding(const S* x, const int64_t* lengths, Index T, Index N, Index C, std::vector<S>& own) {
  if (!lengths) return x;
  bool finite = true;
  for (Index n = 0; n < N && finite; ++n)
    for (Index t = lengths[n]; t < T && finite; ++t) finite = view(x + (t * N + n) * C, 1, C).allFinite();
  if (finite) return x;
  own.assign(x, x + T * N * C);
  for (Index n = 0; n < N; ++n)
    for (Index t = lengths[n]; t < T; ++t) std::fill_n(own.data() + (t * N + n) * C, C, S(0));
  return own.data();
}

template <class S>
inline void copy_or_zero(S* dst, const S* src, Index rows, Index cols) {
  auto d = view(dst, rows, cols);
  if (src)
    d = view(src, rows, cols);
  else
    d.setZero();
}

}  // namespace detail

}  // namespace rnnkit
