// GRU cell, gates r, z, n (PyTorch order).
//   reset_after (PyTorch, Keras' default): n = tanh(W_in x + b_in + r * (W_hn h_rec + b_hn)); aux = W_hn h_rec + b_hn
//   reset before (classic Keras, ONNX):    n = tanh(W_in x + b_in + W_hn (r * h_rec) + b_hn); aux = r * h_rec
// h_rec is h_prev, or h_prev * recurrent_mask; h_t = (1 - z) * n + z * h_prev uses the state itself.
#pragma once

#include <type_traits>

#include "rnnkit/sequence.hpp"

namespace rnnkit {

struct GruCell {
  static constexpr int G = 3;
  static constexpr bool has_c = false;
  static constexpr bool has_direct = true;  // h_t = ... + z * h_prev
  bool reset_after = true;
  bool has_aux() const { return true; }
  // reset_after: the hidden side of the n gate sees dn * r, not dn
  bool has_dextra() const { return reset_after; }

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    auto o = view(out, 1, G * H);
    o = view(b_ih, 1, G * H) + view(b_hh, 1, G * H);
    // reset_after keeps b_hn inside r * (W_hn h_prev + b_hn)
    if (reset_after) o.rightCols(H) = view(b_ih + 2 * H, 1, H);
  }

  template <class Step>
  void forward_step(Step& s) const {
    // [r, z] = sigmoid(W_i[rz] x_t + b_i[rz] + W_h[rz] h_rec + b_h[rz])
    s.product(s.h_rec_rows, 0, reset_after ? 3 : 2);
    s.rows([this](auto& r) {
      const Index H = r.H, w = r.w;
      for (int k = 0; k < 2; ++k) {
        auto a = view(r.gates + k * H, 1, w);
        a += view(r.rec + k * r.ws, 1, w);
        sigmoid_inplace(a);
      }
      const auto rg = view(r.gates, 1, w).array();
      auto aux = view(r.aux, 1, w);
      if (reset_after) {
        // aux = W_hn h_rec + b_hn; n = tanh(W_in x_t + b_in + r * aux)
        aux = view(r.rec + 2 * r.ws, 1, w) + view(r.b_hh + 2 * H, 1, w);
        auto n = view(r.gates + 2 * H, 1, w);
        n.array() += rg * aux.array();
        finish_row(r);
      } else {
        // aux = r * h_rec
        aux.array() = rg * view(r.h_rec, 1, w).array();
      }
    });
    if (reset_after) return;
    // n = tanh(W_in x_t + b_in + W_hn aux + b_hn), once every unit's aux is known
    s.sync();
    s.product(s.aux_rows, 2, 3);
    s.rows([](auto& r) {
      view(r.gates + 2 * r.H, 1, r.w) += view(r.rec + 2 * r.ws, 1, r.w);
      finish_row(r);
    });
  }

  // n = tanh(n_pre); h_t = (1 - z) * n + z * h_prev
  template <class Row>
  static void finish_row(Row& r) {
    auto n = view(r.gates + 2 * r.H, 1, r.w);
    tanh_inplace(n);
    const auto z = view(r.gates + r.H, 1, r.w).array();
    view(r.h_t, 1, r.w).array() = n.array() + z * (view(r.h_prev, 1, r.w).array() - n.array());
  }

  template <class Step>
  void backward_step(Step& s) const {
    const Index H = s.H;
    s.rows([this](auto& q) {
      using S = std::decay_t<decltype(*q.gates)>;
      const Index H = q.H, w = q.w;
      const auto r = view(q.gates, 1, w).array(), z = view(q.gates + H, 1, w).array();
      const auto n = view(q.gates + 2 * H, 1, w).array();
      const auto dh = view(q.dh, 1, w).array();
      auto dn = view(q.dgates + 2 * H, 1, w).array();
      // dn_pre = dh * (1 - z) * (1 - n^2)
      dn = dh * (S(1) - z) * dtanh(n);
      // dz_pre = dh * (h_prev - n) * z (1 - z)
      view(q.dgates + H, 1, w).array() = dh * (view(q.h_prev, 1, w).array() - n) * dsigmoid(z);
      // direct path: dh_prev = dh * z
      view(q.dh_prev, 1, w).array() = dh * z;
      if (reset_after) {
        // dr_pre = dn_pre * aux * r (1 - r); the hidden side of n sees dn_pre * r
        view(q.dgates, 1, w).array() = dn * view(q.aux, 1, w).array() * dsigmoid(r);
        view(q.dextra, 1, w).array() = dn * r;
      }
    });
    s.sync();
    if (reset_after) {
      // dh_rec = d[r, z]_pre W_h[rz] + (dn_pre * r) W_hn
      s.product(s.dgates_time, G * H, 0, 2, false);
      s.product(s.dextra_time, H, 2, 3, true);
      return;
    }
    // d(r * h_rec) = dn_pre W_hn, for this thread's units
    s.product(s.dgates_time + 2 * H, G * H, 2, 3, false);
    s.rows([](auto& q) {
      const Index w = q.w;
      auto drh = view(q.rec, 1, w).array();
      const auto r = view(q.gates, 1, w).array();
      view(q.dgates, 1, w).array() = drh * view(q.h_rec, 1, w).array() * dsigmoid(r);
      drh *= r;
    });
    s.sync();
    // dh_rec = d(r * h_rec) * r + d[r, z]_pre W_h[rz]
    s.product(s.dgates_time, G * H, 0, 2, true);
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    if (k < 2) return {b.dgates + k * H, G * H, h_rec};
    if (reset_after) return {b.dextra, H, h_rec};
    return {b.dgates + 2 * H, G * H, b.aux};
  }
};

}  // namespace rnnkit
