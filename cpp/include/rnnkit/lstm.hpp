// LSTM cell, gates i, f, g, o (PyTorch order). The cache's aux is c_prev.
//   i = f(a_i + p_i * c_prev), f = f(a_f + p_f * c_prev), g = g(a_g), c_t = f * c_prev + i * g,
//   o = f(a_o + p_o * c_t), h_t = o * h(c_t)
// with a = W_ih x_t + b_ih + W_hh h_rec + b_hh; the activations f, g, h are sigmoid, tanh, tanh by default
// (Keras' recurrent_activation = f, activation = g = h; ONNX's activations [f, g, h]); the peepholes p_i, p_f,
// p_o (ONNX's P, in the order i, f, o here) are the cell's own parameters when it has them. A clip limits
// the gates' pre-activations (h is never given one: ONNX Runtime does not clip c_t where it enters h).
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
    s.product(s.h_rec_rows, 0, 4);
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

  // One row of the generic path, element by element.
  template <class Row>
  void forward_row(Row& r) const {
    using S = std::decay_t<decltype(*r.h_t)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>(), Hh = h.template of<S>();
    const Index H = r.H, gs = r.gs, ws = r.ws;
    S* a = r.gates;
    const S* q = r.rec;
    for (Index u = 0; u < r.w; ++u) {
      const S c_prev = r.c_prev[u];
      S ai = a[u] + q[u], af = a[gs + u] + q[ws + u], ag = a[2 * gs + u] + q[2 * ws + u], ao = a[3 * gs + u] + q[3 * ws + u];
      if (peepholes) ai += r.params[u] * c_prev, af += r.params[H + u] * c_prev;
      const S i = F.forward(ai), fg = F.forward(af), gg = Gg.forward(ag);
      // c_t = f * c_prev + i * g
      const S c = fg * c_prev + i * gg;
      if (peepholes) ao += r.params[2 * H + u] * c;
      const S o = F.forward(ao);
      a[u] = i, a[gs + u] = fg, a[2 * gs + u] = gg, a[3 * gs + u] = o;
      r.aux[u] = c_prev, r.c_t[u] = c;
      // h_t = o * h(c_t)
      r.h_t[u] = o * Hh.forward(c);
    }
  }
  template <class Row>
  void backward_row(Row& r) const {
    using S = std::decay_t<decltype(*r.dh)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>(), Hh = h.template of<S>();
    const Index H = r.H, w = r.w;
    const S* a = r.gates;
    S* d = r.dgates;
    for (Index u = 0; u < w; ++u) {
      const S i = a[u], fg = a[H + u], gg = a[2 * H + u], o = a[3 * H + u], c_prev = r.aux[u], dh = r.dh[u];
      // c_t and h(c_t), recomputed from the gates
      const S c = fg * c_prev + i * gg, hc = Hh.forward(c);
      // do_pre = dh * h(c_t) * f'(o); dc_t = dc + dh * o * h'(c_t) (+ do_pre * p_o)
      const S d_o = F.backward(o, dh * hc);
      S dc = r.dc[u] + Hh.backward(hc, dh * o);
      if (peepholes) dc += d_o * r.params[2 * H + u];
      const S d_i = F.backward(i, dc * gg), d_f = F.backward(fg, dc * c_prev), d_g = Gg.backward(gg, dc * i);
      d[u] = d_i, d[H + u] = d_f, d[2 * H + u] = d_g, d[3 * H + u] = d_o;
      // dc_prev = dc_t * f (+ di_pre * p_i + df_pre * p_f)
      r.dc_prev[u] = dc * fg + (peepholes ? d_i * r.params[u] + d_f * r.params[H + u] : S(0));
      if (peepholes) r.dparams[u] += d_i * c_prev, r.dparams[w + u] += d_f * c_prev, r.dparams[2 * w + u] += d_o * c;
    }
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates + k * H, G * H, h_rec};
  }
};

}  // namespace rnnkit
