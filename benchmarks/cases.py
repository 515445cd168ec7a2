"""The benchmark's cases and their problems (inputs, weights, lengths, upstream gradient).

Shape legend (as in rnnkit.functional): T = time steps, N = batch, C = input features, H = hidden units,
L = stacked layers, G = gates (RNN 1, GRU 3, LSTM 4). x: [T, N, C]; per layer W_ih: [G*H, C_l],
W_hh: [G*H, H], b_ih, b_hh: [G*H] (PyTorch's layout) with C_0 = C and C_l = H above the first layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from rnnkit.cells import CELLS as CELL_SPECS

CELLS = ("lstm", "gru", "rnn")
GATES = {name: spec.G for name, spec in CELL_SPECS.items()}

# (C, H, L, T, N): the training / inference grid of the performance issue
GRID = ((64, 256, 1, 100, 32), (1, 50, 3, 50, 32), (128, 128, 2, 200, 16), (512, 1024, 1, 50, 64))
LARGE = (512, 1024, 1, 50, 64)
# variable-length batches: lengths uniform in [T/4, T]; compared with the same batch at full length
VARLEN = (64, 256, 1, 100, 32)
# streaming: one step at batch 1, C = H
STREAM_H = (128, 512)
STREAM_CELLS = ("lstm", "gru")


@dataclass(frozen=True)
class Case:
    cell: str
    C: int
    H: int
    L: int
    T: int
    N: int
    varlen: bool = False  # lengths uniform in [T/4, T] instead of all T

    @property
    def G(self):
        return GATES[self.cell]

    @property
    def point(self):
        return (self.C, self.H, self.L, self.T, self.N)

    @property
    def label(self):
        s = f"{self.cell} C{self.C} H{self.H} L{self.L} T{self.T} N{self.N}"
        return s + " varlen" if self.varlen else s

    def full_length(self) -> Case:
        return replace(self, varlen=False)

    def as_dict(self):
        return {"cell": self.cell, "C": self.C, "H": self.H, "L": self.L, "T": self.T, "N": self.N,
                "varlen": self.varlen}


@dataclass
class Problem:
    case: Case
    x: np.ndarray  # [T, N, C] float32
    layers: list  # per layer (W_ih [G*H, C_l], W_hh [G*H, H], b_ih [G*H], b_hh [G*H])
    lengths: np.ndarray | None  # [N] int64, or None for full length
    dy: np.ndarray  # [T, N, H] the upstream gradient of the top layer's output


def make_problem(case: Case, seed: int = 0) -> Problem:
    """Random inputs and PyTorch-style uniform(-1/sqrt(H), 1/sqrt(H)) weights, float32, reproducible."""
    rng = np.random.default_rng(seed)
    G, H = case.G, case.H
    k = 1.0 / math.sqrt(H)
    layers = []
    for layer in range(case.L):
        C_l = case.C if layer == 0 else H
        layers.append(tuple(rng.uniform(-k, k, shape).astype(np.float32)
                            for shape in ((G * H, C_l), (G * H, H), (G * H,), (G * H,))))
    x = rng.standard_normal((case.T, case.N, case.C)).astype(np.float32)
    dy = rng.standard_normal((case.T, case.N, H)).astype(np.float32)
    lengths = None
    if case.varlen:
        lengths = rng.integers(max(1, case.T // 4), case.T + 1, size=case.N).astype(np.int64)
    return Problem(case, x, layers, lengths, dy)


def full_length(problem: Problem) -> Problem:
    """The same batch, padded: every sequence runs all T steps."""
    return replace(problem, case=problem.case.full_length(), lengths=None)


def stream_case(cell: str, H: int) -> Case:
    return Case(cell, C=H, H=H, L=1, T=1, N=1)


def stream_weights(case: Case, seed: int = 0):
    """The single layer's (W_ih, W_hh, b_ih, b_hh) for a streaming case, as make_problem makes them."""
    return make_problem(case, seed).layers[0]


def stream_inputs(case: Case, steps: int, seed: int = 1) -> np.ndarray:
    """x for each streaming step: [steps, 1, 1, C] (each x_t is [T=1, N=1, C])."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((steps, 1, 1, case.C)).astype(np.float32)


def forward_flops(case: Case, lengths=None) -> float:
    """Flops of the matrix products of a forward pass: 2*T*N*G*H*(C_l + H) per layer.

    With lengths, only the valid steps count (sum(lengths) instead of T*N): the useful work.
    """
    steps = float(np.sum(lengths)) if lengths is not None else case.T * case.N
    return sum(2.0 * steps * case.G * case.H * ((case.C if layer == 0 else case.H) + case.H)
               for layer in range(case.L))


def training_flops(case: Case, lengths=None) -> float:
    """Forward + backward (input gradient and weight gradient products): 3x the forward."""
    return 3.0 * forward_flops(case, lengths)


def gemm_shapes(case: Case):
    """The float32 products the kernels do, as (M, K, N) of [M, K] x [K, N], with how often per forward.

    Input projection per layer: [T*N, C_l] x [C_l, G*H] once; recurrent product: [N, H] x [H, G*H], T times.
    """
    out = []
    for layer in range(case.L):
        C_l = case.C if layer == 0 else case.H
        out.append(((case.T * case.N, C_l, case.G * case.H), 1))
        out.append(((case.N, case.H, case.G * case.H), case.T))
    return out


def grid_cases(cells=CELLS, grid=GRID):
    return [Case(cell, *point) for point in grid for cell in cells]


def varlen_cases(cells=CELLS, point=VARLEN):
    return [Case(cell, *point, varlen=True) for cell in cells]
