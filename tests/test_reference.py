"""Tests of the NumPy reference (python/rnnkit/reference.py), the oracle the compiled kernels are checked against.

The backward passes are checked against central finite differences of the forward passes in float64; the
forward passes against the contract's equations, its length / direction rules and its edge cases.
"""

import numpy as np
import pytest
from helpers import CELL_VARIANTS, backward, central_differences, forward_states, input_names, random_inputs
from numpy.testing import assert_allclose, assert_array_equal

import rnnkit.reference as ref

T, N, C, H = 4, 3, 2, 3
VARIANTS = [pytest.param(c, id=c.id) for c in CELL_VARIANTS]

# Central differences with eps = 1e-6 in float64: truncation error ~ eps^2 * |L'''| ~ 1e-12 and rounding error
# ~ 1e-16 * |L| / eps ~ 1e-10, so the numeric gradient is good to ~1e-9 absolute. Agreement to rtol 1e-6 /
# atol 1e-8 therefore means the analytic gradient is right to about 6 significant digits, while a real bug
# (a missing term, a wrong mask, a swapped gate) gives errors of order 1e-2 .. 1.
EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8


def make_inputs(rng, variant, T=T, N=N):
    """random_inputs at this file's sizes (float64); the relu RNN's b_ih raised by 1."""
    inp = random_inputs(rng, variant, T, N, C, H)
    if variant.id == "rnn_relu":
        inp["b_ih"] += 1.0  # keep many relu units active so that every gradient is exercised
    return inp


def make_mask(rng, N=N, H=H, keep=0.7):
    """A recurrent-dropout mask [N, H]: 0 (dropped) or 1/keep (kept), with at least one of each."""
    mask = np.where(rng.random((N, H)) < keep, 1 / keep, 0.0)
    mask.flat[0], mask.flat[-1] = 0.0, 1 / keep
    return mask


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
    R_final = tuple(rng.standard_normal((N, H)) for _ in variant.states)

    def loss(point):
        # L = sum(R * y) + sum(Rh * h_n) (+ sum(Rc * c_n) for LSTM)
        y, finals, _ = forward_states(ref, variant, **point, lengths=lengths, reverse=reverse, recurrent_mask=mask)
        return np.sum(R * y) + sum(np.sum(r * f) for r, f in zip(R_final, finals))

    run_inp = dict(inp)
    if not given_h0:
        for name in variant.initial_states:
            run_inp[name] = None
            inp[name] = np.zeros((N, H))  # None means zeros: differentiate at zero
        assert loss(run_inp) == loss(inp)

    y, _, cache = forward_states(ref, variant, **run_inp, lengths=lengths, reverse=reverse, recurrent_mask=mask)
    if variant.id == "rnn_relu":
        # no pre-activation may sit on relu's kink (within any distance the eps-perturbations can move it)
        assert np.min(np.abs(relu_preactivations(inp, y, lengths, reverse, mask))) > 1e-3
    grads = backward(ref, variant, cache, R, *R_final)

    for name in input_names(variant):
        grad = grads["d" + name]
        assert grad.shape == inp[name].shape, name
        assert grad.dtype == np.float64, name
        numeric = central_differences(lambda: loss(inp), [inp[name]], EPS)[0]
        assert np.any(numeric != 0), name  # the check is not vacuous
        assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_ones_mask_equals_no_mask(rng, variant):
    inp = make_inputs(rng, variant)
    lengths = [T, 1, 0]
    dy = rng.standard_normal((T, N, H))
    results = []
    for mask in (None, np.ones((N, H))):
        y, finals, cache = forward_states(ref, variant, **inp, lengths=lengths, reverse=True, recurrent_mask=mask)
        dfinal = tuple(np.ones((N, H)) for _ in finals)
        results.append((y, finals, backward(ref, variant, cache, dy, *dfinal)))
    (y0, f0, g0), (y1, f1, g1) = results
    assert_array_equal(y1, y0)
    for a, b in zip(f1, f0):
        assert_array_equal(a, b)
    for name in g0:
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
    if variant.id == "rnn_tanh":
        return np.tanh(ih(0) + hh(0, hr)), None
    if variant.id == "rnn_relu":
        return np.maximum(ih(0) + hh(0, hr), 0), None
    if variant.id == "lstm":
        i, f, g, o = sig(ih(0) + hh(0, hr)), sig(ih(1) + hh(1, hr)), np.tanh(ih(2) + hh(2, hr)), sig(ih(3) + hh(3, hr))
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    r, z = sig(ih(0) + hh(0, hr)), sig(ih(1) + hh(1, hr))
    if variant.id == "gru_reset_after":
        n = np.tanh(ih(2) + r * hh(2, hr))
    else:
        n = np.tanh(ih(2) + hh(2, r * hr))
    return (1 - z) * n + z * h, None


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_contract_equations(rng, variant, masked):
    inp = make_inputs(rng, variant)
    mask = make_mask(rng) if masked else None
    y, finals, _ = forward_states(ref, variant, **inp, recurrent_mask=mask)
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
    y, finals, _ = forward_states(ref, variant, **inp, lengths=lengths, reverse=reverse)
    assert y.shape == (T, len(lengths), H)
    for n, L in enumerate(lengths):
        alone = {k: v[:L, n : n + 1] if k == "x" else v[n : n + 1] if k in ("h0", "c0") else v for k, v in inp.items()}
        y_alone, finals_alone, _ = forward_states(ref, variant, **alone, reverse=reverse)
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
    y_rev, finals_rev, cache_rev = forward_states(ref, variant, **inp, lengths=lengths, reverse=True)
    flipped = dict(inp, x=_flip_prefixes(inp["x"], lengths))
    y_fwd, finals_fwd, cache_fwd = forward_states(ref, variant, **flipped, lengths=lengths, reverse=False)
    assert_allclose(y_rev, _flip_prefixes(y_fwd, lengths), rtol=1e-12, atol=1e-14)
    for a, b in zip(finals_rev, finals_fwd):
        assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert not np.allclose(y_rev, y_fwd)  # the flip matters for this data

    # the same holds for the gradients (dy flipped the same way, dx flipped back)
    dy = rng.standard_normal((T, len(lengths), H))
    dfinal = tuple(rng.standard_normal(f.shape) for f in finals_rev)
    g_rev = backward(ref, variant, cache_rev, dy, *dfinal)
    g_fwd = backward(ref, variant, cache_fwd, _flip_prefixes(dy, lengths), *dfinal)
    g_fwd["dx"] = _flip_prefixes(g_fwd["dx"], lengths)
    for name in g_rev:
        assert_allclose(g_rev[name], g_fwd[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("given_h0", [True, False], ids=["h0", "h0None"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_all_lengths_zero(rng, variant, reverse, given_h0):
    inp = make_inputs(rng, variant)
    if not given_h0:
        for name in variant.initial_states:
            inp[name] = None
    y, finals, cache = forward_states(ref, variant, **inp, lengths=np.zeros(N, dtype=np.int64), reverse=reverse)
    assert_array_equal(y, np.zeros((T, N, H)))
    for name, f in zip(variant.initial_states, finals):
        assert_array_equal(f, inp[name] if given_h0 else np.zeros((N, H)))

    dfinal = tuple(rng.standard_normal((N, H)) for _ in finals)
    grads = backward(ref, variant, cache, rng.standard_normal((T, N, H)), *dfinal)
    for name in input_names(variant):
        if name in variant.initial_states:
            # h_n = h0 (c_n = c0): the gradient passes straight through
            assert_array_equal(grads["d" + name], dfinal[variant.initial_states.index(name)])
        else:
            assert grads["d" + name].shape == make_inputs(rng, variant)[name].shape, name
            assert_array_equal(grads["d" + name], 0, err_msg=name)


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
        for name in variant.initial_states:
            inp[name] = None
    y, finals, cache = forward_states(ref, variant, **inp, lengths=np.zeros(Ne, dtype=np.int64) if Ne else None)
    assert y.shape == (Te, Ne, H) and y.dtype == np.float64
    for name, f in zip(variant.initial_states, finals):
        assert f.shape == (Ne, H) and f.dtype == np.float64
        assert_array_equal(f, inp[name] if given_h0 else 0)  # nothing ran: h_n = h0 (or zeros)

    dfinal = tuple(rng.standard_normal((Ne, H)) for _ in finals)
    grads = backward(ref, variant, cache, np.zeros((Te, Ne, H)), *dfinal)
    shapes = {k: v.shape for k, v in make_inputs(rng, variant, T=Te, N=Ne).items()}
    for name in input_names(variant):
        grad = grads["d" + name]
        assert grad.shape == shapes[name] and grad.dtype == np.float64, name
        if name in variant.initial_states:
            assert_array_equal(grad, dfinal[variant.initial_states.index(name)])
        else:
            assert_array_equal(grad, 0, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_none_final_gradients_mean_zero(rng, variant):
    inp = make_inputs(rng, variant)
    _, finals, cache = forward_states(ref, variant, **inp, lengths=[T, 2, 0], reverse=True)
    dy = rng.standard_normal((T, N, H))
    g_none = backward(ref, variant, cache, dy, *(None,) * len(finals))
    g_zero = backward(ref, variant, cache, dy, *(np.zeros((N, H)) for _ in finals))
    for name in g_zero:
        assert_array_equal(g_none[name], g_zero[name], err_msg=name)
    assert np.any(g_none["dx"] != 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_in_float32_out(rng, variant):
    inp64 = make_inputs(rng, variant)
    inp32 = {k: v.astype(np.float32) for k, v in inp64.items()}
    lengths = [T, 1, 2]
    dy = rng.standard_normal((T, N, H))
    results = {}
    for dtype, inp in ((np.float32, inp32), (np.float64, inp64)):
        y, finals, cache = forward_states(ref, variant, **inp, lengths=lengths, reverse=True)
        grads = backward(ref, variant, cache, dy.astype(dtype), *(np.ones((N, H), dtype) for _ in finals))
        for a in (y, *finals, *grads.values()):
            assert a.dtype == dtype
        results[dtype] = (y, finals, grads)
    (y32, f32, g32), (y64, f64, g64) = results[np.float32], results[np.float64]
    assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    for a, b in zip(f32, f64):
        assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in g64:
        assert_allclose(g32[name], g64[name], rtol=1e-3, atol=1e-4, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Cache checking
# --------------------------------------------------------------------------------------------------

_BACKWARDS = {"rnn": ref.rnn_backward, "lstm": ref.lstm_backward, "gru": ref.gru_backward}
_CELL_VARIANT = {c.kind: c for c in CELL_VARIANTS if c.id in ("rnn_tanh", "lstm", "gru_reset_after")}


@pytest.mark.parametrize(
    "producer, consumer", [(p, c) for p in _BACKWARDS for c in _BACKWARDS if p != c], ids=lambda s: s
)
def test_cache_from_another_cell_raises_type_error(rng, producer, consumer):
    variant = _CELL_VARIANT[producer]
    _, _, cache = forward_states(ref, variant, **make_inputs(rng, variant))
    assert cache.cell == producer
    with pytest.raises(TypeError, match="cache"):
        _BACKWARDS[consumer](cache, np.zeros((T, N, H)))


@pytest.mark.parametrize("bad", [None, object(), {"cell": "rnn"}], ids=["None", "object", "dict"])
@pytest.mark.parametrize("consumer", list(_BACKWARDS))
def test_non_cache_raises_type_error(consumer, bad):
    with pytest.raises(TypeError, match="cache"):
        _BACKWARDS[consumer](bad, np.zeros((T, N, H)))
