"""Helpers the tests share, imported as ``from helpers import ...`` (pytest puts tests/ on sys.path, as it does
for conftest.py, which keeps the fixtures)."""

import contextlib
import importlib.util
import os
from typing import NamedTuple

import numpy as np
import pytest

from rnnkit.cells import CELLS, WEIGHTS


def central_differences(loss, arrays, eps=1e-6, entries=None, seed=0):
    """Central differences (loss(a + eps) - loss(a - eps)) / (2 eps) of the scalar ``loss()`` with respect
    to the entries of each array, each changed in place and then restored: every entry, or up to ``entries``
    of each array chosen at random (``seed``), NaN marking the entries not probed."""
    pick = np.random.default_rng(seed)
    grads = []
    for a in arrays:
        g = np.full(a.shape, np.nan)
        probe = range(a.size) if entries is None else pick.choice(a.size, size=min(entries, a.size), replace=False)
        for i in probe:
            old = a.flat[i]
            a.flat[i] = old + eps
            plus = loss()
            a.flat[i] = old - eps
            minus = loss()
            a.flat[i] = old
            g.flat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


@contextlib.contextmanager
def rnnkit_threads(n, split="units"):
    """rnnkit's kernels on n threads, even for problems too small to be worth it (so that tests of small
    problems cover the multi-threaded paths), sharing each step of the recurrence as `split` says ("units",
    "rows" or "auto": by the problem's size); restores every setting."""
    import rnnkit
    from rnnkit import _isa

    previous, small, step = rnnkit.get_num_threads(), _isa.current._split_small_calls(n > 1), _isa.current._step_split(split)
    rnnkit.set_num_threads(n)
    try:
        yield
    finally:
        rnnkit.set_num_threads(previous)
        _isa.current._split_small_calls(small)
        _isa.current._step_split(step)


def split_safetensors(blob):
    """(header: dict, data: bytes) of the bytes of a safetensors file."""
    import json

    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join_safetensors(header, data, order=None, pad=True):
    """The bytes of a safetensors file: ``header`` (a dict, or JSON bytes taken as they are) and ``data``; with
    ``order`` (tensor names), the tensors are moved to lie in that order (offsets and bytes), the header's keys
    too. ``pad`` aligns the data to 8 bytes with spaces, as the reference writer does."""
    import json

    if order is not None:
        header, chunks, offset = dict(header), [], 0
        for name in order:
            begin, end = header[name]["data_offsets"]
            chunks.append(data[begin:end])
            header[name] = {**header[name], "data_offsets": [offset, offset + end - begin]}
            offset += end - begin
        header = {**{name: header[name] for name in order}, **{k: v for k, v in header.items() if k not in order}}
        data = b"".join(chunks)
    head = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + data


def import_keras():
    """Keras 3 on its NumPy backend, for the parity tests: a skip without it, unless RNNKIT_REQUIRE_KERAS=1 (CI),
    which makes a missing or unusable Keras an error. KERAS_BACKEND is read once, when keras is first imported."""
    os.environ["KERAS_BACKEND"] = "numpy"
    required = os.environ.get("RNNKIT_REQUIRE_KERAS") == "1"
    if required:
        import keras  # fail loudly: the parity tests must run
    else:
        # ImportError too, not only a missing keras: its NumPy backend fails to import without jax
        keras = pytest.importorskip("keras", reason="Keras 3 with its NumPy backend (pip install keras jax)",
                                    exc_type=ImportError)
    if keras.backend.backend() != "numpy":  # keras was imported earlier in this process with another backend
        if required:
            raise RuntimeError(f"keras runs the {keras.backend.backend()!r} backend; these tests need 'numpy' "
                               "(set KERAS_BACKEND=numpy before keras is imported)")
        pytest.skip(f"keras runs the {keras.backend.backend()!r} backend, not 'numpy'", allow_module_level=True)
    if not keras.__version__.startswith("3."):
        raise RuntimeError(f"these tests compare with Keras 3, got keras {keras.__version__}")
    return keras


def check_model_gradients(model, x, rng, entries=5):
    """The tape's gradient of sum(R * outputs) for every trainable weight of ``model`` equals central differences
    (float64: a model of float64 layers); returns the tape's gradients."""
    from rnnkit.engine.functional import flatten

    values, _ = model._forward(model._check_x(x), training=True)
    R = [rng.standard_normal(v.shape) for v in values]
    model._backward(R)
    analytic = [g for g, _ in model._gradient_pairs()]
    weights = model.trainable_weights
    assert weights and len(analytic) == len(weights)

    def loss():
        return sum(float((r * o).sum()) for r, o in zip(R, flatten(model.predict(x))))

    for a, n in zip(analytic, central_differences(loss, weights, entries=entries)):
        probe = ~np.isnan(n)
        np.testing.assert_allclose(a[probe], n[probe], rtol=1e-6, atol=1e-8)
    return analytic


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    """The module examples/<name>.py."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# The cell kernels: which cell, how to call it, random problems
# --------------------------------------------------------------------------------------------------


class Cell(NamedTuple):
    """A cell of the registry (``rnnkit.cells``) and the options its kernels are called with; its facts (gates,
    states) are the registry's."""

    id: str  # the test's id
    kind: str  # the registry's name: the kernels <kind>_forward / <kind>_backward
    options: tuple | dict = ()  # the forward's keyword options, as (name, value) pairs or a dict
    peepholes: bool = False  # LSTM: takes peepholes [3H]
    proj: int = 0  # LSTM: the projection's size P (W_hr [P, H]), 0 for none

    @property
    def G(self):
        return CELLS[self.kind].G

    @property
    def states(self):
        """("h",) or ("h", "c")."""
        return CELLS[self.kind].states

    @property
    def has_c(self):
        return "c" in self.states

    @property
    def initial_states(self):
        """The forward's initial-state arguments: ("h0",) or ("h0", "c0")."""
        return tuple(f"{s}0" for s in self.states)


# The default cells and the flags that pick their variants (test ids rnn_tanh, ..., gru_reset_before)
CELL_VARIANTS = (
    Cell("rnn_tanh", "rnn", (("nonlinearity", "tanh"),)),
    Cell("rnn_relu", "rnn", (("nonlinearity", "relu"),)),
    Cell("lstm", "lstm"),
    Cell("gru_reset_after", "gru", (("reset_after", True),)),
    Cell("gru_reset_before", "gru", (("reset_after", False),)),
)


def input_names(cell):
    """The forward's arrays whose gradients the backward returns, in its order."""
    return (("x", *cell.initial_states) + WEIGHTS + (("peepholes",) if cell.peepholes else ())
            + (("W_hr",) if cell.proj else ()))


def grad_names(cell):
    """The backward's results, in order: dx, dh0[, dc0], dW_ih, dW_hh, db_ih, db_hh[, dpeepholes][, dW_hr]."""
    return tuple(f"d{name}" for name in input_names(cell))


def forward(mod, cell, **args):
    """mod.<cell>_forward(**args) with the cell's options (mod: rnnkit.functional or rnnkit.reference); returns
    ({"y", "h_n"[, "c_n"]}, cache)."""
    *outputs, cache = getattr(mod, f"{cell.kind}_forward")(**args, **dict(cell.options))
    names = ("y", *(f"{s}_n" for s in cell.states))
    assert len(outputs) == len(names)
    return dict(zip(names, outputs)), cache


def forward_states(mod, cell, **args):
    """forward's results as (y, (h_n[, c_n]), cache), for tests that treat the final states alike."""
    out, cache = forward(mod, cell, **args)
    y, *finals = out.values()
    return y, tuple(finals), cache


def backward(mod, cell, cache, *douts, **named_douts):
    """mod.<cell>_backward(cache, *douts, **named_douts); returns {"dx": ..., "dh0": ..., ...} (grad_names)."""
    grads = getattr(mod, f"{cell.kind}_backward")(cache, *douts, **named_douts)
    names = grad_names(cell)
    assert len(grads) == len(names)
    return dict(zip(names, grads))


def random_inputs(rng, cell, T, N, C, H, dtype=np.float64, scale=0.6):
    """The forward's arrays (no lengths) drawn in float64 in this order, then cast to dtype: x: [T, N, C]
    ~ N(0, 1); W_ih, W_hh ~ scale * N(0, 1); b_ih, b_hh ~ 0.3 * N(0, 1); the initial states ~ 0.5 * N(0, 1);
    the peepholes ~ 0.5 * N(0, 1), W_hr ~ scale * N(0, 1)."""
    G, P = cell.G, cell.proj or H
    inp = {"x": rng.standard_normal((T, N, C)), "W_ih": scale * rng.standard_normal((G * H, C)),
           "W_hh": scale * rng.standard_normal((G * H, P)), "b_ih": 0.3 * rng.standard_normal(G * H),
           "b_hh": 0.3 * rng.standard_normal(G * H)}
    for s in cell.states:
        inp[f"{s}0"] = 0.5 * rng.standard_normal((N, P if s == "h" else H))
    if cell.peepholes:
        inp["peepholes"] = 0.5 * rng.standard_normal(3 * H)
    if cell.proj:
        inp["W_hr"] = scale * rng.standard_normal((P, H))
    return {k: a.astype(dtype) for k, a in inp.items()}


LENGTHS_KINDS = ["none", "mixed", "with_zero"]


def make_lengths(kind, T, N, rng):
    """None, or per-sequence lengths [N] (int64) containing a length-1 (the first), a full-length (T, the last) and
    an in-between sequence; "with_zero" also has an empty (length-0) one, which the contract allows. ``kind`` may
    also be a function (T, N, rng) -> lengths."""
    if callable(kind):
        return kind(T, N, rng)
    if kind == "none":
        return None
    lengths = rng.integers(1, T + 1, size=N)
    lengths[0] = 1
    lengths[-1] = T
    lengths[N // 2] = max(2, T // 2)
    if kind == "with_zero":
        lengths[1] = 0
    return lengths.astype(np.int64)


class Problem(NamedTuple):
    inputs: dict  # forward keyword arguments (x, W_ih, W_hh, b_ih, b_hh, h0[, c0], lengths)
    douts: dict  # backward keyword arguments (dy, dh_n[, dc_n]): the random projections R, Rh, Rc


def make_problem(rng, cell, dtype, T, N, C, H, lengths="mixed", with_h0=True):
    """Weights ~ U(-k, k), k = 1/sqrt(H) (PyTorch's default init range; keeps relu and long sequences bounded),
    x and the projections ~ N(0, 1), the initial states ~ 0.5 * N(0, 1) (None without ``with_h0``), lengths by
    make_lengths; drawn in that order."""
    G = cell.G
    k = 1 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, size=shape).astype(dtype)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    inputs = dict(x=normal(T, N, C), W_ih=u(G * H, C), W_hh=u(G * H, H), b_ih=u(G * H), b_hh=u(G * H))
    for name in cell.initial_states:
        inputs[name] = normal(N, H, scale=0.5) if with_h0 else None
    inputs["lengths"] = make_lengths(lengths, T, N, rng)
    douts = dict(dy=normal(T, N, H))
    for s in cell.states:
        douts[f"d{s}_n"] = normal(N, H)
    return Problem(inputs, douts)


def valid_mask(lengths, T, N):
    """[T, N] bool: step t of sequence n is valid iff t < lengths[n]."""
    if lengths is None:
        return np.ones((T, N), dtype=bool)
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


# --------------------------------------------------------------------------------------------------
# Comparing results
# --------------------------------------------------------------------------------------------------

# Two implementations of the same sums in other orders (one GEMM for the input projection of all steps, blocked
# products, fused gate loops, a weight gradient summed over T*N rows at once) agree to rounding, not bitwise.
# float64 (eps 2.2e-16): a few hundred ulps of accumulated rounding over T steps and sums of T*N terms is ~1e-13
# relative; rtol 1e-10 leaves three orders of magnitude of room and still fails on any real error (a wrong term,
# a wrong mask, a missed step moves results by 1e-3 or more). float32 (eps 1.2e-7): the same accumulation is
# ~1e-6 relative; rtol 1e-5 leaves room for it.
# atol: elements near zero by cancellation have no meaningful relative error, so an absolute tolerance is needed,
# scaled by the array's magnitude (see assert_close): inputs, states, tanh / sigmoid outputs and the projections R
# are O(1), so for most arrays atol is simply 1e-12 (float64) or 1e-5 (float32); weight gradients sum T*N terms
# and can be O(10), and their absolute rounding error grows with them.
TOL = {
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5),
}
# Thread count changes only how rows are split and how partial weight gradients are added: tighter.
THREAD_TOL = {
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14),
    np.dtype(np.float32): dict(rtol=1e-6, atol=1e-6),
}


def assert_close(actual, expected, what, tol=None):
    """``actual`` is an array of ``expected``'s shape and dtype, equal to it to ``tol`` (default TOL of the dtype):
    rtol, and atol scaled by max(1, max |expected| over its finite entries)."""
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray), f"{what}: expected a numpy array, got {type(actual).__name__}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    tol = TOL[expected.dtype] if tol is None else tol
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


def assert_same(actual, expected, what):
    """Equal up to a few ulps of the array's scale: the same computation, not a different one (whether repeated
    calls are bitwise reproducible is a property of its own)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    eps = np.finfo(expected.dtype).eps
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=16 * eps, atol=16 * eps * scale, err_msg=what)
