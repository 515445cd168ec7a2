// LSTM cell, gates i, f, g, o (PyTorch order). The cache's aux is c_prev.
#pragma once

#include "rnnkit/sequence.hpp"

namespace rnnkit {

struct LstmCell {
  static constexpr int G = 4;
  static constexpr bool has_c = true;
  static constexpr bool has_direct = false;
  bool has_aux() const { return true; }
  bool has_dextra() const { return false; }

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    view(out, 1, G * H) = view(b_ih, 1, G * H) + view(b_hh, 1, G * H);
  }

  template <class S>
  void forward_step(StepF<S>& s) const {
    const Index H = s.H;
    // [i, f, g, o] = W_ih x_t + b_ih + W_hh h_rec + b_hh
    s.gates.noalias() += s.h_rec * s.W_hh.transpose();
    auto i = s.gates.middleCols(0, H), f = s.gates.middleCols(H, H);
    auto g = s.gates.middleCols(2 * H, H), o = s.gates.middleCols(3 * H, H);
    sigmoid_inplace(i);
    sigmoid_inplace(f);
    tanh_inplace(g);
    sigmoid_inplace(o);
    s.aux = s.c_prev;
    // c_t = f * c_prev + i * g
    s.c_t.array() = f.array() * s.c_prev.array() + i.array() * g.array();
    // h_t = o * tanh(c_t)
    s.h_t = s.c_t;
    tanh_inplace(s.h_t);
    s.h_t.array() *= o.array();
  }

  template <class S>
  void backward_step(StepB<S>& s) const {
    const Index H = s.H;
    const auto i = s.gates.middleCols(0, H).array(), f = s.gates.middleCols(H, H).array();
    const auto g = s.gates.middleCols(2 * H, H).array(), o = s.gates.middleCols(3 * H, H).array();
    const auto c_prev = s.aux.array();
    // tanh(c_t), recomputed from the gates: c_t = f * c_prev + i * g
    auto tc_ = s.work.middleCols(0, H);
    tc_.array() = f * c_prev + i * g;
    tanh_inplace(tc_);
    const auto tc = tc_.array();
    // dc_t = dc + dh * o * (1 - tanh(c_t)^2), kept in dc_prev until it becomes dc_prev
    auto dc_t = s.dc_prev.array();
    dc_t = s.dc.array() + s.dh.array() * o * dtanh(tc);
    s.dgates.middleCols(0, H).array() = dc_t * g * dsigmoid(i);
    s.dgates.middleCols(H, H).array() = dc_t * c_prev * dsigmoid(f);
    s.dgates.middleCols(2 * H, H).array() = dc_t * i * dtanh(g);
    s.dgates.middleCols(3 * H, H).array() = s.dh.array() * tc * dsigmoid(o);
    // dc_prev = dc_t * f
    dc_t *= f;
    // dh_rec = dG W_hh
    s.dh_rec.noalias() = s.dgates * s.W_hh;
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates + k * H, G * H, h_rec};
  }
};

}  // namespace rnnkit
