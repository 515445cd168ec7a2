"""The adding problem (Hochreiter & Schmidhuber, 1997): an LSTM remembers, a SimpleRNN forgets.

    python examples/adding_problem.py [--epochs 8] [--plot curves.png]

Each input sequence x: [T, 2] has two channels: values drawn uniformly from [0, 1), and markers, 0
everywhere except for exactly two 1s, one in each half of the sequence. The target is the sum of the two
marked values. Predicting the mean (1) scores the targets' variance, 2 * 1/12 = 0.167: a model has learnt
the task only when its test MSE falls well below that.

At T = 50 the first marker lies 25 to 50 steps before the end. An LSTM and a SimpleRNN of the same width,
trained the same way (Adam, mean squared error), are compared by their test MSE after every epoch. The LSTM
solves the task (test MSE < 0.01); the SimpleRNN cannot carry the first value across that many steps and
stays near the baseline. About 3-4 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnnkit
from rnnkit import Sequential
from rnnkit.callbacks import Callback
from rnnkit.layers import LSTM, Dense, SimpleRNN
from rnnkit.optimizers import Adam

BASELINE_MSE = 2.0 / 12.0  # Var(u1 + u2) for u1, u2 ~ U[0, 1): the MSE of always predicting 1
CELLS = {"LSTM": LSTM, "SimpleRNN": SimpleRNN}


def make_adding_data(rng, n, T=50):
    """n adding-problem sequences of T steps.

    Returns ``x: [n, T, 2]`` float32 (channel 0 the values, channel 1 the markers, with exactly one 1 in
    steps [0, T/2) and one in [T/2, T)) and ``y: [n, 1]`` float32, the sum of the two marked values.
    """
    if T < 2:
        raise ValueError(f"T: expected at least 2 steps (one marker in each half), got {T}")
    values = rng.uniform(0.0, 1.0, size=(n, T)).astype(np.float32)
    first = rng.integers(0, T // 2, size=n)
    second = rng.integers(T // 2, T, size=n)
    markers = np.zeros((n, T), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1, keepdims=True)  # y = x[first] + x[second]
    return x, y


class EpochPrinter(Callback):
    """Prints the training and test MSE at the end of every epoch."""

    def __init__(self, label):
        super().__init__()
        self.label, self.start = label, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"  {self.label:<9} epoch {epoch + 1:3d}   train mse {logs['loss']:.4f}   "
              f"test mse {logs['val_loss']:.4f}   ({time.perf_counter() - self.start:5.1f} s)", flush=True)


def train(cell, train_data, test_data, units=64, epochs=8, batch_size=32, learning_rate=0.01, seed=0,
          verbose=True):
    """Trains ``cell`` ("LSTM" or "SimpleRNN", ``units`` wide, with a linear read-out) with Adam.

    train_data, test_data: (x [n, T, 2], y [n, 1]). Returns the test MSE after each epoch (a list of
    ``epochs`` floats). ``seed`` fixes the initial weights and the shuffling (rnnkit.set_seed).
    """
    rnnkit.set_seed(seed)
    x_train, y_train = train_data
    model = Sequential([CELLS[cell](units, input_shape=x_train.shape[1:]), Dense(1)])
    model.compile(optimizer=Adam(learning_rate), loss="mse")
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, validation_data=test_data,
                        verbose=0, callbacks=[EpochPrinter(cell)] if verbose else None)
    return history.history["val_loss"]


def format_table(curves):
    """curves: {cell name: [test MSE per epoch]} -> the table as text, one row per epoch."""
    names = list(curves)
    lines = ["test MSE per epoch", "  epoch " + "".join(f"{name:>12}" for name in names)]
    for epoch in range(max(len(c) for c in curves.values())):
        lines.append(f"  {epoch + 1:5d} " + "".join(
            f"{curves[name][epoch]:12.4f}" if epoch < len(curves[name]) else " " * 12 for name in names))
    lines.append(f"  (predicting the mean scores {BASELINE_MSE:.4f})")
    return "\n".join(lines)


def plot(curves, path, T=50):
    """Writes the curves to a PNG at ``path``; returns False (and writes nothing) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.axhline(BASELINE_MSE, color="grey", linestyle="--", label="predict the mean")
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test MSE")
    ax.set_title(f"The adding problem, T = {T}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=50, help="sequence length (default 50)")
    parser.add_argument("--train", type=int, default=10000, help="training sequences (default 10000)")
    parser.add_argument("--test", type=int, default=2000, help="test sequences (default 2000)")
    parser.add_argument("--units", type=int, default=64, help="hidden units of both models (default 64)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs for each model (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write the curves to a PNG (needs matplotlib)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    train_data = make_adding_data(rng, args.train, args.T)
    test_data = make_adding_data(rng, args.test, args.T)
    print(f"The adding problem: T={args.T}, {args.train} training and {args.test} test sequences; "
          f"{args.units} units, Adam(lr={args.lr}), batch size {args.batch_size}")
    curves = {cell: train(cell, train_data, test_data, units=args.units, epochs=args.epochs,
                          batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed)
              for cell in CELLS}
    print(format_table(curves))
    if args.plot:
        print(f"curves written to {args.plot}" if plot(curves, args.plot, args.T)
              else "--plot: matplotlib is not installed (pip install matplotlib); no PNG written")
    return curves


if __name__ == "__main__":
    main()
