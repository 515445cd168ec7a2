#include <string>

#include "bind_common.hpp"
#include "rnnkit/jordan.hpp"

namespace rnnkit::bind {

namespace {

Activation activation_of(const std::string& name, const char* argument, bool output) {
  if (name == "tanh" || name == "sigmoid" || (output ? name == "linear" : name == "relu"))
    return Activation{activation_named(name)};
  throw py::value_error(std::string(argument) + ": expected one of " +
                        (output ? "'linear', 'tanh', 'sigmoid'" : "'tanh', 'relu', 'sigmoid'") + ", got '" + name +
                        "'");
}

JordanCell cell_of(const std::string& activation, const std::string& output_activation) {
  return {activation_of(activation, "activation", false), activation_of(output_activation, "output_activation", true)};
}

// Shapes of one call: T, N, C from x, U from W_xh, O from W_yh; every other argument is checked against them.
JordanDims jordan_dims(const py::array& x, const py::array& W_xh, const py::array& W_yh) {
  if (x.ndim() != 3) throw py::value_error("x: expected a 3-D array [T, N, C], got shape " + shape_str(shape_of(x)));
  if (W_xh.ndim() != 2)
    throw py::value_error("W_xh: expected a 2-D array [U, C], got shape " + shape_str(shape_of(W_xh)));
  if (W_yh.ndim() != 2)
    throw py::value_error("W_yh: expected a 2-D array [U, O], got shape " + shape_str(shape_of(W_yh)));
  return {x.shape(0), x.shape(1), x.shape(2), W_xh.shape(0), W_yh.shape(1)};
}

template <class S>
JordanWeights<S> jordan_weights(const JordanDims& d, const py::array& W_xh, const py::array& W_yh,
                                 const py::array& b_h, const py::array& W_hy, const py::array& b_y) {
  return {checked<S>(W_xh, "W_xh", {d.U, d.C}, "[U, C]"), checked<S>(W_yh, "W_yh", {d.U, d.O}, "[U, O]"),
          checked<S>(b_h, "b_h", {d.U}, "[U]"), checked<S>(W_hy, "W_hy", {d.O, d.U}, "[O, U]"),
          checked<S>(b_y, "b_y", {d.O}, "[O]")};
}

// Returns (y, y_n, cache) with cache a dict of the arrays backward needs.
template <class S>
py::tuple forward_jordan(const JordanCell& cell, const py::array& x, const py::array& W_xh, const py::array& W_yh,
                         const py::array& b_h, const py::array& W_hy, const py::array& b_y, const py::object& y0,
                         const py::object& lengths, bool reverse) {
  const JordanDims d = jordan_dims(x, W_xh, W_yh);
  const Index T = d.T, N = d.N, U = d.U, O = d.O;
  const JordanWeights<S> w = jordan_weights<S>(d, W_xh, W_yh, b_h, W_hy, b_y);
  JordanForwardBuffers<S> b{};
  b.x = checked<S>(x, "x", {T, N, d.C}, "[T, N, C]");
  b.y0 = optional<S>(y0, "y0", {N, O}, "[N, O]");
  b.lengths = checked_lengths(lengths, N, T);
  b.reverse = reverse;
  auto y = empty<S>({T, N, O}), y_n = empty<S>({N, O});
  auto y_prev = empty<S>({T, N, O}), h = empty<S>({T, N, U}), y_step = empty<S>({T, N, O});
  b.y = mut(y), b.y_n = mut(y_n), b.y_prev = mut(y_prev), b.h = mut(h), b.y_step = mut(y_step);
  {
    py::gil_scoped_release release;
    jordan_forward(cell, d, w, b, get_num_threads());
  }
  py::dict cache;
  cache["y_prev"] = y_prev;
  cache["h"] = h;
  cache["y_step"] = y_step;
  return py::make_tuple(y, y_n, cache);
}

// Returns (dx, dy0, dW_xh, dW_yh, db_h, dW_hy, db_y).
template <class S>
py::tuple backward_jordan(const JordanCell& cell, const py::array& x, const py::array& W_xh, const py::array& W_yh,
                          const py::array& b_h, const py::array& W_hy, const py::array& b_y, const py::object& lengths,
                          bool reverse, const py::dict& cache, const py::array& dy, const py::object& dy_n) {
  const JordanDims d = jordan_dims(x, W_xh, W_yh);
  const Index T = d.T, N = d.N, C = d.C, U = d.U, O = d.O;
  const JordanWeights<S> w = jordan_weights<S>(d, W_xh, W_yh, b_h, W_hy, b_y);
  JordanBackwardBuffers<S> b{};
  b.x = checked<S>(x, "x", {T, N, C}, "[T, N, C]");
  b.lengths = checked_lengths(lengths, N, T);
  b.reverse = reverse;
  b.y_prev = checked<S>(required_array(cache, "y_prev"), "cache.y_prev", {T, N, O}, "[T, N, O]");
  b.h = checked<S>(required_array(cache, "h"), "cache.h", {T, N, U}, "[T, N, U]");
  b.y_step = checked<S>(required_array(cache, "y_step"), "cache.y_step", {T, N, O}, "[T, N, O]");
  b.dy = checked<S>(dy, "dy", {T, N, O}, "[T, N, O]");
  b.dy_n = optional<S>(dy_n, "dy_n", {N, O}, "[N, O]");
  auto dx = empty<S>({T, N, C}), dy0 = empty<S>({N, O});
  auto dW_xh = empty<S>({U, C}), dW_yh = empty<S>({U, O}), db_h = empty<S>({U});
  auto dW_hy = empty<S>({O, U}), db_y = empty<S>({O});
  b.dx = mut(dx), b.dy0 = mut(dy0), b.dW_xh = mut(dW_xh), b.dW_yh = mut(dW_yh), b.db_h = mut(db_h);
  b.dW_hy = mut(dW_hy), b.db_y = mut(db_y);
  std::vector<S> dz(static_cast<size_t>(T * N * O)), da(static_cast<size_t>(T * N * U));
  b.dz = dz.data();
  b.da = da.data();
  {
    py::gil_scoped_release release;
    jordan_backward(cell, d, w, b, get_num_threads());
  }
  return py::make_tuple(dx, dy0, dW_xh, dW_yh, db_h, dW_hy, db_y);
}

}  // namespace

void bind_jordan(py::module_& m) {
  using py::arg;
  // the array arguments are converted here (see bind_cell); forward also returns (x, W_xh, W_yh, b_h, W_hy,
  // b_y, lengths) as converted, for the cache
  m.def(
      "jordan_forward",
      [](py::handle x_in, py::handle W_xh_in, py::handle W_yh_in, py::handle b_h_in, py::handle W_hy_in,
         py::handle b_y_in, py::handle y0, py::handle lengths_in, bool reverse, const std::string& activation,
         const std::string& output_activation) {
        const py::array x = float_array(x_in, "x");
        return dispatch_float(x, "x", [&](auto zero) {
          using S = decltype(zero);
          const py::array W_xh = float_array(W_xh_in, "W_xh"), W_yh = float_array(W_yh_in, "W_yh"),
                          b_h = float_array(b_h_in, "b_h"), W_hy = float_array(W_hy_in, "W_hy"),
                          b_y = float_array(b_y_in, "b_y");
          const py::object lengths = int64_lengths(lengths_in), y0_array = optional_float_array(y0, "y0");
          const JordanCell cell = cell_of(activation, output_activation);
          py::tuple out = forward_jordan<S>(cell, x, W_xh, W_yh, b_h, W_hy, b_y, y0_array, lengths, reverse);
          return py::make_tuple(out[0], out[1], out[2], py::make_tuple(x, W_xh, W_yh, b_h, W_hy, b_y, lengths));
        });
      },
      arg("x"), arg("W_xh"), arg("W_yh"), arg("b_h"), arg("W_hy"), arg("b_y"), arg("y0").none(true),
      arg("lengths").none(true), arg("reverse"), arg("activation"), arg("output_activation"));
  m.def(
      "jordan_backward",
      [](const py::array& x, const py::array& W_xh, const py::array& W_yh, const py::array& b_h,
         const py::array& W_hy, const py::array& b_y, const py::object& lengths, bool reverse,
         const std::string& activation, const std::string& output_activation, const py::dict& cache,
         py::handle dy_in, py::handle dy_n_in) {
        return dispatch_float(x, "x", [&](auto zero) {
          using S = decltype(zero);
          const JordanCell cell = cell_of(activation, output_activation);
          const py::array dy = float_array(dy_in, "dy");
          const py::object dy_n = optional_float_array(dy_n_in, "dy_n");
          return backward_jordan<S>(cell, x, W_xh, W_yh, b_h, W_hy, b_y, lengths, reverse, cache, dy, dy_n);
        });
      },
      arg("x").noconvert(), arg("W_xh").noconvert(), arg("W_yh").noconvert(), arg("b_h").noconvert(),
      arg("W_hy").noconvert(), arg("b_y").noconvert(), arg("lengths").none(true), arg("reverse"),
      arg("activation"), arg("output_activation"), arg("cache"), arg("dy"), arg("dy_n").none(true));
}

}  // namespace rnnkit::bind
