"""A deep RNN stacked from a recurrent layer written by the user, in a subclassed model, as a Keras 3 program.

    python examples/custom_cell_deep_rnn.py [--epochs 15]

``ReluRNN`` is a layer of its own: ``h_t = relu(x_t W + h_prev U + b)`` with weights from ``add_weight``, looped
over time in Python inside ``call``. ``DeepRNN`` (a ``keras.Model`` subclass) stacks three of them under a
Dense head. Gradients come from the tape that records ``call`` while it runs; nothing is written by hand.

The task: from 30 steps of two noisy sine waves, forecast the first wave's next value. Repeating the last
observed value (persistence) is the baseline to beat. The same stack built from the built-in
``SimpleRNN(activation="relu")``, which computes the same function on the C++ kernels, is trained beside it:
both learn, and the built-in one is many times faster — the price of a recurrence written in Python.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rnnkit as keras
from rnnkit import layers, ops


class ReluRNN(layers.Layer):
    """h_t = relu(x_t W + h_prev U + b), h_0 = 0: x: [N, T, C] -> [N, T, units]."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.W = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="W")
        self.U = self.add_weight(shape=(self.units, self.units), initializer="orthogonal", name="U")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, x):
        h = ops.zeros((ops.shape(x)[0], self.units))
        outputs = []
        for t in range(x.shape[1]):
            h = ops.relu(x[:, t, :] @ self.W + h @ self.U + self.b)
            outputs.append(h)
        return ops.stack(outputs, axis=1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class DeepRNN(keras.Model):
    """Recurrent layers of ``units`` each (``layer(units)`` makes one), the last step's output into a Dense(1)."""

    def __init__(self, layer, units=(32, 32, 32), **kwargs):
        super().__init__(**kwargs)
        self.blocks = [layer(u) for u in units]
        self.head = layers.Dense(1)

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, -1])


def make_data(rng, n, steps=30):
    """x: [n, steps, 2] two noisy sines of random phase and period; y: [n, 1] the first one's next value."""
    t = np.arange(steps + 1)
    period = rng.uniform(8, 20, (n, 1, 2))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 2))
    waves = np.sin(2 * np.pi * t[None, :, None] / period + phase) + 0.05 * rng.standard_normal((n, steps + 1, 2))
    waves = waves.astype(np.float32)
    return waves[:, :-1], waves[:, -1, :1]


def run(samples=2000, epochs=15, units=(32, 32, 32), seed=0, verbose=0):
    """{name: (test MSE, seconds per epoch)} for the user's layer and the built-in one, and the baseline MSE."""
    rng = np.random.default_rng(seed)
    x, y = make_data(rng, samples)
    x_test, y_test = make_data(rng, 500)
    results = {"persistence baseline": (float(np.mean((x_test[:, -1, :1] - y_test) ** 2)), 0.0)}
    for name, layer in (("ReluRNN (Python loop, tape)", ReluRNN),
                        ("SimpleRNN(relu) (C++ kernels)", lambda u: layers.SimpleRNN(u, activation="relu",
                                                                                    return_sequences=True))):
        keras.set_seed(seed)
        model = DeepRNN(layer, units)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=verbose)
        seconds = (time.perf_counter() - t0) / epochs
        results[name] = (float(model.evaluate(x_test, y_test)), seconds)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args(argv)
    results = run(args.samples, args.epochs)
    print(f"{'model':32s} {'test MSE':>9s} {'s/epoch':>8s}")
    for name, (mse, seconds) in results.items():
        print(f"{name:32s} {mse:9.4f} {seconds:8.2f}")


if __name__ == "__main__":
    main()
