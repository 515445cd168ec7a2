"""`python -m rnnkit.demo`: train a small LSTM with BPTT and time the C++ kernels.

The task: forecast the next value of noisy sine waves of random frequency and
phase, from the values so far. An LSTM (C=1, H=32) with a linear read-out is
trained by plain gradient descent through ``rnnkit.functional``; the demo prints
the loss as it falls, then times the same forward + backward work in C++ and in
the NumPy reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import build_info, functional, reference


def make_waves(rng, T, N):
    """x: [T, N, 1] noisy sine waves; target: [T, N, 1] the next clean value."""
    t = np.arange(T + 1, dtype=np.float32)[:, None]
    freq = rng.uniform(0.1, 0.4, size=(1, N)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(1, N)).astype(np.float32)
    clean = np.sin(freq * t + phase)
    x = clean[:-1] + 0.05 * rng.standard_normal((T, N)).astype(np.float32)
    return x[..., None], clean[1:, :, None]


def init_lstm(rng, C, H):
    """PyTorch's uniform(±1/sqrt(H)) for W_ih [4H, C], W_hh [4H, H], b_ih, b_hh [4H], forget bias 1."""
    k = 1.0 / np.sqrt(H)
    params = {
        "W_ih": rng.uniform(-k, k, (4 * H, C)),
        "W_hh": rng.uniform(-k, k, (4 * H, H)),
        "b_ih": np.zeros(4 * H),
        "b_hh": np.zeros(4 * H),
        "W_out": rng.uniform(-k, k, (1, H)),
        "b_out": np.zeros(1),
    }
    params["b_ih"][H:2 * H] = 1.0
    return {name: p.astype(np.float32) for name, p in params.items()}


def loss_and_grads(p, x, target):
    """Mean squared error of the read-out over every step, and its gradient for every parameter."""
    y, _, _, cache = functional.lstm_forward(x, p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"])
    pred = y @ p["W_out"].T + p["b_out"]  # [T, N, 1]
    err = pred - target
    loss = float(np.mean(err ** 2))
    dpred = (2.0 / err.size) * err
    dy = np.ascontiguousarray(dpred @ p["W_out"], dtype=np.float32)  # [T, N, H]
    _, _, _, dW_ih, dW_hh, db_ih, db_hh = functional.lstm_backward(cache, dy)
    H = y.shape[-1]
    grads = {"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh,
             "W_out": dpred.reshape(-1, 1).T @ y.reshape(-1, H), "b_out": dpred.sum(axis=(0, 1))}
    return loss, grads


def train(rng, steps, lr, T=50, N=32, H=32):
    p = init_lstm(rng, 1, H)
    x_val, t_val = make_waves(rng, T, 256)
    losses = []
    for step in range(steps + 1):
        x, target = make_waves(rng, T, N)
        loss, grads = loss_and_grads(p, x, target)
        if step % max(1, steps // 10) == 0:
            val = loss_and_grads(p, x_val, t_val)[0]
            losses.append(val)
            print(f"  step {step:4d}   train mse {loss:.4f}   validation mse {val:.4f}")
        for name in p:
            # plain gradient descent, with the gradient's norm clipped at 1
            g = grads[name]
            p[name] -= (lr * g / max(1.0, float(np.linalg.norm(g)))).astype(np.float32)
    return losses


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compare_speed(rng, T=50, N=32, C=32, H=128, repeats=3):
    """Median seconds of LSTM forward + backward in C++ and in the NumPy reference, on the same arrays."""
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    W_ih, W_hh = (rng.uniform(-0.1, 0.1, s).astype(np.float32) for s in ((4 * H, C), (4 * H, H)))
    b = np.zeros(4 * H, np.float32)
    dy = rng.standard_normal((T, N, H)).astype(np.float32)

    def run(module):
        *_, cache = module.lstm_forward(x, W_ih, W_hh, b, b)
        module.lstm_backward(cache, dy)

    cpp, ref = median_seconds(lambda: run(functional), repeats), median_seconds(lambda: run(reference), repeats)
    print(f"  LSTM forward+backward (T={T}, N={N}, C={C}, H={H}, float32), median of {repeats}:")
    print(f"    C++ kernels      {cpp * 1e3:8.2f} ms")
    print(f"    NumPy reference  {ref * 1e3:8.2f} ms")
    print(f"    speed-up         {ref / cpp:8.1f}x")
    return ref / cpp


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rnnkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="gradient-descent steps (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    info = build_info()
    print(f"rnnkit on {info['num_threads']} thread(s), OpenMP {info['openmp']}, {info['compiler']}, {info['simd']}")
    print("Training an LSTM (H=32) to forecast noisy sine waves, plain gradient descent:")
    losses = train(rng, args.steps, lr=0.5)
    print(f"  validation mse fell from {losses[0]:.4f} to {losses[-1]:.4f}")
    print("Speed of the C++ kernels against the NumPy reference on the same work:")
    compare_speed(rng)


if __name__ == "__main__":
    main()
