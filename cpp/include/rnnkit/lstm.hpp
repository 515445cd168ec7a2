// LSTM cell, gates i, f, g, o (PyTorch order). The cache's aux is c_prev.
//   i = f(a_i + p_i * c_prev), f = f(a_f + p_f * c_prev), g = g(a_g), c_t = f * c_prev + i * g,
//   o = f(a_o + p_o * c_t), h_t = o * h(c_t)
// with a = W_ih x_t + b_ih + W_hh h_rec + b_hh; the activations f, g, h are sigmoid, tanh, tanh by default
// (Keras' recurrent_activation = f, activation = g = h; ONNX's activations [f, g, h]); the peepholes p_i, p_f,
// p_o (ONNX's P, in the order i, f, o here) are the cell's own parameters when it has them. A clip limits
// the gates' pre-activations (h is never given one: ONNX Runtime does not clip c_t where it enters h).
#pragma once

#include <type_traits>

#include "rnnkit/activations.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/step.hpp"

namespace rnnkit {

struct LstmCell {
  static constexpr int G = 4;
  static constexpr bool has_c = true;
  static constexpr bool has_direct = false;
  static constexpr bool gates_are_state = false;
  static constexpr bool can_project = true;  // h_t = W_hr (o * h(c_t)) (PyTorch's proj_size)
  bool has_aux() const { return true; }
  bool has_dextra() const { return false; }
  bool whole_products() const { return true; }  // forward_step asks for every gate's product at once
  Gate f{{Act::sigmoid}}, g{{Act::tanh}}, h{{Act::tanh}};
  bool peepholes = false;
  int n_params() const { return peepholes ? 3 : 0; }
  const char* params_name() const { return "peepholes"; }
  // the defaults without clip or peepholes take the fused, vectorised path
  bool fast() const { return f.is(Act::sigmoid) && g.is(Act::tanh) && h.is(Act::tanh) && !peepholes; }

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    view(out, 1, G * H) = view(b_ih, 1, G * H) + view(b_hh, 1, G * H);
  }

  template <class Step>
  void forward_step(Step& s) const {
    // [i, f, g, o] = W_ih x_t + b_ih + W_hh h_rec + b_hh
    s.product(s.h_rec_rows, s.P, 0, 4);
    if (!fast()) return s.rows([this](auto& r) { forward_row(r); });
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
    if (!fast()) {
      s.rows([this](auto& r) { backward_row(r); });
    } else {
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
    }
    s.sync();
    // dh_rec = dG W_hh
    s.product(s.dgates_time, G * s.H, 0, G, false);
  }

  // One row of the generic path: each step of the equations over the row's units at once.
  template <class Row>
  void forward_row(Row& r) const {
    using S = std::decay_t<decltype(*r.h_t)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>(), Hh = h.template of<S>();
    const Index H = r.H, gs = r.gs, ws = r.ws, w = r.w;
    auto gate = [&](int k) { return view(r.gates + k * gs, 1, w).array(); };
    for (int k = 0; k < G; ++k) gate(k) += view(r.rec + k * ws, 1, w).array();
    const auto c_prev = view(r.c_prev, 1, w).array();
    if (peepholes) {
      // a_i += p_i * c_prev, a_f += p_f * c_prev
      gate(0) += view(r.params, 1, w).array() * c_prev;
      gate(1) += view(r.params + H, 1, w).array() * c_prev;
    }
    F.forward(r.gates, w), F.forward(r.gates + gs, w), Gg.forward(r.gates + 2 * gs, w);
    // c_t = f * c_prev + i * g
    auto c = view(r.c_t, 1, w).array();
    c = gate(1) * c_prev + gate(0) * gate(2);
    if (peepholes) gate(3) += view(r.params + 2 * H, 1, w).array() * c;  // a_o += p_o * c_t
    F.forward(r.gates + 3 * gs, w);
    view(r.aux, 1, w) = view(r.c_prev, 1, w);
    // h_t = o * h(c_t)
    auto h_t = view(r.h_t, 1, w).array();
    h_t = c;
    Hh.forward(r.h_t, w);
    h_t *= gate(3);
  }
  template <class Row>
  void backward_row(Row& r) const {
    using S = std::decay_t<decltype(*r.dh)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>(), Hh = h.template of<S>();
    const Index H = r.H, w = r.w;
    auto gate = [&](int k) { return view(r.gates + k * H, 1, w).array(); };
    auto d = [&](int k) { return view(r.dgates + k * H, 1, w).array(); };
    const auto c_prev = view(r.aux, 1, w).array(), dh = view(r.dh, 1, w).array();
    // h(c_t), with c_t recomputed from the gates: c_t = f * c_prev + i * g
    auto hc = view(r.work, 1, w).array();
    hc = gate(1) * c_prev + gate(0) * gate(2);
    Hh.forward(r.work, w);
    // do_pre = dh * h(c_t) * f'(o)
    d(3) = dh * hc;
    F.backward(r.gates + 3 * H, r.dgates + 3 * H, w);
    // dc_t = dc + dh * o * h'(c_t) (+ do_pre * p_o), kept in dc_prev until the end
    auto dc = view(r.dc_prev, 1, w).array();
    dc = dh * gate(3);
    Hh.backward(r.work, r.dc_prev, w);
    dc += view(r.dc, 1, w).array();
    if (peepholes) dc += d(3) * view(r.params + 2 * H, 1, w).array();
    // di_pre = dc_t * g * f'(i), df_pre = dc_t * c_prev * f'(f), dg_pre = dc_t * i * g'(g)
    d(0) = dc * gate(2), d(1) = dc * c_prev, d(2) = dc * gate(0);
    F.backward(r.gates, r.dgates, w), F.backward(r.gates + H, r.dgates + H, w);
    Gg.backward(r.gates + 2 * H, r.dgates + 2 * H, w);
    if (peepholes) {
      // the peepholes' gradients: di_pre * c_prev, df_pre * c_prev, do_pre * c_t
      view(r.dparams, 1, w).array() += d(0) * c_prev;
      view(r.dparams + w, 1, w).array() += d(1) * c_prev;
      view(r.dparams + 2 * w, 1, w).array() += d(3) * (gate(1) * c_prev + gate(0) * gate(2));
    }
    // dc_prev = dc_t * f (+ di_pre * p_i + df_pre * p_f)
    dc *= gate(1);
    if (peepholes) dc += d(0) * view(r.params, 1, w).array() + d(1) * view(r.params + H, 1, w).array();
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates + k * H, G * H, h_rec};
  }
};

}  // namespace rnnkit
