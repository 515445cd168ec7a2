// Vectorised gate nonlinearities and their derivatives, written in terms of the
// activation's output y (what the forward pass caches).
#pragma once

#include "rnnkit/shapes.hpp"

namespace rnnkit {

// y = 1 / (1 + exp(-a))
template <class D>
inline void sigmoid_inplace(Eigen::DenseBase<D>& a) { a.derived().array() = a.derived().array().logistic(); }
// y = tanh(a)
template <class D>
inline void tanh_inplace(Eigen::DenseBase<D>& a) { a.derived().array() = a.derived().array().tanh(); }
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
