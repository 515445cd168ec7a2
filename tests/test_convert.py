"""rnnkit.convert: Keras and ONNX weight layouts.

Round trips are exact. The converted weights are checked by what they compute: the Keras and ONNX cell
equations are written out below in NumPy, straight from those projects' documentation (not from rnnkit's
code), run on the converted weights, and compared with rnnkit.functional on the original weights in
float64. When onnx and onnxruntime are installed (RNNKIT_REQUIRE_ONNX=1 makes them required), real ONNX
RNN / LSTM / GRU nodes built with onnx.helper are run too, including direction="bidirectional".
"""

import os

import numpy as np
import pytest
from helpers import Cell, forward
from numpy.testing import assert_allclose, assert_array_equal

import rnnkit.functional as F
from rnnkit import convert
from rnnkit.cells import CELLS, WEIGHTS

T, N, C, H = 6, 3, 4, 5
# float64 on both sides, the same products summed in other orders: rounding only (~1e-15 relative)
TOL = dict(rtol=1e-10, atol=1e-12)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def random_weights(rng, cell, D=None, zero_b_hh=False):
    """rnnkit weights (W_ih, W_hh, b_ih, b_hh) for ``cell``, float64, with a leading [D] axis if D is given."""
    G, lead = CELLS[cell].G, () if D is None else (D,)
    w = [rng.uniform(-0.6, 0.6, (*lead, G * H, C)), rng.uniform(-0.6, 0.6, (*lead, G * H, H)),
         rng.uniform(-0.5, 0.5, (*lead, G * H)), rng.uniform(-0.5, 0.5, (*lead, G * H))]
    if zero_b_hh:
        w[3] = np.zeros_like(w[3])
    return w


def rnnkit_forward(cell, x, weights, reset_after=True, reverse=False):
    """y: [T, N, H] and h_n: [N, H] from rnnkit.functional; x: [T, N, C]."""
    options = {"reset_after": reset_after} if cell == "gru" else {}
    out, _ = forward(F, Cell(cell, cell, options), x=x, **dict(zip(WEIGHTS, weights)), reverse=reverse)
    return out["y"], out["h_n"]


# ---- Keras 3 cells (keras.layers.SimpleRNNCell / LSTMCell / GRUCell), x: [T, N, C] ------------------------

def keras_forward(cell, x, kernel, recurrent_kernel, bias, reset_after=True):
    h = np.zeros((x.shape[1], recurrent_kernel.shape[0]))
    c = np.zeros_like(h)
    ys = []
    for x_t in x:
        if cell == "rnn":
            # h = tanh(x @ kernel + bias + h_prev @ recurrent_kernel)
            h = np.tanh(x_t @ kernel + bias + h @ recurrent_kernel)
        elif cell == "lstm":
            # z = x @ kernel + h_prev @ recurrent_kernel + bias, split into i, f, c, o
            zi, zf, zc, zo = np.split(x_t @ kernel + h @ recurrent_kernel + bias, 4, axis=1)
            # c = f * c_prev + i * tanh(zc); h = o * tanh(c)
            c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
            h = sigmoid(zo) * np.tanh(c)
        else:
            input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            x_z, x_r, x_h = np.split(x_t @ kernel + input_bias, 3, axis=1)
            U_z, U_r, U_h = np.split(recurrent_kernel, 3, axis=1)
            rb_z, rb_r, rb_h = np.split(recurrent_bias, 3)
            z = sigmoid(x_z + h @ U_z + rb_z)
            r = sigmoid(x_r + h @ U_r + rb_r)
            if reset_after:
                # hh = tanh(x_h + r * (h_prev @ U_h + rb_h))
                hh = np.tanh(x_h + r * (h @ U_h + rb_h))
            else:
                # hh = tanh(x_h + (r * h_prev) @ U_h)
                hh = np.tanh(x_h + (r * h) @ U_h)
            # h = z * h_prev + (1 - z) * hh
            h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys), h


# ---- ONNX operators RNN / LSTM / GRU (one direction d), X: [T, N, C] ------------------------------------

def onnx_forward(cell, X, W, R, B, linear_before_reset=1, d=0):
    G = CELLS[cell].G
    Wd, Rd, Wb, Rb = W[d], R[d], B[d, :G * R.shape[2]], B[d, G * R.shape[2]:]
    Ht = np.zeros((X.shape[1], R.shape[2]))
    Ct = np.zeros_like(Ht)
    steps = range(X.shape[0]) if d == 0 else range(X.shape[0] - 1, -1, -1)
    Y = np.zeros((X.shape[0], *Ht.shape))
    for t in steps:
        Xt = X[t]
        if cell == "rnn":
            # Ht = f(Xt*(Wi^T) + Ht-1*(Ri^T) + Wbi + Rbi)
            Ht = np.tanh(Xt @ Wd.T + Ht @ Rd.T + Wb + Rb)
        elif cell == "lstm":
            gi, go, gf, gc = np.split(Xt @ Wd.T + Ht @ Rd.T + Wb + Rb, 4, axis=1)
            # it = f(...i), ft = f(...f), ct = g(...c), Ct = ft (.) Ct-1 + it (.) ct
            Ct = sigmoid(gf) * Ct + sigmoid(gi) * np.tanh(gc)
            # ot = f(...o), Ht = ot (.) h(Ct)
            Ht = sigmoid(go) * np.tanh(Ct)
        else:
            Wz, Wr, Wh = np.split(Wd, 3)
            Rz, Rr, Rh = np.split(Rd, 3)
            Wbz, Wbr, Wbh = np.split(Wb, 3)
            Rbz, Rbr, Rbh = np.split(Rb, 3)
            # zt = f(Xt*(Wz^T) + Ht-1*(Rz^T) + Wbz + Rbz); rt likewise
            zt = sigmoid(Xt @ Wz.T + Ht @ Rz.T + Wbz + Rbz)
            rt = sigmoid(Xt @ Wr.T + Ht @ Rr.T + Wbr + Rbr)
            if linear_before_reset:
                # ht = g(Xt*(Wh^T) + (rt (.) (Ht-1*(Rh^T) + Rbh)) + Wbh)
                ht = np.tanh(Xt @ Wh.T + rt * (Ht @ Rh.T + Rbh) + Wbh)
            else:
                # ht = g(Xt*(Wh^T) + (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)
                ht = np.tanh(Xt @ Wh.T + (rt * Ht) @ Rh.T + Rbh + Wbh)
            # Ht = (1 - zt) (.) ht + zt (.) Ht-1
            Ht = (1 - zt) * ht + zt * Ht
        Y[t] = Ht
    return Y, Ht


KERAS_CASES = [("rnn", True), ("lstm", True), ("gru", True), ("gru", False)]
KERAS_IDS = ["rnn", "lstm", "gru_reset_after", "gru_reset_before"]


def to_keras(cell, weights, reset_after):
    fn = getattr(convert, f"to_keras_{cell}")
    return fn(*weights, reset_after=reset_after) if cell == "gru" else fn(*weights)


def from_keras(cell, arrays, reset_after):
    fn = getattr(convert, f"from_keras_{cell}")
    return fn(*arrays, reset_after=reset_after) if cell == "gru" else fn(*arrays)


# ---- Keras: layout, round trips, outputs ---------------------------------------------------------------

@pytest.mark.parametrize("cell,reset_after", KERAS_CASES, ids=KERAS_IDS)
def test_keras_shapes_and_bias(rng, cell, reset_after):
    G = CELLS[cell].G
    weights = random_weights(rng, cell)
    kernel, recurrent_kernel, bias = to_keras(cell, weights, reset_after)
    assert kernel.shape == (C, G * H) and recurrent_kernel.shape == (H, G * H)
    two = cell == "gru" and reset_after
    assert bias.shape == ((2, G * H) if two else (G * H,))
    if not two:  # one Keras bias = b_ih + b_hh (gate blocks reordered for GRU)
        assert_allclose(bias, to_keras(cell, [*weights[:2], weights[2] + weights[3], None], reset_after)[2],
                        rtol=0, atol=0)
    for a in (kernel, recurrent_kernel, bias):
        assert a.dtype == np.float64 and a.flags.c_contiguous


@pytest.mark.parametrize("cell,reset_after", KERAS_CASES, ids=KERAS_IDS)
def test_keras_round_trips_exact(rng, cell, reset_after):
    two = cell == "gru" and reset_after
    weights = random_weights(rng, cell, zero_b_hh=not two)  # one Keras bias: exact when b_hh is zero
    for got, expected in zip(from_keras(cell, to_keras(cell, weights, reset_after), reset_after), weights):
        assert_array_equal(got, expected)
    keras = to_keras(cell, random_weights(rng, cell), reset_after)
    for got, expected in zip(to_keras(cell, from_keras(cell, keras, reset_after), reset_after), keras):
        assert_array_equal(got, expected)


@pytest.mark.parametrize("cell,reset_after", KERAS_CASES, ids=KERAS_IDS)
def test_keras_weights_compute_the_same(rng, cell, reset_after):
    weights = random_weights(rng, cell)  # both biases nonzero: to_keras must fold b_hh in correctly
    x = rng.standard_normal((T, N, C))
    y, h_n = rnnkit_forward(cell, x, weights, reset_after)
    y_keras, h_keras = keras_forward(cell, x, *to_keras(cell, weights, reset_after), reset_after=reset_after)
    assert_allclose(y_keras, y, **TOL)
    assert_allclose(h_keras, h_n, **TOL)
    # and back: Keras weights run by rnnkit
    keras = to_keras(cell, random_weights(rng, cell), reset_after)
    y, _ = rnnkit_forward(cell, x, from_keras(cell, keras, reset_after), reset_after)
    assert_allclose(y, keras_forward(cell, x, *keras, reset_after=reset_after)[0], **TOL)


def test_keras_gate_order_is_z_r_h_for_gru(rng):
    W_ih, W_hh, b_ih, b_hh = random_weights(rng, "gru")
    kernel, recurrent_kernel, bias = convert.to_keras_gru(W_ih, W_hh, b_ih, b_hh)
    assert_array_equal(kernel[:, :H], W_ih[H:2 * H].T)  # z
    assert_array_equal(kernel[:, H:2 * H], W_ih[:H].T)  # r
    assert_array_equal(recurrent_kernel[:, 2 * H:], W_hh[2 * H:].T)  # h = n
    assert_array_equal(bias[1, :H], b_hh[H:2 * H])


def test_keras_missing_bias_is_zero(rng):
    W_ih, W_hh, _, _ = random_weights(rng, "lstm")
    kernel, recurrent_kernel, bias = convert.to_keras_lstm(W_ih, W_hh)
    assert_array_equal(bias, np.zeros(4 * H))
    _, _, b_ih, b_hh = convert.from_keras_lstm(kernel, recurrent_kernel, None)
    assert_array_equal(b_ih, np.zeros(4 * H))
    assert_array_equal(b_hh, np.zeros(4 * H))


def test_float32_stays_float32(rng):
    weights = [w.astype(np.float32) for w in random_weights(rng, "lstm")]
    for a in (*convert.to_keras_lstm(*weights), *convert.to_onnx_lstm(*weights),
              *convert.from_onnx_lstm(*convert.to_onnx_lstm(*weights))):
        assert a.dtype == np.float32


# ---- ONNX: layout, round trips, outputs ----------------------------------------------------------------

ONNX_CASES = [("rnn", 0), ("lstm", 0), ("gru", 1), ("gru", 0)]
ONNX_IDS = ["rnn", "lstm", "gru_linear_before_reset", "gru_reset_before"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_onnx_round_trips_exact(rng, cell):
    to_onnx, from_onnx = getattr(convert, f"to_onnx_{cell}"), getattr(convert, f"from_onnx_{cell}")
    G = CELLS[cell].G
    weights = random_weights(rng, cell)
    W, R, B = to_onnx(*weights)
    assert (W.shape, R.shape, B.shape) == ((1, G * H, C), (1, G * H, H), (1, 2 * G * H))
    for got, expected in zip(from_onnx(W, R, B), weights):
        assert_array_equal(got, expected)
    for got, expected in zip(to_onnx(*from_onnx(W, R, B)), (W, R, B)):
        assert_array_equal(got, expected)
    # bidirectional: directions stacked on a leading axis, forward first
    stacked = random_weights(rng, cell, D=2)
    W, R, B = to_onnx(*stacked)
    assert W.shape == (2, G * H, C) and B.shape == (2, 2 * G * H)
    for d in (0, 1):
        for got, expected in zip(from_onnx(W, R, B, direction=d), stacked):
            assert_array_equal(got, expected[d])


def test_onnx_lstm_gate_order_is_i_o_f_c(rng):
    W_ih, W_hh, b_ih, b_hh = random_weights(rng, "lstm")
    W, R, B = convert.to_onnx_lstm(W_ih, W_hh, b_ih, b_hh)
    i, f, g, o = np.split(W_ih, 4)
    for block, expected in zip(np.split(W[0], 4), (i, o, f, g)):
        assert_array_equal(block, expected)
    assert_array_equal(B[0, 4 * H:5 * H], b_hh[:H])  # Rb starts with i


@pytest.mark.parametrize("cell,linear_before_reset", ONNX_CASES, ids=ONNX_IDS)
def test_onnx_weights_compute_the_same(rng, cell, linear_before_reset):
    reset_after = bool(linear_before_reset) if cell == "gru" else True
    stacked = random_weights(rng, cell, D=2)
    W, R, B = getattr(convert, f"to_onnx_{cell}")(*stacked)
    x = rng.standard_normal((T, N, C))
    for d in (0, 1):
        y, h_n = rnnkit_forward(cell, x, [w[d] for w in stacked], reset_after, reverse=d == 1)
        Y, Y_h = onnx_forward(cell, x, W, R, B, linear_before_reset, d=d)
        assert_allclose(Y, y, **TOL)
        assert_allclose(Y_h, h_n, **TOL)
    # without B (optional in ONNX): zero biases
    y, _ = rnnkit_forward(cell, x, getattr(convert, f"from_onnx_{cell}")(W, R), reset_after)
    assert_allclose(y, onnx_forward(cell, x, W, R, np.zeros_like(B), linear_before_reset)[0], **TOL)


# ---- errors ----------------------------------------------------------------------------------------------

def test_errors_name_the_argument(rng):
    W_ih, W_hh, b_ih, b_hh = random_weights(rng, "lstm")
    with pytest.raises(ValueError, match=r"W_hh: expected shape \[4\*H, H\]"):
        convert.to_keras_lstm(W_ih, W_hh[:, :3], b_ih, b_hh)
    with pytest.raises(ValueError, match=r"W_ih: expected shape \[20, 4\], got \[7, 4\]"):
        convert.to_keras_lstm(W_ih[:7], W_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"b_hh: expected shape \[20\], got \[19\]"):
        convert.to_onnx_lstm(W_ih, W_hh, b_ih, b_hh[:-1])
    with pytest.raises(TypeError, match="W_ih: expected a float array"):
        convert.to_keras_lstm(W_ih.astype(int), W_hh, b_ih, b_hh)
    kernel, recurrent_kernel, bias = convert.to_keras_gru(*random_weights(rng, "gru"), reset_after=True)
    with pytest.raises(ValueError, match=r"bias: expected shape \[15\], got \[2, 15\].*reset_after=True"):
        convert.from_keras_gru(kernel, recurrent_kernel, bias, reset_after=False)
    with pytest.raises(ValueError, match=r"recurrent_kernel: expected shape \[H, 3\*H\]"):
        convert.from_keras_gru(kernel, recurrent_kernel.T, bias)
    W, R, B = convert.to_onnx_gru(*random_weights(rng, "gru"))
    with pytest.raises(ValueError, match=r"direction: expected an index in \[0, 1\)"):
        convert.from_onnx_gru(W, R, B, direction=1)
    with pytest.raises(ValueError, match=r"B: expected shape \[1, 30\], got \[1, 15\]"):
        convert.from_onnx_gru(W, R, B[:, :15])
    with pytest.raises(ValueError, match=r"R: expected shape \[D, 3\*H, H\]"):
        convert.from_onnx_gru(W, R[0])


# ---- against ONNX Runtime (optional) ---------------------------------------------------------------------

def _onnx_modules():
    if os.environ.get("RNNKIT_REQUIRE_ONNX") == "1":
        import onnx
        import onnxruntime
        return onnx, onnxruntime
    return pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("cell,linear_before_reset", ONNX_CASES, ids=ONNX_IDS)
def test_onnxruntime_runs_the_converted_weights(rng, cell, linear_before_reset):
    onnx, ort = _onnx_modules()
    from onnx import TensorProto, helper, numpy_helper

    reset_after = bool(linear_before_reset) if cell == "gru" else True
    stacked = [w.astype(np.float32) for w in random_weights(rng, cell, D=2)]
    W, R, B = getattr(convert, f"to_onnx_{cell}")(*stacked)
    attributes = dict(hidden_size=H, direction="bidirectional")
    if cell == "gru":
        attributes["linear_before_reset"] = linear_before_reset
    node = helper.make_node(cell.upper(), ["X", "W", "R", "B"], ["Y", "Y_h"], **attributes)
    graph = helper.make_graph(
        [node], "converted", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, C])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 2, N, H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [2, N, H])],
        initializer=[numpy_helper.from_array(a, name) for a, name in ((W, "W"), (R, "R"), (B, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    Y, Y_h = session.run(None, {"X": x})  # Y: [T, D, N, H]; Y_h: [D, N, H]
    for d in (0, 1):
        y, h_n = rnnkit_forward(cell, x, [w[d] for w in stacked], reset_after, reverse=d == 1)
        # float32, two implementations: ~1e-6 relative rounding over T steps
        assert_allclose(Y[:, d], y, rtol=1e-5, atol=1e-6)
        assert_allclose(Y_h[d], h_n, rtol=1e-5, atol=1e-6)
