"""The same bits at any thread count; failures inside the thread team reach the caller; bounded working memory.

Every kernel result (forward outputs and states, inference with ``return_cache=False``, every gradient) is
compared bit for bit at 1, 2, 3 and 8 threads over seeded random shapes and over shapes chosen to cross each
threshold that picks a schedule: packing W_hh (T*N >= 64 rows), splitting a step by batch rows or by hidden
units (step weights up to 512 KiB), projecting each step's input inside the loop in inference (weights up to
2 MiB), dx per step in backward (C >= two panels), passes of 256 batch rows, and small calls that run on one
thread (``split`` False) or on all of them (True).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import rnnkit_threads

import rnnkit
import rnnkit.functional as F
from rnnkit import _isa
from rnnkit.cells import CELLS

THREADS = (1, 2, 3, 8)


def _case(seed, cell=None, T=None, N=None, C=None, H=None):
    rng = np.random.default_rng(seed)
    cell = cell or str(rng.choice(list(CELLS)))
    T = T or int(rng.integers(1, 24))
    N = N or int(rng.integers(1, 70))
    C = C or int(rng.integers(1, 100))
    H = H or int(rng.integers(1, 160))
    dtype = np.float32 if rng.random() < 0.7 else np.float64
    G = CELLS[cell].G
    x = rng.standard_normal((T, N, C)).astype(dtype)
    weights = [(rng.standard_normal(shape) / np.sqrt(H)).astype(dtype) for shape in [(G * H, C), (G * H, H), (G * H,), (G * H,)]]
    kwargs = {"lengths": rng.integers(0, T + 1, N) if rng.random() < 0.5 else None,
              "reverse": bool(rng.random() < 0.5),
              "recurrent_mask": (rng.random((N, H)) < 0.8).astype(dtype) if rng.random() < 0.3 else None}
    if cell == "gru":
        kwargs["reset_after"] = bool(rng.random() < 0.5)
    return cell, x, weights, kwargs, rng


def _results(cell, x, weights, kwargs, rng):
    forward, backward = getattr(F, f"{cell}_forward"), getattr(F, f"{cell}_backward")
    *outputs, cache = forward(x, *weights, **kwargs)
    *inference, _ = forward(x, *weights, **kwargs, return_cache=False)
    dy = np.random.default_rng(0).standard_normal(outputs[0].shape).astype(x.dtype)
    return [a for a in [*outputs, *inference, *backward(cache, dy)] if a is not None]


CASES = [pytest.param(dict(seed=s), id=f"random{s}") for s in range(24)] + [
    pytest.param(dict(seed=100, cell="lstm", T=3, N=300, C=8, H=16), id="passes_of_256_rows"),
    pytest.param(dict(seed=101, cell="gru", T=2, N=270, C=40, H=24), id="gru_passes_of_256_rows"),
    pytest.param(dict(seed=102, cell="lstm", T=4, N=6, C=200, H=300), id="units_split_unfused"),
    pytest.param(dict(seed=103, cell="gru", T=3, N=5, C=64, H=260), id="gru_units_split_fused"),
    pytest.param(dict(seed=104, cell="rnn", T=1, N=1, C=3, H=5), id="one_step_one_row"),
    pytest.param(dict(seed=105, cell="lstm", T=30, N=2, C=1, H=3), id="few_rows_long"),
    pytest.param(dict(seed=106, cell="rnn", T=5, N=40, C=70, H=600), id="rnn_large_units"),
]


@pytest.mark.parametrize("split", [False, True], ids=["auto", "every_thread"])
@pytest.mark.parametrize("case", CASES)
def test_kernels_same_bits_at_any_thread_count(case, split):
    problem = _case(**case)
    results = {}
    for n in THREADS:
        with rnnkit_threads(n, "auto"):
            previous = _isa.current._split_small_calls(split)
            try:
                results[n] = _results(*problem)
            finally:
                _isa.current._split_small_calls(previous)
    for n in THREADS[1:]:
        assert len(results[n]) == len(results[1])
        for i, (a, b) in enumerate(zip(results[1], results[n])):
            np.testing.assert_array_equal(b, a, err_msg=f"array {i} at {n} threads differs from 1 thread")


@pytest.mark.parametrize("seed", range(6))
def test_jordan_same_bits_at_any_thread_count(seed):
    rng = np.random.default_rng(seed)
    T, N, C, U, O = (int(v) for v in (rng.integers(1, 20), rng.integers(1, 90), rng.integers(1, 60),
                                      rng.integers(1, 90), rng.integers(1, 40)))
    dtype = np.float32 if seed % 2 else np.float64
    args = [rng.standard_normal(s).astype(dtype) * 0.3 for s in [(T, N, C), (U, C), (U, O), (U,), (O, U), (O,)]]
    lengths = rng.integers(0, T + 1, N) if seed % 3 else None
    dy = rng.standard_normal((T, N, O)).astype(dtype)
    results = {}
    for n in THREADS:
        with rnnkit_threads(n):
            y, y_n, cache = F.jordan_forward(*args, lengths=lengths, reverse=bool(seed % 2), activation="tanh")
            results[n] = [y, y_n, *F.jordan_backward(cache, dy)]
    for n in THREADS[1:]:
        for a, b in zip(results[1], results[n]):
            np.testing.assert_array_equal(b, a)


def test_trained_model_predicts_the_same_at_any_thread_count(rng):
    """An LSTM(256) and a 2-layer LSTM trained for 2 epochs on 1 and on 2 threads: identical predictions and weights."""
    from rnnkit import Sequential
    from rnnkit.layers import LSTM, Dense

    x = rng.standard_normal((64, 12, 5)).astype(np.float32)
    y = x[:, :, :1].sum(axis=1)
    for layers in ([LSTM(256)], [LSTM(32, return_sequences=True), LSTM(32)]):
        predictions, weights = [], []
        for n in (1, 2):
            with rnnkit_threads(n, "auto"):
                rnnkit.set_seed(7)
                model = Sequential([*[type(layer).from_config(layer.get_config()) for layer in layers], Dense(1)])
                model.compile("adam", "mse")
                model.fit(x, y, epochs=2, batch_size=16, verbose=0)
                predictions.append(model.predict(x, verbose=0))
                weights.append(model.get_weights())
        np.testing.assert_array_equal(predictions[1], predictions[0])
        for a, b in zip(weights[0], weights[1]):
            np.testing.assert_array_equal(b, a)


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("failing", [0, 1])
@pytest.mark.parametrize("path", ["forward", "inference", "backward"])
def test_failure_inside_the_thread_team_reaches_the_caller(cell, failing, path):
    """std::bad_alloc thrown by one thread of the team (a buffer of its own that cannot be allocated) ends the
    team at its next barrier and reaches the caller as MemoryError, not std::terminate; the next call works."""
    x, weights = np.ones((6, 8, 5), np.float32), _case(0, cell=cell, T=6, N=8, C=5, H=7)[2]
    forward, backward = getattr(F, f"{cell}_forward"), getattr(F, f"{cell}_backward")
    with rnnkit_threads(2):
        *outputs, cache = forward(x, *weights)
        call = {"forward": lambda: forward(x, *weights), "inference": lambda: forward(x, *weights, return_cache=False),
                "backward": lambda: backward(cache, np.ones_like(outputs[0]))}[path]
        expected = call()
        _isa.current._fail_in_next_team(failing)
        try:
            with pytest.raises(MemoryError):
                call()
        finally:
            _isa.current._fail_in_next_team(-1)
        for a, b in zip(call(), expected):
            if a is not None and not isinstance(a, F.Cache):
                np.testing.assert_array_equal(a, b)


def test_out_of_memory_under_an_address_space_limit_is_a_memory_error():
    """Under address-space limits that run out at different points of a 2-thread inference call (inside the
    team among them), every call ends in MemoryError or a result, never an abort."""
    result = _run("""
        import resource, numpy as np, rnnkit, rnnkit.functional as F
        rnnkit.set_num_threads(2)
        H, N = 64, 2**18
        W_ih, W_hh, b = np.zeros((4 * H, 64), np.float32), np.zeros((4 * H, H), np.float32), np.zeros(4 * H, np.float32)
        x = np.zeros((2, N, 64), np.float32)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        outcomes = []
        for extra_mb in range(16, 400, 16):
            resource.setrlimit(resource.RLIMIT_AS, (used + extra_mb * 2**20, hard))
            try:
                F.lstm_forward(x, W_ih, W_hh, b, b, return_cache=False)
                outcomes.append("ok")
            except MemoryError:
                outcomes.append("MemoryError")
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            rnnkit.release_memory()
        print(" ".join(outcomes))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = result.stdout.split()
    assert "MemoryError" in outcomes and set(outcomes) <= {"ok", "MemoryError"}, result.stdout


def test_inference_memory_does_not_grow_with_threads_or_batch():
    """return_cache=False needs its outputs and a few row blocks per thread: peak RSS for a 256 MB output (and
    h_n and c_n as large, T = 1) stays within 3x the output plus 64 MB at 1 and at 2 threads, and
    release_memory() returns what was kept."""
    result = _run("""
        import numpy as np, rnnkit, rnnkit.functional as F
        H, C, N = 64, 64, 2**20
        W_ih, W_hh, b = np.zeros((4 * H, C), np.float32), np.zeros((4 * H, H), np.float32), np.zeros(4 * H, np.float32)
        x = np.zeros((1, N, C), np.float32)  # 256 MB, as the output y
        def status(key):  # VmRSS (resident now) or VmHWM (its peak), in MB
            return next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith(key))
        for n in (1, 2):
            rnnkit.set_num_threads(n)
            open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here, not from start-up
            base = status("VmRSS")
            y, h, c, _ = F.lstm_forward(x, W_ih, W_hh, b, b, return_cache=False)
            peak = status("VmHWM")
            del y, h, c
            rnnkit.release_memory()
            print(n, peak - base, status("VmRSS") - base)
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    output_mb = 256
    growth = {}
    for line in result.stdout.split("\n"):
        if line:
            threads, growth_mb, kept_mb = (float(v) for v in line.split())
            growth[threads] = growth_mb
            # y, h_n and c_n are the outputs (256 MB each); the state of a pass of rows per thread is small
            assert growth_mb < 3 * output_mb + 64, line
            assert kept_mb < 0.1 * output_mb, line
    assert sorted(growth) == [1, 2]
    assert abs(growth[2] - growth[1]) < 0.25 * output_mb, growth


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (rnnkit._isa.MAX_THREADS + 1, ValueError),
                                          (2**31, ValueError), (2**80, ValueError), (1.5, TypeError), (True, TypeError),
                                          ("2", TypeError)])
def test_set_num_threads_rejects_out_of_range(value, error):
    previous = rnnkit.get_num_threads()
    with pytest.raises(error, match="n: expected"):
        rnnkit.set_num_threads(value)
    assert rnnkit.get_num_threads() == previous


def test_set_num_threads_accepts_the_limit():
    previous = rnnkit.get_num_threads()
    try:
        rnnkit.set_num_threads(np.int64(rnnkit._isa.MAX_THREADS))
        assert rnnkit.get_num_threads() == rnnkit._isa.MAX_THREADS
    finally:
        rnnkit.set_num_threads(previous)
