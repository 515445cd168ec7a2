"""rnnkit.functional's argument checking, case by case from the contract's "argument checking" section.

Every error must be the documented exception type and its message must name the offending argument
(`pytest.raises(..., match=<name>)`); shape errors must also show the shape the argument had and, where it
is determined by the other arguments, the shape expected. Accepted-but-unusual inputs (non-contiguous and
Fortran-ordered arrays, other integer dtypes for lengths, T = 0, N = 0) must give the documented results.
"""

import re

import numpy as np
import pytest
from helpers import Cell, assert_same, backward, forward

import rnnkit
import rnnkit.functional as F
import rnnkit.reference as ref
from rnnkit.cells import WEIGHTS

RNN = Cell("rnn", "rnn", (("nonlinearity", "tanh"),))
LSTM = Cell("lstm", "lstm")
GRU = Cell("gru", "gru", (("reset_after", True),))
CELLS = [pytest.param(c, id=c.id) for c in (RNN, LSTM, GRU)]

# All different, so that a shape in a message says which dimension it is (G*H = H only for the RNN).
T, N, C, H = 6, 3, 2, 5
ARG_NAMES = ("x", "W_ih", "W_hh", "b_ih", "b_hh", "h0", "c0", "lengths", "dy", "dh_n", "dc_n", "cache")


def make_inputs(cell, dtype=np.float64, T=T, N=N, C=C, H=H, seed=0):
    rng = np.random.default_rng(seed)
    G = cell.G
    inp = dict(
        x=rng.standard_normal((T, N, C)),
        W_ih=rng.uniform(-0.5, 0.5, (G * H, C)),
        W_hh=rng.uniform(-0.5, 0.5, (G * H, H)),
        b_ih=rng.uniform(-0.5, 0.5, G * H),
        b_hh=rng.uniform(-0.5, 0.5, G * H),
        h0=rng.standard_normal((N, H)),
    )
    if cell.has_c:
        inp["c0"] = rng.standard_normal((N, H))
    inp = {k: v.astype(dtype) for k, v in inp.items()}
    inp["lengths"] = np.minimum(np.arange(1, N + 1) * 2, T).astype(np.int64) if N else np.zeros(0, np.int64)
    return inp


def make_douts(cell, dtype=np.float64, T=T, N=N, H=H, seed=1):
    rng = np.random.default_rng(seed)
    d = dict(dy=rng.standard_normal((T, N, H)), dh_n=rng.standard_normal((N, H)))
    if cell.has_c:
        d["dc_n"] = rng.standard_normal((N, H))
    return {k: v.astype(dtype) for k, v in d.items()}


def first_named_argument(message):
    """The first argument name the message mentions (a name preceded by '.' such as cache.h_prev is not one)."""
    hits = []
    for name in ARG_NAMES:
        m = re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message)
        if m:
            hits.append((m.start(), name))
    return min(hits)[1] if hits else None


def shape_pattern(shape):
    """A shape as a message may write it: [3, 5], (3, 5), (15,) or [15]."""
    inner = r",\s*".join(str(s) for s in shape)
    return rf"[\[(]{inner},?[\])]"


def check_message(excinfo, name, got=None, expected=None):
    msg = str(excinfo.value)
    assert first_named_argument(msg) == name, f"the message should name {name!r} first: {msg!r}"
    if got is not None:
        assert re.search(shape_pattern(got), msg), f"the message should show the shape {got}: {msg!r}"
    if expected is not None:
        assert re.search(shape_pattern(expected), msg), f"the message should show the expected {expected}: {msg!r}"


def arg_match(name):
    return rf"(?<![\w.]){re.escape(name)}(?!\w)"


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T, N), (T, N, C, 1), (T * N * C,)], ids=["2d", "4d", "1d"])
@pytest.mark.parametrize("cell", CELLS)
def test_x_wrong_rank(cell, shape):
    inp = make_inputs(cell)
    inp["x"] = np.zeros(shape)
    with pytest.raises(ValueError, match=arg_match("x")) as excinfo:
        forward(F, cell, **inp)
    check_message(excinfo, "x", got=shape)


def wrong_shapes(cell):
    """(argument, wrong shape, the shape expected), one dimension or the rank wrong at a time."""
    GH = cell.G * H
    cases = [
        ("W_ih", (GH, C + 1), (GH, C)),  # C does not match x
        ("W_ih", (GH + cell.G, C), (GH, C)),  # G*H does not match W_hh
        ("W_ih", (GH,), (GH, C)),
        ("b_ih", (GH + 1,), (GH,)),
        ("b_ih", (1, GH), (GH,)),
        ("b_hh", (GH - 1,), (GH,)),
        ("b_hh", (GH, 1), (GH,)),
        ("h0", (N + 1, H), (N, H)),
        ("h0", (N, H + 1), (N, H)),
        ("h0", (H,), (N, H)),
        ("h0", (1, N, H), (N, H)),
    ]
    if cell.has_c:
        cases += [("c0", (N + 1, H), (N, H)), ("c0", (N, H - 1), (N, H)), ("c0", (N * H,), (N, H))]
    return cases


@pytest.mark.parametrize("cell", CELLS)
def test_forward_argument_with_wrong_shape(cell):
    for name, shape, expected in wrong_shapes(cell):
        inp = make_inputs(cell)
        inp[name] = np.zeros(shape)
        with pytest.raises(ValueError, match=arg_match(name)) as excinfo:
            forward(F, cell, **inp)
        check_message(excinfo, name, got=shape, expected=expected)


@pytest.mark.parametrize("cell", CELLS)
def test_W_hh_wrong_shape(cell):
    # W_hh defines H, so it must be [G*H, H] for some H: not square blocks, not the wrong number of gates,
    # not 1-D or 3-D. The expected shape is not determined, so only the shape it had is required.
    GH = cell.G * H
    wrong_G = 2 if cell.G != 2 else 3
    for shape in [(GH, H + 1), (GH + 1, H), (wrong_G * H, H), (GH,), (cell.G, H, H)]:
        inp = make_inputs(cell)
        inp["W_hh"] = np.zeros(shape)
        with pytest.raises(ValueError, match=arg_match("W_hh")) as excinfo:
            forward(F, cell, **inp)
        check_message(excinfo, "W_hh", got=shape)


@pytest.mark.parametrize("cell", CELLS)
def test_weights_of_another_hidden_size(cell):
    # W_hh [G*H', H'] is self-consistent but the biases and W_ih were made for H: W_ih is the one that
    # disagrees (or b_ih if W_ih is checked later); either way a ValueError naming one of them.
    inp = make_inputs(cell)
    inp["W_hh"] = np.zeros((cell.G * (H + 1), H + 1))
    with pytest.raises(ValueError) as excinfo:
        forward(F, cell, **inp)
    assert first_named_argument(str(excinfo.value)) in ("W_ih", "W_hh", "b_ih", "b_hh", "h0", "c0")


def backward_wrong_shapes(cell):
    cases = [
        ("dy", (T, N, H + 1), (T, N, H)),
        ("dy", (T + 1, N, H), (T, N, H)),
        ("dy", (T, N + 1, H), (T, N, H)),
        ("dy", (T, N * H), (T, N, H)),
        ("dh_n", (N + 1, H), (N, H)),
        ("dh_n", (N, H + 1), (N, H)),
        ("dh_n", (N * H,), (N, H)),
    ]
    if cell.has_c:
        cases += [("dc_n", (N, H + 1), (N, H)), ("dc_n", (1, N, H), (N, H))]
    return cases


@pytest.mark.parametrize("cell", CELLS)
def test_backward_argument_with_wrong_shape(cell):
    _, cache = forward(F, cell, **make_inputs(cell))
    for name, shape, expected in backward_wrong_shapes(cell):
        douts = make_douts(cell)
        douts[name] = np.zeros(shape)
        with pytest.raises(ValueError, match=arg_match(name)) as excinfo:
            backward(F, cell, cache, **douts)
        check_message(excinfo, name, got=shape, expected=expected)


# --------------------------------------------------------------------------------------------------
# Dtypes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x_dtype", [np.int64, np.int32, np.float16, np.complex128, np.bool_])
@pytest.mark.parametrize("cell", CELLS)
def test_x_not_float32_or_float64(cell, x_dtype):
    inp = make_inputs(cell)
    inp["x"] = np.ones((T, N, C), dtype=x_dtype)
    with pytest.raises(TypeError, match=arg_match("x")) as excinfo:
        forward(F, cell, **inp)
    check_message(excinfo, "x")


def test_x_as_nested_list_is_float64():
    # "Arrays are taken with np.asarray": a list of Python floats is a float64 array.
    inp = make_inputs(RNN)
    expected, _ = forward(F, RNN, **inp)
    inp["x"] = inp["x"].tolist()
    got, _ = forward(F, RNN, **inp)
    assert all(a.dtype == np.float64 for a in got.values())
    assert_same_results(got, expected, "x as a list")


FORWARD_FLOAT_ARGS = ("W_ih", "W_hh", "b_ih", "b_hh", "h0", "c0")
BACKWARD_FLOAT_ARGS = ("dy", "dh_n", "dc_n")
OTHER = {np.float32: np.float64, np.float64: np.float32}


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64], ids=["x_f32", "x_f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_argument_with_other_float_dtype(cell, x_dtype):
    for name in FORWARD_FLOAT_ARGS:
        inp = make_inputs(cell, x_dtype)
        if name not in inp:
            continue
        inp[name] = inp[name].astype(OTHER[x_dtype])
        with pytest.raises(TypeError, match=arg_match(name)) as excinfo:
            forward(F, cell, **inp)
        check_message(excinfo, name)
        msg = str(excinfo.value)
        assert "float32" in msg and "float64" in msg, f"the message should say both dtypes: {msg!r}"


@pytest.mark.parametrize("cell", CELLS)
def test_forward_argument_with_integer_dtype(cell):
    for name in FORWARD_FLOAT_ARGS:
        inp = make_inputs(cell)
        if name not in inp:
            continue
        inp[name] = np.zeros(inp[name].shape, dtype=np.int64)
        with pytest.raises(TypeError, match=arg_match(name)) as excinfo:
            forward(F, cell, **inp)
        check_message(excinfo, name)


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64], ids=["x_f32", "x_f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_backward_argument_with_other_float_dtype(cell, x_dtype):
    _, cache = forward(F, cell, **make_inputs(cell, x_dtype))
    for name in BACKWARD_FLOAT_ARGS:
        douts = make_douts(cell, x_dtype)
        if name not in douts:
            continue
        douts[name] = douts[name].astype(OTHER[x_dtype])
        with pytest.raises(TypeError, match=arg_match(name)) as excinfo:
            backward(F, cell, cache, **douts)
        check_message(excinfo, name)
        msg = str(excinfo.value)
        assert "float32" in msg and "float64" in msg, f"the message should say both dtypes: {msg!r}"


# --------------------------------------------------------------------------------------------------
# Memory layout: accepted, copied to C order, same results
# --------------------------------------------------------------------------------------------------


def strided(a):
    """The same values in a non-contiguous view (every other element of a larger array, last axis)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous and np.array_equal(view, a)
    return view


def negative_strides(a):
    view = np.ascontiguousarray(a[::-1])[::-1]
    assert view.strides[0] < 0 and np.array_equal(view, a)
    return view


def fortran(a):
    f = np.asfortranarray(a)
    assert f.ndim < 2 or not f.flags.c_contiguous
    return f


LAYOUTS = {"strided": strided, "negative_strides": negative_strides, "fortran": fortran}


def assert_same_results(actual: dict, expected: dict, what):
    """The same computation on the same values. Compared to a few ulps, not bitwise: whether repeated calls
    are bitwise reproducible is a separate property (test_functional.py::test_repeated_calls_are_bitwise_
    identical), and this test is about argument handling only."""
    assert actual.keys() == expected.keys()
    for name in expected:
        assert_same(actual[name], expected[name], f"{what}: {name}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_non_contiguous_arguments_give_the_same_results(cell, dtype, layout):
    inp, douts = make_inputs(cell, dtype), make_douts(cell, dtype)
    expected_out, cache = forward(F, cell, **inp)
    expected_grads = backward(F, cell, cache, **douts)
    to_layout = LAYOUTS[layout]

    for name in list(inp):
        if layout == "fortran" and inp[name].ndim < 2:
            continue  # 1-D arrays are both C and Fortran ordered
        changed = dict(inp, **{name: to_layout(inp[name])})
        out, cache = forward(F, cell, **changed)
        grads = backward(F, cell, cache, **douts)
        assert_same_results({**out, **grads}, {**expected_out, **expected_grads}, f"{layout} {name}")

    _, cache = forward(F, cell, **inp)
    for name in list(douts):
        if layout == "fortran" and douts[name].ndim < 2:
            continue
        changed = dict(douts, **{name: to_layout(douts[name])})
        grads = backward(F, cell, cache, **changed)
        assert_same_results(grads, expected_grads, f"{layout} {name}")

    # everything at once
    out, cache = forward(F, cell, **{k: (v if layout == "fortran" and v.ndim < 2 else to_layout(v))
                                  for k, v in inp.items()})
    grads = backward(F, cell, cache, **{k: to_layout(v) for k, v in douts.items()})
    assert_same_results({**out, **grads}, {**expected_out, **expected_grads}, f"{layout} all arguments")


# --------------------------------------------------------------------------------------------------
# lengths
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[-1, 2, 3], [1, T + 1, 3], [0, 2, 10**6], [-(10**6), T, T]],
                         ids=["negative", "T_plus_1", "huge", "very_negative"])
@pytest.mark.parametrize("cell", CELLS)
def test_lengths_out_of_range(cell, bad):
    inp = make_inputs(cell)
    inp["lengths"] = np.array(bad, dtype=np.int64)
    with pytest.raises(ValueError, match=arg_match("lengths")) as excinfo:
        forward(F, cell, **inp)
    check_message(excinfo, "lengths")


@pytest.mark.parametrize("shape", [(N - 1,), (N + 1,), (N, 1), (1, N), (0,)], ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_lengths_wrong_size(cell, shape):
    inp = make_inputs(cell)
    inp["lengths"] = np.ones(shape, dtype=np.int64)
    with pytest.raises(ValueError, match=arg_match("lengths")) as excinfo:
        forward(F, cell, **inp)
    check_message(excinfo, "lengths", got=shape)


def test_lengths_scalar():
    inp = make_inputs(RNN)
    inp["lengths"] = np.int64(2)
    with pytest.raises(ValueError, match=arg_match("lengths")):
        forward(F, RNN, **inp)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_lengths_float_dtype(cell, dtype):
    inp = make_inputs(cell)
    inp["lengths"] = inp["lengths"].astype(dtype)  # integral values: still refused
    with pytest.raises(TypeError, match=arg_match("lengths")) as excinfo:
        forward(F, cell, **inp)
    check_message(excinfo, "lengths")


@pytest.mark.parametrize("as_", ["int32", "uint8", "int16", "list"])
@pytest.mark.parametrize("cell", CELLS)
def test_lengths_other_integer_types_accepted(cell, as_):
    inp, douts = make_inputs(cell), make_douts(cell)
    expected_out, cache = forward(F, cell, **inp)
    expected_grads = backward(F, cell, cache, **douts)
    inp["lengths"] = inp["lengths"].tolist() if as_ == "list" else inp["lengths"].astype(as_)
    out, cache = forward(F, cell, **inp)
    grads = backward(F, cell, cache, **douts)
    assert_same_results({**out, **grads}, {**expected_out, **expected_grads}, f"lengths as {as_}")


# --------------------------------------------------------------------------------------------------
# T = 0, N = 0
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_lengths", [False, True], ids=["lengths_none", "lengths_given"])
@pytest.mark.parametrize("with_states", [False, True], ids=["states_none", "states_given"])
@pytest.mark.parametrize("empty", ["T0", "N0", "T0_N0"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_empty_time_or_batch(cell, dtype, empty, with_states, with_lengths):
    t = 0 if "T0" in empty else T
    n = 0 if "N0" in empty else N
    inp = make_inputs(cell, dtype, T=t, N=n)
    if not with_states:
        inp["h0"] = None
        if cell.has_c:
            inp["c0"] = None
    inp["lengths"] = np.zeros(n, dtype=np.int64) + t if with_lengths else None
    out, cache = forward(F, cell, **inp)
    assert out["y"].shape == (t, n, H) and out["y"].dtype == dtype
    for name, s in zip(cell.initial_states, cell.states):
        final = out[f"{s}_n"]
        assert final.shape == (n, H) and final.dtype == dtype
        # h_n = h0 (or zeros): no step ran
        expected = inp[name] if inp[name] is not None else np.zeros((n, H), dtype)
        np.testing.assert_array_equal(final, expected, err_msg=name)

    G = cell.G
    grad_shapes = {"dx": (t, n, C), "dh0": (n, H), "dc0": (n, H), "dW_ih": (G * H, C), "dW_hh": (G * H, H),
                   "db_ih": (G * H,), "db_hh": (G * H,)}
    douts = make_douts(cell, dtype, T=t, N=n)
    for dstates_given in (False, True):
        d = dict(douts) if dstates_given else {"dy": douts["dy"]}
        grads = backward(F, cell, cache, **d)  # as many as grad_names(cell)
        for name, g in grads.items():
            assert g.shape == grad_shapes[name] and g.dtype == dtype, f"{name}: {g.shape} {g.dtype}"
        # the weights, the biases and x took no part: zero gradients
        assert not np.any(grads["dx"]), "dx"
        for w in WEIGHTS:
            assert not np.any(grads[f"d{w}"]), "weight gradients must be zero"
        # h_n = h0 (c_n = c0), so dh0 = dh_n (dc0 = dc_n): zero when dh_n (dc_n) is None
        for s in cell.states:
            dname = f"d{s}_n"
            expected = d[dname] if dname in d else np.zeros((n, H), dtype)
            np.testing.assert_array_equal(grads[f"d{s}0"], expected, err_msg=f"gradient of the initial state ({dname})")


# --------------------------------------------------------------------------------------------------
# Caches
# --------------------------------------------------------------------------------------------------


CELL_PAIRS = [pytest.param(a, b, id=f"{a.id}_cache_to_{b.id}") for a in (RNN, LSTM, GRU) for b in (RNN, LSTM, GRU)
              if a is not b]


@pytest.mark.parametrize("made_by, cell", CELL_PAIRS)
def test_cache_from_another_cell(cell, made_by):
    _, cache = forward(F, made_by, **make_inputs(made_by))
    douts = make_douts(cell)
    with pytest.raises(TypeError, match=arg_match("cache")):
        backward(F, cell, cache, **douts)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_cache_to_functional_backward(cell):
    inp, douts = make_inputs(cell), make_douts(cell)
    _, ref_cache = forward(ref, cell, **inp)
    with pytest.raises(TypeError, match=arg_match("cache")):
        backward(F, cell, ref_cache, **douts)


@pytest.mark.parametrize("cell", CELLS)
def test_functional_cache_to_reference_backward(cell):
    inp, douts = make_inputs(cell), make_douts(cell)
    _, cache = forward(F, cell, **inp)
    with pytest.raises(TypeError, match=arg_match("cache")):
        backward(ref, cell, cache, **douts)


@pytest.mark.parametrize("bad", [None, (), {}, "cache"], ids=["None", "tuple", "dict", "str"])
@pytest.mark.parametrize("cell", CELLS)
def test_cache_not_a_cache(cell, bad):
    with pytest.raises(TypeError, match=arg_match("cache")):
        backward(F, cell, bad, **make_douts(cell))


@pytest.mark.parametrize("cell", CELLS)
def test_functional_cache_type(cell):
    _, cache = forward(F, cell, **make_inputs(cell))
    assert isinstance(cache, F.Cache)


# --------------------------------------------------------------------------------------------------
# nonlinearity, threads
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["sigmoid", "Tanh", "RELU", "", None, "tanh "])
def test_bad_nonlinearity(bad):
    inp = make_inputs(RNN)
    with pytest.raises(ValueError, match=arg_match("nonlinearity")):
        F.rnn_forward(**inp, nonlinearity=bad)


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_below_one(n):
    previous = rnnkit.get_num_threads()
    try:
        with pytest.raises(ValueError):
            rnnkit.set_num_threads(n)
        assert rnnkit.get_num_threads() == previous, "a refused setting must not change the thread count"
    finally:
        rnnkit.set_num_threads(previous)


def _huge_view(shape, dtype):
    """A broadcast view whose C-contiguous copy would need terabytes: converting it fails in numpy."""
    return np.broadcast_to(np.zeros((), dtype), shape)


@pytest.mark.parametrize("cell, arg", [
    pytest.param(c, a, id=f"{c.id}-{a}") for c in (RNN, LSTM, GRU)
    for a in ("x", "W_ih", "W_hh", "b_ih", "b_hh", "h0", "recurrent_mask", "dy", "dh_n") + (("c0", "dc_n") if c.has_c else ())])
def test_array_that_cannot_be_made_contiguous_is_a_memory_error_naming_it(cell, arg):
    rng = np.random.default_rng(0)
    G = cell.G
    args = dict(x=rng.standard_normal((T, N, C)).astype(np.float32), W_ih=np.zeros((G * H, C), np.float32),
                W_hh=np.zeros((G * H, H), np.float32), b_ih=np.zeros(G * H, np.float32), b_hh=np.zeros(G * H, np.float32))
    forward, backward = getattr(F, f"{cell.kind}_forward"), getattr(F, f"{cell.kind}_backward")
    huge = _huge_view((10**6, 10**6, 10**3), np.float32)[:, :, ::2]  # strided as well as broadcast
    if arg in ("dy", "dh_n", "dc_n"):
        *outputs, cache = forward(**args)
        with pytest.raises(MemoryError, match=arg):
            backward(cache, huge if arg == "dy" else np.ones_like(outputs[0]),
                     **({arg: huge} if arg != "dy" else {}))
        return
    with pytest.raises(MemoryError, match=arg):
        forward(**{**args, arg: huge})


def test_unaligned_array_is_copied_once():
    """A C-contiguous view at an odd byte offset (not aligned to its dtype) is copied once at the boundary: the
    kernels read whole, aligned elements (UBSan reported misaligned loads), and the result equals the aligned call."""
    buf = np.zeros(3 * 2 * 5 * 4 + 1, np.uint8)
    x = buf[1:].view(np.float32).reshape(3, 2, 5)
    x[...] = np.arange(30, dtype=np.float32).reshape(3, 2, 5) / 30
    assert not x.flags.aligned
    args = (np.ones((4, 5), np.float32) / 5, np.ones((4, 4), np.float32) / 4, np.zeros(4, np.float32), np.zeros(4, np.float32))
    np.testing.assert_array_equal(F.rnn_forward(x, *args)[0], F.rnn_forward(np.array(x), *args)[0])
