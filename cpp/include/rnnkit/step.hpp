// The cell contract: what a cell declares, and what it sees of one step of the time loop (sequence.hpp).
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
// Everything else (projections, masking, threads, weight gradients) lives in the time loop (sequence.hpp), the
// output projection of an LSTM with proj_size included: the cell writes m_t = o * h(c_t) [N, H] where it would
// write h_t, and the loop makes h_t = m_t W_hr^T [N, P] (each thread its share of the P state units) and, in
// backward, dm_t = dh_t W_hr.
#pragma once

#include <vector>

#include "rnnkit/buffers.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"

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

// One batch row of one forward step over a thread's hidden units [j0, j0 + w). Pointers into rows of
// G*H values point at unit j0 of gate 0 (gate k lies k*H further on); `rec` holds the step's W_hh
// products for these units, gate k at k*ws (see RecurrentSlice::gate_stride).
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
  S* gates_t;             // gates [N, G*H] at unit j0 (rows by batch row), or inference's [m, ld] (by position)
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
      r.gates = gates_t + (gates_by_position ? i : order[i]) * gates_ld;
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

// What a cell's backward_step sees of one step (see the top of this file).
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

}  // namespace rnnkit
