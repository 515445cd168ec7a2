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

  template <class Step>
  void forward_step(Step& s) const {
    // [i, f, g, o] = W_ih x_t + b_ih + W_hh h_rec + b_hh
    s.product(s.h_rec_rows, 0, 4);
    s.rows([](auto& r) {
      const Index H = r.H, w = r.w;
      auto gate = [&](int k) { return view(r.gates + k * H, 1, w); };
      for (int k = 0; k < 4; ++k) gate(k) += view(r.rec + k * r.ws, 1, w);
      auto i = gate(0), f = gate(1), g = gate(2), o = gate(3);
      sigmoid_inplace(i);
      sigmoid_inplace(f);
      tanh_inplace(g);
      sigmoid_inplace(o);
      const auto c_prev = view(r.c_prev, 1, w);
      view(r.aux, 1, w) = c_prev;
      // c_t = f * c_prev + i * g
      auto c_t = view(r.c_t, 1, w);
      c_t.array() = f.array() * c_prev.array() + i.array() * g.array();
      // h_t = o * tanh(c_t)
      auto h_t = view(r.h_t, 1, w);
      h_t = c_t;
      tanh_inplace(h_t);
      h_t.array() *= o.array();
    });
  }

  template <class Step>
  void backward_step(Step& s) const {
    s.rows([](auto& r) {
      const Index H = r.H, w = r.w;
      auto gate = [&](int k) { return view(r.gates + k * H, 1, w).array(); };
      auto dgate = [&](int k) { return view(r.dgates + k * H, 1, w).array(); };
      const auto i = gate(0), f = gate(1), g = gate(2), o = gate(3);
      const auto c_prev = view(r.aux, 1, w).array();
      const auto dh = view(r.dh, 1, w).array();
      // tanh(c_t), recomputed from the gates: c_t = f * c_prev + i * g
      auto tc_ = view(r.work, 1, w);
      tc_.array() = f * c_prev + i * g;
      tanh_inplace(tc_);
      const auto tc = tc_.array();
      // dc_t = dc + dh * o * (1 - tanh(c_t)^2), kept in dc_prev until it becomes dc_prev
      auto dc_t = view(r.dc_prev, 1, w).array();
      dc_t = view(r.dc, 1, w).array() + dh * o * dtanh(tc);
      dgate(0) = dc_t * g * dsigmoid(i);
      dgate(1) = dc_t * c_prev * dsigmoid(f);
      dgate(2) = dc_t * i * dtanh(g);
      dgate(3) = dh * tc * dsigmoid(o);
      // dc_prev = dc_t * f
      dc_t *= f;
    });
    s.sync();
    // dh_rec = dG W_hh
    s.product(s.dgates_time, G * s.H, 0, G, false);
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates + k * H, G * H, h_rec};
  }
};

}  // namespace rnnkit
