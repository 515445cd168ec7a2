"""The cells' variants: activations in every role, ONNX's clip, LSTM peepholes (``rnnkit.cells``,
``rnnkit.activations``).

1. The NumPy reference against central finite differences in float64: every activation of
   ``rnnkit.activations`` in every role of every cell, clip, peepholes.
2. The compiled kernels against the reference: outputs, final states and every gradient (the peepholes'
   included), over variants x lengths x direction x dtype x threads x the two product paths; the default cells'
   fused path is untouched by the options (bit for bit).
3. ONNX's own operator test cases for RNN, GRU and LSTM (the ``export*`` functions of
   ``onnx/backend/test/case/node/{rnn,gru,lstm}.py``, whose expected outputs come from ONNX's reference), and
   ONNX Runtime for the attributes those cases leave out (``activations``, ``clip``).
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from helpers import (Cell, assert_close, backward, central_differences, forward_states, input_names, random_inputs,
                     rnnkit_threads)
from numpy.testing import assert_allclose, assert_array_equal

import rnnkit.activations as acts
import rnnkit.convert as convert
import rnnkit.functional as F
import rnnkit.reference as ref
from rnnkit.cells import CELLS

# every kernel activation, with parameters where it has them
ACTIVATIONS = [("tanh", 0.0, 0.0), ("sigmoid", 0.0, 0.0), ("relu", 0.0, 0.0), ("linear", 0.0, 0.0),
               ("hard_sigmoid", 0.2, 0.5), ("elu", 1.0, 0.0), ("softsign", 0.0, 0.0), ("softplus", 0.0, 0.0),
               ("selu", *acts.KERAS["selu"][1:]), ("affine", 0.7, 0.1), ("leaky_relu", 0.1, 0.0),
               ("thresholded_relu", 0.3, 0.0), ("scaled_tanh", 1.5, 0.8)]


def defaults(cell):
    return [acts.KERAS[d] for _, d, _ in CELLS[cell].activations]


def role_variants():
    """Every activation in every role of every cell, the others at their defaults."""
    out = []
    for cell, extra in (("rnn", {}), ("lstm", {}), ("gru", {"reset_after": True}), ("gru", {"reset_after": False})):
        tag = cell if not extra else f"gru_{'after' if extra['reset_after'] else 'before'}"
        for k, (role, _, _) in enumerate(CELLS[cell].activations):
            for a in ACTIVATIONS:
                chosen = defaults(cell)
                chosen[k] = a
                out.append(Cell(f"{tag}-{role}_{a[0]}", cell, dict(extra, activations=chosen)))
    return out


SPECIAL = [
    Cell("rnn-clip", "rnn", dict(clip=0.5)),
    Cell("lstm-clip", "lstm", dict(clip=0.5)),
    Cell("gru_after-clip", "gru", dict(clip=0.5, reset_after=True)),
    Cell("gru_before-clip", "gru", dict(clip=0.5, reset_after=False)),
    Cell("lstm-peepholes", "lstm", {}, peepholes=True),
    Cell("lstm-peepholes_clip_hard_sigmoid_relu", "lstm",
         dict(clip=0.6, activations=["hard_sigmoid", "relu", "softsign"]), peepholes=True),
    Cell("gru_after-elu_softsign_clip", "gru", dict(clip=0.8, activations=["softsign", "elu"], reset_after=True)),
    Cell("gru_before-hard_sigmoid_selu", "gru", dict(activations=["hard_sigmoid", "selu"], reset_after=False)),
    Cell("rnn-relu_clip", "rnn", dict(activations=["relu"], clip=0.9)),
    Cell("lstm-proj", "lstm", {}, proj=2),
    Cell("lstm-proj_wider", "lstm", {}, proj=5),
    Cell("lstm-proj_peepholes_softsign_clip", "lstm", dict(activations=["sigmoid", "softsign", "tanh"], clip=0.8),
         peepholes=True, proj=2),
]
FD_VARIANTS = role_variants() + SPECIAL


# --------------------------------------------------------------------------------------------------
# 1. The reference against finite differences (float64)
# --------------------------------------------------------------------------------------------------

T, N, C, H = 4, 3, 2, 3
EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-8  # as in test_reference.py: the numeric gradient is good to ~1e-9


@pytest.mark.parametrize("v", FD_VARIANTS, ids=lambda v: v.id)
def test_reference_gradients_match_finite_differences(rng, v):
    inp = random_inputs(rng, v, T, N, C, H)
    lengths, reverse = np.array([T, 1, 3]), v.id.endswith(("clip", "peepholes"))
    P = v.proj or H
    R = rng.standard_normal((T, N, P))
    R_final = [rng.standard_normal((N, P if s == "h" else H)) for s in v.states]

    def loss():
        y, finals, _ = forward_states(ref, v, **inp, lengths=lengths, reverse=reverse)
        return np.sum(R * y) + sum(np.sum(r * f) for r, f in zip(R_final, finals))

    _, _, cache = forward_states(ref, v, **inp, lengths=lengths, reverse=reverse)
    grads = backward(ref, v, cache, R, *R_final)
    nonzero = 0
    for name in input_names(v):
        numeric = central_differences(loss, [inp[name]], EPS)[0]
        grad = grads["d" + name]
        assert grad.shape == inp[name].shape and grad.dtype == np.float64, name
        assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL, err_msg=name)
        nonzero += np.count_nonzero(numeric)
    assert nonzero > 0  # not vacuous


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_clip_stops_the_gradient_of_clipped_preactivations(rng, cell):
    """With a clip far below the pre-activations every gate saturates at its bound: the weights get no gradient
    through the gates (the LSTM's and GRU's direct paths still carry the states' gradients)."""
    v = Cell("tiny_clip", cell, dict(clip=1e-3))
    inp = random_inputs(rng, v, T, N, C, H, scale=5.0)
    inp["x"] *= 10
    y, finals, cache = forward_states(ref, v, **inp)
    grads = backward(ref, v, cache, np.ones_like(y), *(np.ones_like(f) for f in finals))
    a = inp["x"] @ inp["W_ih"].T  # far beyond the clip in almost every entry
    assert np.mean(np.abs(a) > 1e-3) > 0.99
    plain = Cell("none", cell, {})
    _, _, plain_cache = forward_states(ref, plain, **inp)
    plain_grads = backward(ref, plain, plain_cache, np.ones_like(y), *(np.ones_like(f) for f in finals))
    assert np.max(np.abs(grads["dW_ih"])) < 0.05 * np.max(np.abs(plain_grads["dW_ih"]))


# --------------------------------------------------------------------------------------------------
# 2. The compiled kernels against the reference
# --------------------------------------------------------------------------------------------------

KERNEL_VARIANTS = [Cell(f"rnn-{a[0]}", "rnn", dict(activations=[a])) for a in ACTIVATIONS] + SPECIAL + [
    Cell("lstm-softplus_elu_hard_sigmoid", "lstm", dict(activations=["softplus", "elu", "hard_sigmoid"])),
    Cell("gru_after-thresholded_scaled", "gru",
         dict(activations=[("affine", 0.25, 0.5), ("scaled_tanh", 1.5, 0.8)], reset_after=True)),
    Cell("gru_before-softsign_leaky", "gru", dict(activations=["softsign", ("leaky_relu", 0.1, 0.0)],
                                                  reset_after=False)),
]
SIZES = {"small": dict(T=6, N=5, C=3, H=4), "large": dict(T=9, N=11, C=37, H=21)}
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("v", KERNEL_VARIANTS, ids=lambda v: v.id)
def test_kernels_match_reference(rng, threads, v, reverse, dtype, size):
    d = SIZES[size]
    # weights of PyTorch's scale (1/sqrt(H)): an unbounded activation (linear, relu) keeps the states bounded
    inp = random_inputs(rng, v, d["T"], d["N"], d["C"], d["H"], dtype=dtype, scale=1 / np.sqrt(d["H"]))
    lengths = rng.integers(0, d["T"] + 1, size=d["N"])
    lengths[-1] = d["T"]
    P = v.proj or d["H"]
    dy = rng.standard_normal((d["T"], d["N"], P)).astype(dtype)
    dfinal = [rng.standard_normal((d["N"], P if s == "h" else d["H"])).astype(dtype) for s in v.states]
    y, finals, cache = forward_states(F, v, **inp, lengths=lengths, reverse=reverse)
    y_ref, finals_ref, cache_ref = forward_states(ref, v, **inp, lengths=lengths, reverse=reverse)
    assert_allclose(y, y_ref, **TOL[dtype])
    for got, expected in zip(finals, finals_ref):
        assert_allclose(got, expected, **TOL[dtype])
    # inference (no cache, its own small buffers) computes the same
    y_inf, _, _ = forward_states(F, v, **inp, lengths=lengths, reverse=reverse, return_cache=False)
    assert_allclose(y_inf, y, **TOL[dtype])
    grads = backward(F, v, cache, dy, *dfinal)
    grads_ref = backward(ref, v, cache_ref, dy, *dfinal)
    for name in grads_ref:
        assert grads[name].dtype == dtype, name
        assert_close(grads[name], grads_ref[name], name, TOL[dtype])  # atol scaled by max(1, max |grads_ref|)


SAME_BITS = ["lstm-clip", "lstm-peepholes_clip_hard_sigmoid_relu", "gru_after-elu_softsign_clip",
             "gru_before-hard_sigmoid_selu", "lstm-proj_wider", "lstm-proj_peepholes_softsign_clip"]


@pytest.mark.parametrize("v", [v for v in KERNEL_VARIANTS if v.id in SAME_BITS], ids=lambda v: v.id)
def test_kernels_same_bits_at_any_thread_count(rng, v):
    inp = random_inputs(rng, v, 12, 9, 16, 24, dtype=np.float32)
    results = []
    for n, split in ((1, "units"), (2, "units"), (2, "rows"), (3, "units")):
        with rnnkit_threads(n, split):
            y, finals, cache = forward_states(F, v, **inp)
            grads = backward(F, v, cache, np.ones_like(y), *(np.ones_like(f) for f in finals))
        results.append((y, *finals, *grads.values()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_default_activations_given_explicitly_keep_the_fused_path(rng, cell):
    """Naming the defaults (or ONNX's names of them) is the default cell, to the bit."""
    v = Cell(cell, cell, {})
    inp = random_inputs(rng, v, 5, 4, 3, 8, dtype=np.float32)
    onnx_names = {"tanh": "Tanh", "sigmoid": "Sigmoid"}
    explicit = Cell(cell, cell, dict(activations=[acts.onnx(onnx_names[d]) for _, d, _ in CELLS[cell].activations]))
    for a, b in zip(forward_states(F, v, **inp)[:2], forward_states(F, explicit, **inp)[:2]):
        assert_array_equal(np.asarray(a, dtype=object) if isinstance(a, tuple) else a,
                           np.asarray(b, dtype=object) if isinstance(b, tuple) else b)


@pytest.mark.parametrize("bad, match", [
    (dict(activations=["tanh", "tanh"]), "rnn takes 1 activations"),
    (dict(activations=["swish"]), "activations: expected one of"),
    (dict(activations=[("bogus", 0, 0)]), "unknown activation 'bogus'"),
    (dict(activations=[("tanh", "a", 0)]), r"\(name, alpha, beta\)"),
    (dict(activations="tanh"), "expected a list of 1"),
    (dict(clip=-1.0), "clip: expected a positive finite number"),
    (dict(clip=float("inf")), "clip: expected a positive finite number"),
])
def test_bad_options_are_named(rng, bad, match):
    v = Cell("rnn", "rnn", {})
    inp = random_inputs(rng, v, 3, 2, 2, 3, dtype=np.float32)
    for mod in (F, ref):
        with pytest.raises(ValueError, match=match):
            mod.rnn_forward(inp["x"], inp["W_ih"], inp["W_hh"], inp["b_ih"], inp["b_hh"], **bad)


def test_peepholes_are_checked(rng):
    v = Cell("lstm", "lstm", {}, peepholes=True)
    inp = random_inputs(rng, v, 3, 2, 2, 3, dtype=np.float32)
    args = (inp["x"], inp["W_ih"], inp["W_hh"], inp["b_ih"], inp["b_hh"])
    with pytest.raises(ValueError, match=r"peepholes: expected shape \[K\*H\] = \[9\]"):
        F.lstm_forward(*args, peepholes=np.zeros(8, np.float32))
    with pytest.raises(TypeError, match="peepholes: expected dtype float32"):
        F.lstm_forward(*args, peepholes=np.zeros(9))
    with pytest.raises(TypeError, match="peepholes: expected a float32 or float64 array"):
        F.lstm_forward(*args, peepholes=np.zeros(9, np.int64))
    # zero peepholes compute the plain LSTM
    y0 = F.lstm_forward(*args)[0]
    assert_allclose(F.lstm_forward(*args, peepholes=np.zeros(9, np.float32))[0], y0, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------
# 3. ONNX's operator test cases, and ONNX Runtime for activations and clip
# --------------------------------------------------------------------------------------------------

REQUIRE_ONNX = os.environ.get("RNNKIT_REQUIRE_ONNX") == "1"


def _import_onnx(names=("onnx",)):
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            if REQUIRE_ONNX:
                raise
            pytest.skip(f"{name} is not installed")
    return mods


def run_onnx_node(node, inputs):
    """Runs an ONNX RNN / GRU / LSTM node on rnnkit.functional: ``inputs`` as the node's present inputs, in order.
    Returns its present outputs, in order."""
    import onnx

    cell = node.op_type.lower()
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    slots = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if cell == "lstm" else [])
    present = iter(inputs)
    given = {slot: (next(present) if i < len(node.input) and node.input[i] else None) for i, slot in enumerate(slots)}
    layout = attrs.get("layout", 0)
    X = given["X"] if layout == 0 else np.swapaxes(given["X"], 0, 1)  # [T, N, C]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    D = 2 if direction == "bidirectional" else 1
    spec = CELLS[cell]
    A = len(spec.activations)
    activations = acts.onnx_list(attrs.get("activations", []), attrs.get("activation_alpha", []),
                                 attrs.get("activation_beta", []))

    def state(name, d):
        s = given.get(name)
        if s is None:
            return None
        return (s if layout == 0 else np.swapaxes(s, 0, 1))[d]

    ys, hs, cs = [], [], []
    for d in range(D):
        W_ih, W_hh, b_ih, b_hh = getattr(convert, f"from_onnx_{cell}")(given["W"], given["R"], given["B"], direction=d)
        kw = dict(h0=state("initial_h", d), lengths=given["sequence_lens"],
                  reverse=direction == "reverse" or d == 1, clip=attrs.get("clip"))
        if activations:  # ONNX lists the forward direction's, then the reverse one's
            kw["activations"] = activations[d * A:(d + 1) * A]
        if cell == "lstm":
            if given["P"] is not None:
                kw["peepholes"] = convert.from_onnx_peepholes(given["P"], direction=d)
            y, h, c, _ = F.lstm_forward(X, W_ih, W_hh, b_ih, b_hh, c0=state("initial_c", d), **kw)
            cs.append(c)
        elif cell == "gru":
            y, h, _ = F.gru_forward(X, W_ih, W_hh, b_ih, b_hh, reset_after=bool(attrs.get("linear_before_reset", 0)),
                                    **kw)
        else:
            y, h, _ = F.rnn_forward(X, W_ih, W_hh, b_ih, b_hh, **kw)
        ys.append(y)
        hs.append(h)
    Y, Y_h = np.stack(ys, axis=1), np.stack(hs)  # [T, D, N, H], [D, N, H]
    Y_c = np.stack(cs) if cs else None
    if layout == 1:
        Y, Y_h = Y.transpose(2, 0, 1, 3), Y_h.transpose(1, 0, 2)
        Y_c = None if Y_c is None else Y_c.transpose(1, 0, 2)
    outputs = dict(zip(["Y", "Y_h", "Y_c"], [Y, Y_h, Y_c]))
    return [outputs[slot] for slot, name in zip(["Y", "Y_h", "Y_c"], node.output) if name]


def onnx_operator_cases():
    """(name, node, inputs, outputs) of every case the onnx package's RNN, GRU and LSTM test modules export."""
    from onnx.backend.test.case.base import Base

    cases = []
    for op in ("rnn", "gru", "lstm"):
        module = importlib.import_module(f"onnx.backend.test.case.node.{op}")
        original = module.expect
        module.expect = lambda node, inputs, outputs, name, **kw: cases.append((name, node, inputs, outputs))
        try:
            for cls in vars(module).values():
                if isinstance(cls, type) and issubclass(cls, Base) and cls is not Base:
                    for attr in sorted(vars(cls)):
                        if attr.startswith("export"):
                            getattr(cls, attr)()
        finally:
            module.expect = original
    return cases


def test_onnx_operator_test_cases():
    _import_onnx()
    cases = onnx_operator_cases()
    names = sorted(name for name, *_ in cases)
    # every case of the three operators, the peephole LSTM included
    assert len(cases) >= 18 and "test_lstm_with_peepholes" in names, names
    for name, node, inputs, outputs in cases:
        got = run_onnx_node(node, inputs)
        assert len(got) == len(outputs), name
        for g, expected in zip(got, outputs):
            assert g.shape == expected.shape, name
            assert_allclose(g, expected, rtol=1e-5, atol=1e-6, err_msg=name)


ONNX_ATTRS = [
    ("RNN", dict(activations=["Relu"])),
    ("RNN", dict(activations=["HardSigmoid"], activation_alpha=[0.3], activation_beta=[0.4], clip=1.5)),
    ("RNN", dict(activations=["LeakyRelu", "Softsign"], direction="bidirectional", activation_alpha=[0.05, 0.0])),
    ("GRU", dict(activations=["HardSigmoid", "Softplus"], linear_before_reset=1)),
    ("GRU", dict(activations=["Sigmoid", "Elu"], clip=0.8)),
    ("GRU", dict(activations=["Sigmoid", "Tanh", "Relu", "Softsign"], direction="bidirectional", clip=2.0)),
    ("LSTM", dict(activations=["HardSigmoid", "Tanh", "Softsign"])),
    ("LSTM", dict(activations=["Sigmoid", "Relu", "Tanh"], clip=0.7, peepholes=True)),
    # the alphas and betas go to the activations that take them, in order: ScaledTanh (1.2, 0.7), Affine (0.5, 0.1)
    ("LSTM", dict(activations=["Sigmoid", "ScaledTanh", "Affine"], activation_alpha=[1.2, 0.5],
                  activation_beta=[0.7, 0.1], direction="reverse")),
]


@pytest.mark.parametrize("op, attrs", ONNX_ATTRS, ids=[f"{op}-{'-'.join(a['activations'])}" for op, a in ONNX_ATTRS])
def test_onnx_runtime_activations_and_clip(rng, op, attrs):
    onnx, ort = _import_onnx(("onnx", "onnxruntime"))
    from onnx import TensorProto, helper

    attrs = dict(attrs)
    peepholes = attrs.pop("peepholes", False)
    T_, N_, C_, H_ = 6, 4, 5, 7
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    G = CELLS[op.lower()].G
    arrays = {"X": rng.standard_normal((T_, N_, C_)), "W": 0.7 * rng.standard_normal((D, G * H_, C_)),
              "R": 0.7 * rng.standard_normal((D, G * H_, H_)), "B": 0.5 * rng.standard_normal((D, 2 * G * H_)),
              "sequence_lens": np.array([T_, 3, 1, 5], np.int32)}
    names = ["X", "W", "R", "B", "sequence_lens"]
    if peepholes:
        arrays["P"] = 0.5 * rng.standard_normal((D, 3 * H_))
        names += ["", "", "P"]
    arrays = {k: a.astype(np.float32) if a.dtype.kind == "f" else a for k, a in arrays.items()}
    node = helper.make_node(op, names, ["Y", "Y_h"], hidden_size=H_, **attrs)
    present = [n for n in names if n]
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT,
                                       arrays[n].shape) for n in present],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {n: arrays[n] for n in present})
    got = run_onnx_node(node, [arrays[n] for n in present])
    for g, e in zip(got, expected):
        assert_allclose(g, e, rtol=1e-4, atol=1e-5)
