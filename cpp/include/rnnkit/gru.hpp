// GRU cell, gates r, z, n (PyTorch order).
//   reset_after (PyTorch, Keras' default): n = tanh(W_in x + b_in + r * (W_hn h_rec + b_hn)); aux = W_hn h_rec + b_hn
//   reset before (classic Keras, ONNX):    n = tanh(W_in x + b_in + W_hn (r * h_rec) + b_hn); aux = r * h_rec
// h_rec is h_prev, or h_prev * recurrent_mask; h_t = (1 - z) * n + z * h_prev uses the state itself.
#pragma once

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

  template <class S>
  void forward_step(StepF<S>& s) const {
    const Index H = s.H;
    auto rz = s.gates.leftCols(2 * H);
    auto r = s.gates.middleCols(0, H), z = s.gates.middleCols(H, H), n = s.gates.middleCols(2 * H, H);
    // [r, z] = sigmoid(W_i[rz] x_t + b_i[rz] + W_h[rz] h_rec + b_h[rz])
    rz.noalias() += s.h_rec * s.W_hh.topRows(2 * H).transpose();
    sigmoid_inplace(rz);
    if (reset_after) {
      // aux = W_hn h_rec + b_hn
      s.aux.noalias() = s.h_rec * s.W_hh.bottomRows(H).transpose();
      s.aux.rowwise() += view(s.b_hh + 2 * H, 1, H).row(0);
      // n = tanh(W_in x_t + b_in + r * aux)
      n.array() += r.array() * s.aux.array();
    } else {
      // aux = r * h_rec
      s.aux.array() = r.array() * s.h_rec.array();
      // n = tanh(W_in x_t + b_in + W_hn aux + b_hn)
      n.noalias() += s.aux * s.W_hh.bottomRows(H).transpose();
    }
    tanh_inplace(n);
    // h_t = (1 - z) * n + z * h_prev
    s.h_t.array() = n.array() + z.array() * (s.h_prev.array() - n.array());
  }

  template <class S>
  void backward_step(StepB<S>& s) const {
    const Index H = s.H;
    const auto r = s.gates.middleCols(0, H).array(), z = s.gates.middleCols(H, H).array();
    const auto n = s.gates.middleCols(2 * H, H).array();
    const auto dh = s.dh.array();
    auto dr = s.dgates.middleCols(0, H).array(), dz = s.dgates.middleCols(H, H).array();
    auto dn = s.dgates.middleCols(2 * H, H).array();
    // dn_pre = dh * (1 - z) * (1 - n^2)
    dn = dh * (S(1) - z) * dtanh(n);
    // dz_pre = dh * (h_prev - n) * z (1 - z)
    dz = dh * (s.h_prev.array() - n) * dsigmoid(z);
    // direct path: dh_prev = dh * z
    s.dh_prev.array() = dh * z;
    if (reset_after) {
      // dr_pre = dn_pre * aux * r (1 - r); the hidden side of n sees dn_pre * r
      dr = dn * s.aux.array() * dsigmoid(r);
      s.dextra.array() = dn * r;
      s.dh_rec.noalias() = s.dextra * s.W_hh.bottomRows(H);
    } else {
      // d(r * h_rec) = dn_pre W_hn
      auto drh = s.work.leftCols(H);
      drh.noalias() = s.dgates.middleCols(2 * H, H) * s.W_hh.bottomRows(H);
      dr = drh.array() * s.h_rec.array() * dsigmoid(r);
      s.dh_rec.array() = drh.array() * r;
    }
    // dh_rec += d[r, z]_pre W_h[rz]
    s.dh_rec.noalias() += s.dgates.leftCols(2 * H) * s.W_hh.topRows(2 * H);
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    if (k < 2) return {b.dgates + k * H, G * H, h_rec};
    if (reset_after) return {b.dextra, H, h_rec};
    return {b.dgates + 2 * H, G * H, b.aux};
  }
};

}  // namespace rnnkit
