// What every cell's binding shares: argument checks that name the argument and
// the shape expected, dtype dispatch, output allocation, and the GIL released
// around the kernel. A cell's binding file only names the cell and its options.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "rnnkit/activations.hpp"
#include "rnnkit/buffers.hpp"
#include "rnnkit/sequence.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/step.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit::bind {

namespace py = pybind11;

inline std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}
inline std::string shape_str(std::initializer_list<py::ssize_t> s) { return shape_str(std::vector<py::ssize_t>(s)); }

inline bool has_shape(const py::array& a, std::initializer_list<py::ssize_t> shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  py::ssize_t i = 0;
  for (auto n : shape)
    if (a.shape(i++) != n) return false;
  return true;
}

// Checks dtype, C order and shape of `a`; `legend` names the expected shape ("[T, N, C]").
// Whether `a` holds S in native byte order. Compared by value: an unpickled array carries a dtype object equal
// to, but not the same as, numpy's own.
template <class S>
bool has_dtype(const py::array& a) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), py::dtype::of<S>().ptr());
}

template <class S>
const S* checked(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape,
                 const char* legend) {
  if (!has_dtype<S>(a))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<S>())) +
                         " (the dtype of x), got " + std::string(py::str(a.dtype())));
  if (!has_shape(a, shape))
    throw py::value_error(std::string(name) + ": expected shape " + legend + " = " + shape_str(shape) + ", got " +
                          shape_str(shape_of(a)));
  // (arguments were made so by float_array; a cache's arrays are as rnnkit wrote them, or rejected here)
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array aligned to its dtype");
  return static_cast<const S*>(a.data());
}

template <class S>
const S* optional(const py::object& o, const char* name, std::initializer_list<py::ssize_t> shape,
                  const char* legend) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + ": expected a numpy array or None");
  return checked<S>(py::reinterpret_borrow<py::array>(o), name, shape, legend);
}

// Calls numpy.<function>(o, *args) and names `name` in any error it raises: MemoryError when the result does
// not fit in memory (a broadcast view whose copy would need terabytes), else TypeError or ValueError.
// (pybind11's array::ensure returns a null array and drops numpy's reason.)
template <class... Args>
py::array numpy_call(const char* function, py::handle o, const char* name, Args&&... args) {
  // never destroyed: a static py::object's destructor would run after the interpreter has gone
  static const py::object* numpy = new py::object(py::module_::import("numpy"));
  try {
    return numpy->attr(function)(o, std::forward<Args>(args)...);
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_Exception)) throw;
    const std::string message = std::string(name) + ": cannot be made a C-contiguous numpy array (" +
                                std::string(py::str(e.type().attr("__name__"))) + ": " +
                                std::string(py::str(e.value())) + ")";
    if (e.matches(PyExc_MemoryError)) {
      PyErr_SetString(PyExc_MemoryError, message.c_str());
      throw py::error_already_set();
    }
    if (e.matches(PyExc_TypeError)) throw py::type_error(message);
    throw py::value_error(message);
  }
}

// `o` as numpy.asarray makes it, or an error naming the argument.
inline py::array as_array(py::handle o, const char* name) {
  if (py::isinstance<py::array>(o)) return py::reinterpret_borrow<py::array>(o);
  return numpy_call("asarray", o, name);
}

// An array argument of a float dtype as the kernels take it: C-contiguous, copied once here if it is not
// (Fortran order, strided views); lists become arrays.
inline py::array float_array(py::handle o, const char* name) {
  if (o.is_none()) throw py::type_error(std::string(name) + ": expected a float32 or float64 array, got None");
  py::array a = as_array(o, name);
  if (a.dtype().kind() != 'f')
    throw py::type_error(std::string(name) + ": expected a float32 or float64 array, got dtype " +
                         std::string(py::str(a.dtype())));
  // copied once when not C-contiguous (Fortran order, strided views) or not aligned to its dtype (a view at an
  // odd byte offset): the kernels read whole, aligned elements
  if (!(a.flags() & py::array::c_style) || !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    a = numpy_call("require", a, name, py::none(), "CA");
  return a;
}
inline py::object optional_float_array(py::handle o, const char* name) {
  return o.is_none() ? py::object(py::none()) : py::object(float_array(o, name));
}

// lengths as the kernels take it: a C-contiguous int64 array (other integer dtypes converted), or None.
inline py::object int64_lengths(py::handle o) {
  if (o.is_none()) return py::none();
  py::array a = as_array(o, "lengths");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("lengths: expected an integer array, got dtype " + std::string(py::str(a.dtype())));
  if (!has_dtype<int64_t>(a) || !(a.flags() & py::array::c_style) ||
      !(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    a = numpy_call("ascontiguousarray", a, "lengths", py::dtype::of<int64_t>());
  return a;
}

// Working memory of one call. A buffer of up to tuning::scratch_keep_bytes is kept for the calling thread's
// next call (one per thread: concurrent calls never share), since a fresh one costs a page fault per page on
// every call; a larger one is the call's own and freed with it. Never zeroed: the kernels write every element
// before reading it. release_memory() frees the calling thread's kept buffer.
template <class S>
class Scratch {
 public:
  explicit Scratch(size_t n) {
    if (n * sizeof(S) > tuning::scratch_keep_bytes) {
      own_.reset(new S[n]);
      data_ = own_.get();
      return;
    }
    Kept& kept = thread_buffer();
    if (kept.size < n) {
      kept.data.reset();
      kept.data.reset(new S[n]);
      kept.size = n;
    }
    data_ = kept.data.get();
  }
  S* data() const { return data_; }
  static void release() { thread_buffer() = Kept{}; }

 private:
  struct Kept {
    std::unique_ptr<S[]> data;
    size_t size = 0;
  };
  static Kept& thread_buffer() {
    thread_local Kept kept;
    return kept;
  }
  std::unique_ptr<S[]> own_;
  S* data_;
};

// Memory for the arrays the kernels return, kept for reuse when numpy frees them: a training loop allocates
// the same large caches and gradients at every step. Blocks are reused by exact size; at most
// tuning::pool_keep_bytes are kept.
class BlockPool {
 public:
  static BlockPool& instance() {
    static BlockPool* pool = new BlockPool();  // never destroyed: arrays may outlive module teardown
    return *pool;
  }
  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        kept_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void put(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (kept_ + bytes <= tuning::pool_keep_bytes) {
        free_.emplace(bytes, p);
        kept_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  // Frees every kept block.
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, p] : free_) std::free(p);
    free_.clear();
    kept_ = 0;
  }

 private:
  std::mutex mutex_;
  std::unordered_multimap<size_t, void*> free_;
  size_t kept_ = 0;
};

// An uninitialised C-ordered array; large ones (tuning::pool_min_bytes) take their memory from BlockPool.
template <class S>
py::array_t<S> empty(std::initializer_list<py::ssize_t> shape) {
  size_t count = 1;
  for (auto n : shape) count *= static_cast<size_t>(n);
  const size_t bytes = count * sizeof(S);
  if (bytes < tuning::pool_min_bytes) return py::array_t<S>(std::vector<py::ssize_t>(shape));
  struct Block {
    void* p;
    size_t bytes;
  };
  auto* block = new Block{BlockPool::instance().get(bytes), bytes};
  py::capsule owner(block, [](void* q) {
    auto* b = static_cast<Block*>(q);
    BlockPool::instance().put(b->p, b->bytes);
    delete b;
  });
  return py::array_t<S>(std::vector<py::ssize_t>(shape), static_cast<S*>(block->p), owner);
}

template <class S>
S* mut(py::array_t<S>& a) {
  return a.mutable_data();
}

inline const int64_t* checked_lengths(const py::object& o, Index N, Index T) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o)) throw py::type_error("lengths: expected a numpy array or None");
  auto a = py::reinterpret_borrow<py::array>(o);
  if (!has_dtype<int64_t>(a))
    throw py::type_error("lengths: expected dtype int64, got " + std::string(py::str(a.dtype())));
  if (!has_shape(a, {N}) || !(a.flags() & py::array::c_style))
    throw py::value_error("lengths: expected a C-contiguous array of shape [N] = [" + std::to_string(N) + "], got " +
                          shape_str(shape_of(a)));
  const auto* l = static_cast<const int64_t*>(a.data());
  for (Index n = 0; n < N; ++n)
    if (l[n] < 0 || l[n] > T)
      throw py::value_error("lengths: expected values in [0, T] = [0, " + std::to_string(T) + "], got " +
                            std::to_string(l[n]) + " at index " + std::to_string(n));
  return l;
}

// ---- A cell's options, as functional.py passes them: {"activations": ((name, alpha, beta), ...), "clip": float}
// besides the cell's own flags. A missing option keeps the cell's default.

inline Act activation_named(const std::string& name) {
  static const std::pair<const char*, Act> table[] = {
      {"tanh", Act::tanh}, {"sigmoid", Act::sigmoid}, {"relu", Act::relu}, {"linear", Act::linear},
      {"hard_sigmoid", Act::hard_sigmoid}, {"elu", Act::elu}, {"softsign", Act::softsign},
      {"softplus", Act::softplus}, {"selu", Act::selu}, {"affine", Act::affine}, {"leaky_relu", Act::leaky_relu},
      {"thresholded_relu", Act::thresholded_relu}, {"scaled_tanh", Act::scaled_tanh}};
  std::string known;
  for (const auto& [n, a] : table) {
    if (name == n) return a;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw py::value_error("options: unknown activation '" + name + "', expected one of " + known);
}

// Sets the cell's gates (in the cell's order) from options["activations"] and options["clip"]; the clip goes to
// the first `clipped` of them (all by default).
inline void read_gates(const py::dict& o, std::initializer_list<Gate*> gates, size_t clipped = size_t(-1)) {
  if (o.contains("activations")) {
    const py::object a = o["activations"];
    if (!py::isinstance<py::tuple>(a) && !py::isinstance<py::list>(a))
      throw py::type_error("options: activations must be a sequence of (name, alpha, beta)");
    const auto seq = py::reinterpret_borrow<py::sequence>(a);
    if (seq.size() != gates.size())
      throw py::value_error("options: expected " + std::to_string(gates.size()) + " activations, got " +
                            std::to_string(seq.size()));
    size_t k = 0;
    for (Gate* gate : gates) {
      const py::object item = seq[k++];
      try {
        const auto [name, alpha, beta] = py::cast<std::tuple<std::string, double, double>>(item);
        gate->act = Activation{activation_named(name), alpha, beta};
      } catch (const py::cast_error&) {
        throw py::type_error("options: each activation must be (name, alpha, beta), got " +
                             std::string(py::repr(item)));
      }
    }
  }
  if (o.contains("clip") && !o["clip"].is_none()) {
    double clip = 0;
    try {
      clip = py::cast<double>(o["clip"]);
    } catch (const py::cast_error&) {
      throw py::type_error("options: clip must be a number or None");
    }
    if (!(clip > 0) || !std::isfinite(clip))
      throw py::value_error("options: clip must be a positive finite number, got " + std::to_string(clip));
    size_t k = 0;
    for (Gate* gate : gates)
      if (k++ < clipped) gate->clip = clip;
  }
}

// A bool option, false when missing.
inline bool flag(const py::dict& o, const char* key, bool missing = false) {
  if (!o.contains(key)) return missing;
  const py::object v = o[key];
  if (!py::isinstance<py::bool_>(v)) throw py::type_error(std::string("options: ") + key + " must be a bool");
  return v.cast<bool>();
}

// Shapes of one call, read from x and W_hh (and W_hr [P, H] when the output is projected) and checked against
// every other argument.
template <class Cell>
Dims dims_of(const py::array& x, const py::array& W_hh, const py::object& W_hr) {
  if (x.ndim() != 3)
    throw py::value_error("x: expected a 3-D array [T, N, C], got shape " + shape_str(shape_of(x)));
  if (!W_hr.is_none()) {
    if (!Cell::can_project) throw py::value_error("W_hr: this cell has no output projection; expected None");
    if (!py::isinstance<py::array>(W_hr)) throw py::type_error("W_hr: expected a numpy array or None");
    const auto Wr = py::reinterpret_borrow<py::array>(W_hr);
    if (Wr.ndim() != 2 || Wr.shape(0) < 1)
      throw py::value_error("W_hr: expected shape [P, H] with P >= 1, got " + shape_str(shape_of(Wr)));
    return {x.shape(0), x.shape(1), x.shape(2), Wr.shape(1), Wr.shape(0)};
  }
  if (W_hh.ndim() != 2 || W_hh.shape(0) != Cell::G * W_hh.shape(1))
    throw py::value_error("W_hh: expected shape [G*H, H] with G = " + std::to_string(Cell::G) + ", got " +
                          shape_str(shape_of(W_hh)));
  return {x.shape(0), x.shape(1), x.shape(2), W_hh.shape(1)};
}

template <class S, class Cell>
Weights<S> checked_weights(const Dims& d, const py::array& W_ih, const py::array& W_hh, const py::array& b_ih,
                           const py::array& b_hh, const py::object& W_hr) {
  const py::ssize_t GH = Cell::G * d.H;
  const bool proj = !W_hr.is_none();
  Weights<S> w{checked<S>(W_ih, "W_ih", {GH, d.C}, "[G*H, C]"),
               checked<S>(W_hh, "W_hh", {GH, d.state()}, proj ? "[G*H, P]" : "[G*H, H]"),
               checked<S>(b_ih, "b_ih", {GH}, "[G*H]"), checked<S>(b_hh, "b_hh", {GH}, "[G*H]")};
  if (proj) w.W_hr = checked<S>(py::reinterpret_borrow<py::array>(W_hr), "W_hr", {d.state(), d.H}, "[P, H]");
  return w;
}

// The cell's own parameters [K*H], K = cell.n_params(): required when it has some, else None.
template <class S, class Cell>
const S* checked_params(const Cell& cell, const py::object& params, Index H) {
  const Index K = cell.n_params();
  if (K == 0) {
    if (!params.is_none()) throw py::value_error("params: this cell has no parameters of its own; expected None");
    return nullptr;
  }
  if (params.is_none())
    throw py::value_error(std::string(cell.params_name()) + ": expected an array of shape [" + std::to_string(K) +
                          "*H] = [" + std::to_string(K * H) + "], got None");
  return optional<S>(params, cell.params_name(), {K * H}, "[K*H]");
}

// Returns (y, h_n, c_n or None, cache, inputs): cache is a dict of the arrays backward needs and inputs
// (x, W_ih, W_hh, b_ih, b_hh, lengths, recurrent_mask, params, W_hr) as given, both None when keep_cache is
// false (inference: small working buffers instead, see ForwardBuffers). With W_hr [P, H] the state h, y and the
// recurrent mask have P values, c has H.
template <class S, class Cell>
py::tuple forward_typed(const Cell& cell, const py::array& x, const py::array& W_ih, const py::array& W_hh,
                        const py::array& b_ih, const py::array& b_hh, const py::object& params, const py::object& W_hr,
                        const py::object& h0, const py::object& c0, const py::object& lengths,
                        const py::object& recurrent_mask, bool reverse, bool keep_cache) {
  const Dims d = dims_of<Cell>(x, W_hh, W_hr);
  const Index T = d.T, N = d.N, H = d.H, P = d.state(), GH = Cell::G * d.H;
  const char* state_legend = W_hr.is_none() ? "[N, H]" : "[N, P]";
  Weights<S> w = checked_weights<S, Cell>(d, W_ih, W_hh, b_ih, b_hh, W_hr);
  w.params = checked_params<S>(cell, params, H);
  ForwardBuffers<S> b{};
  b.x = checked<S>(x, "x", {T, N, d.C}, "[T, N, C]");
  b.h0 = optional<S>(h0, "h0", {N, P}, state_legend);
  b.c0 = Cell::has_c ? optional<S>(c0, "c0", {N, H}, "[N, H]") : nullptr;
  b.lengths = checked_lengths(lengths, N, T);
  b.recurrent_mask = optional<S>(recurrent_mask, "recurrent_mask", {N, P}, state_legend);
  b.reverse = reverse;
  auto y = empty<S>({T, N, P}), h_n = empty<S>({N, P});
  b.y = mut(y), b.h_n = mut(h_n);
  py::object c_n = py::none();
  py::dict arrays;  // the cache
  std::optional<Scratch<S>> work;
  if (Cell::has_c) {
    auto a = empty<S>({N, H});
    b.c_n = mut(a);
    c_n = a;
  }
  if (keep_cache) {
    auto array = [&](const char* key, std::initializer_list<py::ssize_t> shape) {
      auto a = empty<S>(shape);
      arrays[key] = a;
      return mut(a);
    };
    b.h_prev = array("h_prev", {T, N, P});
    // cells whose gates are the state keep the state after the last step instead (h_n is the caller's)
    if (Cell::gates_are_state)
      b.gates = work.emplace(static_cast<size_t>(T * N * GH)).data();
    else
      b.gates = array("gates", {T, N, GH});
    if (cell.has_aux()) b.aux = array("aux", {T, N, H});
    if (b.recurrent_mask) b.h_rec = array("h_rec", {T, N, P});
    if (w.W_hr) b.m = array("m", {T, N, H});
  } else {
    // every step's input projection unless each step projects its own; the loop keeps the state of a pass
    b.inference = true;
    if (!fuse_projection<S>(Cell::G, H, d.C)) b.gates = work.emplace(static_cast<size_t>(T * N * GH)).data();
  }
  {
    py::gil_scoped_release release;
    forward(cell, d, w, b, get_num_threads());
  }
  if (keep_cache && Cell::gates_are_state) {
    auto h_last = empty<S>({N, H});
    std::copy(b.h_n, b.h_n + N * H, mut(h_last));
    arrays["h_last"] = h_last;
  }
  if (!keep_cache) return py::make_tuple(y, h_n, c_n, py::none(), py::none());
  return py::make_tuple(y, h_n, c_n, arrays,
                        py::make_tuple(x, W_ih, W_hh, b_ih, b_hh, lengths, recurrent_mask, params, W_hr));
}

inline py::object item(const py::dict& d, const char* key) {
  return d.contains(key) ? py::object(d[key]) : py::object(py::none());
}
inline py::array required_array(const py::dict& d, const char* key) {
  py::object o = item(d, key);
  if (!py::isinstance<py::array>(o)) throw py::value_error(std::string("cache: missing array '") + key + "'");
  return py::reinterpret_borrow<py::array>(o);
}

// Returns (dx, dh0, dc0 or None, dW_ih, dW_hh, db_ih, db_hh, dparams or None, dW_hr or None).
template <class S, class Cell>
py::tuple backward_typed(const Cell& cell, const py::array& x, const py::array& W_ih, const py::array& W_hh,
                         const py::array& b_ih, const py::array& b_hh, const py::object& params,
                         const py::object& W_hr, const py::object& lengths, const py::object& recurrent_mask,
                         bool reverse, const py::dict& cache, const py::array& dy, const py::object& dh_n,
                         const py::object& dc_n) {
  const Dims d = dims_of<Cell>(x, W_hh, W_hr);
  const Index T = d.T, N = d.N, C = d.C, H = d.H, P = d.state(), GH = Cell::G * H;
  const char* state_legend = W_hr.is_none() ? "[N, H]" : "[N, P]";
  const char* steps_legend = W_hr.is_none() ? "[T, N, H]" : "[T, N, P]";
  Weights<S> w = checked_weights<S, Cell>(d, W_ih, W_hh, b_ih, b_hh, W_hr);
  w.params = checked_params<S>(cell, params, H);
  BackwardBuffers<S> b{};
  b.x = checked<S>(x, "x", {T, N, C}, "[T, N, C]");
  b.lengths = checked_lengths(lengths, N, T);
  b.reverse = reverse;
  b.recurrent_mask = optional<S>(recurrent_mask, "recurrent_mask", {N, P}, state_legend);
  b.h_prev = checked<S>(required_array(cache, "h_prev"), "cache.h_prev", {T, N, P}, steps_legend);
  if (Cell::gates_are_state)
    b.h_last = checked<S>(required_array(cache, "h_last"), "cache.h_last", {N, H}, "[N, H]");
  else
    b.gates = checked<S>(required_array(cache, "gates"), "cache.gates", {T, N, GH}, "[T, N, G*H]");
  if (cell.has_aux()) b.aux = checked<S>(required_array(cache, "aux"), "cache.aux", {T, N, H}, "[T, N, H]");
  if (b.recurrent_mask)
    b.h_rec = checked<S>(required_array(cache, "h_rec"), "cache.h_rec", {T, N, P}, steps_legend);
  if (w.W_hr) b.m = checked<S>(required_array(cache, "m"), "cache.m", {T, N, H}, "[T, N, H]");
  b.dy = checked<S>(dy, "dy", {T, N, P}, steps_legend);
  b.dh_n = optional<S>(dh_n, "dh_n", {N, P}, state_legend);
  b.dc_n = Cell::has_c ? optional<S>(dc_n, "dc_n", {N, H}, "[N, H]") : nullptr;
  auto dx = empty<S>({T, N, C}), dh0 = empty<S>({N, P});
  auto dW_ih = empty<S>({GH, C}), dW_hh = empty<S>({GH, P}), db_ih = empty<S>({GH}), db_hh = empty<S>({GH});
  py::object dc0 = py::none();
  b.dx = mut(dx), b.dh0 = mut(dh0), b.dW_ih = mut(dW_ih), b.dW_hh = mut(dW_hh), b.db_ih = mut(db_ih),
  b.db_hh = mut(db_hh);
  if (Cell::has_c) {
    auto a = empty<S>({N, H});
    b.dc0 = mut(a);
    dc0 = a;
  }
  py::object dparams = py::none();
  if (cell.n_params()) {
    auto a = empty<S>({cell.n_params() * H});
    b.dparams = mut(a);
    dparams = a;
  }
  py::object dW_hr = py::none();
  if (w.W_hr) {
    auto a = empty<S>({P, H});
    b.dW_hr = mut(a);
    dW_hr = a;
  }
  const Index extra = cell.has_dextra() ? H : 0, proj = w.W_hr ? P : 0;
  const Scratch<S> work(static_cast<size_t>(T * N * (GH + extra + proj)));
  b.dgates = work.data();
  b.dextra = cell.has_dextra() ? b.dgates + T * N * GH : nullptr;
  b.dproj = w.W_hr ? b.dgates + T * N * (GH + extra) : nullptr;
  {
    py::gil_scoped_release release;
    backward(cell, d, w, b, get_num_threads());
  }
  return py::make_tuple(dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh, dparams, dW_hr);
}

// The one dtype dispatch of the bindings: f(S{}) with S the dtype of `a`, float or double, else TypeError naming
// `name`. Returns what f returns, as a py::object when that differs between the two (arrays of S).
template <class F>
auto dispatch_float(const py::array& a, const char* name, F&& f) {
  using R32 = decltype(f(float{}));
  using R = std::conditional_t<std::is_same_v<R32, decltype(f(double{}))>, R32, py::object>;
  if (has_dtype<float>(a)) return R(f(float{}));
  if (has_dtype<double>(a)) return R(f(double{}));
  throw py::type_error(std::string(name) + ": expected dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

// Registers <name>_forward and <name>_backward for a cell; make_cell(options) builds it. The array
// arguments are converted here (float_array, int64_lengths), so a call from Python passes them as given.
// forward returns (y, h_n, c_n or None, cache arrays or None, (x, W_ih, W_hh, b_ih, b_hh, lengths,
// recurrent_mask) as converted, or None without the cache).
template <class Cell, class MakeCell>
void bind_cell(py::module_& m, const char* name, MakeCell make_cell) {
  using py::arg;
  m.def(
      (std::string(name) + "_forward").c_str(),
      [make_cell](py::handle x_in, py::handle W_ih_in, py::handle W_hh_in, py::handle b_ih_in, py::handle b_hh_in,
                  py::handle h0, py::handle c0, py::handle lengths_in, py::handle recurrent_mask_in, bool reverse,
                  const py::dict& options, bool keep_cache, py::handle params_in, py::handle W_hr_in) {
        const py::array x = float_array(x_in, "x");
        return dispatch_float(x, "x", [&](auto zero) {
          using S = decltype(zero);
          const py::array W_ih = float_array(W_ih_in, "W_ih"), W_hh = float_array(W_hh_in, "W_hh"),
                          b_ih = float_array(b_ih_in, "b_ih"), b_hh = float_array(b_hh_in, "b_hh");
          const py::object lengths = int64_lengths(lengths_in),
                           recurrent_mask = optional_float_array(recurrent_mask_in, "recurrent_mask");
          const Cell cell = make_cell(options);
          const py::object params = optional_float_array(params_in, cell.params_name()),
                           W_hr = optional_float_array(W_hr_in, "W_hr");
          return forward_typed<S>(cell, x, W_ih, W_hh, b_ih, b_hh, params, W_hr, optional_float_array(h0, "h0"),
                                  optional_float_array(c0, "c0"), lengths, recurrent_mask, reverse, keep_cache);
        });
      },
      arg("x"), arg("W_ih"), arg("W_hh"), arg("b_ih"), arg("b_hh"), arg("h0").none(true), arg("c0").none(true),
      arg("lengths").none(true), arg("recurrent_mask").none(true), arg("reverse"), arg("options"),
      arg("keep_cache") = true, arg("params").none(true) = py::none(), arg("W_hr").none(true) = py::none());
  m.def(
      (std::string(name) + "_backward").c_str(),
      [make_cell](const py::array& x, const py::array& W_ih, const py::array& W_hh, const py::array& b_ih,
                  const py::array& b_hh, const py::object& lengths, const py::object& recurrent_mask, bool reverse,
                  const py::dict& cache, py::handle dy, py::handle dh_n, py::handle dc_n, const py::dict& options,
                  const py::object& params, const py::object& W_hr) {
        return dispatch_float(x, "x", [&](auto zero) {
          using S = decltype(zero);
          const Cell cell = make_cell(options);
          return backward_typed<S>(cell, x, W_ih, W_hh, b_ih, b_hh, params, W_hr, lengths, recurrent_mask, reverse, cache,
                                   float_array(dy, "dy"), optional_float_array(dh_n, "dh_n"),
                                   optional_float_array(dc_n, "dc_n"));
        });
      },
      arg("x").noconvert(), arg("W_ih").noconvert(), arg("W_hh").noconvert(), arg("b_ih").noconvert(),
      arg("b_hh").noconvert(), arg("lengths").none(true), arg("recurrent_mask").none(true), arg("reverse"),
      arg("cache"), arg("dy"), arg("dh_n").none(true), arg("dc_n").none(true), arg("options"),
      arg("params").none(true) = py::none(), arg("W_hr").none(true) = py::none());
}

}  // namespace rnnkit::bind
