// The one shape legend of rnnkit, and the Eigen aliases the kernels use.
//
//   T = time steps, N = batch, C = input features, H = hidden units,
//   G = gates (RNN 1, GRU 3, LSTM 4).
//
// Sequences are time-major, row-major: x [T, N, C], y [T, N, H]; step t of a
// [T, N, K] array is the [N, K] matrix starting at row t*N of a [T*N, K] view.
// Weights use PyTorch's layout: W_ih [G*H, C], W_hh [G*H, H], b_ih [G*H], b_hh [G*H]; an LSTM with a projection
// (PyTorch's proj_size = P) has W_hh [G*H, P] and W_hr [P, H], and its h, y and h_prev have P values.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace rnnkit {

using Index = Eigen::Index;

template <class S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using RowVector = Eigen::Matrix<S, 1, Eigen::Dynamic>;

// A row-major view with an explicit row stride: a column block of a wider array.
template <class S>
using View = Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>>;
template <class S>
using ConstView = Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>;

template <class S>
inline View<S> view(S* p, Index rows, Index cols, Index stride) {
  return View<S>(p, rows, cols, Eigen::OuterStride<>(stride));
}
template <class S>
inline ConstView<S> view(const S* p, Index rows, Index cols, Index stride) {
  return ConstView<S>(p, rows, cols, Eigen::OuterStride<>(stride));
}
template <class S>
inline View<S> view(S* p, Index rows, Index cols) { return view(p, rows, cols, cols); }
template <class S>
inline ConstView<S> view(const S* p, Index rows, Index cols) { return view(p, rows, cols, cols); }

// P: the size of the state h and of the outputs; H unless an LSTM projects its output (W_hr [P, H]).
struct Dims {
  Index T, N, C, H;
  Index P = -1;  // -1: H
  Index state() const { return P < 0 ? H : P; }
};

}  // namespace rnnkit
