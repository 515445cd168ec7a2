"""`python -m rnnkit.demo`: train a small LSTM with model.fit and time the C++ kernels.

The task: forecast the next value of noisy sine waves of random frequency and phase, at every step, from
the values so far. A Keras-style model (LSTM(32, return_sequences=True) then Dense(1)) is compiled with
Adam and a mean squared error and trained with ``model.fit``; the demo prints the training and validation
loss of every epoch from the returned History, then times the same kind of LSTM forward + backward work in
the C++ kernels and in the NumPy reference. About 20 seconds on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import build_info, functional, reference
from .layers import LSTM, Dense
from .models import Sequential
from .random import set_seed


def make_waves(rng, T, N):
    """x: [N, T, 1] noisy sine waves; target: [N, T, 1] the next clean value at every step."""
    t = np.arange(T + 1, dtype=np.float32)[None, :]
    freq = rng.uniform(0.1, 0.4, size=(N, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(N, 1)).astype(np.float32)
    clean = np.sin(freq * t + phase)  # [N, T + 1]
    x = clean[:, :-1] + 0.05 * rng.standard_normal((N, T)).astype(np.float32)
    return x[..., None], clean[:, 1:, None]


def train(epochs=10, n_sequences=1024, T=50, H=32, seed=0):
    """Fits the forecaster on ``n_sequences`` waves (the last 20% held out for validation).

    Prints, and returns, the History's numbers: ``{"loss": [...], "val_loss": [...]}``, one value per epoch.
    """
    set_seed(seed)  # initial weights and shuffling
    x, target = make_waves(np.random.default_rng(seed), T, n_sequences)
    model = Sequential([LSTM(H, return_sequences=True, input_shape=(T, 1)), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, target, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0)
    for epoch, (loss, val_loss) in enumerate(zip(history.history["loss"], history.history["val_loss"])):
        print(f"  epoch {epoch + 1:3d}   train mse {loss:.4f}   validation mse {val_loss:.4f}")
    return {"loss": list(history.history["loss"]), "val_loss": list(history.history["val_loss"])}


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compare_speed(rng, T=50, N=32, C=32, H=128, repeats=3):
    """Median seconds of LSTM forward + backward in C++ and in the NumPy reference, on the same arrays.

    Prints them and returns ``{"cpp": seconds, "reference": seconds, "speedup": reference / cpp}``.
    """
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
    return {"cpp": cpp, "reference": ref, "speedup": ref / cpp}


def main(argv=None):
    """Runs the demo; returns ``{"history": train(...)'s numbers, "speed": compare_speed(...)'s numbers}``."""
    parser = argparse.ArgumentParser(prog="python -m rnnkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--sequences", type=int, default=1024, help="sine waves to train on (default 1024)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = build_info()
    print(f"rnnkit on {info['num_threads']} thread(s), OpenMP {info['openmp']}, {info['compiler']}, "
          f"kernels for {info['isa']}")
    print(f"Training LSTM(32) + Dense(1) to forecast noisy sine waves: model.fit, Adam, "
          f"{args.sequences} sequences of 50 steps:")
    history = train(args.epochs, args.sequences, seed=args.seed)
    print(f"  validation mse fell from {history['val_loss'][0]:.4f} to {history['val_loss'][-1]:.4f}")
    print("Speed of the C++ kernels against the NumPy reference on the same work:")
    speed = compare_speed(np.random.default_rng(args.seed))
    return {"history": history, "speed": speed}


if __name__ == "__main__":
    main()
