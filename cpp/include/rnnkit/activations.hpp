// Vectorised gate nonlinearities and their derivatives (the derivatives in terms
// of the activation's output y, which is what the forward pass caches).
//
// The nonlinearities are evaluated through SIMD packets only, the last partial
// packet through masked loads and stores or a padded temporary: Eigen's own expressions peel scalar
// iterations up to an aligned address, and its scalar and packet logistic/tanh
// round differently, which would make results depend on where buffers happen to
// sit in memory. This way every element takes the same path on every call.
#pragma once

#include <algorithm>
#include <cmath>

#include "rnnkit/shapes.hpp"

namespace rnnkit {

namespace detail {

// Whether P has masked loads and stores (AVX and AVX-512 float): a partial packet is then read and
// written in place, its missing lanes read as zeros and left unwritten.
template <class P>
constexpr bool has_masked() {
  using T = Eigen::internal::unpacket_traits<P>;
  return T::masked_load_available && T::masked_store_available;
}
// The mask of a packet's first n lanes.
template <class P>
inline typename Eigen::internal::unpacket_traits<P>::mask_t tail_mask(Index n) {
  using M = typename Eigen::internal::unpacket_traits<P>::mask_t;
  return static_cast<M>((std::uint32_t(1) << n) - 1);
}

// A fused elementwise loop over w elements: f(x, y) maps NI input packets to NO output packets, read
// from in[k] + u and written to out[k] + u. The last partial packet goes through masked loads and
// stores where the instruction set has them, else through zero-padded temporaries: either way its
// missing lanes are zeros, so every element takes the same path whatever w and the buffers' alignment are.
// Outputs may alias inputs (each packet is loaded before it is stored). The loop is compiled as one piece
// (RNNKIT_FLATTEN): left to its heuristics, GCC calls Eigen's tanh and logistic out of line once they have many
// callers, which costs a fused cell step a tenth of its time (a GRU at H = 50).
#if defined(__GNUC__)
#define RNNKIT_FLATTEN __attribute__((flatten))
#else
#define RNNKIT_FLATTEN
#endif
template <int NI, int NO, class S, class F>
RNNKIT_FLATTEN inline void packets(Index w, const S* const (&in)[NI], S* const (&out)[NO], const F& f) {
  namespace ei = Eigen::internal;
  using P = typename ei::packet_traits<S>::type;
  constexpr Index L = ei::unpacket_traits<P>::size;
  P x[NI], y[NO];
  Index u = 0;
  for (; u + L <= w; u += L) {
    for (int k = 0; k < NI; ++k) x[k] = ei::ploadu<P>(in[k] + u);
    f(x, y);
    for (int k = 0; k < NO; ++k) ei::pstoreu(out[k] + u, y[k]);
  }
  if (u < w) {
    if constexpr (has_masked<P>()) {
      const auto mask = tail_mask<P>(w - u);
      for (int k = 0; k < NI; ++k) x[k] = ei::ploadu<P>(in[k] + u, mask);
      f(x, y);
      for (int k = 0; k < NO; ++k) ei::pstoreu(out[k] + u, y[k], mask);
      return;
    }
    // element by element over a fixed L (short loops a compiler would otherwise turn into memcpy calls);
    // every input is staged before the first packet load, so the loads do not wait on the scalar stores
    alignas(64) S t[NI > NO ? NI : NO][L];
    const Index n = w - u;
    for (int k = 0; k < NI; ++k)
      for (Index j = 0; j < L; ++j) t[k][j] = j < n ? in[k][u + j] : S(0);
    for (int k = 0; k < NI; ++k) x[k] = ei::pload<P>(t[k]);
    f(x, y);
    for (int k = 0; k < NO; ++k) ei::pstore(t[k], y[k]);
    for (int k = 0; k < NO; ++k)
      for (Index j = 0; j < L; ++j)
        if (j < n) out[k][u + j] = t[k][j];
  }
}

// The packet forms of the gate nonlinearities, for packets(): Eigen's packet op where it has one
// (float), else its scalar op lane by lane (Eigen 3.4 has no packet tanh for double).
template <class Op, class P>
inline P packet_op(const P& a) {
  namespace ei = Eigen::internal;
  if constexpr (ei::functor_traits<Op>::PacketAccess) {
    return Op().packetOp(a);
  } else {
    using S = typename ei::unpacket_traits<P>::type;
    alignas(64) S t[ei::unpacket_traits<P>::size];
    ei::pstore(t, a);
    for (auto& v : t) v = Op()(v);
    return ei::pload<P>(t);
  }
}
template <class P>
inline P psigmoid(const P& a) {
  return packet_op<Eigen::internal::scalar_logistic_op<typename Eigen::internal::unpacket_traits<P>::type>>(a);
}
template <class P>
inline P ptanh(const P& a) {
  return packet_op<Eigen::internal::scalar_tanh_op<typename Eigen::internal::unpacket_traits<P>::type>>(a);
}

// a = op(a) over the rows x cols block at p with row stride `stride`, through packets() as the fused loops.
template <class Op, class S>
inline void apply_rows(S* p, Index rows, Index cols, Index stride, const Op&) {
  for (Index r = 0; r < rows; ++r) {
    S* row = p + r * stride;
    packets<1, 1>(cols, {row}, {row}, [](const auto* x, auto* y) { y[0] = packet_op<Op>(x[0]); });
  }
}

template <class Op, class D>
inline void apply(Eigen::DenseBase<D>& a, const Op& op) {
  auto& m = a.derived();
  static_assert(static_cast<int>(D::IsRowMajor) == 1, "activations expect row-major blocks");
  apply_rows(m.data(), m.rows(), m.cols(), m.outerStride(), op);
}

}  // namespace detail

// y = 1 / (1 + exp(-a))
template <class D>
inline void sigmoid_inplace(Eigen::DenseBase<D>&& a) {
  detail::apply(a, Eigen::internal::scalar_logistic_op<typename D::Scalar>());
}
template <class D>
inline void sigmoid_inplace(Eigen::DenseBase<D>& a) {
  detail::apply(a, Eigen::internal::scalar_logistic_op<typename D::Scalar>());
}
// y = tanh(a)
template <class D>
inline void tanh_inplace(Eigen::DenseBase<D>&& a) {
  detail::apply(a, Eigen::internal::scalar_tanh_op<typename D::Scalar>());
}
template <class D>
inline void tanh_inplace(Eigen::DenseBase<D>& a) {
  detail::apply(a, Eigen::internal::scalar_tanh_op<typename D::Scalar>());
}
// y = max(a, 0)
template <class D>
inline void relu_inplace(Eigen::DenseBase<D>& a) { a.derived().array() = a.derived().array().max(typename D::Scalar(0)); }

// dsigmoid/da = y (1 - y)
template <class D>
inline auto dsigmoid(const Eigen::ArrayBase<D>& y) { return y * (typename D::Scalar(1) - y); }
// dtanh/da = 1 - y^2
template <class D>
inline auto dtanh(const Eigen::ArrayBase<D>& y) { return typename D::Scalar(1) - y.square(); }
// drelu/da = [y > 0]
template <class D>
inline auto drelu(const Eigen::ArrayBase<D>& y) {
  using S = typename D::Scalar;
  return (y > S(0)).template cast<S>();
}

// ---- The activations a cell may be given (Keras' `activation` / `recurrent_activation`, ONNX's
// `activations`), for the generic path of each cell: element by element, any of them, with an optional clip of
// the pre-activation (ONNX's `clip`). A cell whose activations are its defaults and that clips nothing keeps
// its fused, vectorised path above. Every derivative is written in terms of the activation's output y, which
// is what a cell caches; each activation here is nondecreasing for the alphas and betas that make sense, so
// a clipped pre-activation is recognised by its output.
enum class Act : int {
  tanh, sigmoid, relu, linear, hard_sigmoid, elu, softsign, softplus, selu, affine, leaky_relu,
  thresholded_relu, scaled_tanh
};

struct Activation {
  Act kind = Act::tanh;
  double alpha = 0, beta = 0;  // the parameters of hard_sigmoid, elu, selu, affine, leaky/thresholded relu, scaled_tanh

  bool is(Act k) const { return kind == k; }
  template <class S>
  S operator()(S a) const {
    const S al = static_cast<S>(alpha), be = static_cast<S>(beta);
    switch (kind) {
      case Act::tanh: return std::tanh(a);
      // 1 / (1 + exp(-a)), never overflowing
      case Act::sigmoid: return a >= S(0) ? S(1) / (S(1) + std::exp(-a)) : std::exp(a) / (S(1) + std::exp(a));
      case Act::relu: return a > S(0) ? a : S(0);
      case Act::linear: return a;
      // min(max(alpha a + beta, 0), 1)  (Keras 3: alpha = 1/6, beta = 1/2)
      case Act::hard_sigmoid: return std::min(S(1), std::max(S(0), al * a + be));
      // a if a >= 0 else alpha (exp(a) - 1)
      case Act::elu: return a >= S(0) ? a : al * std::expm1(a);
      case Act::softsign: return a / (S(1) + std::abs(a));
      // log(1 + exp(a)) = max(a, 0) + log1p(exp(-|a|))
      case Act::softplus: return std::max(a, S(0)) + std::log1p(std::exp(-std::abs(a)));
      // beta (a if a > 0 else alpha (exp(a) - 1)): alpha and beta of SELU
      case Act::selu: return a > S(0) ? be * a : be * al * std::expm1(a);
      case Act::affine: return al * a + be;
      case Act::leaky_relu: return a >= S(0) ? a : al * a;
      case Act::thresholded_relu: return a >= al ? a : S(0);
      // alpha tanh(beta a)
      case Act::scaled_tanh: return al * std::tanh(be * a);
    }
    return a;
  }
  // d act / d a, from y = act(a)
  template <class S>
  S grad(S y) const {
    const S al = static_cast<S>(alpha), be = static_cast<S>(beta);
    switch (kind) {
      case Act::tanh: return S(1) - y * y;
      case Act::sigmoid: return y * (S(1) - y);
      case Act::relu: return y > S(0) ? S(1) : S(0);
      case Act::linear: return S(1);
      case Act::hard_sigmoid: return y > S(0) && y < S(1) ? al : S(0);
      case Act::elu: return y >= S(0) ? S(1) : y + al;
      case Act::softsign: return (S(1) - std::abs(y)) * (S(1) - std::abs(y));
      // sigmoid(a) = 1 - exp(-y)
      case Act::softplus: return -std::expm1(-y);
      case Act::selu: return y > S(0) ? be : y + be * al;
      case Act::affine: return al;
      case Act::leaky_relu: return y >= S(0) ? S(1) : al;
      case Act::thresholded_relu: return y != S(0) ? S(1) : S(0);
      case Act::scaled_tanh: return al * be * (S(1) - (y / al) * (y / al));
    }
    return S(1);
  }
};

// a = act(a), in place: the fused loops' forms for tanh, sigmoid and relu, whole-block array expressions (Eigen
// vectorises them, each the scalar formula of Activation) for the others but softplus, thresholded_relu and
// scaled_tanh, which go element by element.
template <class S>
inline void activate(const Activation& act, View<S> a) {
  auto x = a.array();
  const S al = static_cast<S>(act.alpha), be = static_cast<S>(act.beta);
  switch (act.kind) {
    case Act::linear: break;
    case Act::tanh: tanh_inplace(a); break;
    case Act::relu: relu_inplace(a); break;
    case Act::sigmoid: sigmoid_inplace(a); break;
    case Act::hard_sigmoid: x = (x * al + be).cwiseMax(S(0)).cwiseMin(S(1)); break;
    case Act::softsign: x = x / (S(1) + x.abs()); break;
    case Act::elu: x = (x >= S(0)).select(x, al * x.expm1()); break;
    case Act::selu: x = (x > S(0)).select(be * x, be * al * x.expm1()); break;
    case Act::affine: x = x * al + be; break;
    case Act::leaky_relu: x = (x >= S(0)).select(x, x * al); break;
    default: a = a.unaryExpr([&act](S v) { return act(v); });
  }
}

// d = d * act'(pre-activation), the derivative read from the activation's output y (as Activation::grad).
template <class S>
inline void times_derivative(const Activation& act, View<S> d, ConstView<S> y) {
  const auto yv = y.array();
  auto dv = d.array();
  const S al = static_cast<S>(act.alpha), be = static_cast<S>(act.beta);
  switch (act.kind) {
    case Act::linear: break;
    case Act::tanh: dv *= dtanh(yv); break;
    case Act::relu: dv *= drelu(yv); break;
    case Act::sigmoid: dv *= dsigmoid(yv); break;
    case Act::hard_sigmoid: dv *= ((yv > S(0)) && (yv < S(1))).template cast<S>() * al; break;
    case Act::softsign: dv *= (S(1) - yv.abs()) * (S(1) - yv.abs()); break;
    case Act::elu: dv = (yv >= S(0)).select(dv, dv * (yv + al)); break;
    case Act::selu: dv = (yv > S(0)).select(dv * be, dv * (yv + be * al)); break;
    case Act::affine: dv *= al; break;
    case Act::leaky_relu: dv = (yv >= S(0)).select(dv, dv * al); break;
    default: dv *= y.unaryExpr([&act](S v) { return act.grad(v); }).array();
  }
}

// A gate's activation in S, with the clip of its pre-activation and the outputs at the clip's bounds.
template <class S>
struct TypedGate {
  Activation act;
  bool clipped;
  S c, hi, lo;  // the clip, and act(c), act(-c)

  // a = act(clip(a)) over w values
  void forward(S* a, Index w) const {
    auto v = view(a, 1, w);
    if (clipped) v = v.cwiseMax(-c).cwiseMin(c);
    activate(act, v);
  }
  // d = d * act'(a) at y = act(clip(a)) over w values, zero where the pre-activation was clipped (its output at
  // a bound)
  void backward(const S* y, S* d, Index w) const {
    times_derivative(act, view(d, 1, w), view(y, 1, w));
    if (!clipped) return;
    const auto yv = view(y, 1, w).array();
    auto dv = view(d, 1, w).array();
    dv = (yv == hi || yv == lo).select(S(0), dv);
  }
};

// A gate's activation and the clip of its pre-activation (clip <= 0: none).
struct Gate {
  Activation act;
  double clip = 0;

  template <class S>
  TypedGate<S> of() const {
    const S c = static_cast<S>(clip);
    TypedGate<S> gate{act, clip > 0, c, S(0), S(0)};
    if (clip > 0) {
      // the outputs at the bounds, computed as the row's outputs are (a vectorised tanh rounds as the scalar one may not)
      S bounds[2] = {c, -c};
      gate.forward(bounds, 2);
      gate.hi = bounds[0], gate.lo = bounds[1];
    }
    return gate;
  }
  bool is(Act k) const { return clip <= 0 && act.is(k); }
};

}  // namespace rnnkit
