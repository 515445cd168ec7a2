// Vectorised gate nonlinearities and their derivatives (the derivatives in terms
// of the activation's output y, which is what the forward pass caches).
//
// The nonlinearities are evaluated through SIMD packets only, the last partial
// packet through masked loads and stores or a padded temporary: Eigen's own expressions peel scalar
// iterations up to an aligned address, and its scalar and packet logistic/tanh
// round differently, which would make results depend on where buffers happen to
// sit in memory. This way every element takes the same path on every call.
#pragma once

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
// Outputs may alias inputs (each packet is loaded before it is stored).
template <int NI, int NO, class S, class F>
inline void packets(Index w, const S* const (&in)[NI], S* const (&out)[NO], const F& f) {
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

}  // namespace rnnkit
