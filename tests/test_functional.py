"""rnnkit.functional (the C++ kernels) against rnnkit.reference (NumPy, one Python loop over time).

Both implement the API contract, so on the same inputs they must give the same outputs (y, h_n, c_n) and
the same gradients (dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh), up to rounding. The gradients are those of
the random-projection loss

    L = sum(R * y) + sum(Rh * h_n) [+ sum(Rc * c_n)],

i.e. backward is called with dy = R, dh_n = Rh, dc_n = Rc.

The reference itself is checked against central finite differences (test_reference_gradients_match_
finite_differences), so an error in the gradient equations cannot hide by being made in both places.
"""

import concurrent.futures

import numpy as np
import pytest

import rnnkit
import rnnkit.functional as F
import rnnkit.reference as ref
from helpers import (CELL_VARIANTS, LENGTHS_KINDS, THREAD_TOL, TOL, assert_close, assert_same, backward, forward,
                     make_problem, rnnkit_threads, valid_mask)

# The cells, how to call them (forward, backward), the problems (make_problem) and the tolerances (TOL: the two
# implementations compute the same sums in other orders, so they agree to rounding, not bitwise) are in helpers.py.
CELL_PARAMS = [pytest.param(c, id=c.id) for c in CELL_VARIANTS]

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

SMALL = dict(T=7, N=5, C=3, H=4)
# odd N (33 rows over 2 threads: 17 + 16) and H, C large enough for the kernels' blocked paths; C = 70
# gives each of 2 threads more than a panel of dx columns (computed inside the backward's time loop)
LARGE = dict(T=20, N=33, C=70, H=32)


def assert_all_close(actual: dict, expected: dict, tol):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert_close(actual[name], expected[name], name, tol)


def check_against_reference(cell, problem, reverse):
    """Forward and backward through both implementations; every output and gradient must agree."""
    inputs, douts = problem
    x = inputs["x"]
    T, N, C = x.shape
    H = inputs["W_hh"].shape[1]
    tol = TOL[x.dtype]

    out, cache = forward(F, cell, reverse=reverse, **inputs)
    out_ref, cache_ref = forward(ref, cell, reverse=reverse, **inputs)
    assert_all_close(out, out_ref, tol)
    expected_shapes = {"y": (T, N, H), "h_n": (N, H), "c_n": (N, H)}
    for name, a in out.items():
        assert a.shape == expected_shapes[name] and a.dtype == x.dtype, name

    grads = backward(F, cell, cache, **douts)
    grads_ref = backward(ref, cell, cache_ref, **douts)
    assert_all_close(grads, grads_ref, tol)
    expected_shapes = {"dx": (T, N, C), "dh0": (N, H), "dc0": (N, H), "dW_ih": inputs["W_ih"].shape,
                       "dW_hh": inputs["W_hh"].shape, "db_ih": inputs["b_ih"].shape, "db_hh": inputs["b_hh"].shape}
    for name, a in grads.items():
        assert a.shape == expected_shapes[name] and a.dtype == x.dtype, name

    # Exact zeros where the contract says so: outputs at invalid steps are constant zeros, so nothing flows
    # into the input there either.
    invalid = ~valid_mask(inputs["lengths"], T, N)
    assert np.all(out["y"][invalid] == 0), "y must be exactly 0 at invalid steps"
    assert np.all(grads["dx"][invalid] == 0), "dx must be exactly 0 at invalid steps"
    return out, grads


# --------------------------------------------------------------------------------------------------
# The grid: cell x direction x lengths x initial state x dtype x threads
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0_none", "h0_given"])
@pytest.mark.parametrize("lengths", LENGTHS_KINDS, ids=[f"lengths_{k}" for k in LENGTHS_KINDS])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_matches_reference(cell, reverse, lengths, with_h0, dtype, step_threads, product_path, rng):
    problem = make_problem(rng, cell, dtype, **SMALL, lengths=lengths, with_h0=with_h0)
    check_against_reference(cell, problem, reverse)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_matches_reference_large(cell, reverse, dtype, step_threads, product_path, rng):
    problem = make_problem(rng, cell, dtype, **LARGE, lengths="mixed", with_h0=True)
    check_against_reference(cell, problem, reverse)


# --------------------------------------------------------------------------------------------------
# Threads, optional gradients, repeated backward, inputs left alone
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths", ["none", "with_zero"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_one_and_two_threads_agree(cell, reverse, lengths, dtype, rng):
    inputs, douts = make_problem(rng, cell, dtype, **LARGE, lengths=lengths)
    results = []
    for n, split in ((1, "units"), (2, "units"), (2, "rows")):
        with rnnkit_threads(n, split):
            assert rnnkit.get_num_threads() == n
            out, cache = forward(F, cell, reverse=reverse, **inputs)
            grads = backward(F, cell, cache, **douts)
        results.append({**out, **grads})
    one, *two = results
    # The recurrence of each batch row is computed the same way whatever thread runs it; only the
    # summation order of weight gradients over the row split may differ.
    for other in two:
        assert_all_close(other, one, THREAD_TOL[np.dtype(dtype)])


@pytest.mark.parametrize("size", [dict(T=9, N=12, C=8, H=40), dict(T=3, N=4, C=600, H=600)], ids=["fused", "wide"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("lengths", ["none", "with_zero"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_inference_without_cache_gives_the_same_outputs(cell, reverse, lengths, with_mask, size, step_threads,
                                                        product_path, rng):
    # return_cache=False keeps two steps of state. "fused": each step's input is projected inside the time
    # loop, each thread for its own units; "wide" (a thread's share of the weights beyond 1 MiB): all steps
    # are projected at once, as the cached forward does.
    inputs, _ = make_problem(rng, cell, np.float32, **size, lengths=lengths, with_h0=True)
    extra = dict(cell.options)
    if with_mask:
        extra["recurrent_mask"] = (rng.random((size["N"], size["H"])) > 0.3).astype(np.float32) / 0.7
    fn = getattr(F, f"{cell.kind}_forward")
    kept = fn(**inputs, reverse=reverse, **extra)
    light = fn(**inputs, reverse=reverse, return_cache=False, **extra)
    assert light[-1] is None and kept[-1] is not None
    for a, b in zip(kept[:-1], light[:-1]):
        np.testing.assert_allclose(b, a, **THREAD_TOL[np.dtype(np.float32)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_repeated_calls_are_bitwise_identical(cell, dtype, step_threads, rng):
    # The same call on the same inputs must give the same bits every time. Between calls, arrays of varied
    # sizes are allocated and kept alive so that the buffers numpy hands to the kernels (outputs, cache) start
    # at different addresses: results must not depend on where memory happens to be aligned.
    # H = 20: gate rows of 20 to 80 elements, long enough for 8-double and 16-float packets
    inputs, douts = make_problem(rng, cell, dtype, T=6, N=5, C=3, H=20, lengths="mixed")
    out, cache = forward(F, cell, **inputs)
    first = {**out, **backward(F, cell, cache, **douts)}
    keep = []
    for i in range(48):
        keep.append(np.empty(1 + 3 * i, dtype=np.uint8))
        out, cache = forward(F, cell, **inputs)
        again = {**out, **backward(F, cell, cache, **douts)}
        for name in first:
            np.testing.assert_array_equal(again[name], first[name], err_msg=f"call {i + 2}: {name}")


@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_calls_from_many_threads_at_once(cell, step_threads, rng):
    # Python threads calling at the same time (the kernels release the GIL) each get a thread team of their
    # own: every call must give the bits of the same call made alone. 4 callers on this machine's cores
    # also oversubscribe them, so teams wait for threads that other teams keep off the cores.
    inputs, douts = make_problem(rng, cell, np.float32, **LARGE, lengths="mixed")
    out, cache = forward(F, cell, **inputs)
    alone = {**out, **backward(F, cell, cache, **douts)}

    def call(_):
        results = []
        for _ in range(10):
            out, cache = forward(F, cell, **inputs)
            results.append({**out, **backward(F, cell, cache, **douts)})
        return results

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for caller, results in enumerate(pool.map(call, range(4))):
            for i, result in enumerate(results):
                for name in alone:
                    np.testing.assert_array_equal(result[name], alone[name], err_msg=f"caller {caller}, call {i}: {name}")


@pytest.mark.parametrize("return_cache", [True, False], ids=["cache", "inference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_forward_splits_by_units_and_by_rows_give_the_same_bits(cell, dtype, return_cache, rng):
    # Every output element of a step is the same in-order sum whichever thread computes it: splitting each
    # step's hidden units over the threads or its batch rows gives the same bits. (The input projection of
    # every step, one product split over the threads' rows in both, may round differently on one thread.)
    inputs, _ = make_problem(rng, cell, dtype, **LARGE, lengths="with_zero")
    fn = getattr(F, f"{cell.kind}_forward")
    results = {}
    for split in ("units", "rows"):
        with rnnkit_threads(2, split):
            results[split] = fn(**inputs, reverse=True, return_cache=return_cache, **dict(cell.options))[:-1]
    for i, (a, b) in enumerate(zip(results["rows"], results["units"])):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg=f"output {i}")


@pytest.mark.parametrize("mod", [F, ref], ids=["functional", "reference"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_missing_state_gradients_equal_zeros(cell, mod, rng):
    # Compared to a few ulps rather than bitwise, so that this test is about None meaning zero and nothing
    # else; bitwise reproducibility has its own test (test_repeated_calls_are_bitwise_identical).
    assert_equal = assert_same
    inputs, douts = make_problem(rng, cell, np.float64, **SMALL, lengths="with_zero")
    _, cache = forward(mod, cell, **inputs)
    zeros = np.zeros_like(douts["dh_n"])
    if cell.has_c:
        with_none = backward(mod, cell, cache, douts["dy"], dh_n=None, dc_n=None)
        with_zeros = backward(mod, cell, cache, douts["dy"], dh_n=zeros, dc_n=zeros)
        # each one alone as well
        only_h = backward(mod, cell, cache, douts["dy"], dh_n=douts["dh_n"], dc_n=None)
        only_h_zeros = backward(mod, cell, cache, douts["dy"], dh_n=douts["dh_n"], dc_n=zeros)
        for name in only_h:
            assert_equal(only_h[name], only_h_zeros[name], f"dc_n=None: {name}")
        only_c = backward(mod, cell, cache, douts["dy"], dh_n=None, dc_n=douts["dc_n"])
        only_c_zeros = backward(mod, cell, cache, douts["dy"], dh_n=zeros, dc_n=douts["dc_n"])
        for name in only_c:
            assert_equal(only_c[name], only_c_zeros[name], f"dh_n=None: {name}")
    else:
        with_none = backward(mod, cell, cache, douts["dy"])
        with_zeros = backward(mod, cell, cache, douts["dy"], dh_n=zeros)
    for name in with_none:
        assert_equal(with_none[name], with_zeros[name], name)


@pytest.mark.parametrize("mod", [F, ref], ids=["functional", "reference"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padding_values_never_reach_the_results(cell, mod, reverse, rng):
    # Steps past a sequence's length never enter the computation: NaN or inf there must give the very same
    # outputs and gradients as zero padding (dW_ih sums over every row; a padded one must not add 0 * NaN).
    inputs, douts = make_problem(rng, cell, np.float32, **LARGE, lengths="mixed")
    T = inputs["x"].shape[0]
    padded = np.arange(T)[:, None] >= inputs["lengths"][None, :]
    assert padded.any() and not padded.all()
    results = []
    for fill in (0.0, np.nan, -np.inf):
        x = inputs["x"].copy()
        x[padded] = fill
        out, cache = forward(mod, cell, **{**inputs, "x": x}, reverse=reverse)
        results.append({**out, **backward(mod, cell, cache, **douts)})
    zeros = results[0]
    for fill, other in zip(("nan", "-inf"), results[1:]):
        for name in zeros:
            assert np.isfinite(other[name]).all(), f"{fill} padding: {name} is not finite"
            np.testing.assert_array_equal(other[name], zeros[name], err_msg=f"{fill} padding: {name}")


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_backward_does_not_read_the_returned_outputs(cell, reverse, rng):
    # The cache must not share memory with y, h_n or c_n: a caller may overwrite them before backward
    # (the RNN's cache reads each step's activation from the state the next step entered, and the last
    # one from its own copy of h_n).
    inputs, douts = make_problem(rng, cell, np.float64, **LARGE, lengths="mixed")
    out, cache = forward(F, cell, **inputs, reverse=reverse)
    expected = backward(F, cell, cache, **douts)
    out, cache = forward(F, cell, **inputs, reverse=reverse)
    for a in out.values():
        a[...] = np.nan
    got = backward(F, cell, cache, **douts)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("mod", [F, ref], ids=["functional", "reference"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_backward_twice_gives_the_same_result(cell, mod, rng):
    inputs, douts = make_problem(rng, cell, np.float32, **SMALL, lengths="mixed")
    _, cache = forward(mod, cell, reverse=True, **inputs)
    first = backward(mod, cell, cache, **douts)
    first_copy = {k: v.copy() for k, v in first.items()}
    second = backward(mod, cell, cache, **douts)
    for name in first:
        # backward must not consume or alter the cache: a second call gives the same gradients (to a few
        # ulps here; bitwise reproducibility has its own test, test_repeated_calls_are_bitwise_identical)
        assert_same(second[name], first_copy[name], name)
        # and the second call did not write into the first call's results
        np.testing.assert_array_equal(first[name], first_copy[name], err_msg=name)
        assert not np.shares_memory(first[name], second[name]), name


@pytest.mark.parametrize("mod", [F, ref], ids=["functional", "reference"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_inputs_are_not_modified(cell, mod, rng):
    inputs, douts = make_problem(rng, cell, np.float64, **SMALL, lengths="with_zero")
    before = {k: (None if v is None else v.copy()) for k, v in {**inputs, **douts}.items()}
    out, cache = forward(mod, cell, **inputs)
    grads = backward(mod, cell, cache, **douts)
    for k, v in {**inputs, **douts}.items():
        if v is not None:
            np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was modified")
    # the results are fresh arrays, not views of the inputs (writing to them must not touch the inputs)
    for name, a in {**out, **grads}.items():
        for k, v in {**inputs, **douts}.items():
            if v is not None:
                assert not np.shares_memory(a, v), f"{name} shares memory with input {k}"


# --------------------------------------------------------------------------------------------------
# The oracle itself: reference gradients vs central finite differences (float64)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", ["none", "with_zero"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mod", [F, ref], ids=["functional", "reference"])
@pytest.mark.parametrize("cell", CELL_PARAMS)
def test_gradients_match_finite_differences(cell, mod, reverse, lengths, rng):
    inputs, douts = make_problem(rng, cell, np.float64, T=5, N=4, C=3, H=3, lengths=lengths, with_h0=True)

    def loss(inp):
        out, _ = forward(mod, cell, reverse=reverse, **inp)
        total = np.sum(douts["dy"] * out["y"]) + np.sum(douts["dh_n"] * out["h_n"])
        if cell.has_c:
            total += np.sum(douts["dc_n"] * out["c_n"])
        return total

    _, cache = forward(mod, cell, reverse=reverse, **inputs)
    grads = backward(mod, cell, cache, **douts)
    eps = 1e-6
    for name in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh"):
        if name not in inputs:
            continue
        direction = rng.standard_normal(inputs[name].shape)
        plus = dict(inputs, **{name: inputs[name] + eps * direction})
        minus = dict(inputs, **{name: inputs[name] - eps * direction})
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        analytic = np.sum(grads["d" + name] * direction)
        # central differences: truncation error O(eps^2) ~ 1e-12, cancellation ~ 1e-16 / eps ~ 1e-10
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=f"d{name}")


# --------------------------------------------------------------------------------------------------
# Module-level functions
# --------------------------------------------------------------------------------------------------


def test_set_and_get_num_threads():
    previous = rnnkit.get_num_threads()
    assert isinstance(previous, int) and previous >= 1
    try:
        for n in (1, 2, 3):
            rnnkit.set_num_threads(n)
            assert rnnkit.get_num_threads() == n
            assert rnnkit.build_info()["num_threads"] == n
    finally:
        rnnkit.set_num_threads(previous)
    assert rnnkit.get_num_threads() == previous


def test_build_info():
    info = rnnkit.build_info()
    assert isinstance(info, dict)
    for key in ("compiler", "flags", "openmp", "num_threads"):
        assert key in info, key
    assert isinstance(info["openmp"], bool)
    assert info["num_threads"] == rnnkit.get_num_threads()
