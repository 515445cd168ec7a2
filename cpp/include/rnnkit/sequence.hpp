// The time loop shared by every cell: forward and backpropagation through time
// over whole sequences, with per-sequence lengths and direction.
//
// A cell (rnn.hpp, lstm.hpp, gru.hpp) supplies only what one step computes:
//   G, has_c, has_aux(), has_dextra()      its sizes and what it records
//   input_bias(b_ih, b_hh, out)            the bias folded into the input projection
//   has_direct                             whether h_prev also reaches h_t outside W_hh (GRU)
//   forward_step(StepF&), backward_step(StepB&)   one step over a block of batch rows
//   hh_grad(k, ...)                        where gate block k of dW_hh / db_hh reads from
// Everything else (projections, masking, threads, weight gradients) lives here.
//
// Design for speed: the input projection of all steps is one matrix product
// before the loop, the weight gradients are matrix products after it, every
// buffer is allocated before the loop, and threads split the batch rows, so a
// thread runs its rows' whole recurrence without waiting for the others.
#pragma once

#include <vector>

#include "rnnkit/activations.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"

namespace rnnkit {

template <class S>
struct Weights {
  const S* W_ih;  // [G*H, C]
  const S* W_hh;  // [G*H, H]
  const S* b_ih;  // [G*H]
  const S* b_hh;  // [G*H]
};

// Buffers of one forward call, all owned by the caller.
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
  S* h_prev;  // [T, N, H] cache: the state entering step t
  S* h_rec;   // [T, N, H] cache: h_prev * recurrent_mask; only with a recurrent_mask
  S* aux;     // [T, N, H] cache: the cell's own per-step record; cells with has_aux()
  S* gates;   // [T, N, G*H] cache: activated gates
};

// Buffers of one backward call, all owned by the caller.
template <class S>
struct BackwardBuffers {
  const S* x;  // [T, N, C]      the forward's inputs and cache
  const S* recurrent_mask;  // [N, H] or nullptr
  const S* h_prev;
  const S* h_rec;           // [T, N, H]; only with a recurrent_mask
  const S* aux;
  const S* gates;
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
  S* dgates;      // [T, N, G*H] workspace: gradient of the gate pre-activations
  S* dextra;      // [T, N, H] workspace for cells with has_dextra()
};

// One step over a block of nb batch rows.
template <class S>
struct StepF {
  Index H;
  View<S> gates;         // [nb, G*H] in: input projection + folded bias; out: activated gates
  View<S> aux;           // [nb, H] out (cells with has_aux())
  ConstView<S> h_prev;   // [nb, H] the state
  ConstView<S> h_rec;    // [nb, H] what enters the W_hh product: h_prev, or h_prev * recurrent_mask
  ConstView<S> c_prev;   // [nb, H]
  View<S> h_t;           // [nb, H] out
  View<S> c_t;           // [nb, H] out
  View<S> work;          // [nb, G*H] scratch
  ConstView<S> W_hh;     // [G*H, H]
  const S* b_hh;         // [G*H]
};

template <class S>
struct StepB {
  Index H;
  ConstView<S> gates;    // [nb, G*H] activated gates of this step
  ConstView<S> aux;      // [nb, H]
  ConstView<S> h_prev;   // [nb, H]
  ConstView<S> h_rec;    // [nb, H]
  ConstView<S> dh;       // [nb, H] gradient reaching h_t
  ConstView<S> dc;       // [nb, H] gradient reaching c_t
  View<S> dgates;        // [nb, G*H] out: gradient of the gate pre-activations (input side)
  View<S> dextra;        // [nb, H] out (cells with has_dextra())
  View<S> dh_rec;        // [nb, H] out: gradient w.r.t. h_rec (assigned)
  View<S> dh_prev;       // [nb, H] out: gradient along the direct path (assigned; cells with has_direct)
  View<S> dc_prev;       // [nb, H] out
  View<S> work;          // [nb, G*H] scratch
  ConstView<S> W_hh;     // [G*H, H]
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

template <class S>
inline void copy_or_zero(S* dst, const S* src, Index rows, Index cols) {
  auto d = view(dst, rows, cols);
  if (src)
    d = view(src, rows, cols);
  else
    d.setZero();
}

}  // namespace detail

template <class Cell, class S>
void forward(const Cell& cell, const Dims& d, const Weights<S>& w, const ForwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, H = d.H, GH = Cell::G * H, TN = T * N;
  nthreads = threads_for(2.0 * TN * GH * (C + H), nthreads);
  nthreads = static_cast<int>(std::max<Index>(1, std::min<Index>(nthreads, std::max<Index>(N, 1))));
  const Index nb_max = (N + nthreads - 1) / nthreads;
  // Per thread: h, h_new, c, c_new [nb, H] and work [nb, G*H]; allocated once, before the loop.
  const Index per_thread = nb_max * (4 * H + GH);
  std::vector<S> workspace(static_cast<size_t>(per_thread * nthreads));
  const S* mask = b.recurrent_mask;
  RowVector<S> bias(GH);
  cell.input_bias(w.b_ih, w.b_hh, H, bias.data());
  const auto W_ih = view(w.W_ih, GH, C);
  const auto W_hh = view(w.W_hh, GH, H);

  parallel(nthreads, [&](int tid, int nt) {
    // gates = x W_ih^T + bias, for every step at once
    {
      auto [i0, i1] = share(TN, tid, nt);
      auto g = view(b.gates + i0 * GH, i1 - i0, GH);
      g.noalias() = view(b.x + i0 * C, i1 - i0, C) * W_ih.transpose();
      g.rowwise() += bias;
    }
    barrier(nt);

    auto [r0, r1] = share(N, tid, nt);
    const Index nb = r1 - r0;
    if (nb == 0) return;
    S* ws = workspace.data() + tid * per_thread;
    S *h = ws, *h_new = ws + nb * H, *c = ws + 2 * nb * H, *c_new = ws + 3 * nb * H;
    S* work = ws + 4 * nb * H;
    detail::copy_or_zero(h, b.h0 ? b.h0 + r0 * H : nullptr, nb, H);
    if (Cell::has_c) detail::copy_or_zero(c, b.c0 ? b.c0 + r0 * H : nullptr, nb, H);
    const Index all_valid_below = detail::min_length(b.lengths, r0, r1, T);

    for (Index s = 0; s < T; ++s) {
      const Index t = b.reverse ? T - 1 - s : s;
      const Index row = t * N + r0;
      view(b.h_prev + row * H, nb, H) = view(h, nb, H);
      // h_rec = h_prev * recurrent_mask
      if (mask) view(b.h_rec + row * H, nb, H) = view(h, nb, H).cwiseProduct(view(mask + r0 * H, nb, H));
      StepF<S> step{H,
                    view(b.gates + row * GH, nb, GH),
                    view(cell.has_aux() ? b.aux + row * H : work, nb, H),
                    view((const S*)h, nb, H),
                    view(mask ? (const S*)b.h_rec + row * H : (const S*)h, nb, H),
                    view((const S*)c, nb, H),
                    view(h_new, nb, H),
                    view(c_new, nb, H),
                    view(work, nb, GH),
                    W_hh,
                    w.b_hh};
      cell.forward_step(step);
      auto y_t = view(b.y + row * H, nb, H);
      if (t < all_valid_below) {
        std::swap(h, h_new);
        if (Cell::has_c) std::swap(c, c_new);
        y_t = view(h, nb, H);
      } else {
        // a sequence past its own length keeps its state and outputs zeros
        for (Index r = 0; r < nb; ++r) {
          if (detail::valid(b.lengths, r0 + r, t)) {
            view(h + r * H, 1, H) = view(h_new + r * H, 1, H);
            if (Cell::has_c) view(c + r * H, 1, H) = view(c_new + r * H, 1, H);
            y_t.row(r) = view(h + r * H, 1, H);
          } else {
            y_t.row(r).setZero();
          }
        }
      }
    }
    view(b.h_n + r0 * H, nb, H) = view(h, nb, H);
    if (Cell::has_c) view(b.c_n + r0 * H, nb, H) = view(c, nb, H);
  });
}

template <class Cell, class S>
void backward(const Cell& cell, const Dims& d, const Weights<S>& w, const BackwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, H = d.H, GH = Cell::G * H, TN = T * N;
  nthreads = threads_for(4.0 * TN * GH * (C + H), nthreads);
  const int rec_threads = static_cast<int>(std::max<Index>(1, std::min<Index>(nthreads, N)));
  const Index nb_max = (N + rec_threads - 1) / rec_threads;
  // Per thread: dh, dh_new, dc, dc_new, dh_rec [nb, H] and work [nb, G*H]; allocated once, before the loop.
  const Index per_thread = nb_max * (5 * H + GH);
  const S* mask = b.recurrent_mask;
  const S* h_rec = mask ? b.h_rec : b.h_prev;
  std::vector<S> workspace(static_cast<size_t>(per_thread * nthreads));
  const auto W_ih = view(w.W_ih, GH, C);
  const auto W_hh = view(w.W_hh, GH, H);

  parallel(nthreads, [&](int tid, int nt) {
    auto [r0, r1] = share(N, tid, std::min<int>(nt, rec_threads));
    if (tid >= rec_threads) r0 = r1 = N;
    const Index nb = r1 - r0;
    if (nb > 0) {
      S* ws = workspace.data() + tid * per_thread;
      S *dh = ws, *dh_new = ws + nb * H, *dc = ws + 2 * nb * H, *dc_new = ws + 3 * nb * H, *dh_rec = ws + 4 * nb * H;
      // without a mask or a direct path, the gradient w.r.t. h_rec is dh_prev itself
      const bool dh_rec_direct = !mask && !Cell::has_direct;
      S* work = ws + 5 * nb * H;
      detail::copy_or_zero(dh, b.dh_n ? b.dh_n + r0 * H : nullptr, nb, H);
      detail::copy_or_zero(dc, b.dc_n ? b.dc_n + r0 * H : nullptr, nb, H);
      const Index all_valid_below = detail::min_length(b.lengths, r0, r1, T);

      for (Index s = T - 1; s >= 0; --s) {
        const Index t = b.reverse ? T - 1 - s : s;
        const Index row = t * N + r0;
        const auto dy_t = view(b.dy + row * H, nb, H);
        auto dh_t = view(dh, nb, H);
        const bool all_valid = t < all_valid_below;
        if (all_valid) {
          dh_t += dy_t;
        } else {
          for (Index r = 0; r < nb; ++r)
            if (detail::valid(b.lengths, r0 + r, t)) dh_t.row(r) += dy_t.row(r);
        }
        StepB<S> step{H,
                      view(b.gates + row * GH, nb, GH),
                      view(cell.has_aux() ? b.aux + row * H : b.h_prev + row * H, nb, H),
                      view(b.h_prev + row * H, nb, H),
                      view(h_rec + row * H, nb, H),
                      view((const S*)dh, nb, H),
                      view((const S*)dc, nb, H),
                      view(b.dgates + row * GH, nb, GH),
                      view(cell.has_dextra() ? b.dextra + row * H : work, nb, H),
                      view(dh_rec_direct ? dh_new : dh_rec, nb, H),
                      view(dh_new, nb, H),
                      view(dc_new, nb, H),
                      view(work, nb, GH),
                      W_hh};
        cell.backward_step(step);
        // dh_prev = (direct path) + dh_rec * recurrent_mask
        if (!dh_rec_direct) {
          auto d = view(dh_new, nb, H);
          auto dr = view((const S*)dh_rec, nb, H);
          if (Cell::has_direct && mask)
            d += dr.cwiseProduct(view(mask + r0 * H, nb, H));
          else if (Cell::has_direct)
            d += dr;
          else
            d = dr.cwiseProduct(view(mask + r0 * H, nb, H));
        }
        if (all_valid) {
          std::swap(dh, dh_new);
          if (Cell::has_c) std::swap(dc, dc_new);
        } else {
          // a step past the sequence's length passed its state through unchanged
          for (Index r = 0; r < nb; ++r) {
            if (detail::valid(b.lengths, r0 + r, t)) {
              view(dh + r * H, 1, H) = view(dh_new + r * H, 1, H);
              if (Cell::has_c) view(dc + r * H, 1, H) = view(dc_new + r * H, 1, H);
            } else {
              step.dgates.row(r).setZero();
              if (cell.has_dextra()) step.dextra.row(r).setZero();
            }
          }
        }
      }
      view(b.dh0 + r0 * H, nb, H) = view(dh, nb, H);
      if (Cell::has_c) view(b.dc0 + r0 * H, nb, H) = view(dc, nb, H);
    }
    barrier(nt);

    // dW_ih = dG^T x, db_ih = sum over rows of dG; dW_hh and db_hh likewise from the
    // cell's hidden-side source. Each thread takes the same slice of every gate block.
    auto [j0, j1] = share(H, tid, nt);
    const Index w_ = j1 - j0;
    if (w_ > 0) {
      const auto X = view(b.x, TN, C);
      for (int k = 0; k < Cell::G; ++k) {
        const Index col = k * H + j0;
        const auto dG = view(b.dgates + col, TN, w_, GH);
        view(b.dW_ih + col * C, w_, C).noalias() = dG.transpose() * X;
        detail::sum_rows(dG, view(b.db_ih + col, 1, w_));
        const HHGrad<S> src = cell.hh_grad(k, H, b, h_rec);
        const auto dGh = view(src.dgate + j0, TN, w_, src.stride);  // input: h_rec, or the cell's aux
        view(b.dW_hh + col * H, w_, H).noalias() = dGh.transpose() * view(src.input, TN, H);
        detail::sum_rows(dGh, view(b.db_hh + col, 1, w_));
      }
    }
    // dx = dG W_ih
    auto [i0, i1] = share(TN, tid, nt);
    if (i1 > i0) view(b.dx + i0 * C, i1 - i0, C).noalias() = view(b.dgates + i0 * GH, i1 - i0, GH) * W_ih;
  });
}

}  // namespace rnnkit
