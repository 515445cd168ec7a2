// LSTM cell, gates i, f, g, o (PyTorch order). The cache's aux is c_prev.
#pragma once

#include <type_traits>

#include "rnnkit/sequence.hpp"

namespace rnnkit {

struct LstmCell {
  static constexpr int G = 4;
  static constexpr bool has_c = true;
  static constexpr bool has_direct = false;
  static constexpr bool gates_are_state = false;
  bool has_aux() const { return true; }
  bool has_dextra() const { return false; }
  bool whole_products() const { return true; }  // forward_step asks for every gate's product at once

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    view(out, 1, G * H) = view(b_ih, 1, G * H) + view(b_hh, 1, G * H);
  }

  template <class Step>
  void forward_step(Step& s) const {
    // [i, f, g, o] = W_ih x_t + b_ih + W_hh h_rec + b_hh
    s.product(s.h_rec_rows, 0, 4);
    s.rows([](auto& r) {
      namespace ei = Eigen::internal;
      const Index gs = r.gs, ws = r.ws;
      auto* a = r.gates;
      const auto* q = r.rec;
      // in: pre-activations i f g o, their W_hh products, c_prev; out: i f g o, aux = c_prev, c_t, h_t
      detail::packets<9, 7>(r.w, {a, a + gs, a + 2 * gs, a + 3 * gs, q, q + ws, q + 2 * ws, q + 3 * ws, r.c_prev},
                            {a, a + gs, a + 2 * gs, a + 3 * gs, r.aux, r.c_t, r.h_t}, [](const auto* x, auto* y) {
                              const auto i = detail::psigmoid(ei::padd(x[0], x[4])), f = detail::psigmoid(ei::padd(x[1], x[5]));
                              const auto g = detail::ptanh(ei::padd(x[2], x[6])), o = detail::psigmoid(ei::padd(x[3], x[7]));
                              // c_t = f * c_prev + i * g; h_t = o * tanh(c_t)
                              const auto c = ei::padd(ei::pmul(f, x[8]), ei::pmul(i, g));
                              y[0] = i, y[1] = f, y[2] = g, y[3] = o, y[4] = x[8], y[5] = c;
                              y[6] = ei::pmul(o, detail::ptanh(c));
                            });
    });
  }

  template <class Step>
  void backward_step(Step& s) const {
    s.rows([](auto& r) {
      namespace ei = Eigen::internal;
      const Index H = r.H;
      const auto* a = r.gates;
      auto* d = r.dgates;
      // in: gates i f g o, c_prev, dh, dc; out: their pre-activation gradients, dc_prev
      detail::packets<7, 5>(r.w, {a, a + H, a + 2 * H, a + 3 * H, r.aux, r.dh, r.dc},
                            {d, d + H, d + 2 * H, d + 3 * H, r.dc_prev}, [](const auto* x, auto* y) {
                              using P = std::decay_t<decltype(x[0])>;
                              const P one = ei::pset1<P>(1);
                              const P i = x[0], f = x[1], g = x[2], o = x[3], c_prev = x[4], dh = x[5];
                              // tanh(c_t), recomputed from the gates: c_t = f * c_prev + i * g
                              const P tc = detail::ptanh(ei::padd(ei::pmul(f, c_prev), ei::pmul(i, g)));
                              // dc_t = dc + dh * o * (1 - tanh(c_t)^2)
                              const P dc = ei::padd(x[6], ei::pmul(ei::pmul(dh, o), ei::psub(one, ei::pmul(tc, tc))));
                              y[0] = ei::pmul(ei::pmul(dc, g), ei::pmul(i, ei::psub(one, i)));
                              y[1] = ei::pmul(ei::pmul(dc, c_prev), ei::pmul(f, ei::psub(one, f)));
                              y[2] = ei::pmul(ei::pmul(dc, i), ei::psub(one, ei::pmul(g, g)));
                              y[3] = ei::pmul(ei::pmul(dh, tc), ei::pmul(o, ei::psub(one, o)));
                              // dc_prev = dc_t * f
                              y[4] = ei::pmul(dc, f);
                            });
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
