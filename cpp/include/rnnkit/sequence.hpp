// The time loop shared by every cell: forward and backpropagation through time over whole sequences, with
// per-sequence lengths and direction. A cell supplies only what one step computes (step.hpp); where a call's
// data lives and how its threads share it is buffers.hpp.
//
// forward() and backward() are mirrors, in the same phases and with the same names: the call's setup (threads,
// row order, packing), then in each thread the products over every step (forward: the input projection before
// the loop; backward: the weight gradients after it) and its part of the recurrence: the state at one end of the
// sequences, the steps, the state at the other end.
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
#include <utility>
#include <vector>

#include "rnnkit/buffers.hpp"
#include "rnnkit/packed.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/step.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit {

// y, h_n (and c_n) from x, h0 (and c0); without b.inference, also the cache that backward() reads.
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
  auto time = [&](Index s) { return b.reverse ? T - 1 - s : s; };
  const auto W_ih = view(w.W_ih, GH, C);
  RowVector<S> bias(GH);
  cell.input_bias(w.b_ih, w.b_hh, H, bias.data());
  const bool keep = !b.inference;  // a cache for backward, or inference with small buffers
  // Inference keeps the state of one pass only, by position in the pass: two steps of h (and of h_rec with a
  // mask), one of aux and one of m, [block, max(H, P)] each, for each team of threads that shares a step
  const Index block_max = std::min(N, tuning::forward_row_block), state_size = block_max * std::max(H, P);
  const Index team_state =
      keep ? 0 : (2 + (mask ? 2 : 0) + (cell.has_aux() ? 1 : 0) + (proj ? 1 : 0)) * state_size;
  std::vector<S> states(static_cast<size_t>((by_rows ? nthreads : 1) * team_state));

  parallel(nthreads, [&](int tid, int nt) {
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

    // the recurrence: this thread's hidden units over every row, or (split by rows) its own rows over every unit
    {
      // the threads that share a step (all, splitting the hidden units; or this one alone with its own rows)
      const int team = by_rows ? 1 : nt;
      // the rows this thread runs (all when split by units)
      const RowOrder ord(order, by_rows ? tid : 0, by_rows ? nt : 1);
      const Index rows = static_cast<Index>(ord.rows.size());
      // the rows of one pass through the sequence: a thread's working memory is sized by it, not by the batch
      const Index block = std::min(rows, tuning::forward_row_block);
      // this thread's hidden units
      const auto slice = share(H, by_rows ? 0 : tid, team);
      const Index j0 = slice.first, j1 = slice.second;
      const Index wu = j1 - j0;
      // this thread's units of the state h: its hidden units, or with a projection its share of the P
      const auto state_slice = proj ? share(P, by_rows ? 0 : tid, team) : slice;
      const Index s0 = state_slice.first, sw = state_slice.second - s0;
      const RecurrentSlice<S> W(w.W_hh, G, H, j0, wu, packed, false, P, cell.whole_products());
      const Index ws = W.gate_stride(), ld = W.row_length();
      // with a projection: this thread's rows of W_hr, and its units' h_t of the pass's rows
      const RecurrentSlice<S> Wr(proj ? w.W_hr : nullptr, 1, P, s0, sw, packed && proj, false, H);
      std::vector<S> proj_rec(proj ? static_cast<size_t>(block * Wr.row_length()) : 0);
      // inference: this thread's columns of W_ih too (laid out as W's), and its units' gates of one step
      const RecurrentSlice<S> Wx(fused ? w.W_ih : nullptr, G, H, j0, wu, packed && fused, false, C,
                                 cell.whole_products());
      std::vector<S> x_rec(fused ? static_cast<size_t>(block * ld) : 0), x_bias(fused ? ld : 0);
      for (Index k = 0; fused && k < G; ++k)
        for (Index u = 0; u < wu; ++u) x_bias[k * ws + u] = bias[k * H + j0 + u];
      std::vector<const S*> x_rows(fused ? static_cast<size_t>(block) : 0);
      std::vector<S> rec(static_cast<size_t>(block * ld));
      // the cell state of the pass's rows, by position (the state h is in the slots below)
      std::vector<S> c_a(Cell::has_c ? block * wu : 0), c_b(c_a.size());
      std::vector<const S*> a_rows(static_cast<size_t>(block));
      std::vector<Index> pass;  // the pass's rows, longest sequence first
      pass.reserve(static_cast<size_t>(block));
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
        // the state entering the first step: h0 and c0
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

        // the steps, in time order
        for (Index s = 0; s < T; ++s) {
          const Index t = time(s), m = std::clamp<Index>(ord.active[t] - p0, 0, np);
          // the step's arrays ([N, ...] at unit 0, or by position in inference)
          const S* h_in = h_slot(s);
          S* h_out = h_slot(s + 1);
          const S* h_rec = mask ? rec_slot(s) : h_in;
          S* aux_time = aux_slot(s);
          S* m_time = m_slot(s);
          // the step's input projection: the cache's row, or (inference) computed here for this thread's units
          S* gates_t = fused ? x_rec.data() : b.gates + t * N * GH + j0;
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
                                .aux_rows = aux_time,
                                .by_position = !keep,
                                .a_rows = a_rows,
                                .rec = rec.data(),
                                .proto = RowF<S>{.H = H,
                                                 .w = wu,
                                                 .ws = ws,
                                                 .gs = fused ? ws : H,
                                                 .b_hh = w.b_hh + j0,
                                                 .params = w.params ? w.params + j0 : nullptr},
                                .gates_t = gates_t,
                                .gates_ld = gates_ld,
                                .gates_by_position = fused,
                                .aux_t = aux_time ? aux_time + j0 : nullptr,
                                .h_in = h_in + j0,
                                .h_rec = h_rec + j0,
                                .c_in = c_in,
                                .h_out = (proj ? m_time : h_out) + j0,
                                .c_out = c_out,
                                .G = G};
            cell.forward_step(step);
            if (proj) {
              // h_t = m_t W_hr^T, this thread's units of it, once every thread's units of m_t are written
              barrier(team);
              for (Index i = 0; i < m; ++i) a_rows[i] = m_time + step.row(i) * H;
              Wr.forward(m, a_rows.data(), 0, 1, proj_rec.data(), Wr.row_length());
              for (Index i = 0; i < m; ++i)
                state(h_out, at(i)) = view((const S*)proj_rec.data() + i * Wr.row_length(), 1, sw);
            }
          }
          // y_t = h_t
          S* y_time = b.y + t * N * P;
          for (Index i = 0; i < m; ++i) state(y_time, pass[i]) = state((const S*)h_out, at(i));
          // a sequence past its own length keeps its state, and its outputs and cache are zeros
          for (Index i = m; i < np; ++i) {
            const Index n = pass[i];
            state(h_out, at(i)) = state(h_in, at(i));
            if (Cell::has_c) view(c_out + i * wu, 1, wu) = view(c_in + i * wu, 1, wu);
            state(y_time, n).setZero();
            if (!fused)
              for (Index k = 0; k < G; ++k) view(gates_t + n * GH + k * H, 1, wu).setZero();
            if (aux_time) units(aux_time, at(i), H).setZero();
            if (m_time) units(m_time, at(i), H).setZero();
          }
          set_rec(s + 1);
          std::swap(c_in, c_out);
          barrier(team);
        }

        // the state leaving the last step: h_n (the cache's last slot already) and c_n
        for (Index i = 0; !keep && i < np; ++i) state(b.h_n, pass[i]) = state((const S*)h_slot(T), i);
        for (Index i = 0; Cell::has_c && i < np; ++i) units(b.c_n, pass[i], H) = view(c_in + i * wu, 1, wu);
      }
    }
  });
}

// The gradient of every input of forward() (dx, dh0, dc0, the weights) from dy, dh_n (and dc_n) and its cache.
template <class Cell, class S>
void backward(const Cell& cell, const Dims& d, const Weights<S>& w, const BackwardBuffers<S>& b, int nthreads) {
  const Index T = d.T, N = d.N, C = d.C, H = d.H, P = d.state(), G = Cell::G, GH = G * H, TN = T * N;
  if (H == 0) {  // nothing reaches x: dx is zero, every other gradient is empty
    std::fill_n(b.dx, TN * C, S(0));  // (an Eigen view of TN rows would walk them even when C = 0)
    return;
  }
  const bool proj = w.W_hr != nullptr;
  nthreads = threads_for(4.0 * TN * GH * (C + H), nthreads);
  nthreads = std::min(nthreads, step_threads(N, GH, H));
  const RowOrder order(b.lengths, N, T);
  const bool packed = TN >= pack_threshold().load();
  // dx = dG W_ih inside the time loop, each step's while its gate gradients are in cache, or one product
  // after the loop (tuning::dx_per_step_min_panels)
  const bool dx_per_step = packed && C >= PackTraits<S>::NR * tuning::dx_per_step_min_panels;
  const S* mask = b.recurrent_mask;
  auto time = [&](Index s) { return b.reverse ? T - 1 - s : s; };
  const auto W_ih = view(w.W_ih, GH, C);
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
      // the threads that share a step (all, splitting the hidden units)
      const int team = nt;
      // this thread's hidden units
      const auto slice = share(H, tid, team);
      const Index j0 = slice.first, j1 = slice.second;
      const Index wu = j1 - j0;
      // this thread's units of the state h: its hidden units, or with a projection its share of the P
      const auto state_slice = proj ? share(P, tid, team) : slice;
      const Index s0 = state_slice.first, sw = state_slice.second - s0;
      const RecurrentSlice<S> W(w.W_hh, G, H, s0, sw, packed, true, P);
      const Index ws = W.ws();
      // with a projection: dm_t = dh_t W_hr for this thread's hidden units
      const RecurrentSlice<S> Wr(proj ? w.W_hr : nullptr, 1, P, j0, wu, packed && proj, true, H);
      std::vector<S> proj_rec(proj ? static_cast<size_t>(N * Wr.ws()) : 0), dm(proj ? static_cast<size_t>(N * wu) : 0);
      // and this thread's columns of dx
      const auto x_cols = share(dx_per_step ? C : 0, tid, team);
      const Index x0 = x_cols.first, xw = x_cols.second - x0;
      const RecurrentSlice<S> Wx(w.W_ih, G, H, x0, xw, packed, true, C);
      std::vector<S> x_rec(static_cast<size_t>(N * Wx.ws()));
      std::vector<S> rec(static_cast<size_t>(N * ws)), work(static_cast<size_t>(wu));
      // the gradients reaching the state of every row, by batch row: dh over this thread's units of h, dc over
      // its hidden units
      std::vector<S> dh_a(static_cast<size_t>(N * sw)), dh_b(dh_a.size()),
          dc_a(Cell::has_c ? static_cast<size_t>(N * wu) : 0), dc_b(dc_a.size());
      std::vector<const S*> a_rows(static_cast<size_t>(N));
      S *dh_in = dh_a.data(), *dh_out = dh_b.data(), *dc_in = dc_a.data(), *dc_out = dc_b.data();
      // the bias gradients of these units, gate k at k * wu: summed over the steps while each step's
      // gradients are still in this thread's cache (db_hh only for gates whose source is not dG itself)
      RowVector<S> db_ih = RowVector<S>::Zero(G * wu), db_hh = RowVector<S>::Zero(G * wu);
      // and of the cell's own parameters, vector k at k * wu (backward_step adds each step's)
      RowVector<S> dparams = RowVector<S>::Zero(cell.n_params() * wu);
      auto units = [&](auto* p, Index n, Index stride) { return view(p + n * stride + j0, 1, wu); };
      auto state = [&](auto* p, Index n) { return view(p + n * P + s0, 1, sw); };  // this thread's units of h
      auto own = [&](S* p, Index n) { return view(p + n * wu, 1, wu); };
      auto own_state = [&](S* p, Index n) { return view(p + n * sw, 1, sw); };

      // the gradient reaching the state after the last step: dh_n and dc_n
      for (Index n = 0; n < N; ++n) {
        if (b.dh_n)
          own_state(dh_in, n) = state(b.dh_n, n);
        else
          own_state(dh_in, n).setZero();
        if (Cell::has_c) {
          if (b.dc_n)
            own(dc_in, n) = units(b.dc_n, n, H);
          else
            own(dc_in, n).setZero();
        }
      }

      // the steps, in reverse time order
      for (Index s = T - 1; s >= 0; --s) {
        const Index t = time(s), m = order.active[t];
        // the step's arrays ([N, ...] at unit 0); gates: the activated gates of step s, or (gates_are_state) the
        // state it left, which step s + 1 reads
        const S* gates_time = b.gates     ? b.gates + t * N * GH
                              : s + 1 < T ? b.h_prev + time(s + 1) * N * H
                                          : b.h_last;
        const S* aux_time = cell.has_aux() ? b.aux + t * N * H : nullptr;
        S* dgates_time = b.dgates + t * N * GH;
        S* dextra_time = cell.has_dextra() ? b.dextra + t * N * H : nullptr;
        S* dproj_time = proj ? b.dproj + t * N * P : nullptr;
        // dh_t += dy_t
        const S* dy_time = b.dy + t * N * P;
        for (Index i = 0; i < m; ++i) {
          const Index n = order.rows[i];
          own_state(dh_in, n) += state(dy_time, n);
        }
        if (proj) {
          // dm_t = dh_t W_hr for this thread's units, once every thread's units of dh_t are published (kept for
          // dW_hr = dh^T m; zero past a sequence's length)
          for (Index i = 0; i < N; ++i) {
            if (i < m)
              state(dproj_time, order.rows[i]) = own_state(dh_in, order.rows[i]);
            else
              state(dproj_time, order.rows[i]).setZero();
          }
          barrier(team);
          for (Index i = 0; i < m; ++i) a_rows[i] = dproj_time + order.rows[i] * P;
          Wr.backward(m, a_rows.data(), 0, 1, proj_rec.data(), Wr.ws(), false);
          for (Index i = 0; i < m; ++i)
            own(dm.data(), order.rows[i]) = view((const S*)proj_rec.data() + i * Wr.ws(), 1, wu);
        }
        if (m > 0) {
          BackwardStep<S> step{.H = H,
                               .w = wu,
                               .ws = ws,
                               .m = m,
                               .nt = team,
                               .order = order.rows,
                               .W = W,
                               .a_rows = a_rows,
                               .rec = rec.data(),
                               .work = work.data(),
                               .gates_t = gates_time + j0,
                               .aux_t = aux_time ? aux_time + j0 : nullptr,
                               .h_prev_t = b.h_prev + t * N * H + j0,
                               .h_rec_t = h_rec + t * N * H + j0,
                               .dh = proj ? dm.data() : dh_in,
                               .dc = dc_in,
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
            Wx.backward(m, a_rows.data(), 0, G, x_rec.data(), Wx.ws(), false);
            for (Index i = 0; i < m; ++i)
              view(b.dx + (t * N + order.rows[i]) * C + x0, 1, xw) = view((const S*)x_rec.data() + i * Wx.ws(), 1, xw);
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
        // a sequence past its own length passes its gradient through, and its gate gradients and dx are zeros
        for (Index i = m; i < N; ++i) {
          const Index n = order.rows[i];
          own_state(dh_out, n) = own_state(dh_in, n);
          if (Cell::has_c) own(dc_out, n) = own(dc_in, n);
          for (Index k = 0; k < G; ++k) units(dgates_time + k * H, n, GH).setZero();
          if (dextra_time) units(dextra_time, n, H).setZero();
          if (xw > 0) view(b.dx + (t * N + n) * C + x0, 1, xw).setZero();
        }
        std::swap(dh_in, dh_out);
        std::swap(dc_in, dc_out);
      }

      // the gradient reaching the state before the first step: dh0 and dc0; and this thread's sums over the steps
      for (Index n = 0; n < N; ++n) {
        state(b.dh0, n) = own_state(dh_in, n);
        if (Cell::has_c) units(b.dc0, n, H) = own(dc_in, n);
      }
      for (int k = 0; k < cell.n_params(); ++k) view(b.dparams + k * H + j0, 1, wu) = dparams.segment(k * wu, wu);
      for (int k = 0; k < G; ++k) {
        view(b.db_ih + k * H + j0, 1, wu) = db_ih.segment(k * wu, wu);
        view(b.db_hh + k * H + j0, 1, wu) = (hh_is_dG[k] ? db_ih : db_hh).segment(k * wu, wu);
      }
    }
    barrier(nt);  // every thread's gate gradients of every step are written

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
    // dx = dG W_ih, over every step (unless each step's was computed inside the loop)
    if (!dx_per_step)
      for_row_blocks(TN, tuning::product_min_rows, tid, nt, [&](Index i0, Index i1) {
        view(b.dx + i0 * C, i1 - i0, C).noalias() = view(b.dgates + i0 * GH, i1 - i0, GH) * W_ih;
      });
  });
}

}  // namespace rnnkit
