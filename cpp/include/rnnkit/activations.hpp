// Vectorised gate nonlinearities and their derivatives (the derivatives in terms
// of the activation's output y, which is what the forward pass caches).
//
// The nonlinearities are evaluated through SIMD packets only, the last partial
// packet through a padded temporary: Eigen's own expressions peel scalar
// iterations up to an aligned address, and its scalar and packet logistic/tanh
// round differently, which would make results depend on where buffers happen to
// sit in memory. This way every element takes the same path on every call.
#pragma once

#include "rnnkit/shapes.hpp"

namespace rnnkit {

namespace detail {

// a = op(a) over the rows x cols block at p with row stride `stride`.
template <class Op, class S>
inline void apply_rows(S* p, Index rows, Index cols, Index stride, const Op& op) {
  namespace ei = Eigen::internal;
  if constexpr (ei::functor_traits<Op>::PacketAccess) {
    using P = typename ei::packet_traits<S>::type;
    constexpr Index L = ei::unpacket_traits<P>::size;
    for (Index r = 0; r < rows; ++r) {
      S* row = p + r * stride;
      Index i = 0;
      for (; i + L <= cols; i += L) ei::pstoreu(row + i, op.packetOp(ei::ploadu<P>(row + i)));
      if (i < cols) {
        alignas(64) S tail[L] = {};
        for (Index k = i; k < cols; ++k) tail[k - i] = row[k];
        ei::pstore(tail, op.packetOp(ei::pload<P>(tail)));
        for (Index k = i; k < cols; ++k) row[k] = tail[k - i];
      }
    }
  } else {
    for (Index r = 0; r < rows; ++r)
      for (Index i = 0; i < cols; ++i) p[r * stride + i] = op(p[r * stride + i]);
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
