// The recurrent product of one step, C[rows, n] (+)= A[rows, K] B[K, n], with B packed once per call.
//
// Eigen's GEMM repacks its right-hand side on every call, and W_hh is that operand at every
// step: for H = 256 an LSTM's W_hh is 1 MiB, repacked T times. Here B is packed once, before the
// time loop, into panels of NR columns (zero-padded), and each thread packs only its own
// columns, so its share of W_hh stays in its own cache for the whole sequence.
//
// Rows of A and C are given by pointer: a step reads only the batch rows still inside their
// sequences, in any order, without gathering them. Every output element sums over k in order,
// so results do not depend on the row grouping, the thread count or the buffers' alignment.
#pragma once

#include <algorithm>
#include <vector>

#include "rnnkit/shapes.hpp"

namespace rnnkit {

template <class S>
struct PackTraits {
  using P = typename Eigen::internal::packet_traits<S>::type;
  static constexpr int L = Eigen::internal::unpacket_traits<P>::size;
  static constexpr int NR = 2 * L;  // columns of one panel: two packets
  static constexpr int MR = L >= 8 ? 8 : 6;  // rows of one register tile
};

inline Index round_up(Index n, Index m) { return (n + m - 1) / m * m; }

// B [K, n] in panels of NR columns: B(k, p*NR + j) at data[(p*K + k)*NR + j], zero beyond n.
template <class S>
struct PackedB {
  Index K = 0, n = 0;
  std::vector<S, Eigen::aligned_allocator<S>> data;

  void reset(Index K_, Index n_) {
    K = K_, n = n_;
    data.assign(static_cast<size_t>(round_up(n, PackTraits<S>::NR) * K), S(0));
  }

  // B(k, j) = row(k)[j] for j < w, zeros for w <= j < n: each row of B lies contiguous in memory.
  template <class F>
  void pack_rows(Index K_, Index n_, Index w, const F& row) {
    constexpr Index NR = PackTraits<S>::NR;
    reset(K_, n_);
    for (Index p = 0; p * NR < w; ++p)
      for (Index k = 0; k < K; ++k) std::copy_n(row(k) + p * NR, std::min(NR, w - p * NR), data.data() + (p * K + k) * NR);
  }
  // B(k, j) = column(j)[k], zeros where column(j) is null: each column of B lies contiguous in memory
  // (B is the transpose of a row-major matrix). Reads each column in order, writes its panel lane.
  template <class F>
  void pack_columns(Index K_, Index n_, const F& column) {
    constexpr Index NR = PackTraits<S>::NR;
    reset(K_, n_);
    for (Index j = 0; j < n; ++j)
      if (const S* src = column(j)) {
        S* dst = data.data() + (j / NR) * K * NR + j % NR;
        for (Index k = 0; k < K; ++k) dst[k * NR] = src[k];
      }
  }
  // Columns [j0, j0 + NR) of the panel starting at column j0 (a multiple of NR).
  const S* panel(Index j0) const { return data.data() + j0 * K; }
};

namespace detail {

// MR_ rows of C (row pointers c, at the panel's first column) (+)= A rows (pointers a, at column k0)
// times the panel's rows [k0, k0 + K).
template <int MR_, class S>
inline void micro_kernel(Index K, const S* const* a, const S* b, S* const* c, bool accumulate) {
  namespace ei = Eigen::internal;
  using P = typename PackTraits<S>::P;
  constexpr int L = PackTraits<S>::L;
  constexpr int NR = PackTraits<S>::NR;
  P acc0[MR_], acc1[MR_];
  for (int r = 0; r < MR_; ++r) {
    acc0[r] = accumulate ? ei::ploadu<P>(c[r]) : ei::pset1<P>(S(0));
    acc1[r] = accumulate ? ei::ploadu<P>(c[r] + L) : ei::pset1<P>(S(0));
  }
  for (Index k = 0; k < K; ++k) {
    const P b0 = ei::pload<P>(b + k * NR), b1 = ei::pload<P>(b + k * NR + L);
    for (int r = 0; r < MR_; ++r) {
      const P ar = ei::pset1<P>(a[r][k]);
      acc0[r] = ei::pmadd(ar, b0, acc0[r]);
      acc1[r] = ei::pmadd(ar, b1, acc1[r]);
    }
  }
  for (int r = 0; r < MR_; ++r) {
    ei::pstoreu(c[r], acc0[r]);
    ei::pstoreu(c[r] + L, acc1[r]);
  }
}

template <class S>
inline void micro_kernel_rows(int m, Index K, const S* const* a, const S* b, S* const* c, bool accumulate) {
  switch (m) {
    case 1: return micro_kernel<1>(K, a, b, c, accumulate);
    case 2: return micro_kernel<2>(K, a, b, c, accumulate);
    case 3: return micro_kernel<3>(K, a, b, c, accumulate);
    case 4: return micro_kernel<4>(K, a, b, c, accumulate);
    case 5: return micro_kernel<5>(K, a, b, c, accumulate);
    case 6: return micro_kernel<6>(K, a, b, c, accumulate);
    case 7: return micro_kernel<7>(K, a, b, c, accumulate);
    default: return micro_kernel<8>(K, a, b, c, accumulate);
  }
}

}  // namespace detail

// C[r, j0:j1) (+)= A[r, k0:k1) B[k0:k1, j0:j1) for r < m, where a[r] points at A(r, k0) and row r of C
// starts at c + r * ldc. j0 and j1 are multiples of NR (C is padded to whole panels).
template <class S>
void packed_product(Index m, const S* const* a, const PackedB<S>& B, Index k0, Index k1, Index j0, Index j1, S* c,
                    Index ldc, bool accumulate) {
  constexpr int MR = PackTraits<S>::MR, NR = PackTraits<S>::NR;
  const S* a_rows[MR];
  S* c_rows[MR];
  for (Index j = j0; j < j1; j += NR) {
    const S* panel = B.panel(j) + k0 * NR;
    for (Index r0 = 0; r0 < m; r0 += MR) {
      const int mr = static_cast<int>(std::min<Index>(MR, m - r0));
      for (int r = 0; r < mr; ++r) {
        a_rows[r] = a[r0 + r];
        c_rows[r] = c + (r0 + r) * ldc + j;
      }
      detail::micro_kernel_rows(mr, k1 - k0, a_rows, panel, c_rows, accumulate);
    }
  }
}

// The same products straight from an unpacked row-major W, for calls too short to repay packing
// (a streaming step at batch 1). Each output element is still one in-order sum over k in packets,
// whatever block of columns it falls in.
namespace detail {

// out[j] (+)= dot(a, W row j) for j < n; W rows have K values at stride ldw. Rows go R at a time
// (independent FMA chains), each row with its own single accumulator, so every element is the
// same in-order sum whichever group its row falls in.
template <int R, class S>
inline void dot_rows_block(const S* a, const S* a_tail, const S* W, Index ldw, Index K, S* out, bool accumulate) {
  namespace ei = Eigen::internal;
  using P = typename PackTraits<S>::P;
  constexpr int L = PackTraits<S>::L;
  const Index Kp = K / L * L;
  P acc[R];
  for (int r = 0; r < R; ++r) acc[r] = ei::pset1<P>(S(0));
  for (Index k = 0; k < Kp; k += L) {
    const P ak = ei::ploadu<P>(a + k);
    for (int r = 0; r < R; ++r) acc[r] = ei::pmadd(ak, ei::ploadu<P>(W + r * ldw + k), acc[r]);
  }
  if (Kp < K) {
    alignas(64) S w_tail[L] = {};
    const P ak = ei::pload<P>(a_tail);
    for (int r = 0; r < R; ++r) {
      for (Index k = Kp; k < K; ++k) w_tail[k - Kp] = W[r * ldw + k];
      acc[r] = ei::pmadd(ak, ei::pload<P>(w_tail), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = accumulate ? out[r] + ei::predux(acc[r]) : ei::predux(acc[r]);
}

template <class S>
inline void dot_rows(const S* a, const S* W, Index ldw, Index n, Index K, S* out, bool accumulate = false) {
  constexpr int L = PackTraits<S>::L;
  const Index Kp = K / L * L;
  alignas(64) S a_tail[L] = {};
  for (Index k = Kp; k < K; ++k) a_tail[k - Kp] = a[k];
  Index j = 0;
  for (; j + 8 <= n; j += 8) dot_rows_block<8>(a, a_tail, W + j * ldw, ldw, K, out + j, accumulate);
  for (; j < n; ++j) dot_rows_block<1>(a, a_tail, W + j * ldw, ldw, K, out + j, accumulate);
}

// out[0:n) (+)= sum_k a[k] W(k, 0:n) for k < K; W rows at stride ldw.
template <class S>
inline void axpy_rows(const S* a, const S* W, Index ldw, Index n, Index K, S* out, bool accumulate) {
  namespace ei = Eigen::internal;
  using P = typename PackTraits<S>::P;
  constexpr int L = PackTraits<S>::L;
  for (Index j = 0; j < n; j += L) {
    const Index nj = std::min<Index>(L, n - j);
    alignas(64) S buf[L] = {};
    P acc = ei::pset1<P>(S(0));
    if (accumulate) {
      for (Index u = 0; u < nj; ++u) buf[u] = out[j + u];
      acc = ei::pload<P>(buf);
    }
    for (Index k = 0; k < K; ++k) {
      const S* w = W + k * ldw + j;
      P wk;
      if (nj == L) {
        wk = ei::ploadu<P>(w);
      } else {
        for (Index u = 0; u < nj; ++u) buf[u] = w[u];
        wk = ei::pload<P>(buf);
      }
      acc = ei::pmadd(ei::pset1<P>(a[k]), wk, acc);
    }
    ei::pstore(buf, acc);
    for (Index u = 0; u < nj; ++u) out[j + u] = buf[u];
  }
}

}  // namespace detail

}  // namespace rnnkit
