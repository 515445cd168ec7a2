// Restricted Boltzmann machines whose biases come from an RNN: the RNN-RBM
// (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012) and, with a second RBM on
// top of the first hidden layer, the RNN-DBN (Goel, Vohra & Sahoo, ICANN 2014).
//
// Sizes (besides the legend of shapes.hpp): V visible units of an RBM, H its hidden
// units, U recurrent units, M = T*N frames; the RNN reads x [T, N, C] (C = V when the
// RBM models the same frames the RNN reads). Weights in PyTorch's layout (out, in):
//   W [H, V], b_v [V], b_h [H]            the RBM
//   W_uv [V, U], W_uh [H, U]              b_v(t) = b_v + W_uv u_{t-1},  b_h(t) = b_h + W_uh u_{t-1}
//   W_uu [U, U], W_vu [U, C], b_u [U]     u_t = tanh(b_u + W_uu u_{t-1} + W_vu x_t)
// Every RBM kernel takes per-frame biases b_v [M, V], b_h [M, H].
//
// The RNN is rnn.hpp's Elman cell (W_ih = W_vu, W_hh = W_uu, b_ih = b_u, b_hh = 0) on sequence.hpp's time loop,
// forward and backward, whenever its input x is known before the loop (rnn_states, cost_backward). Generation
// steps it itself: there the input of step t is v_t, sampled from the RBM whose biases come from u_{t-1}, so
// no step's input exists before the previous step has run, while the shared loop projects every step's input
// first.
//
// Energy and free energy of one frame:
//   E(v, h) = -b_v . v - b_h . h - h . W v
//   F(v)    = -b_v . v - sum_j softplus(b_h,j + W_j . v)
//
// Determinism: every random draw comes from a counter-based stream keyed by
// (seed, frame or sequence index, purpose) and is consumed in a fixed order, and work
// is cut into blocks of a fixed number of rows (tuning.hpp) before being dealt to threads, so
// every product has the same shapes whatever the thread count. Results are bitwise
// identical at any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "rnnkit/activations.hpp"
#include "rnnkit/rnn.hpp"
#include "rnnkit/sequence.hpp"
#include "rnnkit/shapes.hpp"
#include "rnnkit/threads.hpp"
#include "rnnkit/tuning.hpp"

namespace rnnkit::rbm {

// ---------------------------------------------------------------- randomness

// SplitMix64's output function: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// What a stream's draws are for; part of its key, so kernels never share draws.
enum Purpose : uint64_t { kGibbs = 1, kDown = 2, kGenerate = 3, kDbnImportance = 4, kAis = 1ULL << 32 };

// A SplitMix64 sequence started at a hash of (seed, id, purpose).
class Stream {
 public:
  Stream() = default;
  Stream(uint64_t seed, uint64_t id, uint64_t purpose)
      : state_(mix64(mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (id + 0x632be59bd9b4e019ULL)) ^ purpose)) {}
  // uniform in [0, 1) with 53 random bits
  double uniform() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return static_cast<double>(mix64(state_) >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_ = 0;
};

// p [nb, K] (probabilities) -> Bernoulli samples in place; row r draws from st[r], left to right.
template <class S>
inline void sample_inplace(View<S> p, Stream* st) {
  for (Index r = 0; r < p.rows(); ++r)
    for (Index i = 0; i < p.cols(); ++i) p(r, i) = st[r].uniform() < static_cast<double>(p(r, i)) ? S(1) : S(0);
}

// ---------------------------------------------------------------- helpers

// f(begin, end) over blocks of `block` items, the blocks dealt round-robin to the threads.
template <class F>
inline void for_blocks(Index n, Index block, int nt, F&& f) {
  const Index nblocks = (n + block - 1) / block;
  nt = static_cast<int>(std::min<Index>(nt, std::max<Index>(nblocks, 1)));
  parallel(nt, [&](int tid, int nth) {
    for (Index b = tid; b < nblocks; b += nth) f(b * block, std::min(n, (b + 1) * block));
  });
}

// softplus(a) = log(1 + exp(a)), without overflow
template <class S>
inline S softplus(S a) {
  return a > S(0) ? a + std::log1p(std::exp(-a)) : std::log1p(std::exp(a));
}

// A running log-sum-exp.
struct LogSumExp {
  double m = -std::numeric_limits<double>::infinity(), s = 0.0;
  void add(double x) {
    if (x > m) {
      s = s * std::exp(m - x) + 1.0;
      m = x;
    } else {
      s += std::exp(x - m);
    }
  }
  double value() const { return m + std::log(s); }
};

template <class S>
inline Eigen::Map<const RowVector<S>> row_vector(const S* p, Index n) {
  return Eigen::Map<const RowVector<S>>(p, n);
}

// out [M, K] = in [M, J] W^T (+ b) for W [K, J], over fixed blocks of frames.
template <class S>
inline void project(Index M, Index J, Index K, const S* in, const S* W, const S* b, S* out, int nt) {
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    auto o = view(out + f0 * K, f1 - f0, K);
    o.noalias() = view(in + f0 * J, f1 - f0, J) * view(W, K, J).transpose();
    if (b) o.rowwise() += row_vector(b, K);
  });
}

// out [K, J] = A^T B for A [M, K], B [M, J] (summed over frames), over fixed blocks of output rows;
// accumulates into out when `accumulate`.
template <class S>
inline void gemm_tn(Index M, Index K, Index J, const S* A, const S* B, S* out, bool accumulate, int nt) {
  for_blocks(K, tuning::rbm_out_block, nt, [&](Index k0, Index k1) {
    auto o = view(out + k0 * J, k1 - k0, J);
    auto a = view(A, M, K).middleCols(k0, k1 - k0);
    if (accumulate)
      o.noalias() += a.transpose() * view(B, M, J);
    else
      o.noalias() = a.transpose() * view(B, M, J);
  });
}

// out [K] = sum over frames of A [M, K], frame by frame in order.
template <class S>
inline void column_sums(Index M, Index K, const S* A, S* out) {
  std::fill(out, out + K, S(0));
  for (Index f = 0; f < M; ++f)
    for (Index k = 0; k < K; ++k) out[k] += A[f * K + k];
}

// ---------------------------------------------------------------- one RBM, per-frame biases

// k steps of block Gibbs sampling over nb rows, v [nb, V] in/out, the last step's p(v = 1 | h) in pv:
//   h ~ p(h = 1 | v) = sigm(W v + b_h);  v ~ p(v = 1 | h) = sigm(W^T h + b_v)
template <class S>
inline void gibbs_rows(Index nb, Index V, Index H, const S* W, const S* bv, const S* bh, int k, Stream* st, S* v,
                       S* pv, S* h) {
  auto Wm = view(W, H, V);
  auto vm = view(v, nb, V), pvm = view(pv, nb, V), hm = view(h, nb, H);
  for (int s = 0; s < k; ++s) {
    // h = sigm(W v + b_h), sampled
    hm.noalias() = vm * Wm.transpose();
    hm += view(bh, nb, H);
    sigmoid_inplace(hm);
    sample_inplace(hm, st);
    // v = sigm(W^T h + b_v), sampled
    pvm.noalias() = hm * Wm;
    pvm += view(bv, nb, V);
    sigmoid_inplace(pvm);
    vm = pvm;
    sample_inplace(vm, st);
  }
}

// F [M]: free energies, F(v) = -b_v . v - sum_j softplus(b_h,j + W_j . v).
template <class S>
void free_energy(Index M, Index V, Index H, const S* v, const S* W, const S* bv, const S* bh, S* F, int nt) {
  nt = threads_for(2.0 * M * V * H, nt);
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    const Index nb = f1 - f0;
    Matrix<S> a(nb, H);
    a.noalias() = view(v + f0 * V, nb, V) * view(W, H, V).transpose();
    a += view(bh + f0 * H, nb, H);
    for (Index r = 0; r < nb; ++r) {
      S acc = S(0);
      for (Index i = 0; i < V; ++i) acc -= bv[(f0 + r) * V + i] * v[(f0 + r) * V + i];
      for (Index j = 0; j < H; ++j) acc -= softplus(a(r, j));
      F[f0 + r] = acc;
    }
  });
}

// k-step Gibbs chains from v0 [M, V], one per frame; frame f draws from stream (seed, first_id + f).
// v_k [M, V] the last visible sample, pv [M, V] the last p(v = 1 | h).
template <class S>
void gibbs(Index M, Index V, Index H, const S* v0, const S* W, const S* bv, const S* bh, int k, uint64_t seed,
           uint64_t first_id, S* v_k, S* pv, int nt) {
  nt = threads_for(4.0 * M * V * H * k, nt);
  std::copy(v0, v0 + M * V, v_k);
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    const Index nb = f1 - f0;
    std::vector<Stream> st(nb);
    for (Index r = 0; r < nb; ++r) st[r] = Stream(seed, first_id + f0 + r, kGibbs);
    std::vector<S> h(nb * H);
    gibbs_rows(nb, V, H, W, bv + f0 * V, bh + f0 * H, k, st.data(), v_k + f0 * V, pv + f0 * V, h.data());
  });
}

// The top-down pass of a DBN: v ~ p(v = 1 | h) = sigm(W^T h + b_v) for h [M, H]; frame f draws from
// stream (seed, first_id + f). v [M, V] the sample, pv [M, V] its probabilities.
template <class S>
void sample_visible(Index M, Index V, Index H, const S* h, const S* W, const S* bv, uint64_t seed, uint64_t first_id,
                    S* v, S* pv, int nt) {
  nt = threads_for(2.0 * M * V * H, nt);
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    const Index nb = f1 - f0;
    auto p = view(pv + f0 * V, nb, V);
    p.noalias() = view(h + f0 * H, nb, H) * view(W, H, V);
    p += view(bv + f0 * V, nb, V);
    sigmoid_inplace(p);
    auto s = view(v + f0 * V, nb, V);
    s = p;
    std::vector<Stream> st(nb);
    for (Index r = 0; r < nb; ++r) st[r] = Stream(seed, first_id + f0 + r, kDown);
    sample_inplace(s, st.data());
  });
}

// Enumerates the 2^H configurations of h in Gray-code order, keeping a = b_v + W^T h [V] and
// e = b_h . h up to date (one row of W per step); calls visit(a, e) at every configuration and
// on_flip(j, sign) when unit j turns on (sign +1) or off (-1). Everything is accumulated in double.
template <class S, class Visit, class OnFlip>
inline void enumerate_hidden(Index V, Index H, const S* W, const S* bv, const S* bh, std::vector<double>& a,
                             std::vector<char>& h, Visit&& visit, OnFlip&& on_flip) {
  a.assign(bv, bv + V);
  h.assign(H, 0);
  double e = 0.0;
  const uint64_t n = uint64_t(1) << H;
  for (uint64_t i = 0; i < n; ++i) {
    visit(a, e);
    if (i + 1 == n) break;
    const Index j = __builtin_ctzll(i + 1);  // the bit that changes between Gray codes i and i + 1
    const double sign = h[j] ? -1.0 : 1.0;
    h[j] ^= 1;
    e += sign * bh[j];
    const S* w = W + j * V;
    for (Index q = 0; q < V; ++q) a[q] += sign * w[q];
    on_flip(j, sign);
  }
}

// log Z [M] exactly: log Z = log sum_h exp(b_h . h + sum_i softplus(b_v,i + (W^T h)_i)),
// the visible units summed out analytically, the 2^H hidden configurations enumerated.
template <class S>
void log_partition_exact(Index M, Index V, Index H, const S* W, const S* bv, const S* bh, double* logZ, int nt) {
  nt = threads_for(double(M) * V * 20.0 * double(uint64_t(1) << H), nt);
  for_blocks(M, 1, nt, [&](Index f, Index) {
    std::vector<double> a;
    std::vector<char> h;
    LogSumExp lse;
    enumerate_hidden(
        V, H, W, bv + f * V, bh + f * H, a, h,
        [&](const std::vector<double>& a_, double e) {
          double t = e;
          for (Index q = 0; q < V; ++q) t += softplus(a_[q]);
          lse.add(t);
        },
        [](Index, double) {});
    logZ[f] = lse.value();
  });
}

// Annealed importance sampling (Salakhutdinov & Murray 2008) of log Z for each frame's RBM, along
//   p_beta(v, h) ∝ exp(b_v . v + b_h . h + beta h . W v),  beta = betas[0] = 0, ..., betas[B-1] = 1,
// from the base RBM with W = 0 (same biases; log Z_A = sum softplus(b_v) + sum softplus(b_h)), with
// R independent runs per frame, run r of frame f drawing from stream (seed, f, kAis + r).
// logw [M, R]: each run's log importance weight; logZ_A [M]. Then log Z ≈ log Z_A + log mean_r exp(logw).
template <class S>
void ais(Index M, Index V, Index H, const S* W, const S* bv, const S* bh, Index B, const double* betas, Index R,
         uint64_t seed, double* logw, double* logZ_A, int nt) {
  nt = threads_for(4.0 * M * R * V * H * B, nt);
  auto Wm = view(W, H, V);
  for_blocks(M, 1, nt, [&](Index f, Index) {
    const S* bvf = bv + f * V;
    const S* bhf = bh + f * H;
    std::vector<Stream> st(R);
    for (Index r = 0; r < R; ++r) st[r] = Stream(seed, f, kAis + r);
    Matrix<S> vs(R, V), hs(R, H), A(R, H);
    std::vector<double> lw(R, 0.0);
    // v ~ p_A(v) = prod sigm(b_v)
    vs.rowwise() = row_vector(bvf, V);
    sigmoid_inplace(vs);
    sample_inplace(View<S>(vs.data(), R, V, Eigen::OuterStride<>(V)), st.data());
    A.noalias() = vs * Wm.transpose();
    for (Index b = 1; b < B; ++b) {
      const S beta = static_cast<S>(betas[b]), beta_prev = static_cast<S>(betas[b - 1]);
      // log w += log p*_b(v) - log p*_{b-1}(v),  log p*_beta(v) = b_v . v + sum_j softplus(beta (W v)_j + b_h,j)
      for (Index r = 0; r < R; ++r)
        for (Index j = 0; j < H; ++j)
          lw[r] += double(softplus(beta * A(r, j) + bhf[j])) - double(softplus(beta_prev * A(r, j) + bhf[j]));
      if (b + 1 == B) break;
      // one Gibbs sweep that leaves p_b invariant
      hs = (beta * A).rowwise() + row_vector(bhf, H);
      sigmoid_inplace(hs);
      sample_inplace(View<S>(hs.data(), R, H, Eigen::OuterStride<>(H)), st.data());
      vs.noalias() = hs * Wm;
      vs *= beta;
      vs.rowwise() += row_vector(bvf, V);
      sigmoid_inplace(vs);
      sample_inplace(View<S>(vs.data(), R, V, Eigen::OuterStride<>(V)), st.data());
      A.noalias() = vs * Wm.transpose();
    }
    double za = 0.0;
    for (Index i = 0; i < V; ++i) za += softplus(double(bvf[i]));
    for (Index j = 0; j < H; ++j) za += softplus(double(bhf[j]));
    logZ_A[f] = za;
    std::copy(lw.begin(), lw.end(), logw + f * R);
  });
}

// ---------------------------------------------------------------- the RNN

// u [T, N, U]: u_t = tanh(b_u + W_uu u_{t-1} + W_vu x_t); u_prev [T, N, U]: u_{t-1} (u0 or zeros at t = 0).
// An Elman RNN (rnn.hpp) with W_ih = W_vu, W_hh = W_uu, b_ih = b_u, b_hh = 0, run by the shared time loop;
// `gates` [T, N, U] is its working buffer, u_n [N, U] the last state.
template <class S>
void rnn_states(Index T, Index N, Index C, Index U, const S* x, const S* W_vu, const S* W_uu, const S* b_u,
                const S* u0, S* u, S* u_prev, S* gates, S* u_n, int nt) {
  const std::vector<S> zero(static_cast<size_t>(U), S(0));
  ForwardBuffers<S> b{};
  b.x = x, b.h0 = u0, b.y = u, b.h_n = u_n, b.h_prev = u_prev, b.gates = gates;
  forward(RnnCell{}, Dims{T, N, C, U}, Weights<S>{W_vu, W_uu, b_u, zero.data()}, b, nt);
}

template <class S>
struct Params {
  const S* W;     // [H, V]
  const S* b_v;   // [V]
  const S* b_h;   // [H]
  const S* W_uv;  // [V, U]
  const S* W_uh;  // [H, U]
  const S* W_uu;  // [U, U]
  const S* W_vu;  // [U, C]
  const S* b_u;   // [U]
};

template <class S>
struct Grads {
  S *W, *b_v, *b_h, *W_uv, *W_uh, *W_uu, *W_vu, *b_u;  // shapes as Params
};

struct Sizes {
  Index T, N, C, V, H, U;
};

// The RNN-RBM training cost and its exact gradient with the negative samples v_neg held constant:
//   cost = (1 / M_valid) sum_{valid t, n} F(v_t; b_v(t), b_h(t)) - F(v*_t; b_v(t), b_h(t))
// (frame (t, n) is valid when t < lengths[n]). x [T, N, C] feeds the RNN, v, v_neg [T, N, V] the RBM.
// With rnn_grad = false the RNN is held fixed (dW_uu, dW_vu, db_u are zero, no BPTT). Returns the cost.
template <class S>
S cost_backward(const Sizes& d, const Params<S>& p, const S* x, const S* v, const S* v_neg, const S* u0,
                const int64_t* lengths, bool rnn_grad, const Grads<S>& g, int nt_requested) {
  const Index T = d.T, N = d.N, C = d.C, V = d.V, H = d.H, U = d.U, M = T * N;
  const int nt = threads_for(8.0 * M * (V * H + U * (U + V + H + C)), nt_requested);
  std::vector<S> u(M * U), u_prev(M * U), bv(M * V), bh(M * H), pp(M * H), pn(M * H), dbv(M * V), dbh(M * H),
      fcost(M, S(0)), u_n(N * U), da(M * U);
  rnn_states(T, N, C, U, x, p.W_vu, p.W_uu, p.b_u, u0, u.data(), u_prev.data(), da.data(), u_n.data(), nt);
  // b_v(t) = b_v + W_uv u_{t-1};  b_h(t) = b_h + W_uh u_{t-1}
  project(M, U, V, u_prev.data(), p.W_uv, p.b_v, bv.data(), nt);
  project(M, U, H, u_prev.data(), p.W_uh, p.b_h, bh.data(), nt);
  Index valid = 0;
  for (Index n = 0; n < N; ++n) valid += lengths ? std::min<Index>(lengths[n], T) : T;
  const S w = valid > 0 ? S(1) / S(valid) : S(0);
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    const Index nb = f1 - f0;
    Matrix<S> a(nb, H);
    for (int side = 0; side < 2; ++side) {
      const S* vv = (side == 0 ? v : v_neg) + f0 * V;
      S* ph = (side == 0 ? pp.data() : pn.data()) + f0 * H;
      a.noalias() = view(vv, nb, V) * view(p.W, H, V).transpose();
      a += view(bh.data() + f0 * H, nb, H);
      for (Index r = 0; r < nb; ++r) {
        const Index f = f0 + r, t = f / N, n = f % N;
        const S wf = (!lengths || t < lengths[n]) ? w : S(0);
        // F = -b_v . v - sum_j softplus(a_j)
        S F = S(0);
        for (Index i = 0; i < V; ++i) F -= bv[f * V + i] * vv[r * V + i];
        for (Index j = 0; j < H; ++j) F -= softplus(a(r, j));
        fcost[f] += side == 0 ? wf * F : -wf * F;
        // dF/db_h = -sigm(a), weighted by the frame's share of the cost
        auto ar = view(a.data() + r * H, 1, H);
        sigmoid_inplace(ar);
        for (Index j = 0; j < H; ++j) ph[r * H + j] = wf * a(r, j);
        if (side == 0)
          for (Index i = 0; i < V; ++i) dbv[f * V + i] = -wf * (v[f * V + i] - v_neg[f * V + i]);
      }
    }
    // dcost/db_h(t) = w (sigm(a(v*)) - sigm(a(v)))
    view(dbh.data() + f0 * H, nb, H) = view(pn.data() + f0 * H, nb, H) - view(pp.data() + f0 * H, nb, H);
  });
  S cost = S(0);
  for (Index f = 0; f < M; ++f) cost += fcost[f];
  // dW = sum_t w (p_h(v*) v*^T - p_h(v) v^T)
  gemm_tn(M, H, V, pn.data(), v_neg, g.W, false, nt);
  for_blocks(H, tuning::rbm_out_block, nt, [&](Index k0, Index k1) {
    view(g.W + k0 * V, k1 - k0, V).noalias() -=
        view(pp.data(), M, H).middleCols(k0, k1 - k0).transpose() * view(v, M, V);
  });
  column_sums(M, V, dbv.data(), g.b_v);
  column_sums(M, H, dbh.data(), g.b_h);
  // dW_uv = sum_t db_v(t) u_{t-1}^T;  dW_uh = sum_t db_h(t) u_{t-1}^T
  gemm_tn(M, V, U, dbv.data(), u_prev.data(), g.W_uv, false, nt);
  gemm_tn(M, H, U, dbh.data(), u_prev.data(), g.W_uh, false, nt);
  if (!rnn_grad) {
    std::fill(g.W_uu, g.W_uu + U * U, S(0));
    std::fill(g.W_vu, g.W_vu + U * C, S(0));
    std::fill(g.b_u, g.b_u + U, S(0));
    return cost;
  }
  // the bias gradients reaching u_{t-1}: du_prev(t) = W_uv^T db_v(t) + W_uh^T db_h(t), and zeros after the
  // last step: the gradient reaching u_t from the frame after it is du_prev(t + 1)
  std::vector<S> du_prev((M + N) * U, S(0));
  for_blocks(M, tuning::rbm_frame_block, nt, [&](Index f0, Index f1) {
    auto o = view(du_prev.data() + f0 * U, f1 - f0, U);
    o.noalias() = view(dbv.data() + f0 * V, f1 - f0, V) * view(p.W_uv, V, U);
    o.noalias() += view(dbh.data() + f0 * H, f1 - f0, H) * view(p.W_uh, H, U);
  });
  // BPTT through the RNN (rnn_states' Elman RNN, the shared time loop's backward):
  //   g_t = dcost/du_t = du_prev(t+1) + W_uu^T da_{t+1} (zero at t = T-1);  da_t = g_t (1 - u_t^2)
  //   dW_uu = sum_t da_t u_{t-1}^T;  dW_vu = sum_t da_t x_t^T;  db_u = sum_t da_t   (dx, du0 and db_hh unused)
  std::vector<S> dx(M * C), du0(N * U), db_hh(U);
  BackwardBuffers<S> b{};
  b.x = x, b.h_prev = u_prev.data(), b.h_last = u_n.data(), b.dy = du_prev.data() + N * U;
  b.dx = dx.data(), b.dh0 = du0.data(), b.dW_ih = g.W_vu, b.dW_hh = g.W_uu, b.db_ih = g.b_u, b.db_hh = db_hh.data();
  b.dgates = da.data();
  const std::vector<S> zero(static_cast<size_t>(U), S(0));
  backward(RnnCell{}, Dims{T, N, C, U}, Weights<S>{p.W_vu, p.W_uu, p.b_u, zero.data()}, b, nt);
  return cost;
}

// The top RBM of an RNN-DBN: visible h1 [H] (the first hidden layer), hidden h2 [H2].
template <class S>
struct Top {
  Index H2;
  const S* W2;     // [H2, H]
  const S* c;      // [H]   the top RBM's bias on h1: c(t) = c + W_uc u_{t-1}
  const S* b_h2;   // [H2]  b_h2(t) = b_h2 + W_uh2 u_{t-1}
  const S* W_uc;   // [H, U]
  const S* W_uh2;  // [H2, U]
};

// Generates v [T, N, V] (C = V): at each step, from u_{t-1}, a k-step Gibbs chain started at zeros,
//   RNN-RBM (top == nullptr): in the RBM (v, h) with b_v(t), b_h(t); v_t its last visible sample;
//   RNN-DBN: in the top RBM (h1, h2) with c(t), b_h2(t), then v_t ~ sigm(W^T h1 + b_v(t));
// then u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t). Sequence n draws from stream (seed, n, kGenerate).
template <class S>
void generate(const Sizes& d, const Params<S>& p, const Top<S>* top, const S* u0, int k, uint64_t seed, S* v_out,
              int nt) {
  const Index T = d.T, N = d.N, V = d.V, H = d.H, U = d.U;
  const Index H2 = top ? top->H2 : 0;
  nt = threads_for(4.0 * T * N * k * (V * H + H * H2 + U * (U + V + H + H2)), nt);
  for_blocks(N, tuning::rbm_row_block, nt, [&](Index n0, Index n1) {
    const Index nb = n1 - n0;
    std::vector<Stream> st(nb);
    for (Index r = 0; r < nb; ++r) st[r] = Stream(seed, n0 + r, kGenerate);
    Matrix<S> up(nb, U), a(nb, U), bv(nb, V), bh(nb, H), v(nb, V), pv(nb, V), h(nb, H);
    Matrix<S> c(nb, H), bh2(nb, H2), h1(nb, H), ph1(nb, H), h2(nb, H2);
    if (u0)
      up = view(u0 + n0 * U, nb, U);
    else
      up.setZero();
    auto vv = View<S>(v.data(), nb, V, Eigen::OuterStride<>(V));
    for (Index t = 0; t < T; ++t) {
      // b_v(t) = b_v + W_uv u_{t-1};  b_h(t) = b_h + W_uh u_{t-1}
      bv.noalias() = up * view(p.W_uv, V, U).transpose();
      bv.rowwise() += row_vector(p.b_v, V);
      if (!top) {
        bh.noalias() = up * view(p.W_uh, H, U).transpose();
        bh.rowwise() += row_vector(p.b_h, H);
        v.setZero();
        gibbs_rows(nb, V, H, p.W, bv.data(), bh.data(), k, st.data(), v.data(), pv.data(), h.data());
      } else {
        // c(t) = c + W_uc u_{t-1};  b_h2(t) = b_h2 + W_uh2 u_{t-1}
        c.noalias() = up * view(top->W_uc, H, U).transpose();
        c.rowwise() += row_vector(top->c, H);
        bh2.noalias() = up * view(top->W_uh2, H2, U).transpose();
        bh2.rowwise() += row_vector(top->b_h2, H2);
        h1.setZero();
        gibbs_rows(nb, H, H2, top->W2, c.data(), bh2.data(), k, st.data(), h1.data(), ph1.data(), h2.data());
        // v_t ~ sigm(W^T h1 + b_v(t))
        pv.noalias() = h1 * view(p.W, H, V);
        pv += bv;
        sigmoid_inplace(pv);
        v = pv;
        sample_inplace(vv, st.data());
      }
      for (Index r = 0; r < nb; ++r)
        std::copy(v.data() + r * V, v.data() + (r + 1) * V, v_out + (t * N + n0 + r) * V);
      // u_t = tanh(b_u + W_uu u_{t-1} + W_vu v_t)
      a.noalias() = v * view(p.W_vu, U, V).transpose();
      a.noalias() += up * view(p.W_uu, U, U).transpose();
      a.rowwise() += row_vector(p.b_u, U);
      tanh_inplace(a);
      up = a;
    }
  });
}

// ---------------------------------------------------------------- the DBN of one frame

// log p(v) [M] of a two-hidden-layer DBN, exactly:
//   p(v) = sum_h1 p_top(h1) p(v | h1),  p(v | h1) = prod_i sigm(a_i)^v_i (1 - sigm(a_i))^(1 - v_i),
//   a = b_v + W^T h1,  p_top(h1) = exp(c . h1 + sum_k softplus(b_h2,k + W2_k . h1)) / Z_top,
// enumerating the 2^H configurations of h1 (Z_top from the same enumeration).
template <class S>
void dbn_log_prob_exact(Index M, Index V, Index H, Index H2, const S* v, const S* W, const S* bv, const S* W2,
                        const S* c, const S* bh2, double* out, int nt) {
  nt = threads_for(double(M) * (V + H2) * 20.0 * double(uint64_t(1) << H), nt);
  for_blocks(M, 1, nt, [&](Index f, Index) {
    std::vector<double> a, b2(bh2 + f * H2, bh2 + (f + 1) * H2);
    std::vector<char> h;
    LogSumExp top, joint;
    const S* vf = v + f * V;
    enumerate_hidden(
        V, H, W, bv + f * V, c + f * H, a, h,
        [&](const std::vector<double>& a_, double e) {
          double lt = e;  // log p*_top(h1) = c . h1 + sum_k softplus(b_h2,k + W2_k . h1)
          for (Index k = 0; k < H2; ++k) lt += softplus(b2[k]);
          double lc = 0.0;  // log p(v | h1) = sum_i v_i a_i - softplus(a_i)
          for (Index i = 0; i < V; ++i) lc += double(vf[i]) * a_[i] - softplus(a_[i]);
          top.add(lt);
          joint.add(lt + lc);
        },
        // b2 = b_h2 + W2 h1 follows h1, one column of W2 per flip
        [&](Index j, double sign) {
          for (Index k = 0; k < H2; ++k) b2[k] += sign * W2[k * H + j];
        });
    out[f] = joint.value() - top.value();
  });
}

// Importance weights for log sum_h1 p*_top(h1) p(v | h1), with the proposal the first layer's posterior
// q(h1 | v) = prod_j sigm(W v + b_h)_j:  log w_s = log p*_top(h1_s) + log p(v | h1_s) - log q(h1_s | v),
// S samples per frame, frame f drawing from stream (seed, f, kDbnImportance). logw [M, n_samples].
template <class S>
void dbn_importance(Index M, Index V, Index H, Index H2, const S* v, const S* W, const S* bv, const S* bh,
                    const S* W2, const S* c, const S* bh2, Index n_samples, uint64_t seed, double* logw, int nt) {
  const Index R = n_samples;
  nt = threads_for(2.0 * M * R * H * (V + H2), nt);
  for_blocks(M, 1, nt, [&](Index f, Index) {
    const S* vf = v + f * V;
    Stream st(seed, f, kDbnImportance);
    RowVector<S> q(H);
    q.noalias() = view(vf, 1, V) * view(W, H, V).transpose();
    q += row_vector(bh + f * H, H);
    RowVector<S> aq = q;
    sigmoid_inplace(q);
    Matrix<S> hs(R, H), A(R, V), B2(R, H2);
    std::vector<double> lq(R, 0.0);
    for (Index r = 0; r < R; ++r)
      for (Index j = 0; j < H; ++j) {
        const bool on = st.uniform() < double(q[j]);
        hs(r, j) = on ? S(1) : S(0);
        // log q = sum_j h_j log sigm(a_j) + (1 - h_j) log sigm(-a_j)
        lq[r] -= on ? softplus(double(-aq[j])) : softplus(double(aq[j]));
      }
    A.noalias() = hs * view(W, H, V);
    A.rowwise() += row_vector(bv + f * V, V);
    B2.noalias() = hs * view(W2, H2, H).transpose();
    B2.rowwise() += row_vector(bh2 + f * H2, H2);
    for (Index r = 0; r < R; ++r) {
      double l = -lq[r];
      for (Index j = 0; j < H; ++j) l += double(hs(r, j)) * c[f * H + j];
      for (Index k = 0; k < H2; ++k) l += softplus(double(B2(r, k)));
      for (Index i = 0; i < V; ++i) l += double(vf[i]) * A(r, i) - softplus(double(A(r, i)));
      logw[f * R + r] = l;
    }
  });
}

}  // namespace rnnkit::rbm
