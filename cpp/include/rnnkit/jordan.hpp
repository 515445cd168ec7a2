// Jordan network: the recurrence runs through the output.
//   h_t = f(W_xh x_t + W_yh y_prev + b_h)    f = tanh | relu | sigmoid
//   y_t = g(W_hy h_t + b_y)                  g = linear | tanh | sigmoid
// The state is y (O values per sequence); h (U values) is computed afresh at every step.
//
// Shapes (U = hidden units, O = output units; the rest as in shapes.hpp):
//   x [T, N, C], W_xh [U, C], W_yh [U, O], b_h [U], W_hy [O, U], b_y [O], y0 [N, O];
//   y [T, N, O] (zeros past a sequence's length), y_n [N, O].
//
// Its own time loop rather than sequence.hpp's: there every cell's state has the output's size H and a
// step is one layer of G*H gates, while a Jordan step is two layers (U hidden units feeding O outputs that
// are the state). It keeps that loop's design and reuses its helpers (buffers.hpp): the input projection of all
// steps is one matrix product before the loop, the weight gradients are matrix products after it, nothing is
// allocated inside it, and threads split the batch rows.
#pragma once

#include <vector>

#include "rnnkit/activations.hpp"
#include "rnnkit/buffers.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit {

struct JordanCell {
  Activation activation{Act::tanh};          // f
  Activation output_activation{Act::linear};  // g
};

struct JordanDims {
  Index T, N, C, U, O;
};

template <class S>
struct JordanWeights {
  const S* W_xh;  // [U, C]
  const S* W_yh;  // [U, O]
  const S* b_h;   // [U]
  const S* W_hy;  // [O, U]
  const S* b_y;   // [O]
};

// Buffers of one forward call, all owned by the caller.
template <class S>
struct JordanForwardBuffers {
  const S* x;              // [T, N, C]
  const S* y0;             // [N, O] or nullptr (zeros)
  const int64_t* lengths;  // [N] or nullptr (all T); values in [0, T]
  bool reverse;
  S* y;       // [T, N, O] out
  S* y_n;     // [N, O] out
  S* y_prev;  // [T, N, O] cache: the state entering step t
  S* h;       // [T, N, U] cache: h_t
  S* y_step;  // [T, N, O] cache: y_t as the step computed it (also past a sequence's length)
};

// Buffers of one backward call, all owned by the caller.
template <class S>
struct JordanBackwardBuffers {
  const S* x;  // [T, N, C]      the forward's inputs and cache
  const S* y_prev;
  const S* h;
  const S* y_step;
  const int64_t* lengths;
  bool reverse;
  const S* dy;    // [T, N, O]
  const S* dy_n;  // [N, O] or nullptr (zero)
  S* dx;          // [T, N, C] out
  S* dy0;         // [N, O] out
  S* dW_xh;       // [U, C] out
  S* dW_yh;       // [U, O] out
  S* db_h;        // [U] out
  S* dW_hy;       // [O, U] out
  S* db_y;        // [O] out
  S* dz;          // [T, N, O] workspace: gradient of W_hy h_t + b_y
  S* da;          // [T, N, U] workspace: gradient of W_xh x_t + W_yh y_prev + b_h
};

template <class S>
void jordan_forward(const JordanCell& cell, const JordanDims& d, const JordanWeights<S>& w,
                    const JordanForwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, U = d.U, O = d.O, TN = T * N;
  if (N == 0 || (U == 0 && O == 0)) return;  // every output and cache array is empty
  nthreads = threads_for(2.0 * TN * U * (C + 2 * O), nthreads);
  // the recurrence runs fixed blocks of batch rows (see for_row_blocks), each over the whole sequence
  const Index min_rows = tuning::jordan_row_block;
  const auto W_xh = view(w.W_xh, U, C), W_yh = view(w.W_yh, U, O), W_hy = view(w.W_hy, O, U);
  const auto b_h = view(w.b_h, 1, U), b_y = view(w.b_y, 1, O);
  // padded steps read as zeros: their h (kept for backward's dW_hy = dZ^T h) stays finite
  std::vector<S> x_own;
  const S* x = detail::finite_padding(b.x, b.lengths, T, N, C, x_own);

  parallel(nthreads, [&](int tid, int nt) {
    // h = x W_xh^T + b_h, for every step at once
    for_row_blocks(TN, tuning::product_min_rows, tid, nt, [&](Index i0, Index i1) {
      auto a = view(b.h + i0 * U, i1 - i0, U);
      a.noalias() = view(x + i0 * C, i1 - i0, C) * W_xh.transpose();
      a.rowwise() += b_h.row(0);
    });
    barrier(nt);

    std::vector<S> state;  // the state y of a block of rows
    for_row_blocks(N, min_rows, tid, nt, [&](Index r0, Index r1) {
      const Index nb = r1 - r0;
      state.resize(static_cast<size_t>(nb * O));
      detail::copy_or_zero(state.data(), b.y0 ? b.y0 + r0 * O : nullptr, nb, O);
      auto y = view(state.data(), nb, O);
      const Index all_valid_below = detail::min_length(b.lengths, r0, r1, T);

      for (Index s = 0; s < T; ++s) {
        const Index t = b.reverse ? T - 1 - s : s;
        const Index row = t * N + r0;
        auto y_prev = view(b.y_prev + row * O, nb, O);
        y_prev = y;
        // h_t = f(W_xh x_t + b_h + W_yh y_prev)
        auto h = view(b.h + row * U, nb, U);
        h.noalias() += y_prev * W_yh.transpose();
        activate(cell.activation, h);
        // y_t = g(W_hy h_t + b_y)
        auto y_step = view(b.y_step + row * O, nb, O);
        y_step.noalias() = h * W_hy.transpose();
        y_step.rowwise() += b_y.row(0);
        activate(cell.output_activation, y_step);
        auto y_t = view(b.y + row * O, nb, O);
        if (t < all_valid_below) {
          y = y_step;
          y_t = y_step;
        } else {
          // a sequence past its own length keeps its state and outputs zeros
          for (Index r = 0; r < nb; ++r) {
            if (detail::valid(b.lengths, r0 + r, t)) {
              y.row(r) = y_step.row(r);
              y_t.row(r) = y_step.row(r);
            } else {
              y_t.row(r).setZero();
            }
          }
        }
      }
      view(b.y_n + r0 * O, nb, O) = y;
    });
  });
}

template <class S>
void jordan_backward(const JordanCell& cell, const JordanDims& d, const JordanWeights<S>& w,
                     const JordanBackwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, U = d.U, O = d.O, TN = T * N;
  if (U == 0 && O == 0) {  // nothing reaches x: dx is zero, every other gradient is empty
    std::fill_n(b.dx, TN * C, S(0));  // (an Eigen view of TN rows would walk them even when C = 0)
    return;
  }
  nthreads = threads_for(4.0 * TN * U * (C + 2 * O), nthreads);
  const Index min_rows = tuning::jordan_row_block;  // as in jordan_forward
  const auto W_xh = view(w.W_xh, U, C), W_yh = view(w.W_yh, U, O), W_hy = view(w.W_hy, O, U);
  // padded steps never enter the computation, but dW_xh sums 0 * x over every row: NaN there would spread
  std::vector<S> x_own;
  const S* x = detail::finite_padding(b.x, b.lengths, T, N, C, x_own);

  parallel(nthreads, [&](int tid, int nt) {
    std::vector<S> work;  // the state's gradient after and before a step, for a block of rows
    for_row_blocks(N, min_rows, tid, nt, [&](Index r0, Index r1) {
      const Index nb = r1 - r0;
      work.resize(static_cast<size_t>(2 * nb * O));
      S *dstate = work.data(), *dstate_prev = work.data() + nb * O;  // gradient w.r.t. the state after / before step t
      detail::copy_or_zero(dstate, b.dy_n ? b.dy_n + r0 * O : nullptr, nb, O);
      const Index all_valid_below = detail::min_length(b.lengths, r0, r1, T);

      for (Index s = T - 1; s >= 0; --s) {
        const Index t = b.reverse ? T - 1 - s : s;
        const Index row = t * N + r0;
        // dz_t = (dstate + dy_t) * g'(z_t)
        auto dz = view(b.dz + row * O, nb, O);
        dz = view((const S*)dstate, nb, O) + view(b.dy + row * O, nb, O);
        times_derivative(cell.output_activation, dz, view(b.y_step + row * O, nb, O));
        // da_t = (dz_t W_hy) * f'(a_t)
        auto da = view(b.da + row * U, nb, U);
        da.noalias() = dz * W_hy;
        times_derivative(cell.activation, da, view(b.h + row * U, nb, U));
        // dstate_prev = da_t W_yh
        view(dstate_prev, nb, O).noalias() = da * W_yh;
        if (t < all_valid_below) {
          std::swap(dstate, dstate_prev);
        } else {
          // a step past the sequence's length passed its state through unchanged
          for (Index r = 0; r < nb; ++r) {
            if (detail::valid(b.lengths, r0 + r, t)) {
              view(dstate + r * O, 1, O) = view(dstate_prev + r * O, 1, O);
            } else {
              dz.row(r).setZero();
              da.row(r).setZero();
            }
          }
        }
      }
      view(b.dy0 + r0 * O, nb, O) = view(dstate, nb, O);
    });
    barrier(nt);

    // dW_xh = dA^T x, dW_yh = dA^T y_prev, db_h = sum over rows of dA; blocks of U
    for_row_blocks(U, tuning::product_min_rows, tid, nt, [&](Index j0, Index j1) {
      const Index n = j1 - j0;
      const auto dA = view((const S*)b.da + j0, TN, n, U);
      view(b.dW_xh + j0 * C, n, C).noalias() = dA.transpose() * view(x, TN, C);
      view(b.dW_yh + j0 * O, n, O).noalias() = dA.transpose() * view(b.y_prev, TN, O);
      detail::sum_rows(dA, view(b.db_h + j0, 1, n));
    });
    // dW_hy = dZ^T h, db_y = sum over rows of dZ; blocks of O
    for_row_blocks(O, tuning::product_min_rows, tid, nt, [&](Index k0, Index k1) {
      const Index n = k1 - k0;
      const auto dZ = view((const S*)b.dz + k0, TN, n, O);
      view(b.dW_hy + k0 * U, n, U).noalias() = dZ.transpose() * view(b.h, TN, U);
      detail::sum_rows(dZ, view(b.db_y + k0, 1, n));
    });
    // dx = dA W_xh
    for_row_blocks(TN, tuning::product_min_rows, tid, nt, [&](Index i0, Index i1) {
      view(b.dx + i0 * C, i1 - i0, C).noalias() = view((const S*)b.da + i0 * U, i1 - i0, U) * W_xh;
    });
  });
}

}  // namespace rnnkit
