// Elman cell: h_t = f(W_ih x_t + b_ih + W_hh h_prev + b_hh), f = tanh by default (ONNX's and Keras' `activation`).
#pragma once

#include <type_traits>

#include "rnnkit/activations.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/step.hpp"

namespace rnnkit {

struct RnnCell {
  static constexpr int G = 1;
  static constexpr bool has_c = false;
  static constexpr bool has_direct = false;
  static constexpr bool can_project = false;
  static constexpr bool gates_are_state = true;  // h_t = f(a_t) is the activated gate
  Gate f;                                         // its activation and clip
  bool has_aux() const { return false; }
  bool has_dextra() const { return false; }
  bool whole_products() const { return true; }
  int n_params() const { return 0; }
  const char* params_name() const { return "params"; }
  // tanh and relu without a clip take the vectorised path
  bool fast() const { return f.is(Act::tanh) || f.is(Act::relu); }

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    view(out, 1, H) = view(b_ih, 1, H) + view(b_hh, 1, H);
  }

  template <class Step>
  void forward_step(Step& s) const {
    s.product(s.h_rec_rows, s.P, 0, 1);
    s.rows([this](auto& r) {
      // a_t = W_ih x_t + b_ih + W_hh h_rec + b_hh
      auto a = view(r.gates, 1, r.w);
      a += view(r.rec, 1, r.w);
      // h_t = f(a_t)
      if (!fast())
        f.of<std::decay_t<decltype(*r.h_t)>>().forward(r.gates, r.w);
      else if (f.act.is(Act::relu))
        relu_inplace(a);
      else
        tanh_inplace(a);
      view(r.h_t, 1, r.w) = a;
    });
  }

  template <class Step>
  void backward_step(Step& s) const {
    s.rows([this](auto& r) {
      // da_t = dh * f'(a_t)
      const auto a = view(r.gates, 1, r.w).array();
      const auto dh = view(r.dh, 1, r.w).array();
      auto da = view(r.dgates, 1, r.w).array();
      if (!fast()) {
        da = dh;
        f.of<std::decay_t<decltype(*r.dh)>>().backward(r.gates, r.dgates, r.w);
      } else if (f.act.is(Act::relu)) {
        da = dh * drelu(a);
      } else {
        da = dh * dtanh(a);
      }
    });
    s.sync();
    // dh_rec = da_t W_hh
    s.product(s.dgates_time, s.H, 0, 1, false);
  }

  template <class S>
  HHGrad<S> hh_grad(int, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates, H, h_rec};
  }
};

}  // namespace rnnkit
