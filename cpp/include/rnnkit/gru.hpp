// GRU cell, gates r, z, n (PyTorch order).
//   reset_after (PyTorch, Keras' default): n = tanh(W_in x + b_in + r * (W_hn h_rec + b_hn)); aux = W_hn h_rec + b_hn
//   reset before (classic Keras, ONNX):    n = tanh(W_in x + b_in + W_hn (r * h_rec) + b_hn); aux = r * h_rec
// h_rec is h_prev, or h_prev * recurrent_mask; h_t = (1 - z) * n + z * h_prev uses the state itself.
// r and z take the activation f (sigmoid by default: Keras' recurrent_activation), n the activation g (tanh:
// Keras' activation); ONNX's activations are [f, g].
#pragma once

#include <type_traits>

#include "rnnkit/activations.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/step.hpp"

namespace rnnkit {

struct GruCell {
  static constexpr int G = 3;
  static constexpr bool has_c = false;
  static constexpr bool has_direct = true;  // h_t = ... + z * h_prev
  static constexpr bool can_project = false;
  static constexpr bool gates_are_state = false;
  bool reset_after = true;
  Gate f{{Act::sigmoid}}, g{{Act::tanh}};
  int n_params() const { return 0; }
  const char* params_name() const { return "params"; }
  // the default activations without clip take the fused, vectorised path
  bool fast() const { return f.is(Act::sigmoid) && g.is(Act::tanh); }
  bool has_aux() const { return true; }
  // reset_after: the hidden side of the n gate sees dn * r, not dn
  bool has_dextra() const { return reset_after; }
  // reset before the product asks for the n gate's product on its own
  bool whole_products() const { return reset_after; }

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
    s.product(s.h_rec_rows, s.P, 0, reset_after ? 3 : 2);
    if (reset_after && !fast()) return s.rows([this](auto& r) { forward_row(r); });
    if (reset_after) {
      s.rows([](auto& r) {
        namespace ei = Eigen::internal;
        const Index H = r.H, gs = r.gs, ws = r.ws;
        auto* a = r.gates;
        const auto* q = r.rec;
        // in: pre-activations r z n, their W_hn products, b_hn, h_prev; out: r z n, aux, h_t
        detail::packets<8, 5>(r.w, {a, a + gs, a + 2 * gs, q, q + ws, q + 2 * ws, r.b_hh + 2 * H, r.h_prev},
                              {a, a + gs, a + 2 * gs, r.aux, r.h_t}, [](const auto* x, auto* y) {
                                const auto rg = detail::psigmoid(ei::padd(x[0], x[3]));
                                const auto z = detail::psigmoid(ei::padd(x[1], x[4]));
                                // aux = W_hn h_rec + b_hn; n = tanh(W_in x_t + b_in + r * aux)
                                const auto aux = ei::padd(x[5], x[6]);
                                const auto n = detail::ptanh(ei::padd(x[2], ei::pmul(rg, aux)));
                                // h_t = (1 - z) * n + z * h_prev
                                y[0] = rg, y[1] = z, y[2] = n, y[3] = aux;
                                y[4] = ei::padd(n, ei::pmul(z, ei::psub(x[7], n)));
                              });
      });
      return;
    }
    // reset gate before the product: aux = r * h_rec, then n once every unit's aux is known
    if (fast()) {
      s.rows([](auto& r) {
        namespace ei = Eigen::internal;
        auto* a = r.gates;
        const auto* q = r.rec;
        // in: pre-activations r z, their W_h products, h_rec; out: r z, aux
        detail::packets<5, 3>(r.w, {a, a + r.gs, q, q + r.ws, r.h_rec}, {a, a + r.gs, r.aux},
                              [](const auto* x, auto* y) {
                                // [r, z] = sigmoid(...); aux = r * h_rec
                                y[0] = detail::psigmoid(ei::padd(x[0], x[2]));
                                y[1] = detail::psigmoid(ei::padd(x[1], x[3]));
                                y[2] = ei::pmul(y[0], x[4]);
                              });
      });
    } else {
      s.rows([this](auto& r) {
        using S = std::decay_t<decltype(*r.h_t)>;
        const Index w = r.w;
        for (int k = 0; k < 2; ++k) {
          view(r.gates + k * r.gs, 1, w) += view(r.rec + k * r.ws, 1, w);
          f.of<S>().forward(r.gates + k * r.gs, w);
        }
        view(r.aux, 1, w).array() = view(r.gates, 1, w).array() * view(r.h_rec, 1, w).array();
      });
    }
    s.sync();
    // n = tanh(W_in x_t + b_in + W_hn aux + b_hn); h_t = (1 - z) * n + z * h_prev
    s.product(s.aux_rows, s.H, 2, 3);
    if (fast()) {
      s.rows([](auto& r) {
        namespace ei = Eigen::internal;
        auto* n = r.gates + 2 * r.gs;
        // in: n's pre-activation, its W_hn product, z, h_prev; out: n, h_t
        detail::packets<4, 2>(r.w, {n, r.rec + 2 * r.ws, r.gates + r.gs, r.h_prev}, {n, r.h_t},
                              [](const auto* x, auto* y) {
                                y[0] = detail::ptanh(ei::padd(x[0], x[1]));
                                y[1] = ei::padd(y[0], ei::pmul(x[2], ei::psub(x[3], y[0])));
                              });
      });
      return;
    }
    s.rows([this](auto& r) {
      using S = std::decay_t<decltype(*r.h_t)>;
      const Index w = r.w;
      auto n = view(r.gates + 2 * r.gs, 1, w);
      n += view(r.rec + 2 * r.ws, 1, w);
      g.of<S>().forward(r.gates + 2 * r.gs, w);
      const auto z = view(r.gates + r.gs, 1, w).array();
      view(r.h_t, 1, w).array() = n.array() + z * (view(r.h_prev, 1, w).array() - n.array());
    });
  }

  template <class Step>
  void backward_step(Step& s) const {
    const Index H = s.H;
    if (reset_after) {
      if (!fast()) {
        s.rows([this](auto& q) { backward_row(q); });
      } else {
        s.rows([](auto& q) {
          namespace ei = Eigen::internal;
          const Index H = q.H;
          const auto* a = q.gates;
          auto* d = q.dgates;
          // in: gates r z n, aux, h_prev, dh; out: d[r z n]_pre, dextra, the direct path of dh_prev
          detail::packets<6, 5>(q.w, {a, a + H, a + 2 * H, q.aux, q.h_prev, q.dh}, {d, d + H, d + 2 * H, q.dextra, q.dh_prev},
                                [](const auto* x, auto* y) {
                                  using P = std::decay_t<decltype(x[0])>;
                                  const P one = ei::pset1<P>(1), r = x[0], z = x[1], n = x[2], dh = x[5];
                                  // dn_pre = dh * (1 - z) * (1 - n^2)
                                  const P dn = ei::pmul(ei::pmul(dh, ei::psub(one, z)), ei::psub(one, ei::pmul(n, n)));
                                  // dr_pre = dn_pre * aux * r (1 - r); dz_pre = dh * (h_prev - n) * z (1 - z)
                                  y[0] = ei::pmul(ei::pmul(dn, x[3]), ei::pmul(r, ei::psub(one, r)));
                                  y[1] = ei::pmul(ei::pmul(dh, ei::psub(x[4], n)), ei::pmul(z, ei::psub(one, z)));
                                  y[2] = dn;
                                  // the hidden side of n sees dn_pre * r; direct path: dh_prev = dh * z
                                  y[3] = ei::pmul(dn, r);
                                  y[4] = ei::pmul(dh, z);
                                });
        });
      }
      s.sync();
      // dh_rec = d[r, z]_pre W_h[rz] + (dn_pre * r) W_hn
      s.product(s.dgates_time, G * H, 0, 2, false);
      s.product(s.dextra_time, H, 2, 3, true);
      return;
    }
    // reset gate before the product: d(r * h_rec) needs every unit's dn_pre first
    s.rows([this](auto& q) {
      using S = std::decay_t<decltype(*q.gates)>;
      const Index H = q.H, w = q.w;
      const auto z = view(q.gates + H, 1, w).array();
      const auto n = view(q.gates + 2 * H, 1, w).array();
      const auto dh = view(q.dh, 1, w).array();
      auto dn = view(q.dgates + 2 * H, 1, w).array();
      auto dz = view(q.dgates + H, 1, w).array();
      if (fast()) {
        // dn_pre = dh * (1 - z) * (1 - n^2)
        dn = dh * (S(1) - z) * dtanh(n);
        // dz_pre = dh * (h_prev - n) * z (1 - z)
        dz = dh * (view(q.h_prev, 1, w).array() - n) * dsigmoid(z);
      } else {
        // dn_pre = dh * (1 - z) * g'(n); dz_pre = dh * (h_prev - n) * f'(z)
        dn = dh * (S(1) - z);
        g.of<S>().backward(q.gates + 2 * H, q.dgates + 2 * H, w);
        dz = dh * (view(q.h_prev, 1, w).array() - n);
        f.of<S>().backward(q.gates + H, q.dgates + H, w);
      }
      // direct path: dh_prev = dh * z
      view(q.dh_prev, 1, w).array() = dh * z;
    });
    s.sync();
    // d(r * h_rec) = dn_pre W_hn, for this thread's units
    s.product(s.dgates_time + 2 * H, G * H, 2, 3, false);
    s.rows([this](auto& q) {
      using S = std::decay_t<decltype(*q.gates)>;
      const Index w = q.w;
      auto drh = view(q.rec, 1, w).array();
      const auto r = view(q.gates, 1, w).array();
      // dr_pre = d(r * h_rec) * h_rec * f'(r)
      if (fast()) {
        view(q.dgates, 1, w).array() = drh * view(q.h_rec, 1, w).array() * dsigmoid(r);
      } else {
        view(q.dgates, 1, w).array() = drh * view(q.h_rec, 1, w).array();
        f.of<S>().backward(q.gates, q.dgates, w);
      }
      drh *= r;
    });
    s.sync();
    // dh_rec = d(r * h_rec) * r + d[r, z]_pre W_h[rz]
    s.product(s.dgates_time, G * H, 0, 2, true);
  }

  // One row of reset_after's generic path: each step of the equations over the row's units at once.
  template <class Row>
  void forward_row(Row& r) const {
    using S = std::decay_t<decltype(*r.h_t)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>();
    const Index H = r.H, gs = r.gs, ws = r.ws, w = r.w;
    auto gate = [&](int k) { return view(r.gates + k * gs, 1, w).array(); };
    auto rec = [&](int k) { return view(r.rec + k * ws, 1, w).array(); };
    // r = f(a_r + W_hr h_rec), z = f(a_z + W_hz h_rec)
    gate(0) += rec(0), gate(1) += rec(1);
    F.forward(r.gates, w), F.forward(r.gates + gs, w);
    // aux = W_hn h_rec + b_hn; n = g(W_in x_t + b_in + r * aux)
    auto aux = view(r.aux, 1, w).array();
    aux = rec(2) + view(r.b_hh + 2 * H, 1, w).array();
    gate(2) += gate(0) * aux;
    Gg.forward(r.gates + 2 * gs, w);
    // h_t = (1 - z) * n + z * h_prev
    view(r.h_t, 1, w).array() = gate(2) + gate(1) * (view(r.h_prev, 1, w).array() - gate(2));
  }
  template <class Row>
  void backward_row(Row& q) const {
    using S = std::decay_t<decltype(*q.dh)>;
    const auto F = f.template of<S>(), Gg = g.template of<S>();
    const Index H = q.H, w = q.w;
    auto gate = [&](int k) { return view(q.gates + k * H, 1, w).array(); };
    auto d = [&](int k) { return view(q.dgates + k * H, 1, w).array(); };
    const auto dh = view(q.dh, 1, w).array();
    // dn_pre = dh * (1 - z) * g'(n); dr_pre = dn_pre * aux * f'(r); dz_pre = dh * (h_prev - n) * f'(z)
    d(2) = dh * (S(1) - gate(1));
    Gg.backward(q.gates + 2 * H, q.dgates + 2 * H, w);
    d(0) = d(2) * view(q.aux, 1, w).array();
    F.backward(q.gates, q.dgates, w);
    d(1) = dh * (view(q.h_prev, 1, w).array() - gate(2));
    F.backward(q.gates + H, q.dgates + H, w);
    // the hidden side of n sees dn_pre * r; direct path: dh_prev = dh * z
    view(q.dextra, 1, w).array() = d(2) * gate(0);
    view(q.dh_prev, 1, w).array() = dh * gate(1);
  }

  template <class S>
  HHGrad<S> hh_grad(int k, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    if (k < 2) return {b.dgates + k * H, G * H, h_rec};
    if (reset_after) return {b.dextra, H, h_rec};
    return {b.dgates + 2 * H, G * H, b.aux};
  }
};

}  // namespace rnnkit
