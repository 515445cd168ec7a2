// Elman cell: h_t = act(W_ih x_t + b_ih + W_hh h_prev + b_hh), act = tanh or relu.
#pragma once

#include "rnnkit/sequence.hpp"

namespace rnnkit {

struct RnnCell {
  static constexpr int G = 1;
  static constexpr bool has_c = false;
  static constexpr bool has_direct = false;
  bool relu = false;
  bool has_aux() const { return false; }
  bool has_dextra() const { return false; }

  template <class S>
  void input_bias(const S* b_ih, const S* b_hh, Index H, S* out) const {
    view(out, 1, H) = view(b_ih, 1, H) + view(b_hh, 1, H);
  }

  template <class S>
  void forward_step(StepF<S>& s) const {
    // a_t = W_ih x_t + b_ih + W_hh h_rec + b_hh
    s.gates.noalias() += s.h_rec * s.W_hh.transpose();
    // h_t = act(a_t)
    if (relu)
      relu_inplace(s.gates);
    else
      tanh_inplace(s.gates);
    s.h_t = s.gates;
  }

  template <class S>
  void backward_step(StepB<S>& s) const {
    // da_t = dh * act'(a_t)
    if (relu)
      s.dgates.array() = s.dh.array() * drelu(s.gates.array());
    else
      s.dgates.array() = s.dh.array() * dtanh(s.gates.array());
    // dh_rec = da_t W_hh
    s.dh_rec.noalias() = s.dgates * s.W_hh;
  }

  template <class S>
  HHGrad<S> hh_grad(int, Index H, const BackwardBuffers<S>& b, const S* h_rec) const {
    return {b.dgates, H, h_rec};
  }
};

}  // namespace rnnkit
