"""Tests of the NumPy reference (python/rnnkit/reference.py), the oracle the compiled kernels are checked against.

The backward passes are checked against central finite differences of the forward passes in float64; the
forward passes against the contract's equations, its length / direction rules and its edge cases.
"""

import numpy as np
import pytest
from helpers import central_differences
from numpy.testing import assert_allclose, assert_array_equal

import rnnkit.reference as ref
from rnnkit.cells import CELLS

T, N, C, H = 4, 3, 2, 3
VARIANTS = ["rnn_tanh", "rnn_relu", "lstm", "gru_reset_after", "gru_reset_before"]
GATES = {name: spec.G for name, spec in CELLS.items()}

# Central differences with eps = 1e-6 in float64: truncation error ~ eps^2 * |L'''| ~ 1e-12 and rounding error
# ~ 1e-16 * |L| / eps ~ 1e-10, so the numeric gradient is good to ~1e-9 absolute. Agreement to rtol 1e-6 /
# atol 1e-8 therefore means the analytic gradient is right to about 6 significant digits, while a real bug
# (a missing term, a wrong mask, a swapped gate) gives errors of order 1e-2 .. 1.
EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8


def cell_of(variant):
    return variant.split("_")[0]


def state_names(variant):
    return ("h0", "c0") if cell_of(variant) == "lstm" else ("h0",)


def grad_names(variant):
    return ("x",) + state_names(variant) + ("W_ih", "W_hh", "b_ih", "b_hh")


def make_inputs(rng, variant, T=T, N=N, C=C, H=H, dtype=np.float64):
    G = GATES[cell_of(variant)]
    inp = {
        "x": rng.standard_normal((T, N, C)),
        "W_ih": 0.6 * rng.standard_normal((G * H, C)),
        "W_hh": 0.6 * rng.standard_normal((G * H, H)),
        "b_ih": 0.3 * rng.standard_normal(G * H),
        "b_hh": 0.3 * rng.standard_normal(G * H),
    }
    for name in state_names(variant):
        inp[name] = 0.5 * rng.standard_normal((N, H))
    if variant == "rnn_relu":
        inp["b_ih"] += 1.0  # keep many relu units active so that every gradient is exercised
    return {k: v.astype(dtype) for k, v in inp.items()}


def make_mask(rng, N=N, H=H, keep=0.7):
    """A recurrent-dropout mask [N, H]: 0 (dropped) or 1/keep (kept), with at least one of each."""
    mask = np.where(rng.random((N, H)) < keep, 1 / keep, 0.0)
    mask.flat[0], mask.flat[-1] = 0.0, 1 / keep
    return mask


def forward(variant, inp, lengths=None, reverse=False, recurrent_mask=None):
    """Run the variant's forward. Returns (y, final states tuple, cache)."""
    args = (inp["x"], inp["W_ih"], inp["W_hh"], inp["b_ih"], inp["b_hh"])
    kw = dict(h0=inp.get("h0"), lengths=lengths, reverse=reverse, recurrent_mask=recurrent_mask)
    cell = cell_of(variant)
    if cell == "lstm":
        y, h_n, c_n, cache = ref.lstm_forward(*args, c0=inp.get("c0"), **kw)
        return y, (h_n, c_n), cache
    if cell == "rnn":
        y, h_n, cache = ref.rnn_forward(*args, nonlinearity=variant.split("_")[1], **kw)
    else:
        y, h_n, cache = ref.gru_forward(*args, reset_after=variant == "gru_reset_after", **kw)
    return y, (h_n,), cache


def backward(variant, cache, dy, dfinal):
    """Run the variant's backward. dfinal: tuple (dh_n,) or (dh_n, dc_n). Returns {input name: gradient}."""
    cell = cell_of(variant)
    if cell == "lstm":
        grads = ref.lstm_backward(cache, dy, *dfinal)
    elif cell == "rnn":
        grads = ref.rnn_backward(cache, dy, *dfinal)
    else:
        grads = ref.gru_backward(cache, dy, *dfinal)
    names = grad_names(variant)
    assert len(grads) == len(names)
    return dict(zip(names, grads))


def relu_preactivations(inp, y, lengths, reverse, mask=None):
    """The pre-activations a = W_ih x_t + b_ih + W_hh (h_prev * mask) + b_hh at all valid steps, from the outputs y."""
    Tn, Nn, _ = inp["x"].shape
    lengths = np.full(Nn, Tn) if lengths is None else np.asarray(lengths)
    h0 = inp["h0"] if inp.get("h0") is not None else np.zeros((Nn, inp["W_hh"].shape[1]))
    mask = np.ones_like(h0) if mask is None else mask
    out = []
    for n in range(Nn):
        L = lengths[n]
        for t in range(L):
            first = (t == L - 1) if reverse else (t == 0)
            h_prev = h0[n] if first else y[t + 1 if reverse else t - 1, n]
            out.append(inp["W_ih"] @ inp["x"][t, n] + inp["b_ih"] + inp["W_hh"] @ (h_prev * mask[n]) + inp["b_hh"])
    return np.array(out)


# --------------------------------------------------------------------------------------------------
# Gradients against finite differences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("given_h0", [True, False], ids=["h0", "h0None"])
@pytest.mark.parametrize("lengths", [None, [T, 1, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_match_finite_differences(rng, variant, reverse, lengths, given_h0, masked):
    mask = make_mask(rng) if masked else None  # a constant: no gradient w.r.t. it
    inp = make_inputs(rng, variant)
    R = rng.standard_normal((T, N, H))  # nonzero also at invalid steps: dy there must be ignored
    R_final = tuple(rng.standard_normal((N, H)) for _ in state_names(variant))

    def loss(point):
        # L = sum(R * y) + sum(Rh * h_n) (+ sum(Rc * c_n) for LSTM)
        y, finals, _ = forward(variant, point, lengths, reverse, mask)
        return np.sum(R * y) + sum(np.sum(r * f) for r, f in zip(R_final, finals))

    run_inp = dict(inp)
    if not given_h0:
        for name in state_names(variant):
            run_inp[name] = None
            inp[name] = np.zeros((N, H))  # None means zeros: differentiate at zero
        assert loss(run_inp) == loss(inp)

    y, _, cache = forward(variant, run_inp, lengths, reverse, mask)
    if variant == "rnn_relu":
        # no pre-activation may sit on relu's kink (within any distance the eps-perturbations can move it)
        assert np.min(np.abs(relu_preactivations(inp, y, lengths, reverse, mask))) > 1e-3
    grads = backward(variant, cache, R, R_final)

    for name in grad_names(variant):
        assert grads[name].shape == inp[name].shape, name
        assert grads[name].dtype == np.float64, name
        numeric = central_differences(lambda: loss(inp), [inp[name]], EPS)[0]
        assert np.any(numeric != 0), name  # the check is not vacuous
        assert_allclose(grads[name], numeric, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_ones_mask_equals_no_mask(rng, variant):
    inp = make_inputs(rng, variant)
    lengths = [T, 1, 0]
    dy = rng.standard_normal((T, N, H))
    results = []
    for mask in (None, np.ones((N, H))):
        y, finals, cache = forward(variant, inp, lengths, reverse=True, recurrent_mask=mask)
        dfinal = tuple(np.ones((N, H)) for _ in finals)
        results.append((y, finals, backward(variant, cache, dy, dfinal)))
    (y0, f0, g0), (y1, f1, g1) = results
    assert_array_equal(y1, y0)
    for a, b in zip(f1, f0):
        assert_array_equal(a, b)
    for name in grad_names(variant):
        assert_array_equal(g1[name], g0[name], err_msg=name)


# --------------------------------------------------------------------------------------------------
# Forward against the contract's equations
# --------------------------------------------------------------------------------------------------


def _contract_step(variant, inp, x_t, h, c, mask):
    """One time step straight from the contract, gate blocks taken by index (independent of reference.py).

    mask: the recurrent mask; hr = h * mask is what enters W_hh, while GRU's z * h term uses h itself."""
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    Wi, Wh, bi, bh = inp["W_ih"], inp["W_hh"], inp["b_ih"], inp["b_hh"]
    Hn = Wh.shape[1]
    hr = h * mask
    ih = lambda k: x_t @ Wi[k * Hn : (k + 1) * Hn].T + bi[k * Hn : (k + 1) * Hn]  # noqa: E731
    hh = lambda k, hv: hv @ Wh[k * Hn : (k + 1) * Hn].T + bh[k * Hn : (k + 1) * Hn]  # noqa: E731
    if variant == "rnn_tanh":
        return np.tanh(ih(0) + hh(0, hr)), None
    if variant == "rnn_relu":
        return np.maximum(ih(0) + hh(0, hr), 0), None
    if variant == "lstm":
        i, f, g, o = sig(ih(0) + hh(0, hr)), sig(ih(1) + hh(1, hr)), np.tanh(ih(2) + hh(2, hr)), sig(ih(3) + hh(3, hr))
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    r, z = sig(ih(0) + hh(0, hr)), sig(ih(1) + hh(1, hr))
    if variant == "gru_reset_after":
        n = np.tanh(ih(2) + r * hh(2, hr))
    else:
        n = np.tanh(ih(2) + hh(2, r * hr))
    return (1 - z) * n + z * h, None


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_contract_equations(rng, variant, masked):
    inp = make_inputs(rng, variant)
    mask = make_mask(rng) if masked else None
    y, finals, _ = forward(variant, inp, recurrent_mask=mask)
    h, c = inp["h0"], inp.get("c0")
    for t in range(T):
        h, c = _contract_step(variant, inp, inp["x"][t], h, c, np.ones((N, H)) if mask is None else mask)
        assert_allclose(y[t], h, rtol=1e-12, atol=1e-14)
    assert_allclose(finals[0], h, rtol=1e-12, atol=1e-14)
    if c is not None:
        assert_allclose(finals[1], c, rtol=1e-12, atol=1e-14)
    assert np.any(y != 0)


# --------------------------------------------------------------------------------------------------
# Lengths and direction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_lengths_match_running_the_truncated_sequence_alone(rng, variant, reverse):
    lengths = [T, 1, 0, 2]
    inp = make_inputs(rng, variant, N=len(lengths))
    y, finals, _ = forward(variant, inp, lengths, reverse)
    assert y.shape == (T, len(lengths), H)
    for n, L in enumerate(lengths):
        alone = {k: v[:L, n : n + 1] if k == "x" else v[n : n + 1] if k in ("h0", "c0") else v for k, v in inp.items()}
        y_alone, finals_alone, _ = forward(variant, alone, None, reverse)
        assert_allclose(y[:L, n], y_alone[:, 0], rtol=1e-12, atol=1e-14)
        assert_array_equal(y[L:, n], 0)  # outputs at invalid steps are exactly zero
        for f, f_alone in zip(finals, finals_alone):
            assert_allclose(f[n], f_alone[0], rtol=1e-12, atol=1e-14)
    assert_array_equal(finals[0][2], inp["h0"][2])  # lengths 0: h_n = h0


def _flip_prefixes(a, lengths):
    """Reverse each sequence's valid prefix a[:L, n] along time; leave the rest as is."""
    a = a.copy()
    for n, L in enumerate(lengths):
        a[:L, n] = a[:L, n][::-1]
    return a


@pytest.mark.parametrize("variant", VARIANTS)
def test_reverse_equals_flip_run_forward_flip_back(rng, variant):
    lengths = [T, 1, 0, 3]
    inp = make_inputs(rng, variant, N=len(lengths))
    y_rev, finals_rev, cache_rev = forward(variant, inp, lengths, reverse=True)
    flipped = dict(inp, x=_flip_prefixes(inp["x"], lengths))
    y_fwd, finals_fwd, cache_fwd = forward(variant, flipped, lengths, reverse=False)
    assert_allclose(y_rev, _flip_prefixes(y_fwd, lengths), rtol=1e-12, atol=1e-14)
    for a, b in zip(finals_rev, finals_fwd):
        assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert not np.allclose(y_rev, y_fwd)  # the flip matters for this data

    # the same holds for the gradients (dy flipped the same way, dx flipped back)
    dy = rng.standard_normal((T, len(lengths), H))
    dfinal = tuple(rng.standard_normal(f.shape) for f in finals_rev)
    g_rev = backward(variant, cache_rev, dy, dfinal)
    g_fwd = backward(variant, cache_fwd, _flip_prefixes(dy, lengths), dfinal)
    g_fwd["x"] = _flip_prefixes(g_fwd["x"], lengths)
    for name in grad_names(variant):
        assert_allclose(g_rev[name], g_fwd[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("given_h0", [True, False], ids=["h0", "h0None"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_all_lengths_zero(rng, variant, reverse, given_h0):
    inp = make_inputs(rng, variant)
    if not given_h0:
        for name in state_names(variant):
            inp[name] = None
    y, finals, cache = forward(variant, inp, np.zeros(N, dtype=np.int64), reverse)
    assert_array_equal(y, np.zeros((T, N, H)))
    for name, f in zip(state_names(variant), finals):
        assert_array_equal(f, inp[name] if given_h0 else np.zeros((N, H)))

    dfinal = tuple(rng.standard_normal((N, H)) for _ in finals)
    grads = backward(variant, cache, rng.standard_normal((T, N, H)), dfinal)
    for name in grad_names(variant):
        if name in ("h0", "c0"):
            # h_n = h0 (c_n = c0): the gradient passes straight through
            assert_array_equal(grads[name], dfinal[state_names(variant).index(name)])
        else:
            assert grads[name].shape == make_inputs(rng, variant)[name].shape, name
            assert_array_equal(grads[name], 0, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Empty shapes, dtypes, None gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given_h0", [True, False], ids=["h0", "h0None"])
@pytest.mark.parametrize("shape", [(0, N), (T, 0), (0, 0)], ids=["T0", "N0", "T0N0"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_time_or_batch(rng, variant, shape, given_h0):
    Te, Ne = shape
    inp = make_inputs(rng, variant, T=Te, N=Ne)
    if not given_h0:
        for name in state_names(variant):
            inp[name] = None
    y, finals, cache = forward(variant, inp, np.zeros(Ne, dtype=np.int64) if Ne else None)
    assert y.shape == (Te, Ne, H) and y.dtype == np.float64
    for name, f in zip(state_names(variant), finals):
        assert f.shape == (Ne, H) and f.dtype == np.float64
        assert_array_equal(f, inp[name] if given_h0 else 0)  # nothing ran: h_n = h0 (or zeros)

    dfinal = tuple(rng.standard_normal((Ne, H)) for _ in finals)
    grads = backward(variant, cache, np.zeros((Te, Ne, H)), dfinal)
    shapes = {k: v.shape for k, v in make_inputs(rng, variant, T=Te, N=Ne).items()}
    for name in grad_names(variant):
        assert grads[name].shape == shapes[name] and grads[name].dtype == np.float64, name
        if name in ("h0", "c0"):
            assert_array_equal(grads[name], dfinal[state_names(variant).index(name)])
        else:
            assert_array_equal(grads[name], 0, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_none_final_gradients_mean_zero(rng, variant):
    inp = make_inputs(rng, variant)
    _, finals, cache = forward(variant, inp, [T, 2, 0], reverse=True)
    dy = rng.standard_normal((T, N, H))
    g_none = backward(variant, cache, dy, (None,) * len(finals))
    g_zero = backward(variant, cache, dy, tuple(np.zeros((N, H)) for _ in finals))
    for name in grad_names(variant):
        assert_array_equal(g_none[name], g_zero[name], err_msg=name)
    assert np.any(g_none["x"] != 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_in_float32_out(rng, variant):
    inp64 = make_inputs(rng, variant)
    inp32 = {k: v.astype(np.float32) for k, v in inp64.items()}
    lengths = [T, 1, 2]
    dy = rng.standard_normal((T, N, H))
    results = {}
    for dtype, inp in ((np.float32, inp32), (np.float64, inp64)):
        y, finals, cache = forward(variant, inp, lengths, reverse=True)
        grads = backward(variant, cache, dy.astype(dtype), tuple(np.ones((N, H), dtype) for _ in finals))
        for a in (y, *finals, *grads.values()):
            assert a.dtype == dtype
        results[dtype] = (y, finals, grads)
    (y32, f32, g32), (y64, f64, g64) = results[np.float32], results[np.float64]
    assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    for a, b in zip(f32, f64):
        assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in grad_names(variant):
        assert_allclose(g32[name], g64[name], rtol=1e-3, atol=1e-4, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Cache checking
# --------------------------------------------------------------------------------------------------

_BACKWARDS = {"rnn": ref.rnn_backward, "lstm": ref.lstm_backward, "gru": ref.gru_backward}
_CELL_VARIANT = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru_reset_after"}


@pytest.mark.parametrize(
    "producer, consumer", [(p, c) for p in _BACKWARDS for c in _BACKWARDS if p != c], ids=lambda s: s
)
def test_cache_from_another_cell_raises_type_error(rng, producer, consumer):
    variant = _CELL_VARIANT[producer]
    _, _, cache = forward(variant, make_inputs(rng, variant))
    assert cache.cell == producer
    with pytest.raises(TypeError, match="cache"):
        _BACKWARDS[consumer](cache, np.zeros((T, N, H)))


@pytest.mark.parametrize("bad", [None, object(), {"cell": "rnn"}], ids=["None", "object", "dict"])
@pytest.mark.parametrize("consumer", list(_BACKWARDS))
def test_non_cache_raises_type_error(consumer, bad):
    with pytest.raises(TypeError, match="cache"):
        _BACKWARDS[consumer](bad, np.zeros((T, N, H)))
