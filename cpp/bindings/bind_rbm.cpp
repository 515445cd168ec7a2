// Bindings of rbm.hpp: RBM kernels with per-frame biases, the RNN-RBM's cost gradient and
// generation, and the exact / importance-sampled log-probabilities of a frame's DBN.
// Shapes are read from the first arrays and checked against every other argument.
#include <cstdint>
#include <string>

#include "bind_common.hpp"
#include "rnnkit/rbm.hpp"

namespace rnnkit::bind {

namespace {

constexpr Index kMaxEnumerated = 30;  // 2^30 configurations per frame is already hours

py::ssize_t dim(const py::array& a, const char* name, int ndim, const char* legend, int axis) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array " + legend +
                          ", got shape " + shape_str(shape_of(a)));
  return a.shape(axis);
}

void check_positive(long long value, const char* name, long long minimum = 1) {
  if (value < minimum)
    throw py::value_error(std::string(name) + ": expected an integer >= " + std::to_string(minimum) + ", got " +
                          std::to_string(value));
}

void check_enumerable(py::ssize_t n, const char* what) {
  if (n > kMaxEnumerated)
    throw py::value_error(std::string(what) + ": exact enumeration of 2^" + std::to_string(n) +
                          " configurations is limited to " + std::to_string(kMaxEnumerated) +
                          " units; use annealed importance sampling");
}

struct RbmDims {
  py::ssize_t M, V, H;
};

// M, V from v [M, V] (or b_v), H from W [H, V]; checks W, b_v [M, V], b_h [M, H].
template <class S>
rbm::Params<S> rbm_args(const RbmDims& d, const py::array& W, const py::array& b_v, const py::array& b_h) {
  rbm::Params<S> p{};
  p.W = checked<S>(W, "W", {d.H, d.V}, "[H, V]");
  p.b_v = checked<S>(b_v, "b_v", {d.M, d.V}, "[M, V]");
  p.b_h = checked<S>(b_h, "b_h", {d.M, d.H}, "[M, H]");
  return p;
}

// The eight weights of an RNN-RBM, checked against the sizes of x, W and W_uu.
template <class S>
rbm::Params<S> rnnrbm_args(const rbm::Sizes& d, const py::array& W, const py::array& b_v, const py::array& b_h,
                           const py::array& W_uv, const py::array& W_uh, const py::array& W_uu,
                           const py::array& W_vu, const py::array& b_u) {
  return {checked<S>(W, "W", {d.H, d.V}, "[H, V]"),       checked<S>(b_v, "b_v", {d.V}, "[V]"),
          checked<S>(b_h, "b_h", {d.H}, "[H]"),           checked<S>(W_uv, "W_uv", {d.V, d.U}, "[V, U]"),
          checked<S>(W_uh, "W_uh", {d.H, d.U}, "[H, U]"), checked<S>(W_uu, "W_uu", {d.U, d.U}, "[U, U]"),
          checked<S>(W_vu, "W_vu", {d.U, d.C}, "[U, C]"), checked<S>(b_u, "b_u", {d.U}, "[U]")};
}

}  // namespace

void bind_rbm(py::module_& m) {
  using py::arg;

  m.def(
      "rbm_free_energy",
      [](const py::array& v, const py::array& W, const py::array& b_v, const py::array& b_h) {
        const RbmDims d{dim(v, "v", 2, "[M, V]", 0), v.shape(1), dim(W, "W", 2, "[H, V]", 0)};
        return dispatch_float(v, "v", [&](auto tag) {
          using S = decltype(tag);
          const auto* pv = checked<S>(v, "v", {d.M, d.V}, "[M, V]");
          const auto p = rbm_args<S>(d, W, b_v, b_h);
          auto F = empty<S>({d.M});
          S* out = mut(F);
          {
            py::gil_scoped_release release;
            rbm::free_energy(d.M, d.V, d.H, pv, p.W, p.b_v, p.b_h, out, get_num_threads());
          }
          return py::array(F);
        });
      },
      arg("v").noconvert(), arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(),
      "F [M] = -b_v . v - sum_j softplus(b_h,j + W_j . v) for v [M, V], W [H, V], b_v [M, V], b_h [M, H].");

  m.def(
      "rbm_gibbs",
      [](const py::array& v0, const py::array& W, const py::array& b_v, const py::array& b_h, int k, uint64_t seed,
         uint64_t first_id) {
        const RbmDims d{dim(v0, "v0", 2, "[M, V]", 0), v0.shape(1), dim(W, "W", 2, "[H, V]", 0)};
        check_positive(k, "k");
        return dispatch_float(v0, "v0", [&](auto tag) {
          using S = decltype(tag);
          const auto* pv0 = checked<S>(v0, "v0", {d.M, d.V}, "[M, V]");
          const auto p = rbm_args<S>(d, W, b_v, b_h);
          auto vk = empty<S>({d.M, d.V}), pv = empty<S>({d.M, d.V});
          S *o1 = mut(vk), *o2 = mut(pv);
          {
            py::gil_scoped_release release;
            rbm::gibbs(d.M, d.V, d.H, pv0, p.W, p.b_v, p.b_h, k, seed, first_id, o1, o2, get_num_threads());
          }
          return py::make_tuple(vk, pv);
        });
      },
      arg("v0").noconvert(), arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(), arg("k"),
      arg("seed"), arg("first_id"),
      "k-step block Gibbs chains from v0 [M, V]; returns (v_k [M, V], p(v = 1 | h) of the last step [M, V]).");

  m.def(
      "rbm_sample_visible",
      [](const py::array& h, const py::array& W, const py::array& b_v, uint64_t seed, uint64_t first_id) {
        const py::ssize_t M = dim(h, "h", 2, "[M, H]", 0), H = h.shape(1);
        const py::ssize_t V = dim(W, "W", 2, "[H, V]", 1);
        return dispatch_float(h, "h", [&](auto tag) {
          using S = decltype(tag);
          const auto* ph = checked<S>(h, "h", {M, H}, "[M, H]");
          const auto* pW = checked<S>(W, "W", {H, V}, "[H, V]");
          const auto* pb = checked<S>(b_v, "b_v", {M, V}, "[M, V]");
          auto v = empty<S>({M, V}), pv = empty<S>({M, V});
          S *o1 = mut(v), *o2 = mut(pv);
          {
            py::gil_scoped_release release;
            rbm::sample_visible(M, V, H, ph, pW, pb, seed, first_id, o1, o2, get_num_threads());
          }
          return py::make_tuple(v, pv);
        });
      },
      arg("h").noconvert(), arg("W").noconvert(), arg("b_v").noconvert(), arg("seed"), arg("first_id"),
      "v ~ sigm(W^T h + b_v) for h [M, H]; returns (v [M, V], its probabilities [M, V]).");

  m.def(
      "rbm_log_partition",
      [](const py::array& W, const py::array& b_v, const py::array& b_h) {
        const RbmDims d{dim(b_v, "b_v", 2, "[M, V]", 0), b_v.shape(1), dim(W, "W", 2, "[H, V]", 0)};
        check_enumerable(d.H, "W");
        return dispatch_float(W, "W", [&](auto tag) {
          using S = decltype(tag);
          const auto p = rbm_args<S>(d, W, b_v, b_h);
          auto logZ = py::array_t<double>(std::vector<py::ssize_t>{d.M});
          double* out = logZ.mutable_data();
          {
            py::gil_scoped_release release;
            rbm::log_partition_exact(d.M, d.V, d.H, p.W, p.b_v, p.b_h, out, get_num_threads());
          }
          return logZ;
        });
      },
      arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(),
      "log Z [M] (float64) of each frame's RBM, enumerating the 2^H hidden configurations.");

  m.def(
      "rbm_ais",
      [](const py::array& W, const py::array& b_v, const py::array& b_h, const py::array& betas, int n_runs,
         uint64_t seed) {
        const RbmDims d{dim(b_v, "b_v", 2, "[M, V]", 0), b_v.shape(1), dim(W, "W", 2, "[H, V]", 0)};
        check_positive(n_runs, "n_runs");
        const py::ssize_t B = dim(betas, "betas", 1, "[B]", 0);
        const double* pb = checked<double>(betas, "betas", {B}, "[B]");
        if (B < 2 || pb[0] != 0.0 || pb[B - 1] != 1.0)
          throw py::value_error("betas: expected at least 2 values from 0.0 to 1.0");
        for (py::ssize_t b = 1; b < B; ++b)
          if (!(pb[b] >= pb[b - 1])) throw py::value_error("betas: expected a non-decreasing schedule");
        return dispatch_float(W, "W", [&](auto tag) {
          using S = decltype(tag);
          const auto p = rbm_args<S>(d, W, b_v, b_h);
          auto logw = py::array_t<double>(std::vector<py::ssize_t>{d.M, n_runs});
          auto logZ_A = py::array_t<double>(std::vector<py::ssize_t>{d.M});
          double *o1 = logw.mutable_data(), *o2 = logZ_A.mutable_data();
          {
            py::gil_scoped_release release;
            rbm::ais(d.M, d.V, d.H, p.W, p.b_v, p.b_h, B, pb, n_runs, seed, o1, o2, get_num_threads());
          }
          return py::make_tuple(logw, logZ_A);
        });
      },
      arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(), arg("betas").noconvert(),
      arg("n_runs"), arg("seed"),
      "Annealed importance sampling of each frame's log Z; returns (log w [M, R], log Z_A [M]), float64.");

  m.def(
      "rnnrbm_states",
      [](const py::array& x, const py::array& W_vu, const py::array& W_uu, const py::array& b_u,
         const py::object& u0) {
        const py::ssize_t T = dim(x, "x", 3, "[T, N, C]", 0), N = x.shape(1), C = x.shape(2);
        const py::ssize_t U = dim(W_uu, "W_uu", 2, "[U, U]", 0);
        return dispatch_float(x, "x", [&](auto tag) {
          using S = decltype(tag);
          const auto* px = checked<S>(x, "x", {T, N, C}, "[T, N, C]");
          const auto* pvu = checked<S>(W_vu, "W_vu", {U, C}, "[U, C]");
          const auto* puu = checked<S>(W_uu, "W_uu", {U, U}, "[U, U]");
          const auto* pbu = checked<S>(b_u, "b_u", {U}, "[U]");
          const auto* pu0 = optional<S>(u0, "u0", {N, U}, "[N, U]");
          auto u = empty<S>({T, N, U}), u_prev = empty<S>({T, N, U});
          S *o1 = mut(u), *o2 = mut(u_prev);
          const Scratch<S> work(static_cast<size_t>((T + 1) * N * U));  // the RNN's gates [T, N, U], u_n [N, U]
          {
            py::gil_scoped_release release;
            rbm::rnn_states(T, N, C, U, px, pvu, puu, pbu, pu0, o1, o2, work.data(), work.data() + T * N * U,
                            get_num_threads());
          }
          return py::make_tuple(u, u_prev);
        });
      },
      arg("x").noconvert(), arg("W_vu").noconvert(), arg("W_uu").noconvert(), arg("b_u").noconvert(),
      arg("u0").none(true),
      "u_t = tanh(b_u + W_uu u_{t-1} + W_vu x_t); returns (u [T, N, U], u_prev [T, N, U]).");

  m.def(
      "rnnrbm_bias",
      [](const py::array& u_prev, const py::array& W_u, const py::array& b) {
        const py::ssize_t M = dim(u_prev, "u_prev", 2, "[M, U]", 0), U = u_prev.shape(1);
        const py::ssize_t K = dim(W_u, "W_u", 2, "[K, U]", 0);
        return dispatch_float(u_prev, "u_prev", [&](auto tag) {
          using S = decltype(tag);
          const auto* pu = checked<S>(u_prev, "u_prev", {M, U}, "[M, U]");
          const auto* pW = checked<S>(W_u, "W_u", {K, U}, "[K, U]");
          const auto* pb = checked<S>(b, "b", {K}, "[K]");
          auto out = empty<S>({M, K});
          S* o = mut(out);
          {
            py::gil_scoped_release release;
            rbm::project(M, U, K, pu, pW, pb, o, threads_for(2.0 * M * U * K, get_num_threads()));
          }
          return py::array(out);
        });
      },
      arg("u_prev").noconvert(), arg("W_u").noconvert(), arg("b").noconvert(),
      "A layer's bias at every frame: b(t) = b + W_u u_{t-1}; u_prev [M, U], W_u [K, U], b [K] -> [M, K].");

  m.def(
      "rnnrbm_cost_backward",
      [](const py::array& x, const py::array& v, const py::array& v_neg, const py::array& W, const py::array& b_v,
         const py::array& b_h, const py::array& W_uv, const py::array& W_uh, const py::array& W_uu,
         const py::array& W_vu, const py::array& b_u, const py::object& u0, const py::object& lengths,
         bool rnn_grad) {
        rbm::Sizes d{};
        d.T = dim(x, "x", 3, "[T, N, C]", 0), d.N = x.shape(1), d.C = x.shape(2);
        d.V = dim(v, "v", 3, "[T, N, V]", 2), d.H = dim(W, "W", 2, "[H, V]", 0);
        d.U = dim(W_uu, "W_uu", 2, "[U, U]", 0);
        const py::ssize_t T = d.T, N = d.N, V = d.V;
        return dispatch_float(x, "x", [&](auto tag) {
          using S = decltype(tag);
          const auto* px = checked<S>(x, "x", {T, N, d.C}, "[T, N, C]");
          const auto* pv = checked<S>(v, "v", {T, N, V}, "[T, N, V]");
          const auto* pn = checked<S>(v_neg, "v_neg", {T, N, V}, "[T, N, V]");
          const auto p = rnnrbm_args<S>(d, W, b_v, b_h, W_uv, W_uh, W_uu, W_vu, b_u);
          const auto* pu0 = optional<S>(u0, "u0", {N, d.U}, "[N, U]");
          const int64_t* len = checked_lengths(lengths, N, T);
          auto dW = empty<S>({d.H, V}), dbv = empty<S>({V}), dbh = empty<S>({d.H}), dWuv = empty<S>({V, d.U}),
               dWuh = empty<S>({d.H, d.U}), dWuu = empty<S>({d.U, d.U}), dWvu = empty<S>({d.U, d.C}),
               dbu = empty<S>({d.U});
          const rbm::Grads<S> g{mut(dW), mut(dbv), mut(dbh), mut(dWuv), mut(dWuh), mut(dWuu), mut(dWvu), mut(dbu)};
          S cost;
          {
            py::gil_scoped_release release;
            cost = rbm::cost_backward(d, p, px, pv, pn, pu0, len, rnn_grad, g, get_num_threads());
          }
          return py::make_tuple(double(cost), dW, dbv, dbh, dWuv, dWuh, dWuu, dWvu, dbu);
        });
      },
      arg("x").noconvert(), arg("v").noconvert(), arg("v_neg").noconvert(), arg("W").noconvert(),
      arg("b_v").noconvert(), arg("b_h").noconvert(), arg("W_uv").noconvert(), arg("W_uh").noconvert(),
      arg("W_uu").noconvert(), arg("W_vu").noconvert(), arg("b_u").noconvert(), arg("u0").none(true),
      arg("lengths").none(true), arg("rnn_grad"),
      "The mean free-energy difference F(v) - F(v_neg) over valid frames and its gradient with v_neg held fixed; "
      "returns (cost, dW, db_v, db_h, dW_uv, dW_uh, dW_uu, dW_vu, db_u).");

  m.def(
      "rnnrbm_generate",
      [](py::ssize_t n_steps, py::ssize_t n_sequences, const py::array& W, const py::array& b_v,
         const py::array& b_h, const py::array& W_uv, const py::array& W_uh, const py::array& W_uu,
         const py::array& W_vu, const py::array& b_u, const py::object& u0, int k, uint64_t seed,
         const py::object& top) {
        check_positive(n_steps, "n_steps", 0);
        check_positive(n_sequences, "n_sequences");
        check_positive(k, "k");
        rbm::Sizes d{};
        d.T = n_steps, d.N = n_sequences, d.H = dim(W, "W", 2, "[H, V]", 0), d.V = W.shape(1), d.C = d.V;
        d.U = dim(W_uu, "W_uu", 2, "[U, U]", 0);
        return dispatch_float(W, "W", [&](auto tag) {
          using S = decltype(tag);
          const auto p = rnnrbm_args<S>(d, W, b_v, b_h, W_uv, W_uh, W_uu, W_vu, b_u);
          const auto* pu0 = optional<S>(u0, "u0", {d.N, d.U}, "[N, U]");
          rbm::Top<S> t{};
          if (!top.is_none()) {
            auto parts = top.cast<py::tuple>();
            if (parts.size() != 5) throw py::value_error("top: expected (W2, c, b_h2, W_uc, W_uh2) or None");
            auto W2 = parts[0].cast<py::array>();
            t.H2 = dim(W2, "top.W2", 2, "[H2, H]", 0);
            t.W2 = checked<S>(W2, "top.W2", {t.H2, d.H}, "[H2, H]");
            t.c = checked<S>(parts[1].cast<py::array>(), "top.c", {d.H}, "[H]");
            t.b_h2 = checked<S>(parts[2].cast<py::array>(), "top.b_h2", {t.H2}, "[H2]");
            t.W_uc = checked<S>(parts[3].cast<py::array>(), "top.W_uc", {d.H, d.U}, "[H, U]");
            t.W_uh2 = checked<S>(parts[4].cast<py::array>(), "top.W_uh2", {t.H2, d.U}, "[H2, U]");
          }
          auto v = empty<S>({d.T, d.N, d.V});
          S* o = mut(v);
          {
            py::gil_scoped_release release;
            rbm::generate(d, p, top.is_none() ? nullptr : &t, pu0, k, seed, o, get_num_threads());
          }
          return py::array(v);
        });
      },
      arg("n_steps"), arg("n_sequences"), arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(),
      arg("W_uv").noconvert(), arg("W_uh").noconvert(), arg("W_uu").noconvert(), arg("W_vu").noconvert(),
      arg("b_u").noconvert(), arg("u0").none(true), arg("k"), arg("seed"), arg("top").none(true),
      "Samples v [T, N, V] from an RNN-RBM (top None) or an RNN-DBN (top = (W2, c, b_h2, W_uc, W_uh2)).");

  m.def(
      "dbn_log_prob_exact",
      [](const py::array& v, const py::array& W, const py::array& b_v, const py::array& W2, const py::array& c,
         const py::array& b_h2) {
        const py::ssize_t M = dim(v, "v", 2, "[M, V]", 0), V = v.shape(1);
        const py::ssize_t H = dim(W, "W", 2, "[H, V]", 0), H2 = dim(W2, "W2", 2, "[H2, H]", 0);
        check_enumerable(H, "W");
        return dispatch_float(v, "v", [&](auto tag) {
          using S = decltype(tag);
          const auto* pv = checked<S>(v, "v", {M, V}, "[M, V]");
          const auto* pW = checked<S>(W, "W", {H, V}, "[H, V]");
          const auto* pbv = checked<S>(b_v, "b_v", {M, V}, "[M, V]");
          const auto* pW2 = checked<S>(W2, "W2", {H2, H}, "[H2, H]");
          const auto* pc = checked<S>(c, "c", {M, H}, "[M, H]");
          const auto* pb2 = checked<S>(b_h2, "b_h2", {M, H2}, "[M, H2]");
          auto out = py::array_t<double>(std::vector<py::ssize_t>{M});
          double* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            rbm::dbn_log_prob_exact(M, V, H, H2, pv, pW, pbv, pW2, pc, pb2, o, get_num_threads());
          }
          return out;
        });
      },
      arg("v").noconvert(), arg("W").noconvert(), arg("b_v").noconvert(), arg("W2").noconvert(),
      arg("c").noconvert(), arg("b_h2").noconvert(),
      "log p(v) [M] (float64) of each frame's DBN, enumerating the 2^H first-layer configurations.");

  m.def(
      "dbn_importance",
      [](const py::array& v, const py::array& W, const py::array& b_v, const py::array& b_h, const py::array& W2,
         const py::array& c, const py::array& b_h2, int n_samples, uint64_t seed) {
        const py::ssize_t M = dim(v, "v", 2, "[M, V]", 0), V = v.shape(1);
        const py::ssize_t H = dim(W, "W", 2, "[H, V]", 0), H2 = dim(W2, "W2", 2, "[H2, H]", 0);
        check_positive(n_samples, "n_samples");
        return dispatch_float(v, "v", [&](auto tag) {
          using S = decltype(tag);
          const auto* pv = checked<S>(v, "v", {M, V}, "[M, V]");
          const auto* pW = checked<S>(W, "W", {H, V}, "[H, V]");
          const auto* pbv = checked<S>(b_v, "b_v", {M, V}, "[M, V]");
          const auto* pbh = checked<S>(b_h, "b_h", {M, H}, "[M, H]");
          const auto* pW2 = checked<S>(W2, "W2", {H2, H}, "[H2, H]");
          const auto* pc = checked<S>(c, "c", {M, H}, "[M, H]");
          const auto* pb2 = checked<S>(b_h2, "b_h2", {M, H2}, "[M, H2]");
          auto out = py::array_t<double>(std::vector<py::ssize_t>{M, n_samples});
          double* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            rbm::dbn_importance(M, V, H, H2, pv, pW, pbv, pbh, pW2, pc, pb2, n_samples, seed, o,
                                get_num_threads());
          }
          return out;
        });
      },
      arg("v").noconvert(), arg("W").noconvert(), arg("b_v").noconvert(), arg("b_h").noconvert(),
      arg("W2").noconvert(), arg("c").noconvert(), arg("b_h2").noconvert(), arg("n_samples"), arg("seed"),
      "Importance log-weights [M, S] (float64) of log sum_h1 p*_top(h1) p(v | h1) with proposal q(h1 | v) = "
      "sigm(W v + b_h).");
}

}  // namespace rnnkit::bind
