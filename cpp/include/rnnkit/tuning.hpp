// Every threshold that picks a schedule, each with its reason: how many threads a call is worth, whether a
// call packs W_hh, how threads share a step, where products are cut into blocks, and how much memory is kept
// between calls. The headers that make these choices (buffers.hpp, sequence.hpp, threads.hpp, jordan.hpp,
// rbm.hpp, the bindings) read them from here.
//
// None of them depends on the thread count: a choice that rounds differently (packing, a fused projection,
// where a product is cut) is made from the problem's size alone, so results are the same to the bit on any
// number of threads. (A choice of the thread count itself, like min_flops_per_thread, changes only who
// computes what.)
//
// The micro-kernels' register tiles (PackTraits in packed.hpp) are not here: they are the packed layout of
// W_hh, fixed by the SIMD packet, not a choice between schedules.
#pragma once

#include <cstddef>

#include "rnnkit/shapes.hpp"

namespace rnnkit::tuning {

// ---- threads (threads.hpp)

// The work a call needs per thread it starts (threads_for): a parallel region costs microseconds (far more
// when the machine is busy), so small calls run on the calling thread.
constexpr double min_flops_per_thread = 4e6;

// A forward call counts as at least this many rows of work when its threads are chosen: a short call (a
// streaming step) takes as long as reading the weights does, so they count as work too.
constexpr double min_counted_rows = 16;

// The work of one step's W_hh product a thread needs (step_threads): each step ends in a barrier, which
// only pays when every thread has at least ~200k flops of it (measured: an Elman RNN at N=32, H=50 runs
// faster on one thread, an LSTM of that size on two).
constexpr double min_step_flops_per_thread = 2e5;

// A barrier's waiter spins (like OpenMP's) for this many pauses, about 10 us, before it starts yielding its
// core between checks, and then considers yielding every `barrier_yield_every` pauses (TeamBarrier: when
// the thread it may wait for cannot run elsewhere; see the top of threads.hpp for the measurement).
constexpr unsigned barrier_spins = 400;
constexpr unsigned barrier_yield_every = 64;

// Matrix products split over threads (for_row_blocks) are cut into at most this many blocks of at least
// `product_min_rows` rows each, at the same places whatever the thread count: a product rounds a row
// differently depending on where in the call it falls, so fixed cuts keep results identical on any number of
// threads, and each thread takes whole blocks. The minimum keeps each block a product worth a call of its own.
constexpr Index max_product_blocks = 8;
constexpr Index product_min_rows = 32;

// ---- the time loop (sequence.hpp, and the choices that shape its calls in buffers.hpp)

// Calls with at least this many T*N rows pack W_hh once (pack_threshold's default); shorter ones (a
// streaming step) read it in place: packing costs a pass over W_hh that a few rows do not repay.
constexpr Index pack_min_rows = 64;

// Inference projects each step's input inside the time loop (fuse_projection) when the step's weights
// (W_ih and W_hh) take at most 2 MiB, so that each of two threads' shares stays in its L2 (1 MiB); beyond
// that, one product over all steps reads W_ih once instead of T times (measured: the GRU at C=512, H=1024
// loses 6% fused). The two ways round differently, so the choice never depends on the thread count.
constexpr double fuse_projection_bytes = double(2 << 20);

// The threads split a forward step's batch rows instead of its hidden units (split_rows) while the step's
// weights (W_hh, and W_ih when each step projects its input) take at most 512 KiB: each thread then reads
// every weight of the step instead of its share, with no barrier per step, which pays while they stay in
// a thread's L2 (half of its 1 MiB).
constexpr double split_rows_bytes = double(1 << 19);

// Rows of one pass of the forward loop through the whole sequence: each thread's working buffers hold this
// many rows, whatever the batch (a pass re-reads the step's weights, which at 256 rows is a small part of the
// step's work).
constexpr Index forward_row_block = 256;

// Backward computes dx = dG W_ih inside the time loop, each step's while its gate gradients are in cache,
// when W_hh is packed and the input has at least this many panels of columns (PackTraits::NR each): then
// every thread's columns of it fill a panel. Else (an input of a few features) dx is one product after the
// loop. Counted for two threads: the two ways round differently, so the choice never depends on the thread
// count.
constexpr Index dx_per_step_min_panels = 2;

// ---- the Jordan network (jordan.hpp)

// The recurrence runs fixed blocks of at least this many batch rows (for_row_blocks), each over the whole
// sequence: smaller blocks would give more threads rows of their own at a small batch, at the price of
// shorter products at every step.
constexpr Index jordan_row_block = 16;

// ---- the RBM kernels (rbm.hpp)

// Work is cut into blocks of a fixed number of rows before being dealt to threads, so every product has the
// same shapes whatever the thread count: frames of a frame-parallel product, sequences of a recurrence block,
// output rows of a weight-gradient product.
constexpr Index rbm_frame_block = 64;
constexpr Index rbm_row_block = 8;
constexpr Index rbm_out_block = 16;

// ---- memory kept between calls (bindings/bind_common.hpp)

// A call's working buffer of up to this many bytes is kept for the calling thread's next call (Scratch): a
// fresh large buffer costs a page fault and the OS zeroing a page for every 4 KiB on every call (measured: a
// fifth of an LSTM training step at T=100, N=32, H=256). A larger one is the call's own and freed with it.
constexpr std::size_t scratch_keep_bytes = std::size_t(64) << 20;

// Result arrays of at least `pool_min_bytes` take their memory from a pool that keeps freed blocks, up to
// `pool_keep_bytes` in all, for reuse by exact size (BlockPool): a training loop allocates the same large
// caches and gradients at every step, which from the C library would be fresh pages faulted in and zeroed one
// by one (measured: about a fifth of an LSTM training step at T=100, N=32, H=256). Smaller arrays are numpy's
// own (the C library serves them from memory it already holds).
constexpr std::size_t pool_min_bytes = std::size_t(1) << 16;
constexpr std::size_t pool_keep_bytes = std::size_t(256) << 20;

}  // namespace rnnkit::tuning
