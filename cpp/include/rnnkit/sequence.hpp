// The time loop shared by every cell: forward and backpropagation through time
// over whole sequences, with per-sequence lengths and direction.
//
// A cell (rnn.hpp, lstm.hpp, gru.hpp) supplies only what one step computes:
//   G, has_c, has_aux(), has_dextra()      its sizes and what it records
//   whole_products()                       whether forward_step asks for every gate's W_hh product at once
//   input_bias(b_ih, b_hh, out)            the bias folded into the input projection
//   has_direct                             whether h_prev also reaches h_t outside W_hh (GRU)
//   gates_are_state                        whether the activated gates are h_t itself (RNN): the cache
//                                          then keeps no gates, backward reads the next step's h_prev
//   forward_step(step), backward_step(step)   one step, written with the loop's three primitives:
//       step.product(...)   the W_hh products of this thread's hidden units, into step-local `rec`
//       step.rows(f)        f(row) for every batch row still inside its sequence (RowF / RowB)
//       step.sync()         wait for the other threads (their units' results are needed)
//   hh_grad(k, ...)                        where gate block k of dW_hh / db_hh reads from
//   n_params()                             how many vectors of H parameters of its own it has beyond W_ih, W_hh,
//                                          b_ih, b_hh (LSTM peepholes: 3), read by its steps at row.params; their
//                                          gradients are summed over the steps by backward_step into row.dparams
// A cell's options (activations, clip, GRU's reset point) are its own members, set by its binding.
// Everything else (projections, masking, threads, weight gradients) lives here, the output projection of an LSTM
// with proj_size included: the cell writes m_t = o * h(c_t) [N, H] where it would write h_t, and the loop makes
// h_t = m_t W_hr^T [N, P] (each thread its share of the P state units) and, in backward, dm_t = dh_t W_hr.
//
// Design for speed: the input projection of all steps is one matrix product before the
// loop (inference with small weights projects each step inside it instead, see ForwardBuffers) and
// the weight gradients are matrix products after it (the bias gradients are summed inside it, while each
// step's gradients are still in cache). Inside the loop, threads
// split the hidden units: each packs its own columns of W_hh once (packed.hpp) and keeps
// them in its cache for the whole sequence, and one barrier per step publishes the new
// state. When the step's weights are small enough for every thread to keep all of them in
// its cache, the forward loop splits the batch rows instead (split_rows): each thread runs its
// own rows over every unit, with no barrier per step. Batch rows run longest sequence first, so
// a step computes only the rows still inside their sequences.
#pragma once

#include <algorithm>
#include <atomic>
#include <numeric>
#include <vector>

#include "rnnkit/activations.hpp"
#include "rnnkit/packed.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit {

template <class S>
struct Weights {
  const S* W_ih;  // [G*H, C]
  const S* W_hh;  // [G*H, H]
  const S* b_ih;  // [G*H]
  const S* b_hh;  // [G*H]
  const S* params = nullptr;  // [K*H] the cell's own parameters (K = cell.n_params()), vector k at k*H
  const S* W_hr = nullptr;    // [P, H] the output projection, or nullptr
};

// Buffers of one forward call, all owned by the caller. Without `inference` the call keeps a cache for
// backward: h_prev, h_rec, aux and gates hold every step. With it h_prev, h_rec and aux are null (the loop
// keeps the state of one pass of rows); gates either holds every step's input projection, computed at once,
// or is null: then each
// thread projects each step's input for its own units just before the step, so the gates never leave
// its cache (worth it while a thread's share of W_ih and W_hh fits in its L2, see fuse_projection).
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

// Calls with at least this many T*N rows pack W_hh once; shorter ones (a streaming step)
// read it in place (tuning::pack_min_rows). Settable for tests, which cover both paths.
inline std::atomic<Index>& pack_threshold() {
  static std::atomic<Index> rows{tuning::pack_min_rows};
  return rows;
}

// One batch row of one forward step over a thread's hidden units [j0, j0 + w). Pointers into rows of
// G*H values point at unit j0 of gate 0 (gate k lies k*H further on); `rec` holds the step's W_hh
// products for these units, gate k at k*ws (see RecurrentSlice::gate_stride).
// Whether inference projects each step's input inside the time loop: while the step's weights (W_ih and
// W_hh) are small enough (tuning::fuse_projection_bytes).
template <class S>
inline bool fuse_projection(Index G, Index H, Index C) {
  return static_cast<double>(G) * H * (C + H) * sizeof(S) <= tuning::fuse_projection_bytes;
}

template <class S>
struct RowF {
  Index H, w, ws;
  Index gs;          // gate k of `gates` at gates + k * gs (H in the cache; ws in inference's own buffer, laid out as rec)
  S* gates;          // in: input projection + folded bias; out: activated gates
  const S* rec;      // the W_hh products the cell asked for
  const S* b_hh;
  const S* params;   // the cell's own parameters at unit j0: vector k at params + k * H
  S* aux;            // cells with has_aux()
  const S* h_prev;   // the state entering the step
  const S* h_rec;    // what entered the W_hh product: h_prev, or h_prev * recurrent_mask
  const S* c_prev;
  S* h_t;            // out
  S* c_t;            // out
};

// One batch row of one backward step over a thread's hidden units [j0, j0 + w).
template <class S>
struct RowB {
  Index H, w;
  const S* gates;    // activated gates of the step
  const S* aux;
  const S* h_prev;
  const S* h_rec;
  const S* dh;       // [w] gradient reaching h_t
  const S* dc;       // [w] gradient reaching c_t
  S* dgates;         // out: gradient of the gate pre-activations
  S* dextra;         // out (cells with has_dextra())
  S* dh_prev;        // [w] out: gradient along the direct path (cells with has_direct)
  S* dc_prev;        // [w] out
  S* rec;            // [w] the W_hh products the cell asked for; becomes dh_rec
  S* work;           // [w] scratch
  const S* params;   // the cell's own parameters at unit j0: vector k at params + k * H
  S* dparams;        // this thread's sums of their gradients over the steps: vector k at dparams + k * w
};

// Where gate block k of dW_hh and db_hh reads its gradient and its input.
template <class S>
struct HHGrad {
  const S* dgate;   // [T*N, H] with row stride `stride`
  Index stride;
  const S* input;   // [T*N, H]
};

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

// The threads a step's W_hh product is worth splitting over (each step ends in a barrier: see
// tuning::min_step_flops_per_thread). At most one thread per hidden unit.
inline int step_threads(Index N, Index GH, Index H) {
  const double per_step = 2.0 * static_cast<double>(N) * GH * H;
  const Index worth = split_small_calls() ? H : static_cast<Index>(per_step / tuning::min_step_flops_per_thread);
  return static_cast<int>(std::max<Index>(1, std::min<Index>(H, worth)));
}

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

// What a cell's forward_step sees of one step (see the top of this file).
template <class S>
struct ForwardStep {
  Index H, P, w, ws, ld, m, N;  // P: the state's size; ws: gate stride of rec, ld: its row length
  int nt;
  const std::vector<Index>& order;
  const RecurrentSlice<S>& W;
  const S* h_rec_rows;    // [N, P] at this time, unit 0: the source of the W_hh products
  const S* aux_rows;      // [N, H] at this time, unit 0 (cells with has_aux())
  bool by_position;       // the state arrays (h_rec_rows, aux_rows, h_in, h_rec, aux_t, h_out) are [m, H] by position
  std::vector<const S*>& a_rows;
  S* rec;                 // [m, ld]
  RowF<S> proto;          // pointers of row 0 / position 0; rows() offsets them
  S* gates_time;          // gates [N, G*H] at unit j0 (rows by batch row), or inference's [m, ld] (by position)
  Index gates_ld;
  bool gates_by_position;
  S* aux_t;               // aux [N, H] at unit j0
  const S* h_in;          // [N, P] at unit j0 (cells that read it have P = H)
  const S* h_rec;         // [N, P] at unit j0
  const S* c_in;          // [m, w] by position
  S* h_out;               // [N, H] at unit j0: h_t, or with a projection m_t
  S* c_out;               // [m, w] by position
  Index G;

  // rec[:, g0*ws : g1*ws) = W_hh products of gates [g0, g1) with the rows of src ([N, stride] at this time)
  void product(const S* src, Index stride, int g0, int g1) {
    for (Index i = 0; i < m; ++i) a_rows[i] = src + row(i) * stride;
    W.forward(m, a_rows.data(), g0, g1, rec, ld);
  }
  template <class F>
  void rows(const F& f) {
    for (Index i = 0; i < m; ++i) {
      const Index n = row(i);
      RowF<S> r = proto;
      r.gates = gates_time + (gates_by_position ? i : order[i]) * gates_ld;
      r.rec = rec + i * ld;
      r.aux = aux_t ? aux_t + n * H : nullptr;
      r.h_prev = h_in + n * P;
      r.h_rec = h_rec + n * P;
      r.c_prev = c_in + i * w;
      r.h_t = h_out + n * H;
      r.c_t = c_out + i * w;
      f(r);
    }
  }
  void sync() const { barrier(nt); }
  Index row(Index i) const { return by_position ? i : order[i]; }  // where position i's state is
};

template <class S>
struct BackwardStep {
  Index H, w, ws, m;
  int nt;
  const std::vector<Index>& order;
  const RecurrentSlice<S>& W;
  std::vector<const S*>& a_rows;
  S* rec;                  // [m, ws]
  S* work;                 // [w]
  const S *gates_t, *aux_t, *h_prev_t, *h_rec_t;  // at this time, unit j0
  const S *dh, *dc;        // [N, w]
  S *dgates_t, *dextra_t;  // at this time (dgates_time / dextra_time: unit 0)
  S *dgates_time, *dextra_time;
  S *dh_out, *dc_out;      // [N, w]; dh_out null with a projection (its cell has no direct path)
  Index G;
  const S* params;         // the cell's own parameters at unit j0
  S* dparams;              // [K, w] this thread's sums of their gradients

  // rec (+)= the rows of src (this time's [N, stride] array, pointing at gate k0) times W_hh gates [k0, k1)
  void product(const S* src, Index stride, int k0, int k1, bool accumulate) {
    for (Index i = 0; i < m; ++i) a_rows[i] = src + order[i] * stride;
    W.backward(m, a_rows.data(), k0, k1, rec, ws, accumulate);
  }
  template <class F>
  void rows(const F& f) {
    for (Index i = 0; i < m; ++i) {
      const Index n = order[i];
      RowB<S> r{.H = H,
                .w = w,
                .gates = gates_t + n * G * H,
                .aux = aux_t ? aux_t + n * H : nullptr,
                .h_prev = h_prev_t + n * H,
                .h_rec = h_rec_t + n * H,
                .dh = dh + n * w,
                .dc = dc + n * w,
                .dgates = dgates_t + n * G * H,
                .dextra = dextra_t ? dextra_t + n * H : nullptr,
                .dh_prev = dh_out ? dh_out + n * w : nullptr,
                .dc_prev = dc_out + n * w,
                .rec = rec + i * ws,
                .work = work,
                .params = params,
                .dparams = dparams};
      f(r);
    }
  }
  void sync() const { barrier(nt); }
};

template <class Cell, class S>
void forward(const Cell& cell, const Dims& d, const Weights<S>& w, const ForwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, H = d.H, P = d.state(), G = Cell::G, GH = G * H, TN = T * N;
  if (N == 0 || H == 0) return;  // every output and cache array is empty, however many steps or rows
  const bool proj = w.W_hr != nullptr;
  // a short call is as long as reading the weights takes: count them as work too
  nthreads = threads_for(std::max(2.0 * TN, 2.0 * tuning::min_counted_rows) * GH * (C + H), nthreads);
  const bool fused = b.inference && !b.gates;  // each step projects its own input (see ForwardBuffers)
  const bool by_rows = split_rows<S>(N, G, H, fused ? C : 0, nthreads);
  if (!by_rows) nthreads = std::min(nthreads, step_threads(N, GH, H));
  const RowOrder order(b.lengths, N, T);
  const bool packed = TN >= pack_threshold().load();
  const S* mask = b.recurrent_mask;
  RowVector<S> bias(GH);
  cell.input_bias(w.b_ih, w.b_hh, H, bias.data());
  const auto W_ih = view(w.W_ih, GH, C);
  auto time = [&](Index s) { return b.reverse ? T - 1 - s : s; };
  const bool keep = !b.inference;  // a cache for backward, or inference with small buffers
  // Inference keeps the state of one pass only, by position in the pass: two steps of h (and of h_rec with a
  // mask), one of aux and one of m, [block, max(H, P)] each, for each team of threads that shares a step
  const Index block_max = std::min(N, tuning::forward_row_block), state_size = block_max * std::max(H, P);
  const Index team_state =
      keep ? 0 : (2 + (mask ? 2 : 0) + (cell.has_aux() ? 1 : 0) + (proj ? 1 : 0)) * state_size;
  std::vector<S> states(static_cast<size_t>((by_rows ? nthreads : 1) * team_state));

  parallel(nthreads, [&](int tid, int nt) {
    S* st = states.data() + (by_rows ? tid : 0) * team_state;
    // where step s reads: the state entering it (after the last step: h_n), its h_rec and aux
    auto h_slot = [&](Index s) {
      return keep ? (s >= T ? b.h_n : b.h_prev + time(s) * N * P) : st + (s % 2) * state_size;
    };
    auto rec_slot = [&](Index s) { return keep ? b.h_rec + time(s) * N * P : st + (2 + s % 2) * state_size; };
    auto aux_slot = [&](Index s) -> S* {
      if (!cell.has_aux()) return nullptr;
      return keep ? b.aux + time(s) * N * H : st + (mask ? 4 : 2) * state_size;
    };
    // the output before its projection, m_t
    auto m_slot = [&](Index s) -> S* {
      if (!proj) return nullptr;
      return keep ? b.m + time(s) * N * H : st + ((mask ? 4 : 2) + (cell.has_aux() ? 1 : 0)) * state_size;
    };
    // gates = x W_ih^T + bias for every step at once (the cache): one product split over rows, or for a
    // short call (a streaming step) dot products split over gate columns
    if (!fused && !packed) {
      auto [c0, c1] = share(GH, tid, nt);
      for (Index i = 0; i < TN; ++i) {
        detail::dot_rows(b.x + i * C, w.W_ih + c0 * C, C, c1 - c0, C, b.gates + i * GH + c0);
        view(b.gates + i * GH + c0, 1, c1 - c0) += bias.segment(c0, c1 - c0);
      }
    } else if (!fused) {
      for_row_blocks(TN, tuning::product_min_rows, tid, nt, [&](Index i0, Index i1) {
        auto g = view(b.gates + i0 * GH, i1 - i0, GH);
        g.noalias() = view(b.x + i0 * C, i1 - i0, C) * W_ih.transpose();
        g.rowwise() += bias;
      });
    }
    // the threads that share a step (all, splitting the hidden units; or this one alone with its own rows)
    const int team = by_rows ? 1 : nt;
    const RowOrder ord(order, by_rows ? tid : 0, by_rows ? nt : 1);  // the rows this thread runs (all when split by units)
    const Index rows = static_cast<Index>(ord.rows.size());
    // the rows of one pass through the sequence: a thread's working memory is sized by it, not by the batch
    const Index block = std::min(rows, tuning::forward_row_block);
    // this thread's hidden units
    const auto slice = share(H, by_rows ? 0 : tid, team);
    const Index j0 = slice.first, j1 = slice.second;
    const Index wu = j1 - j0;
    const RecurrentSlice<S> W(w.W_hh, G, H, j0, wu, packed, false, P, cell.whole_products());
    const Index ws = W.gate_stride(), ld = W.row_length();
    // this thread's units of the state h: its hidden units, or with a projection its share of the P
    const auto state_slice = proj ? share(P, by_rows ? 0 : tid, team) : slice;
    const Index s0 = state_slice.first, sw = state_slice.second - s0;
    // with a projection: this thread's rows of W_hr, and its units' h_t of the pass's rows
    const RecurrentSlice<S> Wr(proj ? w.W_hr : nullptr, 1, P, s0, sw, packed && proj, false, H);
    std::vector<S> rec_h(proj ? static_cast<size_t>(block * Wr.row_length()) : 0);
    // inference: this thread's columns of W_ih too (laid out as W's), and its units' gates of one step
    const RecurrentSlice<S> Wx(fused ? w.W_ih : nullptr, G, H, j0, wu, packed && fused, false, C, cell.whole_products());
    std::vector<S> x_gates(fused ? static_cast<size_t>(block * ld) : 0), x_bias(fused ? ld : 0);
    for (Index k = 0; fused && k < G; ++k)
      for (Index u = 0; u < wu; ++u) x_bias[k * ws + u] = bias[k * H + j0 + u];
    std::vector<const S*> x_rows(fused ? static_cast<size_t>(block) : 0);
    // the cell state of the pass's rows, by position
    std::vector<S> rec(static_cast<size_t>(block * ld)), c_a(Cell::has_c ? block * wu : 0), c_b(c_a.size());
    std::vector<const S*> a_rows(static_cast<size_t>(block));
    std::vector<Index> pass;  // the pass's rows, longest sequence first
    pass.reserve(static_cast<size_t>(block));
    auto units = [&](auto* p, Index n, Index stride) { return view(p + n * stride + j0, 1, wu); };
    auto state = [&](auto* p, Index n) { return view(p + n * P + s0, 1, sw); };  // this thread's units of h
    auto at = [&](Index i) { return keep ? pass[i] : i; };  // where the state of the pass's row i is
    auto set_h0 = [&](Index i, Index n) {
      if (b.h0)
        state(h_slot(0), i) = state(b.h0, n);
      else
        state(h_slot(0), i).setZero();
    };
    auto set_rec = [&](Index s) {  // h_rec = h_prev * recurrent_mask, entering step s
      if (!mask || s >= T) return;
      for (size_t i = 0; i < pass.size(); ++i)
        state(rec_slot(s), at(i)) = state((const S*)h_slot(s), at(i)).cwiseProduct(state(mask, pass[i]));
    };
    for (Index n : ord.rows)
      if (keep) set_h0(n, n);
    barrier(nt);  // every thread's rows of the input projection and units of the initial state are written

    for (Index p0 = 0; p0 < rows; p0 += block) {
      pass.assign(ord.rows.begin() + p0, ord.rows.begin() + std::min(rows, p0 + block));
      const Index np = static_cast<Index>(pass.size());
      for (Index i = 0; !keep && i < np; ++i) set_h0(i, pass[i]);
      S *c_in = c_a.data(), *c_out = c_b.data();
      for (Index i = 0; Cell::has_c && i < np; ++i) {
        if (b.c0)
          view(c_in + i * wu, 1, wu) = units(b.c0, pass[i], H);
        else
          view(c_in + i * wu, 1, wu).setZero();
      }
      set_rec(0);
      barrier(team);

      for (Index s = 0; s < T; ++s) {
        const Index t = time(s), m = std::clamp<Index>(ord.active[t] - p0, 0, np);
        const S* h_in = h_slot(s);
        S* h_out = h_slot(s + 1);
        const S* h_rec = mask ? rec_slot(s) : h_in;
        S* aux_t = aux_slot(s);
        S* m_t = m_slot(s);
        // the step's input projection: the cache's row, or (inference) computed here for this thread's units
        S* gates_t = fused ? x_gates.data() : b.gates + t * N * GH + j0;
        const Index gates_ld = fused ? ld : GH;
        if (fused && m > 0) {
          for (Index i = 0; i < m; ++i) x_rows[i] = b.x + (t * N + pass[i]) * C;
          for (Index i = 0; i < m; ++i) std::copy(x_bias.begin(), x_bias.end(), gates_t + i * gates_ld);
          Wx.forward(m, x_rows.data(), 0, G, gates_t, gates_ld, true);
        }
        if (m > 0) {
          ForwardStep<S> step{.H = H,
                              .P = P,
                              .w = wu,
                              .ws = ws,
                              .ld = ld,
                              .m = m,
                              .N = N,
                              .nt = team,
                              .order = pass,
                              .W = W,
                              .h_rec_rows = h_rec,
                              .aux_rows = aux_t,
                              .by_position = !keep,
                              .a_rows = a_rows,
                              .rec = rec.data(),
                              .proto = RowF<S>{.H = H,
                                               .w = wu,
                                               .ws = ws,
                                               .gs = fused ? ws : H,
                                               .b_hh = w.b_hh + j0,
                                               .params = w.params ? w.params + j0 : nullptr},
                              .gates_time = gates_t,
                              .gates_ld = gates_ld,
                              .gates_by_position = fused,
                              .aux_t = aux_t ? aux_t + j0 : nullptr,
                              .h_in = h_in + j0,
                              .h_rec = h_rec + j0,
                              .c_in = c_in,
                              .h_out = (proj ? m_t : h_out) + j0,
                              .c_out = c_out,
                              .G = G};
          cell.forward_step(step);
          if (proj) {
            // h_t = m_t W_hr^T, this thread's units of it, once every thread's units of m_t are written
            barrier(team);
            for (Index i = 0; i < m; ++i) a_rows[i] = m_t + step.row(i) * H;
            Wr.forward(m, a_rows.data(), 0, 1, rec_h.data(), Wr.row_length());
            for (Index i = 0; i < m; ++i) state(h_out, at(i)) = view((const S*)rec_h.data() + i * Wr.row_length(), 1, sw);
          }
        }
        S* y_t = b.y + t * N * P;
        for (Index i = 0; i < m; ++i) state(y_t, pass[i]) = state((const S*)h_out, at(i));
        // a sequence past its own length keeps its state and outputs zeros
        for (Index i = m; i < np; ++i) {
          const Index n = pass[i];
          state(h_out, at(i)) = state(h_in, at(i));
          if (Cell::has_c) view(c_out + i * wu, 1, wu) = view(c_in + i * wu, 1, wu);
          state(y_t, n).setZero();
          if (!fused)
            for (Index k = 0; k < G; ++k) view(gates_t + n * GH + k * H, 1, wu).setZero();
          if (aux_t) units(aux_t, at(i), H).setZero();
          if (m_t) units(m_t, at(i), H).setZero();
        }
        set_rec(s + 1);
        std::swap(c_in, c_out);
        barrier(team);
      }
      for (Index i = 0; Cell::has_c && i < np; ++i) units(b.c_n, pass[i], H) = view(c_in + i * wu, 1, wu);
      for (Index i = 0; !keep && i < np; ++i) state(b.h_n, pass[i]) = state((const S*)h_slot(T), i);
    }
  });
}

template <class Cell, class S>
void backward(const Cell& cell, const Dims& d, const Weights<S>& w, const BackwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, H = d.H, P = d.state(), G = Cell::G, GH = G * H, TN = T * N;
  const bool proj = w.W_hr != nullptr;
  if (H == 0) {  // nothing reaches x: dx is zero, every other gradient is empty
    std::fill_n(b.dx, TN * C, S(0));  // (an Eigen view of TN rows would walk them even when C = 0)
    return;
  }
  nthreads = threads_for(4.0 * TN * GH * (C + H), nthreads);
  nthreads = std::min(nthreads, step_threads(N, GH, H));
  const RowOrder order(b.lengths, N, T);
  const bool packed = TN >= pack_threshold().load();
  // dx = dG W_ih inside the time loop, each step's while its gate gradients are in cache, or one product
  // after the loop (tuning::dx_per_step_min_panels)
  const bool dx_per_step = packed && C >= PackTraits<S>::NR * tuning::dx_per_step_min_panels;
  const S* mask = b.recurrent_mask;
  const S* h_rec = mask ? b.h_rec : b.h_prev;
  std::vector<S> x_own;
  const S* x = detail::finite_padding(b.x, b.lengths, T, N, C, x_own);
  // where gate k of dW_hh / db_hh reads from, and whether that is dG itself (then db_hh = db_ih)
  std::vector<HHGrad<S>> hh;
  std::vector<char> hh_is_dG;
  for (int k = 0; k < G; ++k) {
    hh.push_back(cell.hh_grad(k, H, b, h_rec));
    hh_is_dG.push_back(hh[k].dgate == b.dgates + k * H && hh[k].stride == GH);
  }

  parallel(nthreads, [&](int tid, int nt) {
    // the recurrence: this thread's hidden units, every row
    {
      const auto slice = share(H, tid, nt);
      const Index j0 = slice.first, j1 = slice.second;
      const Index wu = j1 - j0;
      // this thread's units of the state h: its hidden units, or with a projection its share of the P
      const auto state_slice = proj ? share(P, tid, nt) : slice;
      const Index s0 = state_slice.first, sw = state_slice.second - s0;
      const RecurrentSlice<S> W(w.W_hh, G, H, s0, sw, packed, true, P);
      const Index ws = W.ws();
      // with a projection: dm_t = dh_t W_hr for this thread's hidden units
      const RecurrentSlice<S> Wr(proj ? w.W_hr : nullptr, 1, P, j0, wu, packed && proj, true, H);
      std::vector<S> dm_rec(proj ? static_cast<size_t>(N * Wr.ws()) : 0), dm(proj ? static_cast<size_t>(N * wu) : 0);
      // and this thread's columns of dx
      const auto x_cols = share(dx_per_step ? C : 0, tid, nt);
      const Index x0 = x_cols.first, xw = x_cols.second - x0;
      const RecurrentSlice<S> Wx(w.W_ih, G, H, x0, xw, packed, true, C);
      std::vector<S> dx_rec(static_cast<size_t>(N * Wx.ws()));
      std::vector<S> rec(static_cast<size_t>(N * ws)), work(static_cast<size_t>(wu));
      std::vector<S> dh_a(static_cast<size_t>(N * sw)), dh_b(dh_a.size()),
          dc_a(Cell::has_c ? static_cast<size_t>(N * wu) : 0), dc_b(dc_a.size());
      std::vector<const S*> a_rows(static_cast<size_t>(N));
      S *dh = dh_a.data(), *dh_out = dh_b.data(), *dc = dc_a.data(), *dc_out = dc_b.data();
      // the bias gradients of these units, gate k at k * wu: summed over the steps while each step's
      // gradients are still in this thread's cache (db_hh only for gates whose source is not dG itself)
      RowVector<S> db_ih = RowVector<S>::Zero(G * wu), db_hh = RowVector<S>::Zero(G * wu);
      // and of the cell's own parameters, vector k at k * wu (backward_step adds each step's)
      RowVector<S> dparams = RowVector<S>::Zero(cell.n_params() * wu);
      auto units = [&](auto* p, Index n, Index stride) { return view(p + n * stride + j0, 1, wu); };
      auto own = [&](S* p, Index n) { return view(p + n * wu, 1, wu); };
      auto state = [&](auto* p, Index n) { return view(p + n * P + s0, 1, sw); };  // this thread's units of h
      auto own_state = [&](S* p, Index n) { return view(p + n * sw, 1, sw); };
      for (Index n = 0; n < N; ++n) {
        if (b.dh_n)
          own_state(dh, n) = state(b.dh_n, n);
        else
          own_state(dh, n).setZero();
        if (Cell::has_c) {
          if (b.dc_n)
            own(dc, n) = units(b.dc_n, n, H);
          else
            own(dc, n).setZero();
        }
      }
      for (Index s = T - 1; s >= 0; --s) {
        const Index t = b.reverse ? T - 1 - s : s, m = order.active[t];
        for (Index i = 0; i < m; ++i) {
          const Index n = order.rows[i];
          own_state(dh, n) += state(b.dy + t * N * P, n);
        }
        if (proj) {
          // dm_t = dh_t W_hr for this thread's units, once every thread's units of dh_t are published (kept for
          // dW_hr = dh^T m; zero past a sequence's length)
          S* dproj_t = b.dproj + t * N * P;
          for (Index i = 0; i < N; ++i) {
            if (i < m)
              state(dproj_t, order.rows[i]) = own_state(dh, order.rows[i]);
            else
              state(dproj_t, order.rows[i]).setZero();
          }
          barrier(nt);
          for (Index i = 0; i < m; ++i) a_rows[i] = dproj_t + order.rows[i] * P;
          Wr.backward(m, a_rows.data(), 0, 1, dm_rec.data(), Wr.ws(), false);
          for (Index i = 0; i < m; ++i) own(dm.data(), order.rows[i]) = view((const S*)dm_rec.data() + i * Wr.ws(), 1, wu);
        }
        S* dgates_time = b.dgates + t * N * GH;
        // the activated gates of step s, or (gates_are_state) the state it left: what step s + 1 reads
        const S* gates_time = b.gates                ? b.gates + t * N * GH
                              : s + 1 < T            ? b.h_prev + (b.reverse ? T - 2 - s : s + 1) * N * H
                                                     : b.h_last;
        S* dextra_time = cell.has_dextra() ? b.dextra + t * N * H : nullptr;
        if (m > 0) {
          BackwardStep<S> step{.H = H,
                               .w = wu,
                               .ws = ws,
                               .m = m,
                               .nt = nt,
                               .order = order.rows,
                               .W = W,
                               .a_rows = a_rows,
                               .rec = rec.data(),
                               .work = work.data(),
                               .gates_t = gates_time + j0,
                               .aux_t = cell.has_aux() ? b.aux + t * N * H + j0 : nullptr,
                               .h_prev_t = b.h_prev + t * N * H + j0,
                               .h_rec_t = h_rec + t * N * H + j0,
                               .dh = proj ? dm.data() : dh,
                               .dc = dc,
                               .dgates_t = dgates_time + j0,
                               .dextra_t = dextra_time ? dextra_time + j0 : nullptr,
                               .dgates_time = dgates_time,
                               .dextra_time = dextra_time,
                               .dh_out = proj ? nullptr : dh_out,
                               .dc_out = dc_out,
                               .G = G,
                               .params = w.params ? w.params + j0 : nullptr,
                               .dparams = dparams.data()};
          cell.backward_step(step);
          // every thread's gate gradients of this step are written (the cell synced before its product)
          if (xw > 0) {
            for (Index i = 0; i < m; ++i) a_rows[i] = dgates_time + order.rows[i] * GH;
            Wx.backward(m, a_rows.data(), 0, G, dx_rec.data(), Wx.ws(), false);
            for (Index i = 0; i < m; ++i)
              view(b.dx + (t * N + order.rows[i]) * C + x0, 1, xw) = view((const S*)dx_rec.data() + i * Wx.ws(), 1, xw);
          }
        }
        for (Index i = 0; i < m; ++i) {
          const Index n = order.rows[i], row = t * N + n;
          // the step's gate gradients into the bias gradients
          for (int k = 0; k < G; ++k) {
            db_ih.segment(k * wu, wu) += view((const S*)b.dgates + row * GH + k * H + j0, 1, wu);
            if (!hh_is_dG[k]) db_hh.segment(k * wu, wu) += view(hh[k].dgate + row * hh[k].stride + j0, 1, wu);
          }
          // dh_prev = (direct path) + dh_rec * recurrent_mask
          const auto dr = view((const S*)rec.data() + i * ws, 1, sw);
          auto out = own_state(dh_out, n);
          if (Cell::has_direct && mask)
            out += dr.cwiseProduct(state(mask, n));
          else if (Cell::has_direct)
            out += dr;
          else if (mask)
            out = dr.cwiseProduct(state(mask, n));
          else
            out = dr;
        }
        // a step past the sequence's length passed its state through unchanged
        for (Index i = m; i < N; ++i) {
          const Index n = order.rows[i];
          own_state(dh_out, n) = own_state(dh, n);
          if (Cell::has_c) own(dc_out, n) = own(dc, n);
          for (Index k = 0; k < G; ++k) units(dgates_time + k * H, n, GH).setZero();
          if (dextra_time) units(dextra_time, n, H).setZero();
          if (xw > 0) view(b.dx + (t * N + n) * C + x0, 1, xw).setZero();
        }
        std::swap(dh, dh_out);
        std::swap(dc, dc_out);
      }
      for (Index n = 0; n < N; ++n) {
        state(b.dh0, n) = own_state(dh, n);
        if (Cell::has_c) units(b.dc0, n, H) = own(dc, n);
      }
      for (int k = 0; k < cell.n_params(); ++k) view(b.dparams + k * H + j0, 1, wu) = dparams.segment(k * wu, wu);
      for (int k = 0; k < G; ++k) {
        view(b.db_ih + k * H + j0, 1, wu) = db_ih.segment(k * wu, wu);
        view(b.db_hh + k * H + j0, 1, wu) = (hh_is_dG[k] ? db_ih : db_hh).segment(k * wu, wu);
      }
    }
    barrier(nt);

    // dW_ih = dG^T x; dW_hh likewise from the cell's hidden-side source. Each thread takes whole blocks of
    // the G*H weight rows, as few products as the sources allow (one for LSTM and RNN), so each packs x and h
    // once per block.
    for_row_blocks(GH, tuning::product_min_rows, tid, nt, [&](Index r0, Index r1) {
      const auto dG = view(b.dgates + r0, TN, r1 - r0, GH);
      view(b.dW_ih + r0 * C, r1 - r0, C).noalias() = dG.transpose() * view(x, TN, C);
      for (Index c0 = r0; c0 < r1;) {
        // the longest run of rows from c0 whose gradients lie side by side in one source
        const int k = static_cast<int>(c0 / H);
        const HHGrad<S>& src = hh[k];
        Index c1 = std::min(r1, (k + 1) * H);
        for (int k2 = k + 1; c1 < r1 && k2 < G; ++k2) {
          const HHGrad<S>& next = hh[k2];
          if (next.dgate != src.dgate + (k2 - k) * H || next.stride != src.stride || next.input != src.input) break;
          c1 = std::min(r1, (k2 + 1) * H);
        }
        const auto dGh = view(src.dgate + (c0 - k * H), TN, c1 - c0, src.stride);
        view(b.dW_hh + c0 * P, c1 - c0, P).noalias() = dGh.transpose() * view(src.input, TN, P);
        c0 = c1;
      }
    });
    // dW_hr = dh^T m, over every step
    if (proj)
      for_row_blocks(P, tuning::product_min_rows, tid, nt, [&](Index r0, Index r1) {
        view(b.dW_hr + r0 * H, r1 - r0, H).noalias() =
            view((const S*)b.dproj + r0, TN, r1 - r0, P).transpose() * view(b.m, TN, H);
      });
    if (!dx_per_step)
      for_row_blocks(TN, tuning::product_min_rows, tid, nt, [&](Index i0, Index i1) {
        view(b.dx + i0 * C, i1 - i0, C).noalias() = view(b.dgates + i0 * GH, i1 - i0, GH) * view(w.W_ih, GH, C);
      });
  });
}

}  // namespace rnnkit
